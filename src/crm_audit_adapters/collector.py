"""The garbage collector's settings for a run loop: fewer passes over objects that die anyway.

A run holds a page of rows (500) and everything made from them — loaded changes, outcomes, logs —
until the page is written: some ten thousand container objects at a time. CPython's collector
starts a young-generation pass every 700 containers allocated, so a page's objects are traversed
there, survive (the page still holds them), are promoted, and meet a full pass over the whole heap
(every module, function and class loaded at start) about once every 9,000 rows; the page frees
them by reference counting soon after. The passes find little to free (3,456 objects in the 423
passes of a 20,000-row run): nearly all of their work is traversing live values.

``run_loop_collection`` moves what exists before the loop (the imports, the setup) out of the
collector's reach (``gc.freeze``) and starts a young pass every ``first_threshold`` allocations
instead of 700, so that a page's objects mostly die before a pass meets them. Cyclic garbage is
still collected, only later; the thresholds and the frozen set are restored on exit. It changes
process-wide settings, so only a command's entry point (one run per process) uses it, and a
Celery task around its run. A ``--workers`` page worker, a process that only does a run's work,
takes the same settings for its whole life (``collect_as_run_loop``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["RUN_LOOP_FIRST_THRESHOLD", "collect_as_run_loop", "run_loop_collection"]

RUN_LOOP_FIRST_THRESHOLD: Final = 10_000
"""Allocations between young-generation passes during a run (CPython's default: 700)."""


@contextmanager
def run_loop_collection(first_threshold: int = RUN_LOOP_FIRST_THRESHOLD) -> Iterator[None]:
    """Within the block: objects made before it frozen, young passes every ``first_threshold``."""
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(first_threshold, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen_before:  # someone else's freeze is theirs to undo
            gc.unfreeze()


def collect_as_run_loop(first_threshold: int = RUN_LOOP_FIRST_THRESHOLD) -> None:
    """``run_loop_collection``'s settings for the rest of this process's life, not restored: for a
    process that does nothing but a run loop's work (a ``--workers`` page worker)."""
    gc.freeze()
    gc.set_threshold(first_threshold, *gc.get_threshold()[1:])
