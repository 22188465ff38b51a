"""AuditIdSet (verify's walked ids): a set of ints, in at most 8 bytes an id, a bit when dense."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_audit_transform.usecases import _id_set as id_set
from crm_audit_transform.usecases._id_set import AuditIdSet

_IDS = st.one_of(
    st.integers(-5, 5),
    st.integers(60_000, 200_000),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**63, 2**70),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_IDS, max_size=3000), max_size=5), st.lists(_IDS, max_size=200))
def test_it_is_the_set_of_the_ids_added(batches: list[list[int]], probes: list[int]) -> None:
    """Membership and size equal a set's, whatever the order, repeats and width of the ids."""
    ids, reference = AuditIdSet(), set[int]()
    for batch in batches:
        ids.update(batch)
        reference.update(batch)
    assert len(ids) == len(reference)
    for audit_id in [*reference, *probes]:
        assert (audit_id in ids) == (audit_id in reference)
    assert "1" not in ids
    assert True not in ids


def test_dense_blocks_become_bitmaps_with_their_ids_kept() -> None:
    """More than 16,384 ids added out of order, across blocks: every one is in, none other."""
    ids = AuditIdSet()
    wanted = list(range(200_000, 0, -3))
    for start in range(0, len(wanted), 500):
        ids.update(wanted[start : start + 500])
    assert len(ids) == len(wanted)
    assert all(audit_id in ids for audit_id in wanted)
    assert not any(audit_id in ids for audit_id in range(1, 200_000, 3))


def held_bytes(step: int, count: int) -> tuple[int, int]:
    """(bytes held after, peak bytes) of ``count`` ids ``step`` apart added a page of 500 at a time."""
    tracemalloc.start()
    try:
        ids = AuditIdSet()
        for start in range(0, count, 500):
            ids.update(1 + i * step for i in range(start, min(start + 500, count)))
        assert 1 in ids  # the last ids sorted in
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held, peak


def test_sparse_ids_cost_8_bytes_each_not_a_block() -> None:
    """Ids 65,536 apart (one a block) are held in about 8 bytes each: 10,000 such ids took 8 KiB
    each (80 MiB) when every block was a bitmap."""
    held, peak = held_bytes(1 << 16, 10_000)
    assert held < 10_000 * 10 + 16_384
    assert peak < 3 << 20


def test_dense_ids_cost_about_a_bit_each() -> None:
    """200,000 consecutive ids are four bitmaps of 8 KiB."""
    held, _ = held_bytes(1, 200_000)
    assert held < 4 * 8192 + 16_384


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_IDS, max_size=40), max_size=12), probes=st.lists(_IDS, max_size=50))
def test_ids_sorted_in_among_those_held_are_the_set_of_the_ids_added(
    batches: list[list[int]], probes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches merged into the ids already held, in any order, repeating held ids or their own
    (a merge every 8 ids, and at each look-up): the set of the ids added, each once."""
    monkeypatch.setattr(id_set, "_MERGE", 8)
    ids, reference = AuditIdSet(), set[int]()
    for batch in batches:
        ids.update(batch)
        reference.update(batch)
        assert len(ids) == len(reference)  # sorts the batch's last ids in
        for audit_id in [*batch, *probes]:
            assert (audit_id in ids) == (audit_id in reference)
