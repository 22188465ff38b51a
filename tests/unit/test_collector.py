"""run_loop_collection: the collector's settings for a run's loop, restored when it ends."""

from __future__ import annotations

import gc
import weakref

import pytest

from crm_audit_adapters.collector import RUN_LOOP_FIRST_THRESHOLD, run_loop_collection


class _Cycle:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


class TestRunLoopCollection:
    def test_sets_the_first_threshold_and_freezes_what_exists(self) -> None:
        """Inside the block young passes start every RUN_LOOP_FIRST_THRESHOLD allocations, the rest
        of CPython's thresholds kept, and the objects made before it are frozen."""
        before = gc.get_threshold()
        with run_loop_collection():
            assert gc.get_threshold() == (RUN_LOOP_FIRST_THRESHOLD, *before[1:])
            assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == before

    def test_restores_the_settings_when_the_block_raises(self) -> None:
        """An error in the loop leaves the process's collector as it found it."""
        before, frozen = gc.get_threshold(), gc.get_freeze_count()
        seen: list[int] = []

        def loop() -> None:
            with run_loop_collection(50):
                seen.append(gc.get_threshold()[0])
                raise RuntimeError("the loop failed")

        with pytest.raises(RuntimeError):
            loop()
        assert seen == [50]
        assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)

    def test_cycles_made_inside_are_still_collected(self) -> None:
        """The collector still runs: a cycle made inside the block is freed by a collection."""
        with run_loop_collection():
            cycle = _Cycle()
            ref = weakref.ref(cycle)
            del cycle
            gc.collect()
            assert ref() is None

    def test_leaves_a_freeze_made_before_it(self) -> None:
        """Objects someone froze before the block stay frozen after it."""
        gc.freeze()
        try:
            frozen = gc.get_freeze_count()
            with run_loop_collection():
                pass
            assert gc.get_freeze_count() >= frozen
        finally:
            gc.unfreeze()
