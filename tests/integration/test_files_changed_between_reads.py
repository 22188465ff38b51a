"""An audits file changed between two reads of one run (the scope pass and the pages, a resume's
read from the start, the byte ranges of ``--workers``): cut short, rewritten or replaced, it is
refused with ``FileFormatError`` (``BAD_INPUT``), after the pages before it; grown by rows appended,
or replaced by the same bytes and more, it is read on. At the same size, a write anywhere (in place
in the middle, away from both samples, or another file moved over it) is refused too: the file's
modification time or inode moved where rows appended would have grown it.

Each read held itself to the size the file had when that read opened it, so a file cut at a line
end between two reads, or replaced at the same or a larger size, was read as if it were the same
file: rows silently missing, or other rows counted as the run's."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from test_files_audit_ranges import Pages, by_range, line_end_near
from test_files_audit_spans import CAP, EPOCH, SCOPE, TENANT, corpus_docs, write

from crm_audit_adapters.cli.exit_codes import BAD_INPUT, error_code, exit_code_for
from crm_audit_adapters.files import CheckedRows, FileAuditSource, FileFormatError
from crm_audit_adapters.files.audit_ranges import FileRangeSource
from crm_audit_adapters.files.file_marks import SAMPLE_BYTES

CSV_HEADER = b"id,auditable_type,action,audited_changes,created_at"


def jsonl_file(tmp_path: Path) -> Path:
    return write(tmp_path / "audits.jsonl", [json.dumps(doc).encode() for doc in corpus_docs()])


def csv_file(tmp_path: Path) -> Path:
    rows = [
        b'%d,%s,create,"---\nname: x\n",2024-01-01 00:00:00' % (n, SCOPE[0].encode()) for n in range(1, 400)
    ]
    return write(tmp_path / "audits.csv", [CSV_HEADER, *rows])


FILES: dict[str, Callable[[Path], Path]] = {"jsonl": jsonl_file, "csv": csv_file}
APPENDED = 99_999


def appended_line(kind: str) -> bytes:
    """A row of the tenant's, in scope, with an id past the file's: what a later export adds."""
    if kind == "csv":
        return b'%d,%s,create,"---\n",2024-01-01 00:00:00\n' % (APPENDED, SCOPE[0].encode())
    doc = next(
        doc for doc in reversed(corpus_docs()) if doc["tenant"] == TENANT and doc["auditable_type"] in SCOPE
    )
    return json.dumps({**doc, "id": APPENDED}).encode() + b"\n"


def ids(source: FileAuditSource, after: int = 0, limit: int = 50) -> list[int]:
    """The ids the run loop reads with ``page`` from ``after`` on (up to an error)."""
    found: list[int] = []
    while rows := source.page(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=limit):
        found += [row.id for row in rows]
        after = rows[-1].id
        source.take_set_aside()
    return found


def source_of(path: Path) -> FileAuditSource:
    return FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)


def first_action_rewritten(path: Path) -> None:
    """The same bytes but one word near the start, at the same size: another file."""
    data = path.read_bytes()
    at = data.index(b"create")
    path.write_bytes(data[:at] + b"update" + data[at + 6 :])


def last_action_rewritten(path: Path) -> None:
    """The same bytes but one word in the last line, at the same size."""
    data = path.read_bytes()
    at = data.rindex(b"create")
    assert SAMPLE_BYTES < len(data) - SAMPLE_BYTES <= at  # only the sample before the end holds it
    path.write_bytes(data[:at] + b"update" + data[at + 6 :])


def _write_in_the_middle(path: Path, stream: BinaryIO) -> None:
    """One word of the middle row turned, at the same size, away from both samples (``FileMark``'s
    first and last 4 KiB), its modification time moved."""
    before = path.stat().st_mtime_ns
    data = stream.read()
    at = data.index(b"create", len(data) // 2)
    assert SAMPLE_BYTES <= at <= len(data) - SAMPLE_BYTES - 6
    stream.seek(at)
    stream.write(b"update")
    stream.flush()
    if path.stat().st_mtime_ns == before:
        # A write in the same clock tick as the last look can keep the time on a kernel without
        # fine-grained file times (docs/files.md says so); the rule is what is held here.
        os.utime(path, ns=(before, before + 1))


def middle_action_rewritten(path: Path) -> None:
    """Rewritten in place (the same inode), at the same size, away from both samples."""
    with path.open("r+b") as stream:
        _write_in_the_middle(path, stream)


def replaced_at_the_same_size(path: Path) -> None:
    """Another file moved over it: the same size and samples, one word of the middle other."""
    other = path.with_name("other" + path.suffix)
    other.write_bytes(path.read_bytes())
    with other.open("r+b") as stream:
        _write_in_the_middle(other, stream)
    os.replace(other, path)


def replaced_by_another_larger(path: Path) -> None:
    """Another export, larger, moved over it: the first row dropped, the rest and more after."""
    lines = path.read_bytes().splitlines(keepends=True)
    head = lines[:1] if path.suffix == ".csv" else []
    other = path.with_name("other" + path.suffix)
    other.write_bytes(b"".join([*head, *lines[len(head) + 1 :], *lines[len(head) :]]))
    os.replace(other, path)


def cut_at_a_line_end(path: Path) -> None:
    os.truncate(path, line_end_near(path, 0.5))


CHANGES: dict[str, Callable[[Path], None]] = {
    "cut-at-a-line-end": cut_at_a_line_end,
    "same-size-head": first_action_rewritten,
    "same-size-tail": last_action_rewritten,
    "same-size-middle": middle_action_rewritten,
    "same-size-replaced": replaced_at_the_same_size,
    "replaced-larger": replaced_by_another_larger,
}


class TestBetweenTheScopePassAndThePages:
    @pytest.mark.parametrize("kind", sorted(FILES))
    @pytest.mark.parametrize("change", sorted(CHANGES))
    def test_a_file_changed_after_the_scope_pass_is_refused(
        self, tmp_path: Path, kind: str, change: str
    ) -> None:
        path = FILES[kind](tmp_path)
        source = source_of(path)
        assert source.scope_bounds(TENANT, SCOPE, None) is not None
        CHANGES[change](path)
        with pytest.raises(FileFormatError, match="changed while it was read") as raised:
            ids(source)
        assert (error_code(raised.value), exit_code_for(raised.value)) == ("BAD_INPUT", BAD_INPUT)

    def test_a_file_changed_after_the_ends_were_read_from_the_back_is_refused(self, tmp_path: Path) -> None:
        path = jsonl_file(tmp_path)
        source = source_of(path)
        assert source.scope_ends(TENANT, SCOPE) is not None
        cut_at_a_line_end(path)
        with pytest.raises(FileFormatError, match=r"short of the \d+ bytes it held when this run read it"):
            ids(source)

    @pytest.mark.parametrize("kind", sorted(FILES))
    def test_rows_appended_after_the_scope_pass_are_read(self, tmp_path: Path, kind: str) -> None:
        path = FILES[kind](tmp_path)
        clean = ids(source_of(path))
        source = source_of(path)
        source.scope_bounds(TENANT, SCOPE, None)
        with path.open("ab") as stream:
            stream.write(appended_line(kind))
        assert ids(source) == [*clean, APPENDED]

    def test_the_same_bytes_and_more_moved_over_it_are_read(self, tmp_path: Path) -> None:
        path = jsonl_file(tmp_path)
        clean = ids(source_of(path))
        source = source_of(path)
        source.scope_bounds(TENANT, SCOPE, None)
        other = tmp_path / "export.jsonl"
        other.write_bytes(path.read_bytes() + appended_line("jsonl"))
        os.replace(other, path)  # a fresh export of the same table, with a row more
        assert ids(source) == [*clean, APPENDED]


class TestWhileAReadIsOpen:
    def test_a_file_rewritten_in_place_at_the_same_size_stops_the_read_at_its_end(
        self, tmp_path: Path
    ) -> None:
        path = jsonl_file(tmp_path)
        source = source_of(path)
        first = source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=5)
        assert len(first) == 5
        with path.open("r+b") as stream:  # in place: the open read goes on in the new bytes
            data = stream.read()
            stream.seek(data.index(b"create"))
            stream.write(b"update")
        told: list[int] = []
        with pytest.raises(FileFormatError, match=r"first \d+ bytes\) are not those this run read before"):
            told += ids(source, after=first[-1].id)  # as the run loop asks: the same read goes on
        assert len(ids(source_of(path))) > len(first)  # read anew, the file is a file

    @pytest.mark.parametrize("kind", sorted(FILES))
    def test_a_file_rewritten_in_its_middle_at_the_same_size_stops_the_read_at_its_end(
        self, tmp_path: Path, kind: str
    ) -> None:
        """Away from both samples, which the check at the read's end finds as they were: the same
        size with another modification time is a write, not rows appended (it was read on)."""
        path = FILES[kind](tmp_path)
        source = source_of(path)
        first = source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=5)
        assert len(first) == 5
        middle_action_rewritten(path)
        with pytest.raises(FileFormatError, match=r"the same \d+ bytes .* but was written or replaced since"):
            ids(source, after=first[-1].id)

    def test_a_resume_in_the_same_process_over_a_replaced_file_is_refused(self, tmp_path: Path) -> None:
        path = jsonl_file(tmp_path)
        source = source_of(path)
        handed = ids(source)
        replaced_by_another_larger(path)
        with pytest.raises(FileFormatError, match="changed while it was read"):
            ids(source, after=handed[len(handed) // 2])  # behind what it handed: read from the start


class TestByteRanges:
    @pytest.mark.parametrize("change", sorted(CHANGES))
    def test_ranges_of_a_file_changed_after_the_scope_pass_are_refused(
        self, tmp_path: Path, change: str
    ) -> None:
        path = jsonl_file(tmp_path)
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=300, max_record_bytes=CAP
        )
        assert source.scope_bounds(TENANT, SCOPE, None) is not None
        CHANGES[change](path)
        with pytest.raises(FileFormatError, match="changed while it was read"):
            by_range(source, 50, [])

    def test_ranges_of_a_file_with_rows_appended_are_read(self, tmp_path: Path) -> None:
        path = jsonl_file(tmp_path)
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=300, max_record_bytes=CAP
        )
        source.scope_bounds(TENANT, SCOPE, None)
        with path.open("ab") as stream:
            stream.write(appended_line("jsonl"))
        told: Pages = []
        by_range(source, 50, told)
        assert [i for page, _ in told for i in page][-1] == APPENDED
