"""FileRangeSource: a JSONL export cut into byte ranges, each read and decided by its reader, the
runner merging their reports into the pages one forward read gives.

The pages, the rows set aside beside each, their order and wording, and the errors (with the pages
told before them) must be exactly ``FileAuditSource.page``'s on hostile files, whatever the page
size, the byte budget and where the ranges are cut (range sizes: 1 byte, each line its own range
and every repeat across a cut; 300 and 4096, cuts falling inside long lines; 1 MiB, one range).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_files_audit_spans import CAP, EPOCH, SCOPE, TENANT, corpus_docs, hostile_lines, write

from crm_audit_adapters.files import (
    AuditOrderError,
    CheckedRows,
    FileAuditSource,
    FileChangedWhileRead,
    FileFormatError,
    audit_ranges,
    audit_source,
)
from crm_audit_adapters.files.audit_ranges import FileRangeSource, line_ranges
from crm_audit_adapters.files.lines import LineWindow, numbered_lines
from crm_audit_adapters.files.psql_csv import csv_records
from crm_audit_transform.domain import Outcome, Skipped
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases.pages import PageSpan, TransformedPage, read_ids
from support.dry_runs import dry_runs

Pages = list[tuple[list[int], list[Outcome]]]
"""Each page's ids, and the outcomes set aside beside it (a last entry with no ids: those after)."""


def odd_lines() -> list[bytes]:
    """``hostile_lines`` with CRLF line ends on some lines, a U+2028 and a U+2029 inside a value
    (not line ends to a byte reader) and blank lines of spaces and of a lone CR."""
    lines = hostile_lines()
    for index in range(5, len(lines), 9):
        lines[index] += b"\r"
    for index in range(40, len(lines), 97):
        try:
            record = json.loads(lines[index].rstrip(b"\r"))
        except ValueError:  # a value that is not UTF-8
            continue
        if record.get("tenant") == TENANT:
            lines[index] = json.dumps({**record, "comment": "a\u2028b\u2029c"}, ensure_ascii=False).encode()
    lines.insert(30, b"   ")
    lines.insert(60, b"\r")
    return lines


def by_page(source: FileAuditSource, limit: int, told: Pages, after: int = 0) -> None:
    """What the run loop reads with ``page`` from ``after`` on: appended to ``told``, up to an error."""
    while True:
        rows = source.page(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=limit)
        aside = list(source.take_set_aside())
        if not rows and not aside:
            return
        told.append(([row.id for row in rows], aside))
        # After the highest id handed, as the run loop asks (a page of none in a run of lines set aside).
        after = max(rows[-1].id if rows else after, aside[-1].audit_id if aside else after)


def in_process(spans: Iterable[PageSpan], source: FileRangeSource) -> Iterator[TransformedPage]:
    """Each range read as a worker reads it (its reader pickled), every row given an outcome that
    names it, as a pipeline hands the ranges back."""
    reader = pickle.loads(pickle.dumps(source.span_reader()))
    for span in spans:
        rows = reader(span)
        outcomes = tuple(Skipped(row.id, "seen", row.comment or "") for row in rows)
        ids = pickle.loads(pickle.dumps(read_ids(rows)))  # as it crosses back from a worker
        yield TransformedPage(ids, PageResult(outcomes, None, (False,) * len(rows), (False,) * len(rows)))


def by_range(source: FileRangeSource, limit: int, told: Pages, after: int = 0) -> None:
    """What the run loop takes with ``pages_by_range`` from ``after`` on: appended to ``told``, up
    to an error."""
    aside: list[Sequence[Outcome]] = []
    pages = source.pages_by_range(
        TENANT,
        SCOPE,
        after_id=after,
        cutoff=EPOCH,
        limit=limit,
        transform=lambda spans: in_process(spans, source),
        on_set_aside=aside.append,
    )
    for page in pages:
        assert [outcome.audit_id for outcome in page.result.outcomes] == list(page.ids)
        told.append((list(page.ids), list(aside.pop())))
    assert len(aside) <= 1
    if aside:
        told.append(([], list(aside.pop())))


class TestLineRanges:
    @pytest.mark.parametrize(
        ("size", "block"), [(1, 64), (7, 1 << 20), (300, 64), (4096, 1000), (1 << 20, 64)]
    )
    def test_ranges_cut_at_line_ends_and_number_their_first_line(
        self, tmp_path: Path, size: int, block: int
    ) -> None:
        """The ranges follow each other from the file's start to its end, each starts where a
        line starts and names that line's number as a line reader counts it; each holds at least
        ``size`` bytes but the last."""
        lines = odd_lines()
        path = tmp_path / "audits.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\nlast line without its end")
        starts: dict[int, int] = {}
        offset = 0
        for number, raw in numbered_lines(path):
            starts[offset] = number
            offset += len(raw)
        ranges = list(line_ranges(path, size, block=block))
        assert ranges[0][0] == 0
        assert ranges[-1][2] == path.stat().st_size
        for (start, first, stop), following in zip(ranges, [*ranges[1:], None], strict=True):
            assert starts[start] == first
            assert following is None or (following[0] == stop and stop - start >= size)
        assert (len(ranges) == len(starts)) == (size == 1)

    def test_an_empty_file_has_no_range(self, tmp_path: Path) -> None:
        path = tmp_path / "audits.jsonl"
        path.write_bytes(b"")
        assert list(line_ranges(path, 10)) == []


class TestAFileCutShortWhileRead:
    def test_ranges_past_the_files_new_end_stop_the_read_with_the_file_named(self, tmp_path: Path) -> None:
        """The ranges are cut before they are read. A file cut short meanwhile (rewritten, a disk
        filling) left each range past its new end read as empty: a dry run with workers ended exit
        0, the rest of the file neither processed nor reported. One process meets the torn line
        (``BAD_INPUT``); the ranges now stop with ``FileFormatError`` too, after the pages read
        before the cut."""
        lines = [json.dumps(doc).encode() for doc in corpus_docs()]
        path = write(tmp_path / "audits.jsonl", lines)
        source = FileRangeSource(path, TENANT, range_bytes=300)

        def cut_short_after_the_first(spans: Iterable[PageSpan]) -> Iterator[TransformedPage]:
            cut = list(spans)  # the file cut into ranges as it was
            assert len(cut) > 3
            ranges = in_process(cut, source)
            yield from itertools.islice(ranges, 2)  # read, and their pages handed, before the cut
            os.truncate(path, cut[2].extent[0])  # at a line's end: no line is torn, ranges are lost
            yield from ranges

        read: list[int] = []

        def read_every_page() -> None:
            pages = pages_from_the_start(source, 1, cut_short_after_the_first)
            for page in pages:
                read.extend(page.ids)

        with pytest.raises(FileFormatError, match="it changed while it was read"):
            read_every_page()
        assert read  # the rows read before the cut were handed first

    def test_a_window_that_ends_past_the_files_end_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "lines.jsonl"
        path.write_bytes(b"one\ntwo\n")
        window = LineWindow(0, 1, 100)
        with pytest.raises(
            FileFormatError, match=r"ends at byte 8, inside the part being read \(to byte 100\)"
        ):
            list(numbered_lines(path, window=window))
        assert list(numbered_lines(path, window=LineWindow(0, 1, 8))) == [(1, b"one\n"), (2, b"two\n")]


def pages_from_the_start(
    source: FileRangeSource,
    limit: int,
    transform: Callable[[Iterable[PageSpan]], Iterator[TransformedPage]],
    on_set_aside: Callable[[Sequence[Outcome]], None] = lambda outcomes: None,
) -> Iterator[TransformedPage]:
    """``source.pages_by_range`` over ``TENANT``'s ``SCOPE`` from the first id (``EPOCH`` cutoff),
    ``limit`` rows a page, each range through ``transform``; rows set aside go to ``on_set_aside``."""
    return source.pages_by_range(
        TENANT,
        SCOPE,
        after_id=0,
        cutoff=EPOCH,
        limit=limit,
        transform=transform,
        on_set_aside=on_set_aside,
    )


def line_end_near(path: Path, fraction: float) -> int:
    """The offset just past the first line end at or after ``fraction`` of the file: a cut there
    tears no line, so no malformed line tells that rows were lost."""
    data = path.read_bytes()
    return data.index(b"\n", int(len(data) * fraction)) + 1


class TestAFileCutShortAtALineEnd:
    """A file cut short at a line end while it is read leaves no torn line: each read that ended at
    the new end took it for the file's end, and a dry run ended exit 0 with the rest unread."""

    def test_lines_read_to_an_end_short_of_the_files_size_when_opened_are_refused(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "lines.jsonl", [b"%04d" % number + b"x" * 36 for number in range(2000)])
        lines = numbered_lines(path, hold_bytes=64)
        assert next(lines) == (1, b"0000" + b"x" * 36 + b"\n")
        cut = line_end_near(path, 0.5)
        os.truncate(path, cut)
        with pytest.raises(
            FileFormatError, match=f"ends at byte {cut}, short of the .* changed while it was read"
        ):
            list(lines)
        assert len(list(numbered_lines(path))) == cut // 41  # read whole once cut: nothing to refuse

    def test_csv_records_read_to_an_end_short_of_the_files_size_when_opened_are_refused(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "audits.csv", [b'%d,"a\nb"' % number for number in range(5000)])
        records = csv_records(path)
        assert next(records) == (1, b'0,"a\nb"')
        os.truncate(path, line_end_near(path, 0.5))
        with pytest.raises(FileFormatError, match="it changed while it was read"):
            list(records)

    def test_a_pipe_has_no_size_to_check_and_is_read_whole(self, tmp_path: Path) -> None:
        pipe = tmp_path / "audits.csv"
        for read, expected in (
            (numbered_lines, [(1, b"1,a\n"), (2, b"2,b\n")]),
            (csv_records, [(1, b"1,a"), (2, b"2,b")]),
        ):
            os.mkfifo(pipe)
            writer = threading.Thread(target=pipe.write_bytes, args=(b"1,a\n2,b\n",))
            writer.start()
            try:
                assert list(read(pipe)) == expected
            finally:
                writer.join()
                pipe.unlink()

    def test_a_source_read_page_by_page_stops_when_the_file_is_cut_after_its_first_page(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path / "audits.jsonl", [json.dumps(doc).encode() for doc in corpus_docs()])
        source = FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)
        first = source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=5)
        assert len(first) == 5
        os.truncate(path, line_end_near(path, 0.5))
        told: Pages = [([row.id for row in first], list(source.take_set_aside()))]
        with pytest.raises(FileFormatError, match="it changed while it was read"):
            by_page(source, 50, told, after=first[-1].id)  # as the run loop asks: the same read goes on
        # The next page is read after the cut: refused, though its rows lie before the new end (it
        # went on in what its read buffered before the cut, and nothing tells where that ended).
        assert len(told) == 1

    def test_ranges_cut_after_the_file_was_cut_at_a_line_end_stop_the_read(self, tmp_path: Path) -> None:
        """The ranges are cut as they are asked (blocks of 1 MiB): those cut from the shorter file
        end at its new end, which is no torn line and no window past the end."""
        path = write(tmp_path / "audits.jsonl", [json.dumps(doc).encode() for doc in corpus_docs()])
        assert path.stat().st_size > 1 << 20  # the cut lies past the first block line_ranges reads
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=300, max_record_bytes=CAP
        )

        def cut_after_the_first(spans: Iterable[PageSpan]) -> Iterator[TransformedPage]:
            ranges = in_process(spans, source)  # the ranges cut as they are asked
            yield from itertools.islice(ranges, 200)  # read, and their pages handed, before the cut
            os.truncate(path, line_end_near(path, 0.75))
            yield from ranges

        read: list[int] = []
        pages = pages_from_the_start(source, 50, cut_after_the_first)
        with pytest.raises(FileFormatError, match=r"short of the .* changed while it was read"):
            read.extend(id for page in pages for id in page.ids)
        assert read  # the pages read before the cut were handed first

    def test_ranges_of_a_file_cut_since_the_run_opened_it_are_refused(self, tmp_path: Path) -> None:
        path = write(tmp_path / "audits.jsonl", [json.dumps(doc).encode() for doc in corpus_docs()])
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=300, max_record_bytes=CAP
        )
        os.truncate(path, line_end_near(path, 0.5))  # before any range is cut
        with pytest.raises(FileFormatError, match=r"short of the .* changed while it was read"):
            by_range(source, 50, [])

    def test_line_ranges_cut_lazily_stop_at_an_end_short_of_the_files_size(self, tmp_path: Path) -> None:
        path = write(tmp_path / "lines.jsonl", [b"x" * 40 for _ in range(1000)])
        ranges = line_ranges(path, 100, block=64)  # buffered: the first read holds 8 KiB at most
        assert next(ranges) == (0, 1, 123)
        os.truncate(path, 41 * 500)
        with pytest.raises(
            FileFormatError, match="line 501: the file ends at byte 20500, short of the 41000"
        ):
            list(ranges)
        assert list(line_ranges(path, 100, block=64, least=41 * 500))[-1][2] == 20500
        with pytest.raises(FileFormatError, match="short of the 41000"):
            list(line_ranges(path, 100, least=41000))


def even_lines(count: int) -> list[bytes]:
    """``count`` rows of ours in scope, ids 1 on, each line of the same odd length (its comment
    padded): no line ends where a read's buffer ends (a power of two) within 4,096 lines."""
    doc = next(doc for doc in corpus_docs() if doc["tenant"] == TENANT and doc["auditable_type"] in SCOPE)
    width = len(json.dumps({**doc, "id": count, "comment": ""})) + 40 | 1
    lines = []
    for audit_id in range(1, count + 1):
        line = json.dumps({**doc, "id": audit_id, "comment": ""}).encode()
        lines.append(json.dumps({**doc, "id": audit_id, "comment": "x" * (width - len(line))}).encode())
    assert {len(line) for line in lines} == {width}
    return lines


class TestAReadStoppedByTheFileChanging:
    """An error that stops a read of a file cut short meanwhile is told as the file having changed
    (``FileChangedWhileRead``), the line's own error its cause: a dry run's note then asks for a new
    ``--out``, the logs written before it being the old file's."""

    def test_a_line_torn_by_a_cut_at_a_line_end_while_a_page_is_read_is_the_file_changing(
        self, tmp_path: Path
    ) -> None:
        """The open read buffered the bytes past the first line before the cut at its end: it goes
        on with those, and the line its buffer ends inside is cut off ("not JSON")."""
        path = write(tmp_path / "audits.jsonl", even_lines(1000))
        source = FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)
        first = source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=1)
        assert [row.id for row in first] == [1]
        os.truncate(path, line_end_near(path, 0))  # at the first line's end
        with pytest.raises(
            FileChangedWhileRead, match=r"short of the .* it changed while it was read"
        ) as raised:
            source.page(TENANT, SCOPE, after_id=1, cutoff=EPOCH, limit=1000)
        assert isinstance(raised.value.__cause__, FileFormatError)
        assert "not JSON" in str(raised.value.__cause__)

    def test_a_range_whose_line_a_cut_tore_is_the_file_changing(self, tmp_path: Path) -> None:
        """A worker's read of a range meets the line the cut tore ("not JSON", no id): the runner
        raises it as the file having changed, after the pages before it."""
        path = write(tmp_path / "audits.jsonl", [json.dumps(doc).encode() for doc in corpus_docs()])
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=300, max_record_bytes=CAP
        )

        def torn_in_the_third(spans: Iterable[PageSpan]) -> Iterator[TransformedPage]:
            cut = list(spans)  # the file cut into ranges as it was
            assert len(cut) > 3
            ranges = in_process(cut, source)
            yield from itertools.islice(ranges, 2)  # read, and their pages handed, before the cut
            os.truncate(path, cut[2].extent[0] + 10)  # inside the third range's first line
            yield from ranges

        read: list[int] = []
        pages = pages_from_the_start(source, 1, torn_in_the_third)
        with pytest.raises(
            FileChangedWhileRead, match=r"short of the .* it changed while it was read"
        ) as raised:
            read.extend(id for page in pages for id in page.ids)
        assert "not JSON" in str(raised.value.__cause__)
        assert read  # the pages before the torn line were handed first

    def test_an_error_in_a_file_that_did_not_change_is_raised_as_it_is(self, tmp_path: Path) -> None:
        lines = even_lines(50)
        lines[30] = lines[30][:10]
        path = write(tmp_path / "audits.jsonl", lines)
        source = FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)
        with source, pytest.raises(FileFormatError, match="line 31: not JSON") as raised:
            source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=1000)
        assert type(raised.value) is FileFormatError


class TestTheSameAsPages:
    @pytest.mark.parametrize(
        ("limit", "page_bytes", "range_bytes"),
        [
            (1, 1 << 25, 300),
            (7, 1 << 25, 1),
            (500, 1 << 25, 4096),
            (50, 600, 1),
            (50, 600, 300),
            (7, 1 << 25, 1 << 20),
        ],
    )
    @pytest.mark.parametrize("lines", [hostile_lines, odd_lines])
    def test_the_pages_and_their_rows_set_aside_are_those_of_page(
        self, tmp_path: Path, lines: Any, limit: int, page_bytes: int, range_bytes: int
    ) -> None:
        """Over a hostile file, each page's ids, its outcomes (one per id, the range's reader's),
        and the outcomes set aside beside it (repeats with their ordinals, unreadable lines with
        their words) are ``page``'s, whatever the page size, byte budget or range size."""
        path = write(tmp_path / "audits.jsonl", lines())
        options: dict[str, Any] = {"max_record_bytes": CAP, "page_bytes": page_bytes}
        expected: Pages = []
        got: Pages = []
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), **options) as plain:
            by_page(plain, limit, expected)
        with FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=range_bytes, **options
        ) as source:
            by_range(source, limit, got)
        assert got == expected
        reasons = {outcome.reason for _, aside in expected for outcome in aside}
        assert reasons == {"duplicate_audit_id", "invalid_audit_row"}

    @pytest.mark.parametrize("hold", [1000, 2], ids=["pages", "pauses"])
    @pytest.mark.parametrize("range_bytes", [1, 300, 1 << 20])
    def test_from_a_cursor_only_the_rows_set_aside_past_it_are_handed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, range_bytes: int, hold: int
    ) -> None:
        """A resume's read by ranges (from a cursor past the file's start) gives ``page``'s pages
        from that cursor, each with the rows set aside past it only: it built and handed every one
        from the file's start, for the run loop to drop those at or below its cursor."""
        monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", hold)
        monkeypatch.setattr(audit_ranges, "HOLD_SET_ASIDE", hold)
        path = write(tmp_path / "audits.jsonl", hostile_lines())
        options: dict[str, Any] = {"max_record_bytes": CAP}
        whole: Pages = []
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), **options) as plain:
            by_page(plain, 20, whole)
        ids = [audit_id for page_ids, _ in whole for audit_id in page_ids]
        cursor = ids[len(ids) // 2]
        assert any(outcome.audit_id <= cursor for _, aside in whole for outcome in aside)
        expected: Pages = []
        got: Pages = []
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), **options) as plain:
            by_page(plain, 20, expected, after=cursor)
        with FileRangeSource(
            path, TENANT, checked=CheckedRows(path), range_bytes=range_bytes, **options
        ) as source:
            by_range(source, 20, got, after=cursor)
        assert got == expected
        assert all(outcome.audit_id > cursor for _, aside in got for outcome in aside)
        assert any(aside for _, aside in got)

    @pytest.mark.parametrize("range_bytes", [1, 4096])
    @pytest.mark.parametrize(
        ("line", "error"),
        [
            (json.dumps({**corpus_docs()[0], "tenant": TENANT, "id": 2}).encode(), AuditOrderError),
            (
                json.dumps({**corpus_docs()[0], "tenant": TENANT, "id": 2, "action": 5}).encode(),
                AuditOrderError,
            ),
            (b"not json", FileFormatError),
            (
                json.dumps({**corpus_docs()[0], "tenant": TENANT, "id": "x" * (2 * CAP)}).encode(),
                FileFormatError,
            ),
        ],
        ids=["row below", "unreadable line below", "no id", "long line with no integer id"],
    )
    def test_a_read_that_stops_stops_where_page_stops(
        self, tmp_path: Path, range_bytes: int, line: bytes, error: type[Exception]
    ) -> None:
        """An id below the one before it, or a line with no id, raises the error ``page`` raises,
        naming the same line, after the same pages (the page it was filling is not given)."""
        lines = hostile_lines()
        lines.insert(200, line)
        path = write(tmp_path / "audits.jsonl", lines)
        told: dict[str, Pages] = {"pages": [], "ranges": []}
        errors = []
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP) as plain:
            with pytest.raises(error) as raised:
                by_page(plain, 20, told["pages"])
            errors.append(str(raised.value))
        source = FileRangeSource(
            path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP, range_bytes=range_bytes
        )
        with source, pytest.raises(error) as raised:
            by_range(source, 20, told["ranges"])
        errors.append(str(raised.value))
        assert told["ranges"] == told["pages"]
        assert len(told["pages"]) > 3
        assert errors[0] == errors[1]
        assert "line 201" in errors[0]

    def test_a_repeat_across_a_cut_is_set_aside_and_its_outcome_dropped(self, tmp_path: Path) -> None:
        """Each line its own range: a row repeating the id of the range before is read as a row
        there (its reader cannot know), and the merge sets it aside with the ordinal one process
        names, keeping the first row's outcome."""
        docs = [doc for doc in corpus_docs() if doc["tenant"] == TENANT and doc["auditable_type"] in SCOPE][
            :5
        ]
        lines = [json.dumps(doc).encode() for doc in docs]
        lines.insert(3, json.dumps({**docs[2], "comment": "again"}).encode())
        path = write(tmp_path / "audits.jsonl", lines)
        got: Pages = []
        with FileRangeSource(path, TENANT, checked=CheckedRows(path), range_bytes=1) as source:
            by_range(source, 500, got)
        ((ids, aside),) = got
        assert ids == [doc["id"] for doc in docs]
        (repeat,) = aside
        assert (repeat.audit_id, repeat.reason) == (docs[2]["id"], "duplicate_audit_id")
        assert f"row 4 repeats audit id {docs[2]['id']}" in str(repeat.detail)

    def test_another_tenant_reads_nothing(self, tmp_path: Path) -> None:
        path = write(tmp_path / "audits.jsonl", hostile_lines())
        with FileRangeSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP) as source:
            pages = source.pages_by_range(
                "other",
                SCOPE,
                after_id=0,
                cutoff=dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                limit=10,
                transform=lambda spans: in_process(spans, source),
                on_set_aside=pytest.fail,
            )
            assert list(pages) == []


class TestARunWithWorkers:
    @pytest.mark.parametrize("range_bytes", [4096])
    def test_workers_reading_ranges_write_what_one_process_writes(
        self, tmp_path: Path, range_bytes: int
    ) -> None:
        """A dry run over the hostile file: with a pool whose workers (and its runner) read and
        decide byte ranges, the outcomes (in order), the job's counts and the bytes written are
        one process's, the rows set aside included."""
        audits = write(tmp_path / "audits.jsonl", odd_lines())

        def source(workers: int, checked: CheckedRows) -> FileAuditSource:
            if workers > 1:
                return FileRangeSource(
                    audits, TENANT, checked=checked, max_record_bytes=CAP, range_bytes=range_bytes
                )
            return FileAuditSource(audits, TENANT, checked=checked, max_record_bytes=CAP)

        results = dry_runs(tmp_path, audits, TENANT, source)
        assert results[2] == results[1]
        _, tally, written = results[1]
        assert sum(tally.failed.values()) > 30
        assert written.count(b"\n") == tally.migrated > 1000


class TestTypesOutOfTheScope:
    @pytest.mark.parametrize("range_bytes", [1, 4096])
    def test_a_line_set_aside_counts_only_when_its_type_is_in_the_scope_or_unknown(
        self, tmp_path: Path, range_bytes: int
    ) -> None:
        """A line set aside whose ``auditable_type`` is read and lies outside the scope (an
        unreadable line, a repeat of a row) is not counted, as a database run never reads such a
        row; one of a type in the scope, or whose type cannot be read, is; one process and the
        ranges' merge alike (each line its own range, and one range)."""
        doc = next(doc for doc in corpus_docs() if doc["tenant"] == TENANT and doc["auditable_type"] in SCOPE)
        other = {**doc, "auditable_type": "Elsewhere"}
        records = [
            {**doc, "id": 10},
            {**other, "id": 11, "action": None},  # unreadable, out of the scope: not counted
            {**doc, "id": 12, "action": None},  # unreadable, in the scope
            {**doc, "id": 13, "auditable_type": 5},  # its type cannot be read
            {**other, "id": 21},
            {**other, "id": 21, "comment": "again"},  # a repeat of a row out of the scope
            {**other, "id": 21, "action": None},  # an unreadable repeat of it, out of the scope
            {**doc, "id": 30},
            {**doc, "id": 30, "comment": "again"},  # a repeat in the scope
            {**other, "id": 31, "action": None},
        ]
        path = write(tmp_path / "audits.jsonl", [json.dumps(record).encode() for record in records])
        expected: Pages = []
        got: Pages = []
        with FileAuditSource(path, TENANT, checked=CheckedRows(path)) as plain:
            by_page(plain, 50, expected)
        with FileRangeSource(path, TENANT, checked=CheckedRows(path), range_bytes=range_bytes) as source:
            by_range(source, 50, got)
        assert got == expected
        aside = [(o.audit_id, o.reason) for _, outcomes in expected for o in outcomes]
        assert aside == [(12, "invalid_audit_row"), (13, "invalid_audit_row"), (30, "duplicate_audit_id")]
        assert [audit_id for ids, _ in expected for audit_id in ids] == [10, 30]
