"""The page pool's last pages: handed out so that its processes end together (``RunPages.send``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, cast

import pytest

from crm_audit_adapters.page_pool.in_flight import Feed
from crm_audit_adapters.page_pool.run_pages import TAIL_PAGES, RunPages
from crm_audit_adapters.page_pool.worker_processes import WorkerProcesses
from crm_audit_transform.ports import AuditPageIds
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases.pages import PageSpan

DEPTH = 4


class _Processes:
    """One worker, up, whose pages are never done unless the test says so."""

    def __init__(self) -> None:
        self.submitted: list[Future[Any]] = []

    def usable(self, slot: int, run: int) -> bool:
        return True

    def tell(self, slot: int, message: tuple[Any, ...]) -> None:
        pass

    def submit(self, executor: object, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.submitted.append(future)
        return future


def _spans(count: int) -> list[PageSpan]:
    cutoff = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return [PageSpan("tenant_a", ("Contact",), cutoff, (page,), ()) for page in range(count)]


def _pages(spans: list[PageSpan], *, share: bool = True) -> tuple[RunPages, _Processes]:
    processes = _Processes()
    feed = Feed(spans, cast("AuditPageIds", object()))
    pages = RunPages(
        feed,
        cast("WorkerProcesses", processes),
        [cast("Any", object())],
        1,
        cast("Transformer", object()),
        lambda request: cast("Any", None),
        "company",
        whole=True,
        pages_per_worker=DEPTH,
        own_pages=DEPTH,
        share=share,
    )
    return pages, processes


class TestTheLastPages:
    def test_far_from_the_end_a_worker_is_handed_its_full_depth(self) -> None:
        pages, processes = _pages(_spans(4 * DEPTH))
        pages.send()
        assert len(processes.submitted) == DEPTH

    def test_near_the_end_a_worker_holds_only_tail_pages_not_yet_done(self) -> None:
        """Fails on the code before it: the worker was handed all three last pages, and the runner,
        with none left of its own, waited for them in the worker's queue."""
        pages, processes = _pages(_spans(3))
        pages.send()
        assert len(processes.submitted) == TAIL_PAGES
        taken = pages.feed.next()
        assert taken is not None
        assert taken[0] == TAIL_PAGES  # left for the runner, in order
        assert pages.feed.next() is None

    def test_a_runner_that_does_not_share_hands_every_page_to_its_workers(self) -> None:
        """Without sharing no one else takes the last pages: the worker gets its full depth."""
        pages, processes = _pages(_spans(3), share=False)
        pages.send()
        assert len(processes.submitted) == 3

    def test_a_page_done_makes_room_for_the_next_one(self) -> None:
        pages, processes = _pages(_spans(3))
        pages.send()
        processes.submitted[0].set_result((None, ()))
        pages.send()
        assert len(processes.submitted) == 3
        assert [page.seq for page in pages.inflight] == [0, 1, 2]


class TestTheFeedReadAhead:
    def test_pages_read_ahead_come_out_in_order(self) -> None:
        feed = Feed(_spans(5), cast("AuditPageIds", object()))
        assert not feed.ends_within(4)
        assert feed.ends_within(5)
        assert [feed.next()[0] for _ in range(5)] == [0, 1, 2, 3, 4]  # type: ignore[index]
        assert feed.next() is None

    def test_a_page_that_fails_drops_those_read_after_it(self) -> None:
        """One process never reads past a page whose rows could not be read: nor does the pool."""
        feed = Feed(_spans(5), cast("AuditPageIds", object()))
        feed.ends_within(4)
        taken = feed.next()
        assert taken is not None
        feed.fail(RuntimeError("rows unreadable"))
        assert feed.next() is None
        assert isinstance(feed.error, RuntimeError)

    def test_a_read_that_raises_ahead_keeps_the_pages_before_it(self) -> None:
        def pages() -> Any:
            yield from _spans(2)
            raise RuntimeError("ids unreadable")

        feed = Feed(pages(), cast("AuditPageIds", object()))
        assert feed.ends_within(4)
        assert [feed.next()[0] for _ in range(2)] == [0, 1]  # type: ignore[index]
        assert feed.next() is None
        with pytest.raises(RuntimeError, match="ids unreadable"):
            raise cast("Exception", feed.error)
