"""FileAuditSource: keyset pages over an id-ordered export file, answered as the SQL query would."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from test_files_audits import TENANTS, TEXT_AUDITS, corpus_lines, write_lines, write_psql_csv

from crm_audit_adapters.files import (
    AuditOrderError,
    CheckedRows,
    FileAuditSource,
    FileFormatError,
    read_audit_rows,
)
from crm_audit_transform.config import load_default_config
from crm_audit_transform.testing import InMemoryAuditSource

SCOPE = tuple(load_default_config().scope)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def all_pages(
    source: FileAuditSource | InMemoryAuditSource, tenant: str, cutoff: dt.datetime, limit: int
) -> list[list[int]]:
    pages, after = [], 0
    while rows := source.page(tenant, SCOPE, after_id=after, cutoff=cutoff, limit=limit):
        pages.append([row.id for row in rows])
        after = rows[-1].id
    return pages


def fate_of(path: Path, max_record_bytes: int) -> tuple[object, ...]:
    """What a read of every page makes of the file: its pages and outcomes, or where it stopped."""
    checked = CheckedRows(path)
    try:
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=max_record_bytes) as source:
            pages = all_pages(source, "acme", EPOCH, 10)
    except FileFormatError as stop:
        return ("stopped", stop.line, stop.audit_id)
    return ("read", pages, [(o.audit_id, o.reason) for o in checked.outcomes])


class TestAgainstTheInMemorySource:
    @pytest.mark.parametrize("tenant", TENANTS)
    def test_bounds_and_every_page_equal_the_in_memory_source(self, tenant: str) -> None:
        """Scope bounds and the keyset pages of each corpus tenant match InMemoryAuditSource's."""
        reference = InMemoryAuditSource(read_audit_rows(TEXT_AUDITS, tenant))
        with FileAuditSource(TEXT_AUDITS, tenant) as source:
            assert source.scope_bounds(tenant, SCOPE, None) == reference.scope_bounds(tenant, SCOPE, None)
            assert all_pages(source, tenant, EPOCH, 37) == all_pages(reference, tenant, EPOCH, 37)
            rows = source.page(tenant, SCOPE, after_id=0, cutoff=EPOCH, limit=5)
            assert rows == reference.page(tenant, SCOPE, after_id=0, cutoff=EPOCH, limit=5)

    def test_a_cutoff_filters_bounds_and_pages_like_the_query(self) -> None:
        """created_at >= cutoff applies to bounds and pages alike."""
        reference = InMemoryAuditSource(read_audit_rows(TEXT_AUDITS, "globex"))
        rows = list(read_audit_rows(TEXT_AUDITS, "globex"))
        cutoff = sorted(row.created_at for row in rows)[len(rows) // 2]
        with FileAuditSource(TEXT_AUDITS, "globex") as source:
            assert source.scope_bounds("globex", SCOPE, cutoff) == reference.scope_bounds(
                "globex", SCOPE, cutoff
            )
            assert all_pages(source, "globex", cutoff, 50) == all_pages(reference, "globex", cutoff, 50)

    def test_a_psql_csv_export_pages_like_the_jsonl(self, tmp_path: Path) -> None:
        """The same tenant exported as psql CSV gives the same pages."""
        path = tmp_path / "acme.csv"
        write_psql_csv(path, read_audit_rows(TEXT_AUDITS, "acme"))
        with FileAuditSource(path, "acme") as csv_source, FileAuditSource(TEXT_AUDITS, "acme") as jsonl:
            assert all_pages(csv_source, "acme", EPOCH, 100) == all_pages(jsonl, "acme", EPOCH, 100)

    def test_a_cursor_behind_the_read_position_reopens_the_file(self) -> None:
        """A page after an earlier id (a resume) starts over and still answers exactly."""
        reference = InMemoryAuditSource(read_audit_rows(TEXT_AUDITS, "acme"))
        with FileAuditSource(TEXT_AUDITS, "acme") as source:
            source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=400)
            again = source.page("acme", SCOPE, after_id=100, cutoff=EPOCH, limit=10)
            assert again == reference.page("acme", SCOPE, after_id=100, cutoff=EPOCH, limit=10)
            skip = source.page("acme", SCOPE, after_id=700, cutoff=EPOCH, limit=10)
            assert skip == reference.page("acme", SCOPE, after_id=700, cutoff=EPOCH, limit=10)

    def test_audit_by_id_finds_any_row_and_nothing_else(self) -> None:
        """audit_by_id returns the row of that id, None for a missing id or another tenant."""
        with FileAuditSource(TEXT_AUDITS, "acme") as source:
            expected = next(row for row in read_audit_rows(TEXT_AUDITS, "acme") if row.id == 42)
            assert source.audit_by_id("acme", 42) == expected
            assert source.audit_by_id("acme", 10**9) is None
            assert source.audit_by_id("globex", 42) is None

    def test_another_tenant_has_no_rows_here(self) -> None:
        """The source serves its own tenant only."""
        with FileAuditSource(TEXT_AUDITS, "acme") as source:
            assert source.scope_bounds("globex", SCOPE, None) is None
            assert source.page("globex", SCOPE, after_id=0, cutoff=EPOCH, limit=10) == ()


class TestPageBytes:
    def test_pages_end_at_the_byte_budget_and_every_row_comes_once(self) -> None:
        """With a 2 KB budget a page ends after the row that reaches it: more, shorter pages, the
        same rows in the same order as pages of 500."""
        with (
            FileAuditSource(TEXT_AUDITS, "acme", page_bytes=2_000) as small,
            FileAuditSource(TEXT_AUDITS, "acme") as plain,
        ):
            short = all_pages(small, "acme", EPOCH, 500)
            whole = all_pages(plain, "acme", EPOCH, 500)
        assert len(short) > 10 * len(whole)
        assert [i for page in short for i in page] == [i for page in whole for i in page]

    def test_a_page_after_the_end_is_empty_without_reading_the_file_again(self, tmp_path: Path) -> None:
        """Once read to its end, asking past the last id answers at once: the run's closing call does
        not reread the export (a line appended since is not seen either)."""
        lines = [json.dumps({**line, "id": n}) for n, line in enumerate(corpus_lines(TEXT_AUDITS)[:3], 1)]
        path = write_lines(tmp_path / "audits.jsonl", *lines)
        with FileAuditSource(path, "acme") as source:
            assert len(source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=10)) == 3
            with path.open("a") as more:
                more.write("not json\n")  # a reread would raise on it
            assert source.page("acme", SCOPE, after_id=3, cutoff=EPOCH, limit=10) == ()
            assert [r.id for r in source.page("acme", SCOPE, after_id=1, cutoff=EPOCH, limit=1)] == [2]

    def test_a_line_longer_than_the_cap_stops_the_read_naming_it(self, tmp_path: Path) -> None:
        """A JSONL line past max_record_bytes is not read whole: FileFormatError (BAD_INPUT) names it,
        as a psql CSV record past the cap does."""
        first, second = corpus_lines(TEXT_AUDITS)[:2]
        big = json.dumps({**second, "comment": "x" * 5_000})
        path = write_lines(tmp_path / "audits.jsonl", json.dumps(first), big)
        with (
            FileAuditSource(path, "acme", max_record_bytes=4_096) as source,
            pytest.raises(FileFormatError, match="line 2: line longer than 4096 bytes"),
        ):
            source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=10)


class TestOrder:
    def lines(self, *ids: int) -> list[str]:
        first = corpus_lines(TEXT_AUDITS)[0]
        return [json.dumps({**first, "id": audit_id}) for audit_id in ids]

    @pytest.mark.parametrize(("ids", "word"), [((1, 3, 2), "comes after"), ((1, 2, 2), "repeats")])
    def test_an_id_out_of_order_or_repeated_is_refused_naming_its_line(
        self, tmp_path: Path, ids: tuple[int, ...], word: str
    ) -> None:
        """Ids must ascend strictly: the error names the line, the id and the id before it."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(*ids))
        with FileAuditSource(path, "acme") as source, pytest.raises(AuditOrderError) as caught:
            source.scope_bounds("acme", SCOPE, None)
        assert caught.value.line == 3
        assert caught.value.audit_id == ids[2]
        assert word in str(caught.value)
        assert isinstance(caught.value, FileFormatError)

    def test_pages_stop_at_an_out_of_order_id_too(self, tmp_path: Path) -> None:
        """The check runs while paging, so a file changed after its bounds were read is still refused."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(5, 6, 4))
        with FileAuditSource(path, "acme") as source:
            assert [r.id for r in source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=2)] == [5, 6]
            with pytest.raises(AuditOrderError):
                source.page("acme", SCOPE, after_id=6, cutoff=EPOCH, limit=2)

    def test_rows_of_other_tenants_do_not_count_for_the_order(self) -> None:
        """A multi-tenant JSONL needs each tenant's ids ascending, not the whole file's."""
        with FileAuditSource(TEXT_AUDITS, "globex") as source:
            bounds = source.scope_bounds("globex", SCOPE, None)
        assert bounds is not None
        assert bounds.count > 0

    def test_a_page_reads_only_as_far_as_it_needs(self, tmp_path: Path) -> None:
        """Streaming: a broken line past the first page is not reached by that page."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(1, 2, 3), "not json")
        with FileAuditSource(path, "acme") as source:
            assert len(source.page("acme", SCOPE, after_id=0, cutoff=EPOCH, limit=2)) == 2
            with pytest.raises(FileFormatError, match="line 4"):
                source.page("acme", SCOPE, after_id=2, cutoff=EPOCH, limit=2)

    def test_an_unknown_suffix_is_refused_when_the_source_is_made(self, tmp_path: Path) -> None:
        """A file whose format cannot be told fails at construction, not at the first page."""
        with pytest.raises(ValueError, match="file_format"):
            FileAuditSource(tmp_path / "audits.txt", "acme")


class TestCheckedRows:
    def lines(self, *ids: int) -> list[str]:
        first = corpus_lines(TEXT_AUDITS)[0]
        return [json.dumps({**first, "id": audit_id}) for audit_id in ids]

    def test_a_repeated_id_is_reported_once_a_read_and_only_past_the_cursor(self, tmp_path: Path) -> None:
        """With CheckedRows a repeat is its row's duplicate_audit_id, once a read of the pages. A read
        from a cursor behind what was handed (a resume) reports again the repeats past that cursor,
        which a resume counts (those handed before may not have been), and none at or below it."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(1, 2, 2, 3))
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked) as source:
            assert source.scope_bounds("acme", SCOPE, None) == source.scope_bounds("acme", SCOPE, None)
            assert checked.outcomes == []  # the bounds pass reports nothing: the pages do
            first = all_pages(source, "acme", EPOCH, 2)
            [repeat] = checked.take()
            again = all_pages(source, "acme", EPOCH, 2)
            [reported_again] = checked.take()
            assert [row.id for row in source.page("acme", SCOPE, after_id=2, cutoff=EPOCH, limit=2)] == [3]
            assert checked.take() == []  # read again after id 2: its repeat lies at the cursor
            assert [row.id for row in source.page("acme", SCOPE, after_id=1, cutoff=EPOCH, limit=1)] == [2]
            assert checked.take() == []  # the repeat comes after its row, with the next page
        assert first == again == [[1, 2], [3]]
        assert reported_again == repeat
        assert (repeat.audit_id, repeat.reason) == (2, "duplicate_audit_id")
        assert "row 3 repeats audit id 2" in repeat.detail

    def test_a_line_with_a_readable_id_that_cannot_be_a_row_is_its_failure(self, tmp_path: Path) -> None:
        """With CheckedRows an unbuildable line with an id is invalid_audit_row; the others are paged."""
        good = self.lines(1, 3)
        bad = json.dumps({**json.loads(good[0]), "id": 2, "action": None})
        path = write_lines(tmp_path / "audits.jsonl", good[0], bad, good[1])
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked) as source:
            assert all_pages(source, "acme", EPOCH, 10) == [[1, 3]]
        [failed] = checked.outcomes
        assert (failed.audit_id, failed.reason) == (2, "invalid_audit_row")

    def unreadable(self, audit_id: int) -> str:
        return json.dumps({**json.loads(self.lines(1)[0]), "id": audit_id, "action": None})

    def test_an_unreadable_line_repeating_the_id_before_it_is_a_repeat_not_one_more_audit(
        self, tmp_path: Path
    ) -> None:
        """An unbuildable line naming the id of the row before it was counted as an audit of its
        own (invalid_audit_row) beside the row already used: 4 outcomes for 3 audits. It is that
        id's repeat (duplicate_audit_id, its own fault named), as a readable repeat is."""
        good = self.lines(1, 2, 3)
        path = write_lines(tmp_path / "audits.jsonl", good[0], good[1], self.unreadable(2), good[2])
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked) as source:
            assert all_pages(source, "acme", EPOCH, 10) == [[1, 2, 3]]
        [repeat] = checked.outcomes
        assert (repeat.audit_id, repeat.reason) == (2, "duplicate_audit_id")
        assert "line 3" in repeat.detail
        assert "an id's first line is the one read" in repeat.detail

    def test_a_readable_row_after_an_unreadable_line_with_its_id_is_the_repeat(self, tmp_path: Path) -> None:
        """The first line of an id is the one used, readable or not: the row after it is a repeat,
        so the id is one failure and one repeat, never a failure and a migrated row."""
        good = self.lines(1, 2, 3)
        path = write_lines(tmp_path / "audits.jsonl", good[0], self.unreadable(2), good[1], good[2])
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked) as source:
            assert all_pages(source, "acme", EPOCH, 10) == [[1, 3]]
        assert [(o.audit_id, o.reason) for o in checked.outcomes] == [
            (2, "invalid_audit_row"),
            (2, "duplicate_audit_id"),
        ]

    def test_an_unreadable_line_whose_id_comes_before_the_last_stops_the_read(self, tmp_path: Path) -> None:
        """An unbuildable line with a smaller id passed the order check and was counted as one more
        audit: it is out of order like a row, and the read stops (AuditOrderError) naming its line."""
        good = self.lines(5, 6, 7)
        path = write_lines(tmp_path / "audits.jsonl", good[0], good[1], self.unreadable(1), good[2])
        checked = CheckedRows(path)
        with (
            FileAuditSource(path, "acme", checked=checked) as source,
            pytest.raises(AuditOrderError) as caught,
        ):
            all_pages(source, "acme", EPOCH, 10)
        assert (caught.value.line, caught.value.audit_id) == (3, 1)
        assert "comes after id 6" in str(caught.value)
        assert checked.outcomes == []

    @pytest.mark.parametrize("audit_id", [2**63, -(2**63) - 1])
    def test_an_id_outside_bigint_stops_the_read(self, tmp_path: Path, audit_id: int) -> None:
        """No audits table holds an id outside bigint (audited's audits.id): it is no row's failure
        but the file's, and the read stops naming the line (the dry run wrote it as an external_id
        that /migrate refuses and verify calls a stray)."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(audit_id, 1))
        checked = CheckedRows(path)
        with (
            FileAuditSource(path, "acme", checked=checked) as source,
            pytest.raises(FileFormatError) as caught,
        ):
            all_pages(source, "acme", EPOCH, 10)
        assert caught.value.line == 1
        assert caught.value.audit_id is None
        assert "outside bigint" in str(caught.value)

    def test_a_line_past_the_cap_whose_head_names_its_id_is_its_rows_failure(self, tmp_path: Path) -> None:
        """A line longer than max_record_bytes (a value written with \\u escapes: 6 bytes a character)
        stopped the whole dry run. It is read on, never held: its row fails (invalid_audit_row) when
        its first bytes name its id, as a PostgreSQL row past the loader's limits fails alone; another
        tenant's long line is passed over; the other rows are paged."""
        good = self.lines(1, 4)
        escaped = "\\u00e9" * 2_000  # 12,000 bytes of JSON for 2,000 characters
        long_line = '{"tenant": "acme", "id": 2, "audited_changes": "' + escaped + '"}'
        other = '{"tenant": "globex", "id": 3, "audited_changes": "' + escaped + '"}'
        path = write_lines(tmp_path / "audits.jsonl", good[0], long_line, other, good[1])
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=4_096) as source:
            assert all_pages(source, "acme", EPOCH, 10) == [[1, 4]]
        [failed] = checked.outcomes
        assert (failed.audit_id, failed.reason) == (2, "invalid_audit_row")
        assert "line 2: line longer than 4096 bytes" in failed.detail

    def test_a_line_past_the_cap_whose_id_or_tenant_follows_its_long_value_is_still_counted(
        self, tmp_path: Path
    ) -> None:
        """The line is read on for its tenant and id wherever they lie: a row of this tenant whose id
        follows its long value is its row's failure, another tenant's line whose tenant follows it is
        passed over (both stopped the dry run when only the line's first MiB was read)."""
        long = '"' + "x" * 5_000 + '"'
        late_id = '{"tenant": "acme", "audited_changes": ' + long + ', "id": 2}'
        late_tenant = '{"id": 3, "audited_changes": ' + long + ', "tenant": "globex"}'
        ours = '{"id": 4, "audited_changes": ' + long + ', "tenant": "acme"}'
        path = write_lines(
            tmp_path / "audits.jsonl", self.lines(1)[0], late_id, late_tenant, ours, self.lines(5)[0]
        )
        checked = CheckedRows(path)
        with FileAuditSource(path, "acme", checked=checked, max_record_bytes=4_096) as source:
            assert all_pages(source, "acme", EPOCH, 10) == [[1, 5]]
        assert [(o.audit_id, o.reason) for o in checked.outcomes] == [
            (2, "invalid_audit_row"),
            (4, "invalid_audit_row"),
        ]

    def test_a_line_past_the_cap_with_no_id_stops_the_read(self, tmp_path: Path) -> None:
        """Its row cannot be named, so it cannot be counted: the read stops (BAD_INPUT), as for any line
        with no readable id; so does a long line that is not one JSON object."""
        no_id = '{"tenant": "acme", "audited_changes": "' + "x" * 5_000 + '", "id": "2"}'
        broken = '{"tenant": "acme", "id": 2, "audited_changes": "' + "x" * 5_000
        for line, why in ((no_id, "no integer id"), (broken, "not one JSON object")):
            path = write_lines(tmp_path / "audits.jsonl", self.lines(1)[0], line)
            with (
                FileAuditSource(path, "acme", checked=CheckedRows(path), max_record_bytes=4_096) as source,
                pytest.raises(FileFormatError, match=f"line 2: line longer than 4096 bytes.*{why}"),
            ):
                all_pages(source, "acme", EPOCH, 10)

    @pytest.mark.parametrize(
        ("members", "name", "fate"),
        [
            ({"tenant": "acme", "id": 2}, True, ("read", [[1, 3]], [(2, "invalid_audit_row")])),
            ({"tenant": "globex", "id": 2}, True, ("read", [[1, 3]], [])),
            ({"id": 2}, True, ("stopped", 2, None)),
            ({"tenant": "ac\udcffme", "id": 2}, False, ("stopped", 2, None)),
        ],
        ids=["ours", "another-tenants", "no-tenant", "tenant-not-utf8"],
    )
    def test_a_member_not_utf8_fares_alike_in_a_long_line_and_a_short_one(
        self, tmp_path: Path, members: dict[str, object], name: bool, fate: tuple[object, ...]
    ) -> None:
        """A name that is not UTF-8 may be any column: in a row of this tenant it is the row's failure,
        another tenant's line is passed over, and with no tenant the read stops, as it does at a
        tenant not UTF-8. A line past ``max_record_bytes`` stopped the read on any such name (its scan
        took the line for no JSON object), and passed over a tenant not UTF-8 as another tenant's,
        uncounted."""
        pad = {"comment": "x" * 5_000}
        line = json.dumps({**members, **pad}, ensure_ascii=False).encode("utf-8", "surrogateescape")
        if name:
            line = line[:-1] + b', "n\xe4me": 1}'  # Latin-1
        path = write_lines(tmp_path / "audits.jsonl", self.lines(1)[0], line, self.lines(3)[0])
        assert fate_of(path, 1 << 20) == fate  # short enough to hold
        assert fate_of(path, 4_096) == fate  # read on in blocks for its tenant and id

    @pytest.mark.parametrize("audit_id", [2**63, -(2**63) - 1])
    def test_a_long_line_whose_id_is_outside_bigint_stops_the_read(
        self, tmp_path: Path, audit_id: int
    ) -> None:
        """As a short line's: no audits table holds it, so it is no row's failure (it was that row's)."""
        line = json.dumps({"tenant": "acme", "id": audit_id, "comment": "x" * 5_000})
        path = write_lines(tmp_path / "audits.jsonl", self.lines(1)[0], line)
        assert fate_of(path, 1 << 20) == fate_of(path, 4_096) == ("stopped", 2, None)

    def test_a_long_first_line_after_a_byte_order_mark_is_its_rows_failure(self, tmp_path: Path) -> None:
        """A BOM is passed over at the file's start, as in a short first line: the long line is its
        row's failure and the read goes on (its scan took the BOM for no JSON object, and stopped)."""
        line = json.dumps({"tenant": "acme", "id": 1, "comment": "x" * 5_000}).encode()
        path = write_lines(tmp_path / "audits.jsonl", b"\xef\xbb\xbf" + line, self.lines(3)[0])
        assert fate_of(path, 4_096) == ("read", [[3]], [(1, "invalid_audit_row")])


class TestScopeEnds:
    def lines(self, *ids: int) -> list[str]:
        first = corpus_lines(TEXT_AUDITS)[0]
        return [json.dumps({**first, "id": audit_id}) for audit_id in ids]

    @pytest.mark.parametrize("tenant", TENANTS)
    def test_the_ends_are_the_first_and_last_ids_of_the_bounds(self, tenant: str) -> None:
        """scope_ends gives scope_bounds' first and last in-scope ids, of this tenant only."""
        with FileAuditSource(TEXT_AUDITS, tenant) as source:
            bounds = source.scope_bounds(tenant, SCOPE, None)
            assert bounds is not None
            assert source.scope_ends(tenant, SCOPE) == (bounds.min_id, bounds.max_id)
            narrow = SCOPE[1:2]
            narrow_bounds = source.scope_bounds(tenant, narrow, None)
            expected = None if narrow_bounds is None else (narrow_bounds.min_id, narrow_bounds.max_id)
            assert source.scope_ends(tenant, narrow) == expected

    def test_the_ends_are_read_without_the_rows_between(self, tmp_path: Path) -> None:
        """A broken line between the ends is not read: scope_bounds reaches it, scope_ends does not."""
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(3, 4), "not json", *self.lines(9, 12), "")
        with FileAuditSource(path, "acme") as source:
            assert source.scope_ends("acme", SCOPE) == (3, 12)
            with pytest.raises(FileFormatError, match="line 3"):
                source.scope_bounds("acme", SCOPE, None)

    @pytest.mark.parametrize(
        "last",
        [
            "not json",
            '{"id": 20}',  # no tenant: only a forward read words the error
            "CREATED_AT_NOT_A_TIME",
        ],
    )
    def test_an_odd_last_line_leaves_the_ends_to_scope_bounds(self, tmp_path: Path, last: str) -> None:
        """A last line that is not a plain row of the file gives None: ask scope_bounds."""
        if last == "CREATED_AT_NOT_A_TIME":
            last = json.dumps({**corpus_lines(TEXT_AUDITS)[0], "id": 20, "created_at": "yesterday"})
        path = write_lines(tmp_path / "audits.jsonl", *self.lines(3, 4), last)
        with FileAuditSource(path, "acme") as source:
            assert source.scope_ends("acme", SCOPE) is None

    def test_a_csv_export_or_no_row_in_scope_gives_none(self, tmp_path: Path) -> None:
        """CSV records may span lines, so they are not read backwards; nothing in scope is None too."""
        path = tmp_path / "acme.csv"
        write_psql_csv(path, read_audit_rows(TEXT_AUDITS, "acme"))
        with FileAuditSource(path, "acme") as csv_source:
            assert csv_source.scope_ends("acme", SCOPE) is None
        with FileAuditSource(TEXT_AUDITS, "acme") as source:
            assert source.scope_ends("acme", ()) is None
            assert source.scope_ends("globex", SCOPE) is None

    def test_a_last_line_longer_than_a_block_is_read_whole(self, tmp_path: Path) -> None:
        """Lines are joined across the blocks read from the end, the first line of the file included."""
        first = corpus_lines(TEXT_AUDITS)[0]
        long = json.dumps({**first, "id": 8, "comment": "x" * 200_000})
        path = write_lines(
            tmp_path / "audits.jsonl", json.dumps({**first, "id": 2, "comment": "y" * 100_000}), long
        )
        with FileAuditSource(path, "acme") as source:
            assert source.scope_ends("acme", SCOPE) == (2, 8)
