"""A dry run's output with a torn last line (a kill mid-write), read by verify as the sink finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_adapters.files.output_tail import torn_tail
from crm_audit_adapters.files.verification import JsonlMigratedLogReader

LINE = (
    b'{"company_sso_id":"co","external_id":"crm:acme:audit:1","source_tag":"crm_migration",'
    b'"customer_id":"c","category":"deal","action":"update","metadata":{}}\n'
)


def _tail(path: Path) -> int | None:
    with path.open("rb") as stream:
        return torn_tail(stream, path)


class TestTornTail:
    @pytest.mark.parametrize(
        "torn", [b"{", b'{"company_sso_id": "', LINE[:40], b'{"company_sso_id":"' + b"x" * (3 << 20)]
    )
    def test_the_start_of_a_sink_line_without_newline_is_torn(self, tmp_path: Path, torn: bytes) -> None:
        """Short or over 1 MiB (read in blocks), the cut start of a sink line is torn at its offset."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(LINE + torn)
        assert _tail(path) == len(LINE)

    @pytest.mark.parametrize("tail", [b"", LINE, LINE[:-1], b"not json", b"[1, 2"])
    def test_anything_else_is_not_torn(self, tmp_path: Path, tail: bytes) -> None:
        """An ended file, a whole document lacking its newline (kept by the sink), or a line that is
        no start of the sink's (refused by the sink) is not a torn line."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(LINE + tail)
        assert _tail(path) is None

    def test_a_torn_only_line_starts_at_zero(self, tmp_path: Path) -> None:
        """A file whose one line is torn is torn from its start."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(LINE[:30])
        assert _tail(path) == 0


class TestReaderOfAnUnfinishedOutput:
    def test_the_torn_line_is_left_out_and_the_rest_read(self, tmp_path: Path) -> None:
        """Refused by default; with ``torn_tail`` the lines before it are indexed, the file unchanged."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(LINE + LINE[:50])
        with pytest.raises(FileFormatError, match="not a JSON document"):
            JsonlMigratedLogReader(path)
        reader = JsonlMigratedLogReader(path, torn_tail=True)
        assert reader.torn_at == len(LINE)
        assert list(reader.migrated_external_ids("co")) == ["crm:acme:audit:1"]
        assert path.read_bytes() == LINE + LINE[:50]

    def test_a_line_that_is_not_the_sinks_is_still_refused(self, tmp_path: Path) -> None:
        """``torn_tail`` forgives only what the sink would drop: other text is still refused."""
        path = tmp_path / "out.jsonl"
        path.write_bytes(LINE + b"notes")
        with pytest.raises(FileFormatError, match="not a JSON document"):
            JsonlMigratedLogReader(path, torn_tail=True)
