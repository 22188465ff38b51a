"""A row's values never reach an error message: the CLI's error line, the server log, an outcome's
detail. A bad row is named by its position (file, line, audit id, field; line and column in its
``audited_changes``) and the kind of fault, so a password in an audit cannot reach a log."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import mongomock
import pytest
import yaml
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.cli.state import Overrides
from crm_audit_adapters.files import FileFormatError, read_audit_rows
from crm_audit_adapters.files.audit_fields import record_row
from crm_audit_adapters.files.directories import parse_contact_line, read_sso_directory
from crm_audit_adapters.files.psql_csv import split_record
from crm_audit_adapters.http.errors import ApiError, on_domain_error, on_unexpected
from crm_audit_adapters.http.records import parse_body
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed
from crm_audit_transform.errors import (
    BadEncoding,
    ConfigError,
    ConnectionRejected,
    DependencyMissing,
    IndexConflict,
    MalformedYaml,
)
from crm_audit_transform.loading import _backends, load_audited_changes
from crm_audit_transform.rules.changes import ChangesExtractor
from crm_audit_transform.rules.verdict import Rejection
from crm_audit_transform.transformer import Transformer
from support.corpus_account import company_sso_id, contact_docs, dump_jsonl, sso_docs
from support.corpus_world import CORPUS

SECRET = "hunter2-s3cret"
TENANT = "acme"


def corpus_line() -> dict[str, Any]:
    for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        if doc["tenant"] == TENANT:
            return doc
    raise AssertionError("the corpus has no acme row")


def write_jsonl(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return path


class TestFileFormatErrors:
    @pytest.mark.parametrize(
        ("field", "value", "kind"),
        [
            ("id", f"password={SECRET}", "id is not an integer: a string of 23 characters"),
            ("created_at", SECRET, "created_at is not a timestamp: a string of 14 characters"),
            ("user_id", [SECRET], "user_id is not an integer or a string: a list of 1 item"),
            ("comment", {"password": SECRET}, "comment is not a string: an object of 1 member"),
        ],
    )
    def test_a_bad_field_is_named_by_its_line_and_kind_never_its_value(
        self, tmp_path: Path, field: str, value: object, kind: str
    ) -> None:
        """Before, each message quoted the value (``'password=hunter2-s3cret'``)."""
        path = write_jsonl(tmp_path / "a.jsonl", corpus_line(), {**corpus_line(), "id": 9, field: value})
        errors: list[FileFormatError] = []
        try:
            list(read_audit_rows(path, on_error=errors.append))
        except FileFormatError as halted:  # an unreadable id halts the read: no row to fail
            errors.append(halted)
        [error] = errors
        assert SECRET not in str(error)
        assert f"{path}, line 2: {kind}" == str(error)

    def test_a_directory_line_names_no_email(self, tmp_path: Path) -> None:
        """An SSO directory's e-mail given two sso ids is named by its line; before, the e-mail was quoted."""
        email = f"{SECRET}@example.com"
        path = write_jsonl(
            tmp_path / "sso.jsonl", {"email": email, "sso_id": "u-1"}, {"email": email, "sso_id": "u-2"}
        )
        with pytest.raises(FileFormatError) as caught:
            read_sso_directory(path)
        assert (
            str(caught.value)
            == f"{path}, line 2: its email has two sso ids: an earlier line gave it another one"
        )


class TestTheCliErrorLine:
    def test_a_halting_line_is_named_on_stderr_without_its_value(self, tmp_path: Path) -> None:
        """``dry-run`` over a line whose id cannot be read stops (exit 7) with ``error: BAD_INPUT:``
        naming the file, the line and the fault; before, the line quoted the id's text."""
        audits = write_jsonl(tmp_path / "audits.jsonl", corpus_line(), {**corpus_line(), "id": SECRET})
        (tmp_path / "contacts.jsonl").write_text(dump_jsonl(contact_docs(TENANT)), encoding="utf-8")
        (tmp_path / "sso.jsonl").write_text(dump_jsonl(sso_docs(TENANT)), encoding="utf-8")
        args = [
            "dry-run",
            "--company-sso-id",
            company_sso_id(TENANT),
            "--tenant",
            TENANT,
            "--audits",
            str(audits),
            "--users",
            str(CORPUS / "users.jsonl"),
            "--contacts",
            str(tmp_path / "contacts.jsonl"),
            "--sso-directory",
            str(tmp_path / "sso.jsonl"),
            "--no-progress",
            "--out",
            str(tmp_path / "logs.jsonl"),
        ]
        result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": ""})
        assert result.exit_code == exit_codes.BAD_INPUT, result.stderr
        assert f"audits.jsonl, line 2: id is not an integer: a string of {len(SECRET)}" in result.stderr
        assert SECRET not in result.stderr + result.stdout


T = TypeVar("T")


def _answer(handler: Coroutine[Any, Any, T]) -> T:
    """Run an HTTP error handler to its answer."""
    return asyncio.run(handler)


class TestTheServerLog:
    def test_the_422_warning_names_the_line_not_its_value(self, tmp_path: Path, caplog: Any) -> None:
        """The HTTP server's WARNING for an unreadable audits line (``http.errors``) holds the path, the
        line and the fault; before, the row's text as well."""
        path = write_jsonl(tmp_path / "a.jsonl", {**corpus_line(), "id": SECRET})
        with pytest.raises(FileFormatError) as caught:
            list(read_audit_rows(path))

        class Request:
            method = "POST"

            class url:
                path = "/private/activity_logs/crm_migration/trigger"

        with caplog.at_level(logging.WARNING, logger="crm_audit_adapters.http"):
            answer = _answer(on_domain_error(Request(), caught.value))  # type: ignore[arg-type]
        assert answer.status_code == 422
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert f"{path}, line 1: id is not an integer" in logged
        assert SECRET not in logged + bytes(answer.body).decode()


class TestTheServerLogOfABug:
    def test_a_500_logs_frames_and_types_but_no_message(self, caplog: Any) -> None:
        """An unexpected error's ERROR line holds its type and frames, and its cause's, not their
        messages; before, the whole traceback with each message (``KeyError: 'hunter2-s3cret'``)."""

        def lookup(changes: dict[str, int]) -> int:
            return changes[SECRET]

        try:
            try:
                lookup({})
            except KeyError as exc:
                raise RuntimeError(f"cannot map password={SECRET}") from exc
        except RuntimeError as exc:
            bug = exc

        class Request:
            method = "POST"

            class url:
                path = "/private/activity_logs/crm_migration/migrate"

        with caplog.at_level(logging.ERROR, logger="crm_audit_adapters.http"):
            answer = _answer(on_unexpected(Request(), bug))  # type: ignore[arg-type]
        assert answer.status_code == 500
        logged = "\n".join(caplog.text.splitlines() + [record.getMessage() for record in caplog.records])
        assert "builtins.RuntimeError (message left out)" in logged
        assert "builtins.KeyError (message left out)" in logged
        assert "in lookup" in logged  # the frame that raised
        assert SECRET not in logged + bytes(answer.body).decode()


class TestAuditedChangesDetails:
    @pytest.mark.parametrize(
        ("changes", "where"),
        [
            (f"---\npassword: !!float {SECRET}\n", "line 2, column 11: Ruby's Float() rejects"),
            (f"---\npassword: !!float 1.2.3{SECRET}\n", "line 2, column 11: Ruby's Float() rejects"),
            (f"---\nsigned_at: !ruby/object:DateTime {SECRET}\n", "line 2, column 12: Psych cannot parse"),
            (f"---\n{SECRET}: 1\n{SECRET}: 2\n", "line 3, column 1: duplicate key"),
            (f"---\npassword: *{SECRET}\n", "line 2, column 11: found an undefined alias"),
            (
                f'---\nprice: !ruby/object:BigDecimal "{SECRET}"\n',
                "line 2, column 8: the scalar is not a dumped",
            ),
        ],
    )
    def test_a_value_the_loader_refuses_is_named_by_line_and_column(self, changes: str, where: str) -> None:
        """The row's failure (``malformed_audited_changes``, its detail in ``--outcomes`` files and
        ``explain``) says where and what, never the value; before, each quoted it."""
        transformer = Transformer(load_default_config())
        doc = {**corpus_line(), "audited_changes": changes}
        row = record_row("a.jsonl", 1, doc, TENANT, typed=True, jsonb_changes=False)
        assert row is not None
        prepared = transformer.prepare_row(row)
        assert isinstance(prepared.problem, Failed), prepared
        assert prepared.problem.reason == "malformed_audited_changes"
        assert f"malformed YAML at {where}" in prepared.problem.detail
        assert SECRET not in prepared.problem.detail


class TestPurePythonParserMessages:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            (
                f"--- !{SECRET}!x\na: 1\n",
                "malformed YAML at line 1, column 5: while parsing a node found undefined tag handle",
            ),
            (
                f'---\na: "\\{SECRET}"\n',
                "malformed YAML at line 2, column 6: while scanning a double-quoted scalar found unknown"
                " escape character",
            ),
            (
                f"---\na: `{SECRET}\n",
                "malformed YAML at line 2, column 4: while scanning for the next token found character"
                " that cannot start any token",
            ),
            (
                f"---\na: |{SECRET}\n  b\n",
                "malformed YAML at line 2, column 5: while scanning a block scalar expected chomping or"
                " indentation indicators, but found another character",
            ),
            (
                f'---\na: "\\u{SECRET}"\n',
                "malformed YAML at line 2, column 7: while scanning a double-quoted scalar expected escape"
                " sequence of 4 hexadecimal numbers, but found another character",
            ),
            (
                f"---\na: \x07{SECRET}\n",
                "not YAML-readable text: special characters are not allowed (offset 7)",
            ),
        ],
    )
    def test_a_scanner_message_names_the_fault_not_the_text(self, changes: str, message: str) -> None:
        """The pure-Python parser (no libyaml) quoted the character, escape or tag handle it met
        (``found undefined tag handle '!hunter2-s3cret!'``); now its message is the fault, as libyaml's."""
        with pytest.raises((MalformedYaml, BadEncoding)) as caught:
            load_audited_changes(changes, backend="python")
        assert str(caught.value) == message
        assert SECRET not in str(caught.value)
        assert repr(SECRET[0]) not in str(caught.value)


class TestFileParserMessages:
    def test_a_csv_record_names_the_stray_characters_place_not_the_character(self) -> None:
        """A psql CSV field followed by anything but a comma is named by its field; before, the
        character was quoted (``unexpected 'h' in field 2``)."""
        with pytest.raises(FileFormatError) as caught:
            split_record("a.csv", 3, f'1,"x"{SECRET},z'.encode())
        assert str(caught.value) == "a.csv, line 3: field 2 is followed by a character other than a comma"
        assert repr(SECRET[0]) not in str(caught.value)

    @pytest.mark.parametrize(
        ("operand", "kind"),
        [
            ({"$date": SECRET}, "a malformed $-operator (ValueError)"),
            ({"$oid": SECRET}, "a malformed $-operator (InvalidId)"),
            ({"$numberLong": SECRET}, "a malformed $-operator (ValueError)"),
        ],
    )
    def test_a_contact_lines_malformed_operator_is_named_by_kind(self, operand: object, kind: str) -> None:
        """A contacts file's malformed ``$``-operator names its kind of fault; before, the first 60
        characters of the decoder's message, which quoted the operand (``time data 'hunter2…'``)."""
        raw = json.dumps({"_id": "c1", "crm_data": {"id": 1}, "created_at": operand}).encode()
        with pytest.raises(FileFormatError) as caught:
            parse_contact_line("c.jsonl", 2, raw)
        assert str(caught.value) == f"c.jsonl, line 2: not (Extended) JSON: {kind}"

    def test_an_http_body_with_a_malformed_operator_is_refused_without_its_text(self) -> None:
        """The HTTP adapter's 400 ``MALFORMED_BODY`` reads bodies with the same reader."""
        body = json.dumps({"records": [{"timestamp": {"$date": SECRET}}]}).encode()
        with pytest.raises(ApiError) as caught:
            parse_body(body)
        assert caught.value.status == 400
        assert SECRET not in str(caught.value.message)


def _status(prepare: Any, *extra: str) -> Any:
    """``status`` run with ``prepare`` called on its runtime: where a planted error is raised."""
    overrides = Overrides(mongo_client=mongomock.MongoClient(tz_aware=True), prepare=prepare)
    env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "mongomock://"}
    return CliRunner().invoke(cli, ["status", "--company-sso-id", "c", *extra], obj=overrides, env=env)


def _raises(error: BaseException) -> Any:
    def planted(_runtime: object) -> None:
        raise error

    return planted


class TestTheCliErrorLineOfABug:
    @pytest.mark.parametrize(
        "error",
        [KeyError(SECRET), RuntimeError(f"cannot map password={SECRET}"), OSError(f"socket said {SECRET}")],
        ids=["KeyError", "RuntimeError", "OSError-without-errno"],
    )
    @pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["line", "json"])
    def test_a_bug_is_named_by_type_and_place_never_its_message(
        self, error: BaseException, json_flag: tuple[str, ...]
    ) -> None:
        """``error: INTERNAL:`` (and ``--json``'s error document) give the bug's type and the frame
        that raised it; before, its message (secrets scrubbed, a row's value not)."""
        result = _status(_raises(error), *json_flag)
        line = f"unexpected {type(error).__name__} in planted (test_row_content_stays_out.py:"
        assert line in result.stderr, result.stderr
        assert "rerun with --debug for the traceback" in result.stderr
        if json_flag:
            assert line in json.loads(result.stdout)["error"]["message"]
        assert SECRET not in result.stderr + result.stdout

    def test_debug_still_prints_the_whole_traceback(self) -> None:
        """``--debug`` is the way to the message: the traceback first, then the same one line."""
        result = _status(_raises(KeyError(SECRET)), "--debug")
        assert result.exit_code == exit_codes.INTERNAL
        assert f"KeyError: '{SECRET}'" in result.stderr
        assert result.stderr.splitlines()[-1].startswith("error: INTERNAL: unexpected KeyError in planted (")

    def test_an_environment_fault_keeps_the_operating_systems_words(self) -> None:
        """An ``OSError`` with an errno (a full disk, a refused connection) is what ops act on: its
        errno and the system's words for it stay on the line (exit 7, ``FILE_ERROR``)."""
        result = _status(_raises(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
        assert result.exit_code == exit_codes.BAD_INPUT
        assert result.stderr == f"error: FILE_ERROR: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}\n"


class _Request:
    method = "POST"

    class url:
        path = "/private/activity_logs/crm_migration/trigger"


class TestTheHttpAnswerOfAnUnhandledError:
    def test_an_unhandled_library_error_is_a_500_with_its_code_and_no_message(self, caplog: Any) -> None:
        """A library error no branch answers (an ``IndexConflict`` quoting what the database said) is
        500 with its code, logged by type and frames; before, 400 ``BAD_REQUEST`` with its message."""
        try:
            raise IndexConflict("activity_logs", "uniq_company_external_id", f"duplicate key {SECRET}")
        except IndexConflict as exc:
            error = exc
        with caplog.at_level(logging.ERROR, logger="crm_audit_adapters.http"):
            answer = _answer(on_domain_error(_Request(), error))  # type: ignore[arg-type]
        assert answer.status_code == 500
        assert json.loads(bytes(answer.body)) == {
            "error": {"code": "INDEX_CONFLICT", "message": "internal error"}
        }
        assert "crm_audit_transform.errors.IndexConflict (message left out)" in caplog.text
        assert SECRET not in caplog.text + bytes(answer.body).decode()

    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (ConfigError([("mapping_config", f"cannot read /srv/{SECRET}.yaml")]), "CONFIG_INVALID"),
            (ConnectionRejected([("database_url", f"role {SECRET} refused")]), "CONNECTION_REJECTED"),
            (DependencyMissing([("mongo_uri", "mongomock is not installed")]), "DEPENDENCY_MISSING"),
        ],
    )
    def test_a_configuration_error_is_a_500_with_its_code_not_a_retry_later(
        self, caplog: Any, error: ConfigError, code: str
    ) -> None:
        """No retry mends the service's own configuration: 500 with the error's code, the message in
        the server log (ERROR) only; before, 503 ``DEPENDENCY_UNAVAILABLE``, "retry later"."""
        with caplog.at_level(logging.ERROR, logger="crm_audit_adapters.http"):
            answer = _answer(on_domain_error(_Request(), error))  # type: ignore[arg-type]
        assert answer.status_code == 500
        assert json.loads(bytes(answer.body))["error"]["code"] == code
        assert SECRET not in bytes(answer.body).decode()
        assert f"500 for POST {_Request.url.path}: misconfigured: {code}" in caplog.text


class TestCoreDetails:
    def test_a_column_name_that_is_not_a_string_is_named_by_its_type(self) -> None:
        """A library caller's changes with a non-string key fail the row by the key's type; before,
        the detail quoted the key (``column name ('hunter2-s3cret',) is not a string``)."""
        extractor = ChangesExtractor(load_default_config())
        rejected = extractor.extract("Deal", "create", {(SECRET,): 1})  # type: ignore[dict-item]
        assert isinstance(rejected, Rejection)
        assert rejected.detail == "a column name is not a string: tuple"

    def test_a_parser_error_without_a_place_is_named_by_its_kind(self, monkeypatch: Any) -> None:
        """A ``YAMLError`` with no mark (none of PyYAML's parsers raise one today; a builder or a
        later PyYAML may) is named by its class; before, its ``str()``."""

        def fails(*_args: object) -> None:
            raise yaml.YAMLError(f"could not take {SECRET}")

        monkeypatch.setattr(_backends, "build", fails)
        with pytest.raises(MalformedYaml) as caught:
            load_audited_changes("---\na: 1\n", backend="python")
        assert str(caught.value) == "malformed YAML: the parser failed (YAMLError)"
