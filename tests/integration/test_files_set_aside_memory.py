"""Memory of a file source's set-aside rows: handed over a page at a time, never all held, and at
most ``HOLD_SET_ASIDE`` of them at once however many lie between two rows."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import json
import tracemalloc
from pathlib import Path

import pytest

from crm_audit_adapters.bootstrap import DryRunFiles, dry_run_service
from crm_audit_adapters.files import (
    AUDIT_COLUMNS,
    CheckedRows,
    FileAuditSource,
    FileFormatError,
    audit_source,
)
from crm_audit_adapters.files.audit_ranges import FileRangeSource, line_ranges, read_range
from crm_audit_adapters.files.audit_source import HOLD_SET_ASIDE
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform import reasons
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed, Outcome
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.usecases.pages import PageSpan, RangeRows
from support.corpus_account import company_sso_id
from support.corpus_world import CORPUS
from support.dry_runs import dry_runs

EXAMPLE = Path(__file__).parents[2] / "src/crm_audit_adapters/data/example/audits.jsonl"
SCOPE = tuple(load_default_config().scope)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def write_half_unreadable(path: Path, count: int) -> str:
    """``count`` example rows with ids 1..count, every second one without ``action``; the tenant."""
    rows = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
    with path.open("w") as out:
        for i in range(count):
            row = dict(rows[i % len(rows)], id=i + 1)
            if i % 2:
                del row["action"]
            out.write(json.dumps(row) + "\n")
    return str(rows[0]["tenant"])


def test_set_aside_outcomes_are_not_kept_once_taken(tmp_path: Path) -> None:
    """Paged as the run loop pages it (``take_set_aside`` after each page), a file of 8,000 rows
    half unreadable holds no set-aside outcome once taken: ``CheckedRows`` used to keep every one
    (~400 bytes each with its detail) for the whole run."""
    path = tmp_path / "audits.jsonl"
    tenant = write_half_unreadable(path, 8000)
    checked = CheckedRows(path)
    taken = 0
    with FileAuditSource(path, tenant, checked=checked) as source:
        after = 0
        tracemalloc.start()
        try:
            base = 0
            while True:
                rows = source.page(tenant, SCOPE, after_id=after, cutoff=EPOCH, limit=100)
                aside = source.take_set_aside()
                assert all(isinstance(o, Failed) and o.reason == reasons.INVALID_AUDIT_ROW for o in aside)
                taken += len(aside)
                del aside
                if not rows:
                    break
                after = rows[-1].id
                if not base:
                    base = tracemalloc.get_traced_memory()[0]  # after the first page: the reader's buffers
                del rows
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    assert taken == 4000
    assert held < 256 * 1024
    assert checked.outcomes == []


class Watched(CheckedRows):
    """``CheckedRows`` that remembers the most outcomes it held at once (not yet taken)."""

    __slots__ = ("most",)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.most = 0

    def on_error(self, error: FileFormatError) -> None:
        super().on_error(error)
        self.most = max(self.most, len(self.outcomes))

    def repeat(self, number: int, audit_id: int) -> None:
        super().repeat(number, audit_id)
        self.most = max(self.most, len(self.outcomes))

    def repeat_line(self, error: FileFormatError) -> None:
        super().repeat_line(error)
        self.most = max(self.most, len(self.outcomes))


UNREADABLE = 3 * HOLD_SET_ASIDE + 500
REPEATS = HOLD_SET_ASIDE + 200


def write_mostly_unreadable(path: Path) -> tuple[str, list[int], int]:
    """Lines of ids 1..``UNREADABLE`` that cannot become rows (no ``action``) but one row in their
    middle, then a row repeated ``REPEATS`` times; JSONL or psql CSV by ``path``'s suffix. The
    tenant, the rows' ids, the lines set aside."""
    example = json.loads(EXAMPLE.read_text().splitlines()[0])
    tenant = str(example["tenant"])
    middle, last = UNREADABLE // 2, UNREADABLE + 1
    records = []
    for audit_id in range(1, UNREADABLE + 1):
        record = dict(example, id=audit_id)
        if audit_id != middle:
            record["action"] = None
        records.append(record)
    records += [dict(example, id=last)] * (1 + REPEATS)
    if path.suffix == ".csv":
        columns = [column for column in AUDIT_COLUMNS if column != "tenant"]
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            for record in records:
                writer.writerow(["" if record[c] is None else record[c] for c in columns])
    else:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return tenant, [middle, last], UNREADABLE - 1 + REPEATS


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_run_of_lines_set_aside_is_handed_over_a_thousand_at_a_time(tmp_path: Path, suffix: str) -> None:
    """Thousands of lines set aside in a row (unreadable, or repeating an id): a page ends once
    ``HOLD_SET_ASIDE`` of them are held, with no row perhaps, and the next page, asked after the
    highest id handed, goes on with the same read; every line is handed over once, and the rows are
    found. The readers used to hand
    control back at a readable row only: all of them were held (about 0.3 KB each)."""
    path = tmp_path / f"audits{suffix}"
    tenant, ids, set_aside = write_mostly_unreadable(path)
    checked = Watched(path)
    found: list[int] = []
    taken: list[Outcome] = []
    empty = 0
    with FileAuditSource(path, tenant, checked=checked) as source:
        after = 0
        while True:
            rows = source.page(tenant, SCOPE, after_id=after, cutoff=EPOCH, limit=100)
            aside = source.take_set_aside()
            if not rows and not aside:
                break
            empty += not rows
            taken.extend(aside)
            found.extend(row.id for row in rows)
            # The next page is asked after the highest id handed, as the run loop asks it.
            after = max(rows[-1].id if rows else after, aside[-1].audit_id if aside else after)
    assert checked.most == HOLD_SET_ASIDE
    assert found == ids
    assert len(taken) == len({(o.audit_id, str(o.detail)) for o in taken}) == set_aside
    assert [o.audit_id for o in taken] == sorted(o.audit_id for o in taken)
    assert empty >= 3


def test_a_dry_run_holds_a_thousand_lines_set_aside_with_workers_or_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run over that file, in one process and with two workers reading byte ranges (whose
    runner merges what they tell): at most ``HOLD_SET_ASIDE`` outcomes held at once, and the same
    outcomes, counts and bytes written as one process that never pauses (the bound lifted)."""
    audits = tmp_path / "audits.jsonl"
    tenant, _, set_aside = write_mostly_unreadable(audits)
    watched: list[Watched] = []

    def checked(path: Path) -> CheckedRows:
        watched.append(Watched(path))
        return watched[-1]

    def source(workers: int, rows: CheckedRows) -> FileAuditSource:
        kind = FileRangeSource if workers > 1 else FileAuditSource
        return kind(audits, tenant, checked=rows)

    results = dry_runs(tmp_path, audits, tenant, source, checked=checked)
    assert [rows.most for rows in watched] == [HOLD_SET_ASIDE, HOLD_SET_ASIDE]
    monkeypatch.setattr(audit_source, "HOLD_SET_ASIDE", 10**9)
    unbounded = dry_runs(tmp_path, audits, tenant, source, checked=checked, workers=(1,))
    assert watched[-1].most == set_aside
    assert results[1] == results[2] == unbounded[1]
    _, tally, _ = results[1]
    assert sum(tally.failed.values()) == set_aside


def test_verify_goes_on_past_a_page_of_no_rows(tmp_path: Path) -> None:
    """``dry-run --verify`` walks the file as the run does: the pages of no rows, each with the
    lines set aside beside it, are not its end, and it counts every audit the dry run counted."""
    audits = tmp_path / "audits.jsonl"
    tenant, _, set_aside = write_mostly_unreadable(audits)

    def source(workers: int, rows: CheckedRows) -> FileAuditSource:
        return FileAuditSource(audits, tenant, checked=rows)

    [(_, tally, _)] = dry_runs(tmp_path, audits, tenant, source, workers=(1,)).values()
    files = DryRunFiles(
        audits, CORPUS / "users.jsonl", tmp_path / "contacts.jsonl", tmp_path / "sso.jsonl", None
    )
    company = company_sso_id(tenant)
    with FileAuditSource(audits, tenant, checked=CheckedRows(audits)) as read:
        verifier = dry_run_service(
            company,
            tenant,
            files,
            InMemoryActivityLogStore(),
            reader=JsonlMigratedLogReader(tmp_path / "logs1.jsonl"),
            source=read,
        )
        report = verifier.verify(company, tenant)
    assert report.audits == tally.processed == set_aside + 2


def test_a_ranges_report_is_freed_without_the_collector(tmp_path: Path) -> None:
    """A range's report (``read_range``) holds the errors of its lines set aside without their
    tracebacks, and an unreadable line's error holds no other exception: either held the reader's
    frames, and through them the report, a cycle only the collector frees. Under the run loop's
    collector settings (``collector``) that came rarely: a worker reading 200,000 unreadable lines
    grew to 150 MiB, and so did the runner taking its share of the ranges."""
    audits = tmp_path / "audits.jsonl"
    tenant, _, _ = write_mostly_unreadable(audits)
    (extent,) = line_ranges(audits, audits.stat().st_size)
    gc.collect()
    gc.disable()
    try:
        rows = read_range(audits, tenant, 1 << 20, PageSpan(tenant, SCOPE, EPOCH, (), extent))
        assert isinstance(rows, RangeRows)
        assert len(rows.ids.told.errors) == UNREADABLE - 1
        del rows
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < 100  # was 5 objects a line set aside: its error, two tracebacks, a frame


def test_the_page_after_the_files_end_reads_nothing(tmp_path: Path) -> None:
    """A page that read the file to its end is followed by one more after the highest id it handed
    (after lines set aside at the end, the run loop and verify ask again): that one is empty at
    once, even when rows out of the scope lie past the cursor, without reading the file again
    (here: deleted)."""
    example = json.loads(EXAMPLE.read_text().splitlines()[0])
    records = [dict(example, id=1), dict(example, id=2, auditable_type="Elsewhere")]
    records += [dict(example, id=n, action=None) for n in range(3, 6)]
    path = tmp_path / "audits.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    tenant = str(example["tenant"])
    with FileAuditSource(path, tenant, checked=CheckedRows(path)) as source:
        rows = source.page(tenant, SCOPE, after_id=0, cutoff=EPOCH, limit=10)
        assert [row.id for row in rows] == [1]
        assert [o.audit_id for o in source.take_set_aside()] == [3, 4, 5]
        path.unlink()
        # Asked after the highest id handed (5), as the run loop and verify ask.
        assert source.page(tenant, SCOPE, after_id=5, cutoff=EPOCH, limit=10) == ()
        assert source.take_set_aside() == []
