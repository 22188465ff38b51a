"""Verify names every missing row as ranges of audit ids: each range's rows missing, no log between."""

from __future__ import annotations

from crm_audit_adapters.cli.verify import summary_lines
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.transformer import audit_id_in
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, audit_rows

PREFIX = "crm:acme:audit:"


def migrated_world() -> tuple[World, list[int]]:
    """The acme account migrated, and its audit ids with a log, ascending."""
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    logged = sorted(
        audit_id
        for log in world.logs.logs
        if log.external_id and (audit_id := audit_id_in(log.external_id, PREFIX)) is not None
    )
    return world, logged


def without(world: World, audit_ids: set[int]) -> None:
    world.logs = InMemoryActivityLogStore(
        [log for log in world.logs.logs if audit_id_in(log.external_id or "", PREFIX) not in audit_ids]
    )


class TestMissingRanges:
    def test_each_run_of_missing_rows_is_one_range_across_pages(self) -> None:
        """Ten logged rows in a row lost (across a page's end, pages of 7) are one range from the
        first to the last, rows that skip between them included; a lone one is its own range; a row
        with a log ends a range. Before, the report named the first 10,000 missing ids, one by one."""
        world, logged = migrated_world()
        block, lone = logged[100:110], logged[300]
        walked_between = [row.id for row in audit_rows("acme") if block[0] < row.id < block[-1]]
        assert len(walked_between) > len(block) - 2  # rows without a log lie between: no end
        without(world, {*block, lone})
        report = world.verify(page_size=7)
        assert report.count("missing") == 11
        assert report.missing_ranges == ((block[0], block[-1], 10), (lone, lone, 1))
        assert report.missing_range_count == 2
        assert report.to_json()["missing_ranges"] == {
            "count": 2,
            "truncated": False,
            "items": [
                {"first": block[0], "last": block[-1], "rows": 10},
                {"first": lone, "last": lone, "rows": 1},
            ],
        }

    def test_a_row_with_a_log_between_ends_the_range(self) -> None:
        """Every other logged row lost: as many ranges as rows, each of one row."""
        world, logged = migrated_world()
        lost = logged[10:20:2]
        without(world, set(lost))
        report = world.verify()
        assert report.missing_ranges == tuple((audit_id, audit_id, 1) for audit_id in lost)

    def test_the_ranges_past_keep_are_counted_not_kept(self) -> None:
        """With ``keep`` 1, one range is kept (the first: extended to its last row), both counted."""
        world, logged = migrated_world()
        without(world, {*logged[5:8], logged[50]})
        report = world.verify(keep=1)
        assert report.missing_ranges == ((logged[5], logged[7], 3),)
        ranges = report.to_json()["missing_ranges"]
        assert (ranges["count"], ranges["truncated"]) == (2, True)

    def test_the_summary_shows_the_ranges(self) -> None:
        world, logged = migrated_world()
        without(world, {*logged[5:8], logged[50]})
        (line,) = [line for line in summary_lines(world.verify()) if "range" in line]
        assert line == (
            f"  missing in 2 ranges of audit ids, no log between (rows): "
            f"{logged[5]}–{logged[7]} (3), {logged[50]} (1)"
        )

    def test_a_clean_account_has_none(self) -> None:
        world, _ = migrated_world()
        report = world.verify()
        assert (report.missing_ranges, report.missing_range_count) == ((), 0)
        assert report.to_json()["missing_ranges"] == {"count": 0, "truncated": False, "items": []}
