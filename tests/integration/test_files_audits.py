"""Audit rows from files: the corpus JSONL, psql-style CSV, a real COPY round trip, and bad lines."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from crm_audit_adapters.files import AUDIT_COLUMNS, FileFormatError, read_audit_rows
from crm_audit_adapters.files.audits import SetAside, file_tenants, numbered_scope_keys
from crm_audit_adapters.files.psql_csv import csv_records, split_record
from crm_audit_adapters.files.scope_keys import ScopeKeys, row_keys
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.errors import CrmAuditError
from crm_audit_transform.loading import JsonbText

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0"
TEXT_AUDITS = CORPUS / "audits.jsonl"
JSONB_AUDITS = CORPUS / "jsonb" / "audits.jsonl"
TENANTS = ("acme", "globex", "nusantara_retail")


def corpus_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def psql_field(value: Any) -> str:
    """One field as PostgreSQL's CSV writer emits it: NULL unquoted empty, quoting only when needed."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text == "" or text == "\\." or any(char in text for char in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def psql_timestamp(value: dt.datetime) -> str:
    """``timestamp without time zone`` output: trailing zeros of the fraction trimmed, like PostgreSQL."""
    text = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")


def write_psql_csv(path: Path, rows: Iterable[AuditRow]) -> None:
    """Write rows the way ``psql \\copy (SELECT * FROM audits) TO f csv header`` would."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(AUDIT_COLUMNS) + "\n")
        for row in rows:
            values: dict[str, Any] = {name: getattr(row, name) for name in AUDIT_COLUMNS}
            values["created_at"] = psql_timestamp(row.created_at)
            if isinstance(row.audited_changes, Mapping):
                values["audited_changes"] = json.dumps(row.audited_changes, ensure_ascii=False)
            out.write(",".join(psql_field(values[name]) for name in AUDIT_COLUMNS) + "\n")


def write_lines(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


GOOD_LINE = json.dumps(corpus_lines(TEXT_AUDITS)[0])


class TestJsonl:
    def test_every_corpus_line_becomes_a_row_with_its_raw_columns(self) -> None:
        """All 2403 text-column rows come back, audited_changes byte-exact and timestamps aware UTC."""
        rows = list(read_audit_rows(TEXT_AUDITS))
        lines = corpus_lines(TEXT_AUDITS)
        assert len(rows) == len(lines) == 2403
        for row, line in zip(rows, lines, strict=True):
            assert (row.tenant, row.id, row.audited_changes) == (
                line["tenant"],
                line["id"],
                line["audited_changes"],
            )
            assert (row.user_id, row.username, row.comment) == (
                line["user_id"],
                line["username"],
                line["comment"],
            )
            assert row.created_at == dt.datetime.fromisoformat(line["created_at"])
            assert row.created_at.tzinfo is dt.UTC

    def test_jsonb_rows_keep_audited_changes_as_the_decoded_object(self) -> None:
        """In the jsonb corpus audited_changes is a JSON object and arrives as that dict, key order kept."""
        rows = list(read_audit_rows(JSONB_AUDITS))
        lines = corpus_lines(JSONB_AUDITS)
        assert len(rows) == 168
        assert all(isinstance(row.audited_changes, dict) for row in rows)
        assert [list(row.audited_changes or {}) for row in rows] == [
            list(line["audited_changes"]) for line in lines
        ]

    def test_a_tenant_argument_keeps_only_that_tenants_rows(self) -> None:
        """Lines of other tenants are passed over; ids restart per tenant so this is how to pick one."""
        rows = list(read_audit_rows(TEXT_AUDITS, "globex"))
        assert len(rows) == 843
        assert {row.tenant for row in rows} == {"globex"}

    def test_rows_are_streamed_not_loaded_up_front(self, tmp_path: Path) -> None:
        """The first row is available although a later line is garbage: nothing reads ahead."""
        rows = read_audit_rows(write_lines(tmp_path / "a.jsonl", GOOD_LINE, "{not json"))
        assert next(rows).id == 1
        with pytest.raises(FileFormatError):
            next(rows)

    def test_blank_lines_are_not_rows(self, tmp_path: Path) -> None:
        """Empty and whitespace-only lines hold nothing and are not errors."""
        path = write_lines(tmp_path / "a.jsonl", "", GOOD_LINE, "   ", "")
        assert [row.id for row in read_audit_rows(path)] == [1]

    def test_a_non_object_jsonb_value_is_left_for_the_transformer_to_fail(self, tmp_path: Path) -> None:
        """An array in audited_changes still builds the row (as its JSON text) so it fails as a record."""
        line = dict(corpus_lines(JSONB_AUDITS)[0], audited_changes=[1, 2])
        [row] = read_audit_rows(write_lines(tmp_path / "a.jsonl", json.dumps(line)))
        assert row.audited_changes == "[1, 2]"


class TestPlainLineShortcut:
    @pytest.mark.parametrize("path", [TEXT_AUDITS, JSONB_AUDITS])
    def test_the_shortcut_builds_the_same_row_or_defers_to_the_general_reading(self, path: Path) -> None:
        """For every corpus line and column edit, the per-line shortcut gives record_row's row or hands
        over."""
        from crm_audit_adapters.files.audit_fields import record_row
        from crm_audit_adapters.files.audit_jsonl import NotPlain, plain_jsonl_row

        edits: list[dict[str, Any]] = [
            {},
            {"user_id": "0b7c3c1e-uuid"},
            {"user_id": ""},
            {"user_id": True},
            {"version": None},
            {"created_at": "2019-01-04 05:44:28.125496"},
            {"created_at": "2019-01-04T05:44:28+07:00"},
            {"created_at": None},
            {"auditable_id": 1.0},
            {"tenant": None},
            {"tenant": "elsewhere"},
        ]
        taken = 0
        for line in corpus_lines(path):
            for edit in edits:
                record = {**line, **edit}
                for tenant in (None, line["tenant"]):
                    plain = plain_jsonl_row(record, tenant)
                    if plain is NotPlain.NOT_PLAIN:
                        continue
                    taken += 1
                    assert plain == record_row(path, 1, record, tenant, typed=True, jsonb_changes=False)
        assert taken > len(corpus_lines(path))  # it does take the ordinary lines


class TestScopeKeys:
    @pytest.mark.parametrize("tenant", [None, "acme"])
    def test_scope_keys_are_the_rows_keys_with_the_same_errors(
        self, tmp_path: Path, tenant: str | None
    ) -> None:
        """The scope pass's light reading yields each row's (line, id, type, created_at) and reports
        every bad line, exactly as reading the rows does, whatever the mix of plain and odd lines."""
        from crm_audit_adapters.files.audits import numbered_audit_rows, numbered_scope_keys

        good = json.loads(GOOD_LINE)
        odd = [
            {"user_id": "0b7c3c1e-uuid"},
            {"created_at": "2019-01-04T05:44:28+07:00"},
            {"created_at": None},
            {"created_at": "yesterday"},
            {"version": 1.0},
            {"user_id": True},
            {"tenant": "elsewhere"},
            {"tenant": None},
            {"audited_changes": [1, 2]},
        ]
        lines = [GOOD_LINE, "{bad", "[]"]
        lines += [json.dumps({**good, "id": 2 + n, **edit}) for n, edit in enumerate(odd)]
        path = write_lines(tmp_path / "a.jsonl", *lines)
        row_errors: list[FileFormatError] = []
        key_errors: list[FileFormatError] = []
        rows = list(numbered_audit_rows(path, tenant, on_error=row_errors.append))
        keys = list(numbered_scope_keys(path, tenant, on_error=key_errors.append))
        # The text's size (a page's budget) too, and each line reported followed by its mark.
        assert keys == [(n, r if r is SetAside.LINE else row_keys(r)) for n, r in rows]
        assert {key.size for _, key in keys if key is not SetAside.LINE} != {0}
        assert [(e.line, str(e)) for e in key_errors] == [(e.line, str(e)) for e in row_errors]
        assert [n for n, r in rows if r is SetAside.LINE] == [e.line for e in row_errors]
        assert len(keys) >= 5  # plain and odd lines were both met
        assert len(key_errors) >= 4


BIG = "9" * 5_000  # past the 4,300 digits Python turns text into an int


class TestValuesPastPythonsRange:
    def test_the_file_end_reading_stops_at_a_time_out_of_range(self, tmp_path: Path) -> None:
        """scope_keys_from_end gives None at a last line whose time is year 0 in UTC (the forward
        read words it), instead of raising OverflowError."""
        from crm_audit_adapters.files.audits import scope_keys_from_end

        good = json.loads(GOOD_LINE)
        last = json.dumps({**good, "id": 9, "created_at": "0001-01-01T00:00:00+05:00"})
        path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, last)
        assert list(scope_keys_from_end(path)) == [None]
        errors: list[FileFormatError] = []
        rows = list(read_audit_rows(path, on_error=errors.append))
        assert len(rows) == 1
        assert [(e.line, e.audit_id) for e in errors] == [(2, 9)]
        assert "years 1-9999" in str(errors[0])

    def test_a_huge_integer_is_its_members_jsonb_text_and_an_id_is_an_error(self, tmp_path: Path) -> None:
        """In audited_changes the member is handed on as JsonbText (the loader fails the row); as
        the id it is an error without an id, with the digits cut from the message."""
        good = json.loads(GOOD_LINE)
        changes = '{"name": [1, ' + BIG + "]}"
        in_changes = json.dumps({**good, "id": 7, "audited_changes": "@"}).replace('"@"', changes)
        in_id = json.dumps({**good, "id": "@"}).replace('"@"', BIG)
        path = write_lines(tmp_path / "a.jsonl", in_changes, in_id)
        errors: list[FileFormatError] = []
        [row] = read_audit_rows(path, on_error=errors.append)
        assert row.audited_changes == JsonbText(changes)
        [error] = errors
        assert (error.line, error.audit_id) == (2, None)
        assert "id is not an integer" in str(error)
        assert len(str(error)) < 200

    def test_a_csv_jsonb_integer_past_the_digit_limit_is_jsonb_text(self, tmp_path: Path) -> None:
        """A jsonb CSV export's audited_changes with such an integer: JsonbText, for the loader."""
        path = tmp_path / "a.csv"
        changes = '{"name": [1, ' + BIG + "]}"
        record = {"id": "1", "auditable_type": "Crm::Person", "action": "update", "created_at": "2020-01-01"}
        values = [record.get(name, "") for name in AUDIT_COLUMNS]
        values[AUDIT_COLUMNS.index("audited_changes")] = '"' + changes.replace('"', '""') + '"'
        path.write_text(",".join(AUDIT_COLUMNS) + "\n" + ",".join(values) + "\n", encoding="utf-8")
        [row] = read_audit_rows(path, "acme", jsonb_changes=True)
        assert row.audited_changes == JsonbText(changes)


class TestMalformedJsonl:
    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ("{not json", "not JSON"),
            ("[1, 2]", "expected a JSON object"),
            (json.dumps({**json.loads(GOOD_LINE), "id": "1"}), "id is not an integer"),
            (json.dumps({**json.loads(GOOD_LINE), "id": True}), "id is not an integer"),
            (json.dumps({k: v for k, v in json.loads(GOOD_LINE).items() if k != "id"}), "id is missing"),
            (json.dumps({**json.loads(GOOD_LINE), "action": None}), "required"),
            (json.dumps({**json.loads(GOOD_LINE), "created_at": "yesterday"}), "not a timestamp"),
            (json.dumps({**json.loads(GOOD_LINE), "user_id": 1.5}), "user_id is not an integer"),
            (json.dumps({**json.loads(GOOD_LINE), "comment": 7}), "comment is not a string"),
            (json.dumps({k: v for k, v in json.loads(GOOD_LINE).items() if k != "tenant"}), "tenant"),
        ],
    )
    def test_a_bad_line_raises_a_typed_error_naming_its_line(
        self, tmp_path: Path, bad: str, message: str
    ) -> None:
        """The error is a FileFormatError (a CrmAuditError) with the file, the line number and the cause."""
        path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, "", bad)
        with pytest.raises(FileFormatError, match=message) as caught:
            list(read_audit_rows(path))
        assert isinstance(caught.value, CrmAuditError)
        assert caught.value.line == 3
        assert f"{path}, line 3" in str(caught.value)

    def test_a_line_that_is_not_utf8_is_an_error_on_that_line(self, tmp_path: Path) -> None:
        """Invalid UTF-8 is reported with the exact line, not a decoder error from somewhere."""
        path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, b'{"tenant": "\xff"}')
        with pytest.raises(FileFormatError, match="not UTF-8") as caught:
            list(read_audit_rows(path))
        assert caught.value.line == 2

    def test_a_value_that_is_not_utf8_is_read_as_its_bytes(self, tmp_path: Path) -> None:
        """audited_changes that is not UTF-8 comes as bytes (the loader fails that row); another column
        is its own row's error, with the id: the same values a SQL_ASCII database gives."""
        changes = json.dumps({**json.loads(GOOD_LINE), "id": 2, "audited_changes": "---\na: caf\u00e9\n"})
        comment = json.dumps({**json.loads(GOOD_LINE), "id": 3, "comment": "caf\u00e9"})
        path = write_lines(
            tmp_path / "a.jsonl",
            GOOD_LINE,
            changes.encode().replace(b"caf\\u00e9", b"caf\xe9"),
            comment.encode().replace(b"caf\\u00e9", b"caf\xe9"),
        )
        errors: list[FileFormatError] = []
        rows = list(read_audit_rows(path, on_error=errors.append))
        assert [(row.id, row.audited_changes) for row in rows[1:]] == [(2, b"---\na: caf\xe9\n")]
        [error] = errors
        assert (error.line, error.audit_id) == (3, 3)
        assert "comment is not UTF-8: 4 bytes, not UTF-8 from byte 3" in str(error)  # never the bytes

    def test_a_member_name_that_is_not_utf8_fails_its_row_or_stops_the_read(self, tmp_path: Path) -> None:
        """Which column such a member is cannot be told: read without it, ``username`` went missing
        (the row migrated with another actor), and a line whose ``tenant`` name was hit was read as
        the given tenant's, another tenant's row with it. A row whose tenant and id are read fails
        (its id named, ``invalid_audit_row``); one naming no tenant stops the read, tenant given or
        not, as an id that is not UTF-8 does. Counted, never the name's bytes shown."""
        record = {**json.loads(GOOD_LINE), "username": "api:zapier"}
        username = json.dumps({**record, "id": 2}).encode().replace(b'"username"', b'"user\xffname"')
        tenant = json.dumps({**record, "id": 3, "tenant": "globex"}).encode()
        tenant = tenant.replace(b'"tenant"', b'"ten\xffant"')
        path = write_lines(tmp_path / "a.jsonl", GOOD_LINE, username)
        errors: list[FileFormatError] = []
        rows = list(read_audit_rows(path, "acme", on_error=errors.append))
        assert [row.id for row in rows] == [1]
        [error] = errors
        assert (error.line, error.audit_id) == (2, 2)
        assert "1 member name(s) are not UTF-8" in str(error)
        assert b"\xff" not in str(error).encode("utf-8", "surrogateescape")
        scope = numbered_scope_keys(path, "acme", on_error=lambda _: None)
        assert [keys.id for _, keys in scope if isinstance(keys, ScopeKeys)] == [1]  # a scope pass alike
        path = write_lines(tmp_path / "b.jsonl", GOOD_LINE, tenant)
        for name, why in (("acme", "its tenant cannot be told"), (None, "none was given")):
            errors.clear()
            assert [row.id for row in read_audit_rows(path, name, on_error=errors.append)] == [1]
            [error] = errors
            assert (error.line, error.audit_id) == (2, None)
            assert why in str(error)

    def test_the_error_carries_the_audit_id_when_it_could_be_read(self, tmp_path: Path) -> None:
        """A row with a readable id but a bad timestamp names that id, so it can be reported as failed."""
        path = write_lines(tmp_path / "a.jsonl", json.dumps({**json.loads(GOOD_LINE), "created_at": "x"}))
        with pytest.raises(FileFormatError) as caught:
            list(read_audit_rows(path))
        assert caught.value.audit_id == 1

    def test_on_error_receives_each_bad_line_and_the_good_rows_still_come(self, tmp_path: Path) -> None:
        """With on_error, every line is either a row or a reported error: none vanishes."""
        path = write_lines(
            tmp_path / "a.jsonl", GOOD_LINE, "{bad", "[]", GOOD_LINE.replace('"id": 1,', '"id": 9,')
        )
        errors: list[FileFormatError] = []
        rows = list(read_audit_rows(path, on_error=errors.append))
        assert [row.id for row in rows] == [1, 9]
        assert [error.line for error in errors] == [2, 3]

    def test_an_unknown_suffix_needs_an_explicit_format(self, tmp_path: Path) -> None:
        """A file named neither .jsonl nor .csv is refused up front instead of guessed."""
        with pytest.raises(ValueError, match="file_format"):
            read_audit_rows(tmp_path / "audits.txt")
        path = write_lines(tmp_path / "audits.txt", GOOD_LINE)
        assert [row.id for row in read_audit_rows(path, file_format="jsonl")] == [1]


class TestCsv:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_psql_style_csv_reads_back_equal_to_the_jsonl_rows(self, tmp_path: Path, tenant: str) -> None:
        """Every row of a tenant survives a psql CSV export: NULL vs "", CR/LF, quotes, commas, timestamps."""
        expected = list(read_audit_rows(TEXT_AUDITS, tenant))
        path = tmp_path / f"{tenant}.csv"
        write_psql_csv(path, expected)
        assert list(read_audit_rows(path, tenant)) == expected

    def test_jsonb_csv_reads_back_equal_to_the_jsonl_rows(self, tmp_path: Path) -> None:
        """A jsonb export (JSON text per field) decodes back to the same objects with jsonb_changes."""
        expected = list(read_audit_rows(JSONB_AUDITS, "acme_jsonb"))
        path = tmp_path / "acme_jsonb.csv"
        write_psql_csv(path, expected)
        assert list(read_audit_rows(path, "acme_jsonb", jsonb_changes=True)) == expected

    def test_an_empty_quoted_field_is_an_empty_string_and_an_empty_unquoted_one_is_null(
        self, tmp_path: Path
    ) -> None:
        """The distinction psql makes between "" and NULL is kept (the corpus has an empty comment)."""
        expected = [row for row in read_audit_rows(TEXT_AUDITS) if row.comment == ""]
        assert len(expected) == 1
        path = tmp_path / "a.csv"
        write_psql_csv(path, expected)
        [row] = read_audit_rows(path, expected[0].tenant)
        assert row.comment == ""
        assert row.username is None

    def test_a_quoted_field_keeps_raw_line_breaks_and_lines_are_counted_through_them(
        self, tmp_path: Path
    ) -> None:
        """CR, LF and CRLF inside quotes are data; an error after such a record names the right line."""
        header = ",".join(AUDIT_COLUMNS)
        record = '1,1,Crm::Person,,,,,,update,"---\r\nnote: ""a\rb\nc""\n",2,,,,2019-01-04 05:44:28.1+00'
        path = write_lines(tmp_path / "a.csv", header, record, "2,1,Crm::Person")
        rows = read_audit_rows(path, "acme")
        first = next(rows)
        assert first.audited_changes == '---\r\nnote: "a\rb\nc"\n'
        assert first.created_at == dt.datetime(2019, 1, 4, 5, 44, 28, 100000, tzinfo=dt.UTC)
        with pytest.raises(FileFormatError, match="3 fields where the header has 15") as caught:
            next(rows)
        assert caught.value.line == 6

    def test_a_tenant_column_stands_in_for_the_tenant_argument(self, tmp_path: Path) -> None:
        """A CSV with a tenant column needs no tenant argument."""
        header = ",".join(("tenant", *AUDIT_COLUMNS))
        path = write_lines(
            tmp_path / "a.csv", header, "globex,7,1,Crm::Deal,,,,,,destroy,,,,,,2020-02-02 00:00:00"
        )
        [row] = read_audit_rows(path)
        assert (row.tenant, row.id, row.audited_changes) == ("globex", 7, None)

    @pytest.mark.parametrize(
        ("lines", "message", "line"),
        [
            ((), "empty file", 1),
            (("id,auditable_type,action,created_at",), "lacks audited_changes", 1),
            (
                (",".join((*AUDIT_COLUMNS, "id")), "1,1,Crm::Person,,,,,,create,,,,,,2019-01-01 00:00:00,2"),
                "the header names id more than once",
                1,
            ),
            ((",".join(AUDIT_COLUMNS), '1,1,Crm::Person,,,,,,create,"---\nopen'), "unterminated", 2),
            (
                (",".join(AUDIT_COLUMNS), '1,1,Crm::Person,,,,,,cre"at"e,,,,,,2019-01-01 00:00:00'),
                "followed by a character other than a comma",
                2,
            ),
            (
                (",".join(AUDIT_COLUMNS), "x,1,Crm::Person,,,,,,create,,,,,,2019-01-01 00:00:00"),
                "id is not",
                2,
            ),
            ((",".join(AUDIT_COLUMNS), "1,1,Crm::Person,,,,,,create,,,,,,2019-13-01"), "not a timestamp", 2),
        ],
    )
    def test_a_bad_record_raises_a_typed_error_naming_its_line(
        self, tmp_path: Path, lines: tuple[str, ...], message: str, line: int
    ) -> None:
        """Header problems, quoting problems and bad values each name where they are."""
        path = write_lines(tmp_path / "a.csv", *lines) if lines else tmp_path / "a.csv"
        if not lines:
            path.write_bytes(b"")
        with pytest.raises(FileFormatError, match=message) as caught:
            list(read_audit_rows(path, "acme"))
        assert caught.value.line == line

    @pytest.mark.parametrize("cut", [0, 1, 4, 7], ids=["line-end", "fraction", "seconds", "time"])
    def test_a_last_record_the_file_ends_inside_stops_the_read(self, tmp_path: Path, cut: int) -> None:
        """psql ends every record with a line end. A file cut inside its last record (a copy cut short,
        an export still being written) read that record's cut ``created_at`` as another time
        (``…28.125496`` as ``…28.12``), silently; it now stops the read, naming the record's line.
        Cut just before its line end, the record may be whole, but the file was cut all the same."""
        path = tmp_path / "a.csv"
        write_psql_csv(path, list(read_audit_rows(TEXT_AUDITS, "acme"))[:3])
        data = path.read_bytes()
        last = list(csv_records(path))[-1][0]
        assert len(list(read_audit_rows(path, "acme"))) == 3
        path.write_bytes(data[: len(data) - 1 - cut])
        with pytest.raises(FileFormatError, match="ends without a line end after this record") as caught:
            list(read_audit_rows(path, "acme"))
        assert caught.value.line == last

    def test_a_field_that_is_not_utf8_is_read_as_its_bytes(self, tmp_path: Path) -> None:
        """In a record that is not UTF-8 only the fields that are not stay bytes; the row is still read."""
        header = ",".join(AUDIT_COLUMNS)
        record = '1,7,Crm::Person,,,,,,update,"---\na: caf\u00e9\n",,"caf\u00e9",,,2020-02-02 00:00:00'
        path = write_lines(
            tmp_path / "a.csv", header, record.encode().replace(b"caf\xc3\xa9\n", b"caf\xe9\n")
        )
        [row] = read_audit_rows(path, "acme")
        assert (row.id, row.audited_changes, row.comment) == (1, b"---\na: caf\xe9\n", "caf\u00e9")

    def test_without_a_tenant_the_csv_is_refused(self, tmp_path: Path) -> None:
        """psql's export has no tenant column: reading it without one would mislabel every row."""
        path = tmp_path / "a.csv"
        write_psql_csv(path, list(read_audit_rows(TEXT_AUDITS, "acme"))[:2])
        with pytest.raises(FileFormatError, match="tenant"):
            list(read_audit_rows(path))

    def test_an_unbalanced_quote_stops_at_the_record_limit(self, tmp_path: Path) -> None:
        """A stray quote cannot make one record swallow the file: max_record_bytes bounds it."""
        header = ",".join(AUDIT_COLUMNS)
        path = write_lines(tmp_path / "a.csv", header, '1,1,"oops', *(["x" * 100] * 50))
        with pytest.raises(FileFormatError, match="longer than 1000 bytes") as caught:
            list(read_audit_rows(path, "acme", max_record_bytes=1000))
        assert caught.value.line == 2


class TestFileTenants:
    def test_a_jsonl_file_names_the_tenants_of_its_readable_lines(self, tmp_path: Path) -> None:
        """Every tenant a line names, once; a line that cannot be read is passed over, not an error."""
        assert file_tenants(TEXT_AUDITS) == frozenset(TENANTS)
        path = write_lines(
            tmp_path / "a.jsonl", GOOD_LINE, "not json", '{"tenant": 7}', b'{"tenant": "\xff"}'
        )
        assert file_tenants(path) == frozenset({"acme"})
        assert file_tenants(write_lines(tmp_path / "empty.jsonl")) == frozenset()

    def test_a_csv_names_tenants_only_through_a_tenant_column(self, tmp_path: Path) -> None:
        """psql's export has no tenant column (None: every row is the given tenant's); a tenant column has."""
        plain = tmp_path / "plain.csv"
        write_psql_csv(plain, list(read_audit_rows(TEXT_AUDITS, "acme"))[:2])
        assert file_tenants(plain) is None
        header = ",".join(("tenant", *AUDIT_COLUMNS))
        row = ",7,1,Crm::Deal,,,,,,destroy,,,,,,2020-02-02 00:00:00"
        path = write_lines(tmp_path / "a.csv", header, f"globex{row}", f"acme{row}", f"globex{row}")
        assert file_tenants(path) == frozenset({"acme", "globex"})


@pytest.mark.postgres
class TestPostgresCopy:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_copy_to_stdout_csv_header_reads_back_equal_to_the_jsonl_rows(
        self, crm_dsn: str, tmp_path: Path, tenant: str
    ) -> None:
        """PostgreSQL's own CSV of a tenant's audits table reads back as exactly the corpus rows."""
        query = sql.SQL("COPY (SELECT * FROM {}.audits ORDER BY id) TO STDOUT (FORMAT csv, HEADER)").format(
            sql.Identifier(tenant)
        )
        path = tmp_path / f"{tenant}.csv"
        with (
            psycopg.connect(crm_dsn) as conn,
            conn.cursor() as cur,
            path.open("wb") as out,
            cur.copy(query) as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        assert list(read_audit_rows(path, tenant)) == list(read_audit_rows(TEXT_AUDITS, tenant))


class TestPsqlCsvProperty:
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.lists(
                st.none() | st.text(alphabet=st.sampled_from('ab,"\r\n \t\\.é'), max_size=12), min_size=1
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_any_record_psql_writes_splits_back_to_its_fields(self, records: list[list[str | None]]) -> None:
        """Whatever mix of NULLs, empty strings, quotes, commas and line breaks, each field comes back."""
        # A record of one NULL is a blank line, which psql never writes for a table of many columns.
        records = [fields for fields in records if fields != [None]]
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "r.csv"
            path.write_bytes(
                "".join(",".join(psql_field(value) for value in fields) + "\n" for fields in records).encode()
            )
            parsed = [split_record(path, number, raw) for number, raw in csv_records(path)]
        assert parsed == records
