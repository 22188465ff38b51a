"""Page pools for tests: a real ``ProcessPagePipeline``, and a recipe whose worker dies on a given row.

The worker processes import this module by name (``support.page_workers``), so what they run must
live here, not in a test module.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from crm_audit_adapters.page_pool import ProcessPagePipeline, TransformerRecipe
from crm_audit_transform.chain import RowDraft, RuleChain, Stage
from crm_audit_transform.config import MappingConfig, load_default_config
from crm_audit_transform.domain import AuditRow, Contact, CrmUser, UserId
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.transformer import PageResult, PreparedRow, Transformer
from crm_audit_transform.usecases.pages import PageSpan


def chain_killing_its_worker(mapping: MappingConfig) -> RuleChain:
    """A ``rule_chain`` for ``Runtime``: the default chain in the parent, SIGKILL in a worker process."""
    if multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return RuleChain.from_config(mapping)


@frozen
class KillsItsWorkerOnceForked:
    """A ``rule_chain`` for ``Runtime`` whose worker process is killed (SIGKILL) as it builds its
    rules, after touching ``forked``; in the runner, the default chain behind a first stage that
    waits for ``forked`` (up to ``bound_s``).

    Workers start in the background while a sharing runner transforms the first pages itself, so
    with ``chain_killing_its_worker`` a small account could end, exit 0, before its worker was
    even forked. Here the runner's first row waits for the worker to exist (and die): the pages
    left after it go to the dead worker, and the run ends ``WorkerLost``.

    ``kills=False`` gives the same chain, whose workers live: a job keeps the mark of the chain its
    trigger ran under (``Transformer.mapping_mark``), so the run that resumes it after the kill
    runs these stages too, without the kill."""

    forked: Path
    bound_s: float = 60.0
    kills: bool = True

    def __call__(self, mapping: MappingConfig) -> RuleChain:
        chain = RuleChain.from_config(mapping)
        if self.kills and multiprocessing.parent_process() is not None:
            self.forked.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return chain.inserting(Stage("await_worker", self._await), before=chain.names[0])

    def _await(self, _draft: RowDraft) -> None:
        deadline = time.monotonic() + self.bound_s
        while not self.forked.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


def page_pool(workers: int = 2, *, share: bool = True) -> ProcessPagePipeline:
    """A pool of ``workers`` processes with the default rules (as ``World`` has them), its workers
    up: a sharing runner would take the first pages itself while they start, and a test's small
    run could then end before any worker took a page."""
    pool = ProcessPagePipeline(workers, TransformerRecipe(load_default_config()), share=share)
    pool.start(wait=True)
    return pool


class _SlowTransformer(Transformer):
    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        super().__init__(load_default_config())
        self._seconds = seconds

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        time.sleep(self._seconds)
        return super().transform(prepared, ctx, company_sso_id=company_sso_id)


@frozen
class SlowWorker:
    """A recipe whose worker sleeps ``seconds`` before each page's rules, so the runner's process
    always finds the next page still on its worker, and takes pages itself."""

    seconds: float

    def __call__(self) -> Transformer:
        return _SlowTransformer(self.seconds)


class _SlowPreparing(Transformer):
    __slots__ = ("_seconds",)

    def __init__(self, seconds: float) -> None:
        super().__init__(load_default_config())
        self._seconds = seconds

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        time.sleep(self._seconds)
        return super().prepare(rows)


@frozen
class SlowToPrepare:
    """A recipe whose worker sleeps ``seconds`` before loading each page, so the pages sent to it
    queue in its executor (their futures pending) behind the one it loads."""

    seconds: float

    def __call__(self) -> Transformer:
        return _SlowPreparing(self.seconds)


class _DyingTransformer(Transformer):
    __slots__ = ("_audit_id", "_once")

    def __init__(self, audit_id: int, once: Path) -> None:
        super().__init__(load_default_config())
        self._audit_id = audit_id
        self._once = once

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        if any(item.row.id >= self._audit_id for item in prepared) and not self._once.exists():
            self._once.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or an operator would
        return super().transform(prepared, ctx, company_sso_id=company_sso_id)


@frozen
class DiesOnRow:
    """A recipe whose worker is killed (SIGKILL) transforming the first page it gets that holds an
    id ≥ ``audit_id`` (the runner's process may take the page holding ``audit_id`` itself), once:
    the file ``once`` records that it happened, so the worker that replaces it lives."""

    audit_id: int
    once: Path

    def __call__(self) -> Transformer:
        return _DyingTransformer(self.audit_id, self.once)


_LATER_PAGE_READ = threading.Event()
"""In a worker process: its span reader has read a page other than the first."""


def _wait_for(log: Path, text: str, *, times: int = 1, seconds: float = 10) -> None:
    """Wait until ``log`` holds ``text`` ``times`` times, or ``seconds`` passed (the test's order
    then shows that it did not come)."""
    deadline = time.monotonic() + seconds
    while (log.read_text() if log.exists() else "").count(text) < times and time.monotonic() <= deadline:
        time.sleep(0.01)


def _note(log: Path, line: str) -> None:
    with log.open("a") as out:
        out.write(line + "\n")


@frozen
class NotingSpanReads:
    """A ``ports.AuditPageIds`` over ``rows`` in memory whose span reader notes ``read <first id>``
    in ``log`` for each span it reads (in whichever process reads it)."""

    rows: tuple[AuditRow, ...]
    first_id: int
    log: Path

    def page_ids(self, *_: object, **__: object) -> Sequence[int]:  # pragma: no cover - spans given
        raise NotImplementedError

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        _note(self.log, f"read {span.ids[0]}")
        if span.ids[0] != self.first_id:
            _LATER_PAGE_READ.set()
        return tuple(row for row in self.rows if row.id in span.ids)

    def __call__(self, span: PageSpan) -> Sequence[AuditRow]:
        return self.span_rows(span)

    def span_reader(self) -> NotingSpanReads:
        return self


class _WaitingTransformer(Transformer):
    __slots__ = ("_first_id", "_log")

    def __init__(self, first_id: int, log: Path) -> None:
        super().__init__(load_default_config())
        self._first_id = first_id
        self._log = log

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        rows = tuple(rows)
        if rows and rows[0].id == self._first_id:
            _LATER_PAGE_READ.wait(timeout=10)  # a worker that reads ahead reads page 2 meanwhile
            _note(self._log, f"prepared {self._first_id}")
        return super().prepare(rows)


@frozen
class WaitsOnItsFirstPage:
    """A recipe whose worker, preparing the page that starts at ``first_id``, waits (10 s at most)
    until its span reader has read a later page, then notes ``prepared <first_id>`` in ``log``."""

    first_id: int
    log: Path

    def __call__(self) -> Transformer:
        return _WaitingTransformer(self.first_id, self.log)


class _WaitingForARead(Transformer):
    __slots__ = ("_first_id", "_log", "_read_id")

    def __init__(self, first_id: int, read_id: int, log: Path) -> None:
        super().__init__(load_default_config())
        self._first_id, self._read_id, self._log = first_id, read_id, log

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        rows = tuple(rows)
        if rows and rows[0].id == self._first_id:
            _wait_for(self._log, f"read {self._read_id}")
            _note(self._log, f"prepared {self._first_id}")
        return super().prepare(rows)


@frozen
class WaitsForARead:
    """A recipe whose worker, preparing the page that starts at ``first_id``, waits (10 s at most)
    until its span reader has noted ``read <read_id>`` in ``log`` (``NotingSpanReads``), then notes
    ``prepared <first_id>``: a page the worker was handed while it still held the first."""

    first_id: int
    read_id: int
    log: Path

    def __call__(self) -> Transformer:
        return _WaitingForARead(self.first_id, self.read_id, self.log)


class NotingTransformer(Transformer):
    """The runner's transformer (default rules) that notes ``runner prepared <first id>`` and
    ``runner transformed <first id>`` in ``log`` for each page it prepares and transforms itself."""

    __slots__ = ("_log",)

    def __init__(self, log: Path) -> None:
        super().__init__(load_default_config())
        self._log = log

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        rows = tuple(rows)
        if rows:
            _note(self._log, f"runner prepared {rows[0].id}")
        return super().prepare(rows)

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        if prepared:
            _note(self._log, f"runner transformed {prepared[0].row.id}")
        return super().transform(prepared, ctx, company_sso_id=company_sso_id)


class _WaitingForTheRunner(Transformer):
    __slots__ = ("_log",)

    def __init__(self, log: Path) -> None:
        super().__init__(load_default_config())
        self._log = log

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        _wait_for(self._log, "runner prepared")
        rows = tuple(rows)
        _note(self._log, f"worker prepared {rows[0].id if rows else None}")
        return super().prepare(rows)


@frozen
class WaitsForTheRunnersPage:
    """A recipe whose worker, before preparing any page, waits (10 s at most) until the runner has
    noted a page of its own in ``log`` (``NotingTransformer``), then notes its own."""

    log: Path

    def __call__(self) -> Transformer:
        return _WaitingForTheRunner(self.log)


class _TransformingAfterTheRunnersPages(Transformer):
    __slots__ = ("_log", "_pages", "_seconds", "_waited")

    def __init__(self, log: Path, pages: int, seconds: float) -> None:
        super().__init__(load_default_config())
        self._log, self._pages, self._seconds = log, pages, seconds
        self._waited = False

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        # Only the worker's first page waits: the tests read the events before its first
        # ``worker transformed``. Waiting on every page made a run bounded to fewer runner pages
        # than ``pages`` sit out the whole ``seconds`` once a page (18 s for 3 s).
        if not self._waited:
            self._waited = True
            _wait_for(self._log, "runner transformed", times=self._pages, seconds=self._seconds)
        _note(self._log, f"worker transformed {prepared[0].row.id if prepared else None}")
        return super().transform(prepared, ctx, company_sso_id=company_sso_id)


@frozen
class TransformsAfterTheRunnersPages:
    """A recipe whose worker, before the rules of its first page, waits until the runner has noted in
    ``log`` that it transformed ``pages`` pages of its own (``NotingTransformer``), or ``seconds``
    passed, then notes ``worker transformed``: the runner's own pages done while the head waits."""

    log: Path
    pages: int
    seconds: float

    def __call__(self) -> Transformer:
        return _TransformingAfterTheRunnersPages(self.log, self.pages, self.seconds)


class _FinishingAfterTheRunner(Transformer):
    __slots__ = ("_log", "_slow_id")

    def __init__(self, slow_id: int, log: Path) -> None:
        super().__init__(load_default_config())
        self._slow_id = slow_id
        self._log = log

    def prepare(self, rows: Iterable[AuditRow]) -> tuple[PreparedRow, ...]:
        rows = tuple(rows)
        if rows and rows[0].id == self._slow_id:
            time.sleep(0.5)  # the runner looks for this page's plan meanwhile, and finds none
        return super().prepare(rows)

    def transform(
        self, prepared: Sequence[PreparedRow], ctx: LookupContext, *, company_sso_id: str
    ) -> PageResult:
        _wait_for(self._log, "runner transformed")
        _note(self._log, f"worker transformed {prepared[0].row.id if prepared else None}")
        return super().transform(prepared, ctx, company_sso_id=company_sso_id)


@frozen
class FinishesAfterTheRunner:
    """A recipe whose worker prepares the page that starts at ``slow_id`` slowly (0.5 s), and
    before the rules of any page waits (10 s at most) until the runner has noted in ``log`` that
    it transformed a page of its own (``NotingTransformer``), then notes ``worker transformed``."""

    slow_id: int
    log: Path

    def __call__(self) -> Transformer:
        return _FinishingAfterTheRunner(self.slow_id, self.log)


class SpanReadFails(Exception):
    """The error ``FailingSpanReads`` raises (in whichever process reads the span)."""


@frozen
class FailingSpanReads:
    """A ``ports.AuditPageIds`` over ``rows`` in memory whose span reader raises ``SpanReadFails``
    for the span that starts at ``failing_id``."""

    rows: tuple[AuditRow, ...]
    failing_id: int

    def page_ids(self, *_: object, **__: object) -> Sequence[int]:  # pragma: no cover - spans given
        raise NotImplementedError

    def span_rows(self, span: PageSpan) -> Sequence[AuditRow]:
        if span.ids[0] == self.failing_id:
            raise SpanReadFails(f"span from {self.failing_id}")
        return tuple(row for row in self.rows if row.id in span.ids)

    def __call__(self, span: PageSpan) -> Sequence[AuditRow]:
        return self.span_rows(span)

    def span_reader(self) -> FailingSpanReads:
        return self


def in_a_worker() -> bool:
    """Whether this is a page pool's worker process (not the runner's)."""
    return multiprocessing.parent_process() is not None


@frozen
class SentToWorkers:
    """An in-memory lookup port (users, SSO or contacts) that a page pool sends to its workers
    (``ports.WorkerCopy``): each worker's copy is the port as pickled, so the calls it records stay
    in the worker, and the runner's port sees only the lookups of the runner's own pages.

    ``error``: raised at a call asking for ``failing_id`` (an email, or a user or person id; None:
    any call), in a worker process only unless ``anywhere``."""

    port: Any
    error: Exception | None = None
    failing_id: object = None
    anywhere: bool = False

    def users_by_ids(self, tenant: str, ids: Collection[UserId]) -> Mapping[UserId, CrmUser]:
        self._fail(ids)
        found: Mapping[UserId, CrmUser] = self.port.users_by_ids(tenant, ids)
        return found

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        self._fail(emails)
        found: Mapping[str, str] = self.port.sso_ids_by_emails(company_sso_id, emails)
        return found

    def contacts_by_crm_ids(
        self, company_sso_id: str, crm_person_ids: Collection[int]
    ) -> Mapping[int, Contact]:
        self._fail(crm_person_ids)
        found: Mapping[int, Contact] = self.port.contacts_by_crm_ids(company_sso_id, crm_person_ids)
        return found

    def worker_copy(self) -> SentToWorkers:
        return self

    def _fail(self, asked: Collection[object]) -> None:
        if self.error is None or not (self.anywhere or in_a_worker()):
            return
        if self.failing_id is None or self.failing_id in asked:
            raise self.error


@frozen
class RefusesHere:
    """An SSO port raising ``error`` at a call asking for ``failing_email``, with no worker copy: a
    page pool makes the run's lookups in the runner, in page order (two trips a page)."""

    port: Any
    error: Exception
    failing_email: str

    def sso_ids_by_emails(self, company_sso_id: str, emails: Collection[str]) -> Mapping[str, str]:
        if self.failing_email in emails:
            raise self.error
        found: Mapping[str, str] = self.port.sso_ids_by_emails(company_sso_id, emails)
        return found


def imported(names: Sequence[str]) -> list[str]:
    """Which of ``names`` this process has imported (submitted to a worker)."""
    return [name for name in names if name in sys.modules]
