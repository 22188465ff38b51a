"""Verify's stray pass over in-memory ports: every copy of a stray id, and ids of ours under another tag."""

from __future__ import annotations

import random
import tracemalloc

import attrs
import pytest

from crm_audit_transform.domain import ActivityLog
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.usecases import RunSettings, VerifySettings, _verify_walk
from crm_audit_transform.usecases.verify import verify_account
from crm_audit_transform.verification import VerifyReport
from support.corpus_account import World

STRAY = "crm:acme:audit:99999999"


def migrated_world() -> World:
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    return world


def verify(world: World) -> VerifyReport:
    return verify_account(
        world.company, world.verify_ports(), world.transformer, settings=VerifySettings(page_size=200)
    )


def first_log(world: World) -> ActivityLog:
    return next(log for log in world.logs.logs if log.external_id)


class TestStrayPass:
    def test_a_stray_id_on_two_logs_is_a_duplicate_too(self) -> None:
        """Two logs of one stray id are two strays and one duplicate: the page pass never reads an id
        that names no walked audit, so before, the stray pass counted both and no duplicate."""
        world = migrated_world()
        twin = attrs.evolve(first_log(world), external_id=STRAY)
        world.logs = InMemoryActivityLogStore([*world.logs.logs, twin, twin])
        report = verify(world)
        assert (report.count("stray"), report.count("duplicate")) == (2, 1)
        assert [(f.external_id, f.detail) for f in report.findings["duplicate"].items] == [(STRAY, "2 logs")]

    def test_an_id_of_ours_under_another_tag_without_its_row_is_a_stray(self) -> None:
        """A log of another ``source_tag`` (or none) under one of our external ids that names no
        in-scope audit is reported stray, naming its tag: an id collision, left as it is (not ours to
        delete). Before, verify read only ``crm_migration`` logs there and reported the account clean."""
        world = migrated_world()
        foreign = attrs.evolve(first_log(world), external_id=STRAY, source_tag="other_tool")
        native = attrs.evolve(foreign, external_id="hubspot:12")  # not an id of ours: not reported
        world.logs = InMemoryActivityLogStore([*world.logs.logs, foreign, native])
        report = verify(world)
        assert report.outstanding == {"stray": 1}
        (item,) = report.findings["stray"].items
        assert (item.audit_id, item.external_id) == (99999999, STRAY)
        assert "'other_tool'" in item.detail
        assert not report.clean
        assert foreign in world.logs.logs


class TestStrayIdsHeld:
    """The stray ids that name no audit of the tenant are kept by their text's hash, not their text."""

    def test_a_hash_met_twice_is_a_duplicate_only_when_its_text_is(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With every text of one hash, two different ids of another tenant are two strays and no
        duplicate, and one id on three logs is one duplicate of 3: the second read counts the texts."""
        monkeypatch.setattr(_verify_walk, "hash", lambda text: 0, raising=False)
        world = migrated_world()
        log = first_log(world)
        others = [attrs.evolve(log, external_id=f"crm:other:audit:{n}") for n in (1, 2)]
        tripled = attrs.evolve(log, external_id="crm:other:audit:3")
        world.logs = InMemoryActivityLogStore([*world.logs.logs, *others, tripled, tripled, tripled])
        report = verify(world)
        assert (report.count("stray"), report.count("duplicate")) == (5, 1)
        assert [(f.audit_id, f.external_id, f.detail) for f in report.findings["duplicate"].items] == [
            (None, "crm:other:audit:3", "3 logs")
        ]

    def test_no_second_read_without_a_hash_met_twice(self) -> None:
        """Distinct ids are read once; an id of another tenant on two logs makes the second read."""
        seen = _verify_walk._Seen()
        for n in range(1000):
            seen.saw(f"crm:other:audit:{n}", None)
        assert not seen.candidates
        seen.saw("crm:other:audit:7", None)
        seen.confirm(["crm:other:audit:7", "crm:other:audit:8", "crm:other:audit:7"])
        assert seen.doubled == {"crm:other:audit:7": (None, 2)}

    def test_their_texts_are_not_held(self) -> None:
        """30,000 ids of another tenant hold at most 16 bytes each once met (their hashes, about 9
        bytes each); as text they held about 100 (benchmarks/stray_memory.py)."""
        ids = 30_000
        tracemalloc.start()
        try:
            seen = _verify_walk._Seen()
            before, _ = tracemalloc.get_traced_memory()
            for n in range(ids):
                seen.saw(f"crm:other:audit:{n}", None)
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (held - before) / ids < 16

    def test_the_hash_set_splits_its_buckets_and_keeps_every_hash(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With buckets of 2 on average, 5,000 hashes split the buckets four times; each is met
        again, none other is, and every bucket stays sorted within its share of the top bits."""
        monkeypatch.setattr(_verify_walk, "_BUCKET_IDS", 2)
        rng = random.Random(7)
        values = [rng.getrandbits(64) - 2**63 for _ in range(10_000)]  # signed, as ``hash`` gives
        held, other = values[:5000], values[5000:]
        hashes = _verify_walk._Hashes()
        assert not any(hashes.met_again(value) for value in held)
        assert len(hashes.buckets) == 1 << 12  # 256 doubled four times
        assert all(hashes.met_again(value) for value in held)
        assert not any(hashes.met_again(value) for value in other)
        for index, bucket in enumerate(hashes.buckets):
            assert list(bucket) == sorted(bucket)
            assert all(value >> hashes.shift == index for value in bucket)
