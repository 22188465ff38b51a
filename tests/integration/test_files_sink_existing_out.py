"""An existing file named as the sink's output: read back in bounded memory, and refused, never cut,
when its unterminated last line is not one of the sink's own lines."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from crm_audit_adapters.files import JsonlActivityLogSink, encode_log_line, verification
from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform.domain import FieldChange
from support.mongo import activity_log

PAD = 24 << 20
"""A line this long (24 MiB) was held whole, then parsed, by the sink and by verify's index."""


def own_lines(*audit_ids: int) -> bytes:
    return b"".join(encode_log_line(activity_log(i)).encode() + b"\n" for i in audit_ids)


class TestAnUnterminatedLastLine:
    @pytest.mark.parametrize(
        "tail",
        [b"my precious notes, not JSON", b"\0" * 4096, b"[1, 2", b"42", b'{"pad": "x'],
        ids=["notes", "nul-bytes", "array-start", "json-non-object", "other-object-start"],
    )
    def test_one_that_is_no_start_of_a_sink_line_is_refused_and_the_file_left_alone(
        self, tmp_path: Path, tail: bytes
    ) -> None:
        """Not JSON (or not an object) and not how a sink's line starts: not this sink's output. The
        file is refused as the same file with a final newline is, and nothing is cut off it."""
        path = tmp_path / "notes.jsonl"
        content = own_lines(1, 2) + tail
        path.write_bytes(content)
        with pytest.raises(FileFormatError, match=r"line 3: .*not this sink's output"):
            JsonlActivityLogSink(path)
        assert path.read_bytes() == content

    @pytest.mark.parametrize("layout", ["compact", "spaced"])
    @pytest.mark.parametrize("cut", [1, 5, 19, 40, 200])
    def test_a_start_of_a_sink_line_is_torn_and_removed(self, tmp_path: Path, layout: str, cut: int) -> None:
        """A log line cut off mid-write (this release's compact layout, or the spaced one of files
        written by earlier releases), even within its first key, is removed; the rest is kept."""
        line = encode_log_line(activity_log(3))
        if layout == "spaced":
            line = json.dumps(json.loads(line))
        path = tmp_path / "out.jsonl"
        path.write_bytes(own_lines(1, 2) + line.encode()[:cut])
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == 2
        assert path.read_bytes() == own_lines(1, 2)

    @pytest.mark.parametrize("whole", [True, False], ids=["whole", "torn"])
    def test_a_long_one_is_kept_whole_or_removed_torn(self, tmp_path: Path, whole: bool) -> None:
        """A last line of ours over 1 MiB (read on in blocks) without its newline: kept and given one
        when it is the whole document, removed when it was cut off mid-write."""
        doc = json.loads(encode_log_line(activity_log(3)))
        doc["metadata"]["pad"] = "x" * (3 << 20)
        line = json.dumps(doc, separators=(",", ":")).encode()
        path = tmp_path / "out.jsonl"
        path.write_bytes(own_lines(1) + (line if whole else line[: 2 << 20]))
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == (2 if whole else 1)
        assert path.read_bytes() == own_lines(1) + (line + b"\n" if whole else b"")


def long_file(path: Path) -> None:
    """A log, a foreign object line of 24 MiB, a log of ours padded to 24 MiB, a log."""
    padded = json.loads(encode_log_line(activity_log(3)))
    padded["metadata"]["pad"] = "x" * PAD
    path.write_bytes(
        own_lines(1)
        + b'{"pad": "'
        + b"y" * PAD
        + b'"}\n'
        + json.dumps(padded, separators=(",", ":")).encode()
        + b"\n"
        + own_lines(4)
    )


def peak_bytes_of(build: object) -> tuple[object, int]:
    tracemalloc.start()
    try:
        made = build()  # type: ignore[operator]
        return made, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_sink_reads_long_lines_back_for_their_keys_without_holding_them(tmp_path: Path) -> None:
    """Opening the file to append takes a few MiB, not the line's size two or three times over,
    and the long line's key is known: the log is not written twice."""
    path = tmp_path / "out.jsonl"
    long_file(path)
    sink, peak = peak_bytes_of(lambda: JsonlActivityLogSink(path))
    assert isinstance(sink, JsonlActivityLogSink)
    with sink:
        assert sink.count_migrated("company-a") == 3
        assert [r.status for r in sink.insert_batch([activity_log(3), activity_log(5)])] == [
            "skipped",
            "inserted",
        ]
    assert peak < 8 << 20


def test_verify_indexes_long_lines_without_holding_them(tmp_path: Path) -> None:
    """``dry-run --verify``'s index of the file takes a few MiB for 24 MiB lines, and still finds
    the long line of ours."""
    path = tmp_path / "out.jsonl"
    long_file(path)
    reader, peak = peak_bytes_of(lambda: JsonlMigratedLogReader(path))
    assert isinstance(reader, JsonlMigratedLogReader)
    assert sorted(reader.migrated_external_ids("company-a")) == [
        "crm:tenant_a:audit:1",
        "crm:tenant_a:audit:3",
        "crm:tenant_a:audit:4",
    ]
    assert peak < 24 << 20


def test_a_rollback_rewrite_reads_and_copies_long_lines_in_blocks(tmp_path: Path) -> None:
    """``delete_migrated`` (a rollback of a dry run's file) takes a few MiB for 24 MiB lines: the long
    log of ours goes, the foreign long line stays byte for byte. (It read each line whole: 24 MiB
    and more at once.)"""
    path = tmp_path / "out.jsonl"
    long_file(path)
    foreign = path.read_bytes().split(b"\n")[1] + b"\n"
    with JsonlActivityLogSink(path) as sink:
        deleted, peak = peak_bytes_of(lambda: sink.delete_migrated("company-a"))
        assert deleted == 3
        assert sink.count_migrated("company-a") == 0
    assert peak < 8 << 20
    assert path.read_bytes() == foreign


def test_verify_reads_a_long_line_of_ours_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dry-run --verify`` reading back a 24 MiB line of ours (not the line the run would write: its
    metadata is padded) holds a few MiB: the line is measured, not held, and compared by its length.
    Its padded member is past 1 MiB, so it is read whole to be compared field by field only when a
    sink could have written a line that long (96 MiB); past that it is none of ours, never held.
    (It read every such line whole: 24 MiB and more, and a 1 GiB one as well.)"""
    path = tmp_path / "out.jsonl"
    long_file(path)
    reader = JsonlMigratedLogReader(path)
    found, peak = peak_bytes_of(lambda: reader.migrated_logs("company-a", ["crm:tenant_a:audit:3"]))
    assert peak < 8 << 20
    assert isinstance(found, list)
    (stored,) = found
    expected = reader.content_of(activity_log(3))
    doc = stored.parsed(expected)
    assert doc is not None
    assert (stored.same_as(expected), doc.external_id) == (False, "crm:tenant_a:audit:3")
    monkeypatch.setattr(verification, "_LONGEST_SINK_LINE", 16 << 20)  # a line past what a sink writes
    parsed, peak = peak_bytes_of(lambda: (stored.same_as(expected), stored.parsed(expected)))
    assert parsed == (False, None)
    assert peak < 8 << 20


def test_verify_finds_a_long_line_that_is_the_runs_own_the_same(tmp_path: Path) -> None:
    """A log whose own line is 3 MiB (a long note) is read back in blocks and compared with the
    recomputed line a block at a time: the same, and its document built from the log; against
    another log's line, not the same, and read for its members."""
    log = activity_log(5, changes=(FieldChange("notes", "Notes", None, "n" * (3 << 20)),))
    path = tmp_path / "out.jsonl"
    with JsonlActivityLogSink(path) as sink:
        sink.insert_batch([activity_log(1), log, activity_log(6)])
    reader = JsonlMigratedLogReader(path)
    (long,) = reader.migrated_logs("company-a", [log.external_id])  # a page's last line is read alone
    assert (long.external_id, long.line) == (log.external_id, b"")
    expected = reader.content_of(log)
    assert long.same_as(expected)
    doc = long.parsed(expected)
    assert doc is not None
    assert doc.external_id == log.external_id
    assert not long.same_as(reader.content_of(activity_log(5)))
    other = long.parsed(reader.content_of(activity_log(5)))  # a 3 MiB member: read whole, as a sink wrote it
    assert other is not None
    assert other.content["attributes"] == expected["attributes"]


def test_a_long_lines_content_is_its_parsed_documents_whatever_its_members_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``StoredLine.content`` of a long line with a member past 1 MiB is ``parsed().content``, the line
    read whole as ``parsed`` reads it (it raised ``FileFormatError``: the member was too long to skim);
    past what a sink writes, where ``parsed`` is None, it is a ``FileFormatError`` saying so, the line
    never held."""
    log = activity_log(5, changes=(FieldChange("notes", "Notes", None, "n" * (3 << 20)),))
    path = tmp_path / "out.jsonl"
    with JsonlActivityLogSink(path) as sink:
        sink.insert_batch([log])
    reader = JsonlMigratedLogReader(path)
    (stored,) = reader.migrated_logs("company-a", [log.external_id])
    doc = stored.parsed()
    assert doc is not None
    assert stored.content == doc.content == reader.content_of(log)
    assert dict(stored.content) == dict(doc.content)
    monkeypatch.setattr(verification, "_LONGEST_SINK_LINE", 2 << 20)
    assert stored.parsed() is None
    with pytest.raises(FileFormatError, match="longer than any line a sink writes") as refused:
        len(stored.content)
    assert "nnnn" not in str(refused.value)


@pytest.mark.parametrize("ask", ["parsed", "content"])
def test_a_long_stored_line_that_is_no_json_object_is_refused_without_holding_it(
    tmp_path: Path, ask: str
) -> None:
    """A long line with our keys whose document member is malformed (the index reads the keys alone)
    is ``FileFormatError`` naming its line, read in blocks: it was read whole (up to 96 MiB) first."""
    doc = json.loads(encode_log_line(activity_log(3)))
    doc["metadata"]["pad"] = "y" * PAD
    line = json.dumps(doc, separators=(",", ":")).encode().replace(b'"action":"', b'"action":,"x":"', 1)
    path = tmp_path / "out.jsonl"
    path.write_bytes(own_lines(1) + line + b"\n" + own_lines(4))
    reader = JsonlMigratedLogReader(path)
    (stored,) = reader.migrated_logs("company-a", ["crm:tenant_a:audit:3"])

    def refusal() -> FileFormatError:
        with pytest.raises(FileFormatError) as refused:
            stored.parsed() if ask == "parsed" else len(stored.content)
        return refused.value

    refused, peak = peak_bytes_of(refusal)
    assert "line 2: a stored log's line not JSON" in str(refused)
    assert "yyyy" not in str(refused)
    assert peak < 8 << 20
