"""``dry-run`` on a psql CSV export holding a record past the reader's cap (64 MiB,
``psql_csv.DEFAULT_MAX_RECORD_BYTES``), through the real CLI: that row fails alone, or the read stops
with a typed error naming the record — never a crash, never a row lost or counted twice.

The record is written in blocks and never held by the test; the reader reads it on in blocks too
(docs/files.md, "A CSV record longer than ``max_record_bytes``").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_cli_dry_run_field_cases import audit, csv_line, outcomes, run, write_inputs

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.files import AUDIT_COLUMNS
from crm_audit_adapters.files.psql_csv import DEFAULT_MAX_RECORD_BYTES

BLOCK = b"x" * (1 << 20)
TIME = "2020-01-01 00:00:00"


def write_long_export(path: Path, columns: Sequence[str]) -> int:
    """Rows 1, 2 and 3 under a header of ``columns``, row 2's ``audited_changes`` just past the cap;
    the line row 2 starts on."""
    header = ",".join(columns).encode() + b"\n"
    head, _, tail = record(2, columns, "@LONG@").partition(b"@LONG@")
    with path.open("wb") as out:
        out.write(header + record(1, columns) + head + b"---\nfirst_name: ")
        for _ in range(DEFAULT_MAX_RECORD_BYTES // len(BLOCK) + 1):
            out.write(BLOCK)
        out.write(b"\n" + tail + record(3, columns))
    assert path.stat().st_size > DEFAULT_MAX_RECORD_BYTES
    return 1 + header.count(b"\n") + record(1, columns).count(b"\n")


def record(audit_id: int, columns: Sequence[str], changes: str | None = None) -> bytes:
    """One psql CSV record of ``columns`` (quoted as ``csv_line`` does); its ``audited_changes`` if given."""
    fields = audit(audit_id, created_at=TIME)
    if changes is not None:
        fields["audited_changes"] = changes
    ordered = csv_line(fields).rstrip(b"\n").split(b",")  # no value here holds a comma
    by_name = dict(zip(AUDIT_COLUMNS, ordered, strict=True))
    return b",".join(by_name[name] for name in columns) + b"\n"


def given(args: list[str], audits: Path) -> list[str]:
    return [f"--audits={audits}" if a.startswith("--audits=") else a for a in args]


class TestARecordPastTheCap:
    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_its_row_fails_alone_and_the_others_come_once(self, tmp_path: Path, workers: str) -> None:
        """Its id before the long value: ``invalid_audit_row`` for that row (as a PostgreSQL row past
        the loader's limits fails alone), rows 1 and 3 migrated, exit 0; with ``--workers 2`` too."""
        args = write_inputs(tmp_path, [])
        audits = tmp_path / "audits.csv"
        write_long_export(audits, AUDIT_COLUMNS)
        code, output = run([*given(args, audits), "--workers", workers])
        assert code == exit_codes.OK, output[:2_000]
        found = outcomes(tmp_path)
        assert set(found) == {
            (1, "migrated", None),
            (2, "failed", "invalid_audit_row"),
            (3, "migrated", None),
        }
        assert (
            f"longer than {DEFAULT_MAX_RECORD_BYTES} bytes"
            in found[(2, "failed", "invalid_audit_row")]["detail"]
        )
        report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        assert (report["processed"], report["failed"]) == (3, {"invalid_audit_row": 1})

    def test_one_whose_id_follows_its_long_value_stops_the_read(self, tmp_path: Path) -> None:
        """Its id past the long value cannot be read without holding it: ``BAD_INPUT`` (exit 7)
        naming the record's line, not a row dropped or a crash; the message does not repeat it."""
        args = write_inputs(tmp_path, [])
        audits = tmp_path / "audits.csv"
        columns = ["audited_changes", *(name for name in AUDIT_COLUMNS if name != "audited_changes")]
        first = write_long_export(audits, columns)
        code, output = run(given(args, audits))
        assert code == exit_codes.BAD_INPUT, output[:2_000]
        assert "BAD_INPUT" in output
        assert f"line {first}" in output
        assert "no id before the long value" in output
        assert len(output) < 5_000
