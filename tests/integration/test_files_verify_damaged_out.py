"""A dry run's output damaged, or changed, under ``dry-run --verify``: a typed error, never a crash or
another log's line read as this one's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.files.errors import FileChangedWhileRead, FileFormatError
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform.domain import FieldChange
from support.mongo import activity_log

COMPANY = "company-a"


def written(path: Path, *audit_ids: int) -> list[bytes]:
    """The lines a sink writes for these audits' logs (each with a note past ASCII)."""
    note = (FieldChange("notes", "Notes", None, "Jalan Sudirman — 東京"),)
    logs = [activity_log(i, changes=note) for i in audit_ids]
    with JsonlActivityLogSink(path, fsync="never") as sink:
        sink.insert_batch(logs)
    return path.read_bytes().splitlines(keepends=True)


def external_id(audit_id: int) -> str:
    return activity_log(audit_id).external_id


class TestALineThatIsNoJson:
    @pytest.mark.parametrize(
        ("damage", "why"),
        [
            (lambda line: line.replace("東".encode(), "東".encode()[:2], 1), "not UTF-8"),
            (lambda line: line.replace(b'"category"', b'"cat\x00egory"', 1), "Invalid control character at"),
        ],
        ids=["utf8-cut-short", "nul-byte"],
    )
    def test_is_a_format_error_naming_its_line(self, tmp_path: Path, damage: object, why: str) -> None:
        """The index reads a line in the sink's layout for its keys alone, so such a line reached
        the parse of a page and raised ``UnicodeDecodeError`` or ``JSONDecodeError``: an internal
        error (exit 1). It is ``FileFormatError`` (``BAD_INPUT``), naming the file and the line."""
        path = tmp_path / "out.jsonl"
        lines = written(path, 1, 2, 3)
        lines[1] = damage(lines[1])  # type: ignore[operator]
        path.write_bytes(b"".join(lines))
        reader = JsonlMigratedLogReader(path)
        first, second, third = reader.migrated_logs(COMPANY, [external_id(i) for i in (1, 2, 3)])
        assert first.parsed() is not None
        assert third.parsed() is not None
        with pytest.raises(FileFormatError, match=r"out\.jsonl, line 2: a stored log's line not") as refused:
            second.parsed()
        assert why in str(refused.value)
        assert "Sudirman" not in str(refused.value)


class TestAFileChangedUnderVerify:
    def test_a_file_replaced_after_it_was_indexed_is_refused(self, tmp_path: Path) -> None:
        """The index holds offsets into the file as it was: read in another file, they fell inside
        other lines (``JSONDecodeError``) or on another log's line, read as this log's."""
        path = tmp_path / "out.jsonl"
        lines = written(path, 1, 2, 3)
        reader = JsonlMigratedLogReader(path)
        other = tmp_path / "other.jsonl"
        other.write_bytes(b"".join([lines[2], lines[0], lines[1]]))
        os.replace(other, path)
        with pytest.raises(FileChangedWhileRead, match="changed while it was read"):
            reader.migrated_logs(COMPANY, [external_id(1)])

    def test_a_file_rewritten_in_place_at_its_size_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "out.jsonl"
        lines = written(path, 1, 2)
        reader = JsonlMigratedLogReader(path)
        with path.open("r+b") as stream:
            stream.write(lines[1] + lines[0])
            os.utime(stream.fileno(), ns=(0, 0))  # another modification time, whatever the clock
        with pytest.raises(FileChangedWhileRead):
            reader.migrated_logs(COMPANY, [external_id(1), external_id(2)])

    def test_lines_appended_since_are_let_be(self, tmp_path: Path) -> None:
        """A file only grown since keeps every indexed line where the index found it."""
        path = tmp_path / "out.jsonl"
        written(path, 1, 2)
        reader = JsonlMigratedLogReader(path)
        written(path, 3)  # the sink appends
        stored = reader.migrated_logs(COMPANY, [external_id(1), external_id(2), external_id(3)])
        assert [line.external_id for line in stored] == [external_id(1), external_id(2)]
        assert all(line.parsed() is not None for line in stored)

    def test_a_long_line_read_again_after_a_replacement_is_refused(self, tmp_path: Path) -> None:
        """A line past 1 MiB is read again when it is compared or parsed: from the file then there."""
        log = activity_log(5, changes=(FieldChange("notes", "Notes", None, "n" * (2 << 20)),))
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path, fsync="never") as sink:
            sink.insert_batch([activity_log(1), log])
        reader = JsonlMigratedLogReader(path)
        (long,) = reader.migrated_logs(COMPANY, [log.external_id])
        expected = reader.content_of(log)
        assert long.same_as(expected)
        replaced = tmp_path / "replaced.jsonl"
        replaced.write_bytes(path.read_bytes())
        os.replace(replaced, path)  # the same bytes, another file: its lines could be others
        with pytest.raises(FileChangedWhileRead):
            long.same_as(expected)


def test_a_long_first_line_after_a_byte_order_mark_is_indexed_and_read(tmp_path: Path) -> None:
    """A BOM before a first line past 1 MiB is passed over, as before a short one: the index's skim
    took it for no JSON object and refused the file (``long_lines``), and so did the sink."""
    log = activity_log(5, changes=(FieldChange("notes", "Notes", None, "n" * (2 << 20)),))
    path = tmp_path / "out.jsonl"
    with JsonlActivityLogSink(path, fsync="never") as sink:
        sink.insert_batch([log, activity_log(6)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    reader = JsonlMigratedLogReader(path)
    (stored,) = reader.migrated_logs(COMPANY, [log.external_id])
    doc = stored.parsed(reader.content_of(activity_log(5)))
    assert doc is not None
    assert doc.content == reader.content_of(log)
    with JsonlActivityLogSink(path, fsync="never") as sink:
        assert sink.count_migrated(COMPANY) == 2
