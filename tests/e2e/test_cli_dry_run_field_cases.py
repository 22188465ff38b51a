"""``dry-run`` on a small export holding the odd rows real tables have: one outcome line per row."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.files import AUDIT_COLUMNS, JsonlActivityLogSink
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.transformer import Transformer

TENANT = "acme"
COMPANY = "company-acme"
UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
DEEP = {"notes": ["x"]}
DEEP_TEXT = '{"notes": [' + "[" * 1_200 + "]" * 1_200 + "]}"
UPDATE = "---\nfirst_name:\n- A\n- B\n"
COMBINED = "\nThis audit is the result of multiple audits being combined."


def audit(audit_id: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tenant": TENANT,
        "id": audit_id,
        "auditable_type": "Crm::Person",
        "auditable_id": 7,
        "action": "update",
        "audited_changes": UPDATE,
        "created_at": "2020-01-01T00:00:00Z",
    }
    record.update(fields)
    return record


def write_inputs(tmp_path: Path, audits: list[str]) -> list[str]:
    (tmp_path / "audits.jsonl").write_text("\n".join(audits) + "\n", encoding="utf-8")
    users = [
        {"tenant": TENANT, "id": UUID, "email": "uma@example.test", "full_name": "Uma"},
        {"tenant": TENANT, "id": 5, "email": "ira@example.test", "full_name": "Ira"},
    ]
    (tmp_path / "users.jsonl").write_text("\n".join(json.dumps(u) for u in users) + "\n", encoding="utf-8")
    contact = {
        "_id": "c7",
        "company_sso_id": COMPANY,
        "crm_data": {"id": 7},
        "created_at": "2030-01-01T00:00:00Z",
    }
    (tmp_path / "contacts.jsonl").write_text(json.dumps(contact) + "\n", encoding="utf-8")
    sso = [
        {"email": "uma@example.test", "sso_id": "sso-uma"},
        {"email": "ira@example.test", "sso_id": "sso-ira"},
    ]
    (tmp_path / "sso.jsonl").write_text("\n".join(json.dumps(s) for s in sso) + "\n", encoding="utf-8")
    return [
        "dry-run",
        "--company-sso-id",
        COMPANY,
        "--tenant",
        TENANT,
        *(f"--{name}={tmp_path / f'{name}.jsonl'}" for name in ("audits", "users", "contacts")),
        f"--sso-directory={tmp_path / 'sso.jsonl'}",
        f"--out={tmp_path / 'logs.jsonl'}",
        f"--report={tmp_path / 'report.json'}",
        f"--outcomes={tmp_path / 'outcomes.jsonl'}",
    ]


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": ""})
    return result.exit_code, result.output


def outcomes(tmp_path: Path) -> dict[Any, dict[str, Any]]:
    lines = (tmp_path / "outcomes.jsonl").read_text(encoding="utf-8").splitlines()
    return {(r["audit_id"], r["outcome"], r["reason"]): r for r in map(json.loads, lines)}


class TestDryRunFieldCases:
    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_every_odd_row_gets_its_own_outcome_line_and_count(self, tmp_path: Path, workers: str) -> None:
        """Combined, redacted, binary, UUID-user, NULL-time, id<=0, repeated and deep rows: one line
        each, with ``--workers 2`` too (its workers reading the file's byte ranges)."""
        deep = json.dumps(audit(9)).replace('"---\\nfirst_name:\\n- A\\n- B\\n"', DEEP_TEXT)
        rows = [
            json.dumps(audit(-2)),
            json.dumps(audit(0, user_id=UUID, user_type="User")),
            json.dumps(
                audit(1, audited_changes="---\nfirst_name:\n- A\n- B\nemail: a@x.test\n", comment=COMBINED)
            ),
            json.dumps(audit(2, audited_changes='---\nfirst_name:\n- A\n- B\npassword: "[REDACTED]"\n')),
            json.dumps(audit(3, audited_changes="---\navatar: !binary |-\n  /9j/4A==\n", action="create")),
            json.dumps(audit(4, created_at=None)),
            json.dumps(audit(5, user_id=5, user_type="User")),
            json.dumps(audit(5, audited_changes="---\nfirst_name:\n- X\n- Y\n")),
            deep,
        ]
        code, output = run([*write_inputs(tmp_path, rows), "--workers", workers])
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        would_halt = report.pop("would_halt")
        assert report == {
            "processed": 9,
            "migrated": 6,
            "skipped": {},
            "failed": {"duplicate_audit_id": 1, "malformed_audited_changes": 1, "missing_created_at": 1},
            "actors_degraded": 0,
        }
        # 3 failed of 9 rows: fewer rows than the halt rule's minimum sample, so no halt.
        assert would_halt is None
        found = outcomes(tmp_path)
        assert len((tmp_path / "outcomes.jsonl").read_text().splitlines()) == 9
        for audit_id in (-2, 0, 1, 2, 3, 5):
            line = found[(audit_id, "migrated", None)]
            assert line["detail"] == f"crm:{TENANT}:audit:{audit_id}"
            assert line["tenant"] == TENANT
        assert found[(4, "failed", "missing_created_at")]["detail"] == "created_at is NULL"
        assert "repeats audit id 5" in found[(5, "failed", "duplicate_audit_id")]["detail"]
        assert found[(9, "failed", "malformed_audited_changes")]["detail"].startswith("limit_exceeded")

    def test_the_logs_carry_the_right_values(self, tmp_path: Path) -> None:
        """The written documents hold the UUID user's SSO id, the set-to, the redaction and the $binary."""
        rows = [
            json.dumps(audit(0, user_id=UUID, user_type="User")),
            json.dumps(
                audit(1, audited_changes="---\nfirst_name:\n- A\n- B\nemail: a@x.test\n", comment=COMBINED)
            ),
            json.dumps(audit(2, audited_changes='---\nfirst_name:\n- A\n- B\npassword: "[REDACTED]"\n')),
            json.dumps(audit(3, audited_changes="---\navatar: !binary |-\n  /9j/4A==\n", action="create")),
        ]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        docs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
        by_id = {doc["metadata"]["crm_audit_id"]: doc for doc in docs}
        assert by_id[0]["actor"] == {"type": "user", "name": "Uma", "id": "sso-uma"}
        assert by_id[1]["metadata"]["combined"] is True
        assert by_id[1]["attributes"][1] == {
            "field": "email",
            "label": "Email",
            "from": None,
            "to": "a@x.test",
        }
        assert by_id[2]["attributes"][1]["from"] == by_id[2]["attributes"][1]["to"] == "[REDACTED]"
        assert by_id[3]["attributes"][0]["to"] == {"$binary": {"base64": "/9j/4A==", "subType": "00"}}

    def test_loader_limits_are_dry_run_options(self, tmp_path: Path) -> None:
        """--loader-max-bytes lowers the payload limit: a row over it fails as limit_exceeded."""
        args = write_inputs(tmp_path, [json.dumps(audit(1))])
        code, output = run([*args, "--loader-max-bytes", "10"])
        assert code == 0, output
        [line] = outcomes(tmp_path).values()
        assert (line["outcome"], line["reason"]) == ("failed", "malformed_audited_changes")
        assert line["detail"].startswith("limit_exceeded")
        code, output = run([*args, "--loader-max-bytes", "0"])
        assert code == 2

    def test_a_line_with_a_readable_id_but_a_lenient_one_elsewhere_fails_as_its_row(
        self, tmp_path: Path
    ) -> None:
        """A row whose auditable_id is not a strict integer is its own invalid_audit_row, counted."""
        rows = [json.dumps(audit(1)), json.dumps(audit(2, auditable_id="1_0"))]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["processed"], report["failed"]) == (2, {"invalid_audit_row": 1})
        assert (2, "failed", "invalid_audit_row") in outcomes(tmp_path)

    @pytest.mark.parametrize("kind", ["unbuildable", "repeated"])
    def test_the_files_own_failures_count_for_the_halt_rule_and_verify(
        self, tmp_path: Path, kind: str
    ) -> None:
        """Half of 300 rows set aside by the file reader: would_halt is where the run would halt
        on those failures (the 200th row), the outcome lines are in id order, and --verify counts
        them as the report does."""
        rows: list[str] = []
        for n in range(1, 301):
            if n % 2:
                rows.append(json.dumps(audit(n)))
            elif kind == "unbuildable":
                rows.append(json.dumps(audit(n, auditable_id="1_0")))
            else:
                rows.append(json.dumps(audit(n - 1)))  # a repeat of the row before it
        args = write_inputs(tmp_path, rows)
        code, output = run(args)
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        reason = "invalid_audit_row" if kind == "unbuildable" else "duplicate_audit_id"
        assert (report["processed"], report["failed"]) == (300, {reason: 150})
        assert report["would_halt"] is not None
        assert report["would_halt"]["reason"].startswith("failure rate 50.00% (100 of 200 rows")
        assert report["would_halt"]["audit_id"] == (200 if kind == "unbuildable" else 199)
        lines = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
        assert [line["audit_id"] for line in lines] == sorted(line["audit_id"] for line in lines)
        verify_args = [a for a in args if not a.startswith(("--report=", "--outcomes="))]
        code, output = run([*verify_args, "--verify", f"--report={tmp_path / 'verified.json'}"])
        # Half the rows fail, past the halt threshold: counted as the report counts them, and not clean.
        assert code == exit_codes.NOT_VERIFIED, output
        verified = json.loads((tmp_path / "verified.json").read_text())
        assert (verified["audits"], verified["failed"]) == (300, {reason: 150})
        assert verified["migrated"] == report["migrated"]
        assert (verified["clean"], verified["outstanding"], verified["failure_rate"]) == (False, {}, 0.5)

    @pytest.mark.parametrize(("suffix", "workers"), [("jsonl", "1"), ("csv", "1"), ("jsonl", "2")])
    def test_a_value_that_is_not_utf8_fails_its_own_row_and_the_run_goes_on(
        self, tmp_path: Path, suffix: str, workers: str
    ) -> None:
        """Latin-1 in audited_changes fails that row (bad_encoding), in a comment invalid_audit_row, as
        the run fails them on a SQL_ASCII CRM; the other rows migrate (``--workers 2`` too)."""
        latin1 = UPDATE.replace("- B", "- caf\u00e9").encode("latin-1")
        rows = [
            audit(1),
            audit(2, audited_changes=latin1),
            audit(3, comment="caf\u00e9".encode("latin-1")),
            audit(4),
        ]
        args = write_inputs(tmp_path, [])
        audits = tmp_path / f"audits.{suffix}"
        audits.write_bytes(b"".join(map(jsonl_line if suffix == "jsonl" else csv_line, rows)))
        if suffix == "csv":
            audits.write_bytes(",".join(AUDIT_COLUMNS).encode() + b"\n" + audits.read_bytes())
        args = [f"--audits={audits}" if arg.startswith("--audits=") else arg for arg in args]
        code, output = run([*args, "--workers", workers])
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["processed"], report["migrated"]) == (4, 2)
        assert report["failed"] == {"invalid_audit_row": 1, "malformed_audited_changes": 1}
        found = outcomes(tmp_path)
        # The run's own decision for the bytes a SQL_ASCII database hands over (crm_postgres.encodings).
        real = Transformer(load_default_config()).prepare_row(as_row(rows[1])).problem
        assert real is not None
        assert found[(2, "failed", real.reason)]["detail"] == real.detail
        assert real.detail.startswith("bad_encoding: bytes that are not UTF-8")
        assert "comment is not UTF-8" in found[(3, "failed", "invalid_audit_row")]["detail"]
        assert {1, 4} == {key[0] for key in found if key[1] == "migrated"}


class TestDryRunOutputLock:
    def test_a_second_dry_run_on_an_out_being_written_is_refused(self, tmp_path: Path) -> None:
        """While another dry run holds --out, this one is OUTPUT_LOCKED (exit 4) naming the file, and
        writes nothing: no log, no outcomes file; once that one is done, it runs."""
        args = write_inputs(tmp_path, [json.dumps(audit(1))])
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out):  # the other dry run, still writing
            code, output = run(args)
        assert code == 4, output
        assert "OUTPUT_LOCKED" in output
        assert str(out) in output
        assert out.read_text() == ""
        assert not (tmp_path / "outcomes.jsonl").exists()
        code, output = run(args)
        assert code == 0, output
        assert len(out.read_text().splitlines()) == 1


BIG = "9" * 5_000  # an integer past the 4,300 digits Python turns text into


class TestDryRunOutOfRangeValues:
    def test_times_outside_datetime_once_in_utc_fail_their_rows_alone(self, tmp_path: Path) -> None:
        """A created_at that is year 10000 or year 0 in UTC fails its row as invalid_audit_row, as the
        run fails such a PostgreSQL time, also as the file's last line (read first, from the end)."""
        rows = [
            json.dumps(audit(1)),
            json.dumps(audit(2, created_at="9999-12-31T23:59:59.999999-05:00")),
            json.dumps(audit(3)),
            json.dumps(audit(4, created_at="0001-01-01T00:00:00+05:00")),
        ]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["processed"], report["migrated"], report["failed"]) == (4, 2, {"invalid_audit_row": 2})
        found = outcomes(tmp_path)
        assert "years 1-9999" in found[(2, "failed", "invalid_audit_row")]["detail"]
        assert (4, "failed", "invalid_audit_row") in found

    def test_a_psql_csv_time_before_year_one_in_utc_fails_its_row(self, tmp_path: Path) -> None:
        """psql's ``0001-01-01 00:00:00+05`` in a CSV export: that row's invalid_audit_row."""
        args = write_inputs(tmp_path, [])
        audits = tmp_path / "audits.csv"
        header = ",".join(AUDIT_COLUMNS).encode() + b"\n"
        rows = [audit(1, created_at="2020-01-01 00:00:00"), audit(2, created_at="0001-01-01 00:00:00+05")]
        audits.write_bytes(header + b"".join(map(csv_line, rows)))
        code, output = run([f"--audits={audits}" if a.startswith("--audits=") else a for a in args])
        assert code == 0, output
        assert set(outcomes(tmp_path)) == {(1, "migrated", None), (2, "failed", "invalid_audit_row")}

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_a_psql_csv_of_ids_below_zero_is_read_whole(self, tmp_path: Path, workers: str) -> None:
        """1,200 rows with ids -1,200 to -1 in a CSV export (read by pages of ids, with ``--workers 2``
        too, through the page pool's spans): every row processed. A page was once asked after id 0
        instead of its last id, and every row past the first page was skipped (500 processed)."""
        args = write_inputs(tmp_path, [])
        audits = tmp_path / "audits.csv"
        header = ",".join(AUDIT_COLUMNS).encode() + b"\n"
        audits.write_bytes(header + b"".join(csv_line(audit(n)) for n in range(-1200, 0)))
        given = [f"--audits={audits}" if a.startswith("--audits=") else a for a in args]
        code, output = run([*given, "--workers", workers])
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["processed"] == 1200

    def test_a_jsonb_integer_past_the_digit_limit_fails_its_row_as_postgresql_does(
        self, tmp_path: Path
    ) -> None:
        """{"name": [1, 9…9]} as a jsonb audited_changes: malformed_audited_changes with the detail the
        run gives the same value read from PostgreSQL (as JsonbText), not INTERNAL."""
        changes = '{"first_name": [1, ' + BIG + "]}"
        line = json.dumps(audit(2, audited_changes="@")).replace('"@"', changes)
        code, output = run(write_inputs(tmp_path, [json.dumps(audit(1)), line]))
        assert code == 0, output
        real = Transformer(load_default_config()).prepare_row(
            as_row(audit(2, audited_changes=JsonbText(changes)))
        )
        assert real.problem is not None
        assert real.problem.reason == "malformed_audited_changes"
        assert outcomes(tmp_path)[(2, "failed", real.problem.reason)]["detail"] == real.problem.detail

    def test_an_id_past_the_digit_limit_is_bad_input(self, tmp_path: Path) -> None:
        """An id no int can be read from cannot be tied to a row: BAD_INPUT (exit 7) naming the line."""
        line = json.dumps(audit(2)).replace('"id": 2', '"id": ' + BIG)
        code, output = run(write_inputs(tmp_path, [json.dumps(audit(1)), line]))
        assert code == 7, output
        assert "BAD_INPUT" in output
        assert "line 2" in output
        assert len(output) < 2_000  # the 5,000 digits are not repeated


def jsonl_line(record: dict[str, Any]) -> bytes:
    """One JSONL line, each bytes value written raw inside its JSON string (as a broken export has it)."""
    marked = {k: f"@{i}@" if isinstance(v, bytes) else v for i, (k, v) in enumerate(record.items())}
    line = json.dumps(marked, ensure_ascii=False).encode()
    for i, value in enumerate(record.values()):
        if isinstance(value, bytes):
            line = line.replace(
                f"@{i}@".encode(),
                json.dumps(value.decode("latin-1"), ensure_ascii=False)[1:-1].encode("latin-1"),
            )
    return line + b"\n"


def csv_line(record: dict[str, Any]) -> bytes:
    """One psql CSV record (every value quoted, NULL empty), bytes values raw."""

    def field(value: Any) -> bytes:
        if value is None:
            return b""
        raw = value if isinstance(value, bytes) else str(value).encode()
        return b'"' + raw.replace(b'"', b'""') + b'"'

    return b",".join(field(record.get(name)) for name in AUDIT_COLUMNS) + b"\n"


def as_row(record: dict[str, Any]) -> AuditRow:
    """The AuditRow the PostgreSQL adapter reads for this record."""
    created_at = dt.datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00"))
    return AuditRow(**{**record, "created_at": created_at})
