"""FileSpanSource: a JSONL export's pages told by ids and byte range, read back by a worker's reader.

The runner reads each line's keys only; the pages, the rows set aside beside each and the errors
must be exactly ``FileAuditSource.page``'s, on hostile files too, and a worker reading a page's
byte range must build exactly ``page``'s rows.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from test_files_audits import TEXT_AUDITS

from crm_audit_adapters.files import (
    AuditOrderError,
    CheckedRows,
    FileAuditSource,
    FileChangedWhileRead,
)
from crm_audit_adapters.files.audit_spans import FileSpanReader, FileSpanSource
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Failed, Outcome
from crm_audit_transform.usecases.pages import PageSpan
from support.dry_runs import dry_runs

SCOPE = tuple(load_default_config().scope)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TENANT = "acme"
CAP = 4096
"""The line cap these tests give the sources, so a long line costs 5 KiB, not 64 MiB."""


def corpus_docs() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()]


def hostile_lines() -> list[bytes]:
    """The corpus's acme rows three times over (ids apart), with every kind of line a runner must
    decide on its own between them: other tenants' rows, blank lines, a BOM, repeats, lines that
    cannot become a row, a value that is not UTF-8, lines past the cap of either tenant."""
    docs = corpus_docs()
    ours = [doc for doc in docs if doc["tenant"] == TENANT]
    theirs = [doc for doc in docs if doc["tenant"] != TENANT]
    lines: list[bytes] = []
    for block in range(3):
        for index, doc in enumerate(ours):
            audit_id = doc["id"] + block * 1_000_000
            lines.append(json.dumps({**doc, "id": audit_id}).encode())
            spot = (index + block * 7) % 23
            if spot == 1:
                lines.append(json.dumps({**doc, "id": audit_id, "comment": "again"}).encode())  # a repeat
            elif spot == 3:
                lines.append(json.dumps({**doc, "id": audit_id + 1, "action": 5}).encode())  # no row, an id
            elif spot == 5:
                lines.append(json.dumps({**doc, "id": audit_id, "action": None}).encode())  # no row, repeats
            elif spot == 7:
                line = json.dumps({**doc, "id": audit_id + 1, "comment": "caf\u00e9"}, ensure_ascii=False)
                lines.append(line.encode().replace("é".encode(), b"\xe9"))  # a value that is not UTF-8
            elif spot == 9:
                lines.append(json.dumps({**doc, "id": audit_id + 1, "comment": "x" * (2 * CAP)}).encode())
            elif spot == 11:
                other = theirs[index % len(theirs)]
                lines.append(json.dumps({**other, "comment": "y" * (2 * CAP)}).encode())  # theirs, long
            elif spot == 13:
                lines.append(b"")
                lines.append(json.dumps(theirs[index % len(theirs)]).encode())
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    return lines


def write(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


Pages = list[tuple[list[int], list[Outcome]]]
"""Each page's ids, and the outcomes set aside beside it."""


def by_page(source: FileAuditSource, limit: int) -> tuple[Pages, list[AuditRow]]:
    pages: Pages = []
    found: list[AuditRow] = []
    after = 0
    while True:
        rows = source.page(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=limit)
        aside = list(source.take_set_aside())
        pages.append(([row.id for row in rows], aside))
        if not rows and not aside:
            return pages, found
        found.extend(rows)
        # After the highest id handed, as the run loop asks (a page of none in a run of lines set aside).
        after = max(rows[-1].id if rows else after, aside[-1].audit_id if aside else after)


def by_span(source: FileSpanSource, limit: int) -> tuple[Pages, list[AuditRow]]:
    pages: Pages = []
    rows: list[AuditRow] = []
    after = 0
    while True:
        ids = source.page_ids(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=limit)
        span = PageSpan(TENANT, SCOPE, EPOCH, tuple(ids), source.page_extent())
        aside = list(source.take_set_aside())
        pages.append((list(ids), aside))
        if not ids and not aside:
            return pages, rows
        rows.extend(pickle.loads(pickle.dumps(source.span_reader()))(span))  # as a worker reads it
        # After the highest id handed, as the run loop asks (a page of none in a run of lines set aside).
        after = max(ids[-1] if ids else after, aside[-1].audit_id if aside else after)


def walk(source: FileAuditSource, told: list[list[int]]) -> None:
    """Append each page's ids to ``told`` (``page_ids`` for a span source) until a page raises."""
    after = 0
    while True:
        if isinstance(source, FileSpanSource):
            ids = list(source.page_ids(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=20))
        else:
            ids = [row.id for row in source.page(TENANT, SCOPE, after_id=after, cutoff=EPOCH, limit=20)]
        told.append(ids)
        after = ids[-1]


class TestTheSameAsPages:
    @pytest.mark.parametrize(("limit", "page_bytes"), [(1, 1 << 25), (7, 1 << 25), (500, 1 << 25), (50, 600)])
    def test_page_ids_and_the_rows_read_back_are_the_pages_and_their_rows_set_aside(
        self, tmp_path: Path, limit: int, page_bytes: int
    ) -> None:
        """Over a hostile file, each page's ids and the outcomes set aside beside it are ``page``'s,
        and the rows read back from each page's byte range are ``page``'s rows, whatever the page
        size or byte budget."""
        path = write(tmp_path / "audits.jsonl", hostile_lines())
        options: dict[str, Any] = {"max_record_bytes": CAP, "page_bytes": page_bytes}
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), **options) as plain:
            expected, rows = by_page(plain, limit)
        with FileSpanSource(path, TENANT, checked=CheckedRows(path), **options) as spans:
            got, read = by_span(spans, limit)
        assert got == expected
        assert read == rows
        reasons = {
            outcome.reason for _, aside in expected for outcome in aside if isinstance(outcome, Failed)
        }
        assert reasons == {"duplicate_audit_id", "invalid_audit_row"}
        assert sum(len(aside) for _, aside in expected) > 30

    def test_an_id_out_of_order_stops_page_ids_where_it_stops_pages(self, tmp_path: Path) -> None:
        """An id below the one before it raises ``AuditOrderError`` naming its line, from the page
        that reaches it, after the pages before it were told."""
        lines = hostile_lines()
        lines.insert(200, json.dumps({**corpus_docs()[0], "tenant": TENANT, "id": 2}).encode())
        path = write(tmp_path / "audits.jsonl", lines)
        told: dict[str, list[list[int]]] = {"pages": [], "spans": []}
        errors = []
        for kind, source in (
            ("pages", FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)),
            ("spans", FileSpanSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP)),
        ):
            with source, pytest.raises(AuditOrderError) as raised:
                walk(source, told[kind])
            errors.append(str(raised.value))
        assert told["spans"] == told["pages"]
        assert errors[0] == errors[1]
        assert "line 201" in errors[0]


class TestTheReader:
    def test_a_span_whose_lines_changed_is_refused_not_read_as_other_rows(self, tmp_path: Path) -> None:
        """A page's range that no longer holds its ids (the file was rewritten after the runner read
        it) raises ``FileChangedWhileRead``: no other row is handed over in their place, and the
        dry run's note asks for a new ``--out``."""
        path = write(tmp_path / "audits.jsonl", hostile_lines())
        with FileSpanSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP) as source:
            ids = source.page_ids(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=10)
            span = PageSpan(TENANT, SCOPE, EPOCH, tuple(ids), source.page_extent())
        assert len(FileSpanReader(str(path), TENANT, CAP)(span)) == 10
        moved = PageSpan(TENANT, SCOPE, EPOCH, (*ids[:-1], ids[-1] + 500_000), span.extent)
        with pytest.raises(FileChangedWhileRead, match="changed while the run read it"):
            FileSpanReader(str(path), TENANT, CAP)(moved)

    def test_page_ids_after_a_page_reads_on_with_the_same_rows_and_where_they_lie(
        self, tmp_path: Path
    ) -> None:
        """A page read first (its reader knows no line's place) and then ``page_ids``: the next
        page's ids and rows are those ``page`` gives, read back from where ``page_extent`` says."""
        path = write(tmp_path / "audits.jsonl", hostile_lines())
        with FileAuditSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP) as plain:
            first = plain.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=10)
            second = plain.page(TENANT, SCOPE, after_id=first[-1].id, cutoff=EPOCH, limit=10)
        with FileSpanSource(path, TENANT, checked=CheckedRows(path), max_record_bytes=CAP) as source:
            assert source.page(TENANT, SCOPE, after_id=0, cutoff=EPOCH, limit=10) == first
            ids = source.page_ids(TENANT, SCOPE, after_id=first[-1].id, cutoff=EPOCH, limit=10)
            span = PageSpan(TENANT, SCOPE, EPOCH, tuple(ids), source.page_extent())
        assert list(ids) == [row.id for row in second]
        assert FileSpanReader(str(path), TENANT, CAP)(span) == list(second)

    def test_a_csv_export_is_refused(self, tmp_path: Path) -> None:
        """A CSV record may span lines: its pages are not cut by bytes."""
        with pytest.raises(ValueError, match="JSONL file only"):
            FileSpanSource(tmp_path / "audits.csv", TENANT)


class TestARunWithWorkers:
    def test_two_workers_reading_byte_ranges_write_what_one_process_writes(self, tmp_path: Path) -> None:
        """A dry run over the hostile file (five pages): with a pool whose workers read their pages'
        byte ranges, the outcomes (in order), the job's counts and the bytes written are one
        process's, the rows set aside included."""
        audits = write(tmp_path / "audits.jsonl", hostile_lines())

        def source(workers: int, checked: CheckedRows) -> FileAuditSource:
            kind = FileSpanSource if workers > 1 else FileAuditSource
            return kind(audits, TENANT, checked=checked, max_record_bytes=CAP)

        results = dry_runs(tmp_path, audits, TENANT, source)
        assert results[2] == results[1]
        _, tally, written = results[1]
        assert sum(tally.failed.values()) > 30
        assert written.count(b"\n") == tally.migrated > 1000
