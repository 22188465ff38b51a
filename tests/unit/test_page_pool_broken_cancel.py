"""After a worker died, the run's end leaves the broken executor's futures to it: cancelling one raced
CPython 3.11's ``terminate_broken`` (``InvalidStateError`` in its thread)."""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

from crm_audit_adapters.page_pool.run_pages import pool_broke


def _done(exc: BaseException | None = None) -> Future[object]:
    future: Future[object] = Future()
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
    return future


def test_a_broken_pool_is_seen_on_any_page() -> None:
    pending: Future[object] = Future()
    pages = [
        SimpleNamespace(plan=_done(), result=pending),
        SimpleNamespace(plan=_done(), result=_done(BrokenProcessPool("x"))),
    ]
    assert pool_broke(pages)


def test_other_endings_are_not_a_broken_pool() -> None:
    cancelled: Future[object] = Future()
    cancelled.cancel()
    pages = [
        SimpleNamespace(plan=_done(), result=None),
        SimpleNamespace(plan=_done(ValueError("bad page")), result=cancelled),
        SimpleNamespace(plan=Future(), result=Future()),
    ]
    assert not pool_broke(pages)
