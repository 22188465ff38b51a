"""A page read while its file changed is never handed over: not its rows, not the lines it set aside.

An open read goes on in the bytes it buffered before a cut (rows the file no longer holds), or in
the bytes of another file written over it (a line of the old file's head and the new file's tail,
rows of another export). Each page used to be handed as read, and only a later read found the
file's end short or its samples other: the rows past the cut were written, and a line that could
not become a row there was counted ``invalid_audit_row`` though it was no line of the file. Now the
file is looked at before each page is handed (``FileMark.check``), in one process and in the merge
of ``--workers``' ranges: a changed file raises ``FileChangedWhileRead`` at the first page read
after the change, and that page's rows and outcomes are dropped.

The changes are made between two pages, at chosen offsets: no writer races a read.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest
from test_files_audit_ranges import even_lines, in_process, line_end_near, pages_from_the_start
from test_files_audit_spans import CAP, EPOCH, SCOPE, TENANT, write

from crm_audit_adapters.files import CheckedRows, FileAuditSource, FileChangedWhileRead
from crm_audit_adapters.files.audit_ranges import FileRangeSource
from crm_audit_transform import reasons
from crm_audit_transform.domain import Outcome
from crm_audit_transform.usecases.pages import PageSpan, TransformedPage

BROKEN = 1500
"""The id of the line the rewritten file holds in a form that cannot become a row."""


def broken(line: bytes) -> bytes:
    """The same row with an ``action`` that is not a string: its id can be read, its row cannot."""
    return json.dumps({**json.loads(line), "action": 12345}).encode()


def rewritten_shorter(path: Path, lines: Sequence[bytes]) -> None:
    """The file written again, as a fresh export of fewer rows is (truncated, then written): the
    same lines up to ``BROKEN``, that one unreadable, then fewer rows than before."""
    path.write_bytes(b"".join(line + b"\n" for line in [*lines[: BROKEN - 1], broken(lines[BROKEN - 1])]))
    with path.open("ab") as stream:
        stream.write(b"".join(line + b"\n" for line in lines[BROKEN : BROKEN + 100]))


def source_of(path: Path) -> FileAuditSource:
    return FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)


class TestOneProcess:
    def test_rows_buffered_past_a_cut_are_not_handed(self, tmp_path: Path) -> None:
        """Cut at the end of the second line after the first page: the open read still holds the
        lines after it (one buffer of the file), and handed them as the next page's rows."""
        path = write(tmp_path / "audits.jsonl", even_lines(1000))
        source = source_of(path)
        assert [row.id for row in source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=1)] == [1]
        os.truncate(path, line_end_near(path, 0) + len(even_lines(1)[0]) + 1)  # two lines left
        with pytest.raises(
            FileChangedWhileRead, match=r"short of the \d+ bytes .* changed while it was read"
        ):
            source.page(TENANT, SCOPE, after_id=1, cutoff=EPOCH, limit=3)  # rows 3 and 4 are gone
        assert source.take_set_aside() == []

    def test_csv_records_buffered_past_a_cut_are_not_handed(self, tmp_path: Path) -> None:
        header = b"id,auditable_type,action,audited_changes,created_at"
        records = [
            b'%d,%s,create,"---\nname: x\n",2024-01-01 00:00:00' % (n, SCOPE[0].encode())
            for n in range(1, 400)
        ]
        path = write(tmp_path / "audits.csv", [header, *records])
        source = source_of(path)
        assert [row.id for row in source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=1)] == [1]
        os.truncate(path, len(header) + 1 + 2 * (len(records[0]) + 1))  # the header and two records left
        with pytest.raises(FileChangedWhileRead, match="changed while it was read"):
            source.page(TENANT, SCOPE, after_id=1, cutoff=EPOCH, limit=3)

    def test_a_line_set_aside_in_a_file_written_over_the_read_is_not_counted(self, tmp_path: Path) -> None:
        """Rewritten shorter, the file's line ``BROKEN`` cannot become a row: the open read meets it
        past its buffer, in the new bytes, and set it aside before the page ended. That outcome
        was handed and counted, though the read then stopped with the file changed."""
        lines = even_lines(3000)
        path = write(tmp_path / "audits.jsonl", lines)
        source = source_of(path)
        assert len(source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=1)) == 1
        rewritten_shorter(path, lines)
        with pytest.raises(FileChangedWhileRead, match="changed while it was read"):
            source.page(TENANT, SCOPE, after_id=1, cutoff=EPOCH, limit=BROKEN + 50)
        assert source.take_set_aside() == []  # not invalid_audit_row: no line of the file it read

    def test_the_same_line_in_a_file_that_did_not_change_is_set_aside(self, tmp_path: Path) -> None:
        """The page check lets a file read whole stand: the same line, written so from the start,
        is its row's ``invalid_audit_row``, and the rows after it are read on."""
        lines = even_lines(3000)
        path = write(
            tmp_path / "audits.jsonl", [*lines[: BROKEN - 1], broken(lines[BROKEN - 1]), *lines[BROKEN:]]
        )
        source = source_of(path)
        rows = source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=BROKEN + 50)
        assert [row.id for row in rows] == [*range(1, BROKEN), *range(BROKEN + 1, BROKEN + 52)]
        assert [(outcome.audit_id, outcome.reason) for outcome in source.take_set_aside()] == [
            (BROKEN, reasons.INVALID_AUDIT_ROW)
        ]


class TestRanges:
    def test_a_line_set_aside_in_a_range_read_after_the_file_changed_is_not_handed(
        self, tmp_path: Path
    ) -> None:
        """The ranges are cut from the file as it was; after the first ranges' pages are handed it
        is written again shorter, and a later range meets the unreadable line in the new bytes. Its
        outcome was handed with the page it came before; now no page read after the change is."""
        lines = even_lines(3000)
        path = write(tmp_path / "audits.jsonl", lines)
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=4096, max_record_bytes=CAP
        )

        cut: list[PageSpan] = []

        def rewritten_after_two(spans: Iterable[PageSpan]) -> Iterator[TransformedPage]:
            cut.extend(spans)  # the file cut into ranges as it was
            ranges = in_process(cut, source)
            yield from itertools.islice(ranges, 2)  # read, and their pages handed, before the change
            rewritten_shorter(path, lines)
            yield from ranges

        read: list[int] = []
        aside: list[Outcome] = []
        pages = pages_from_the_start(source, 1, rewritten_after_two, aside.extend)
        with pytest.raises(FileChangedWhileRead, match="changed while it was read"):
            read.extend(id for page in pages for id in page.ids)
        # The pages of the first two ranges, read before the change, and no other.
        assert read == list(range(1, cut[2].extent[0] // len(lines[0] + b"\n") + 1))
        assert aside == []
        assert source.take_set_aside() == []
