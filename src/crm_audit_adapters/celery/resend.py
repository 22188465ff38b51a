"""A task's re-send from inside a worker, and what happens when the broker does not take it.

A task sends itself again in four places: Celery's retry of an outage (``autoretry_for``), a wait
for a held lease (``Task.retry``, then ``tasks._wait_for_lease``'s own re-send past
``MAX_RETRIES``) and the hand-back of a run a shutdown stopped (``tasks._hand_back``). From then on
that re-send is the account's (or shard's) only message: the running one is acknowledged when the
task returns. Celery published it with its default ``task_publish_retry_policy``, 3 tries 0.2 s
apart, so a broker down for a second lost it: ``Task.retry`` rejected the running message without
requeueing it, a hand-back failed the task (acknowledged), and either way the job stayed in progress
with no message left (``status --all``: ``runner none``) and no line said why.

Now every publish waits for the broker as ``PUBLISH_RETRY_POLICY`` says (Celery's policy; kombu
reconnects between tries), logging each wait (``broker_publish_waits``). A re-send still not
published raises ``Reject(BrokerUnavailable, requeue=True)`` (``resend_refused``): the running
message goes back to the broker instead of being acknowledged (requeued at once if the broker answers
again, else left unacknowledged, which Redis restores after the visibility timeout), with an ERROR
line (``task_not_resent``) naming the account, and a run's task records it on the job (or shard) in
the job store (``JobStore.note_not_resent``), which ``status`` shows until a runner takes the lease
again. The job keeps its cursor (docs/scale-out.md, "A re-send the broker does not take").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from celery import Task, current_task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from crm_audit_transform.errors import Unavailable

from ..observability import migration_logger

PUBLISH_RETRY_POLICY: Final[Mapping[str, float]] = {
    "max_retries": 15,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 5,
}
"""kombu's ``ensure`` arguments for every publish: 15 tries at 0, 1, 2, 3, 4 then every 5 s, about a
minute, where Celery's default gave up after 0.6 s. A Redis restart takes seconds, a Sentinel
failover tens of seconds. While it waits, the worker process waits: it could run nothing anyway."""


class BrokerUnavailable(Unavailable):
    """The broker took no re-send of a task within ``PUBLISH_RETRY_POLICY``; the task's message is
    handed back to the broker unacknowledged, and the job keeps its cursor."""

    code = "BROKER_UNAVAILABLE"


def publish_policy() -> dict[str, Any]:
    """``task_publish_retry_policy``: ``PUBLISH_RETRY_POLICY`` with a WARNING line for each wait."""
    return {**PUBLISH_RETRY_POLICY, "errback": _publish_waits}


def _publish_waits(error: BaseException, interval: float) -> None:
    # kombu calls this before each wait for the broker (``Connection.ensure``'s errback). Outside a
    # task (`enqueue`'s publish) Celery's ``current_task`` proxies None, and reading its ``request``
    # raised AttributeError at the first wait: enqueue ended INTERNAL instead of waiting.
    task = current_task._get_current_object()
    request = None if task is None else task.request
    migration_logger().warning(
        "broker_publish_waits",
        task=getattr(task, "name", None),
        task_id=getattr(request, "id", None),
        error=type(error).__name__,
        retry_in_s=interval,
    )


class ResendingTask(Task):  # type: ignore[misc]  # Celery ships no type hints: its Task is Any
    """Celery's ``Task`` whose ``retry`` that cannot publish hands the message back (``resend_refused``).

    ``Task.retry`` turns any error of its publish into ``Reject(error, requeue=False)``: the running
    message would be dropped with its account unfinished.
    """

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().retry(*args, **kwargs)
        except Reject as rejected:
            if rejected.requeue or not isinstance(rejected.reason, OperationalError):
                raise
            raise resend_refused(self, rejected.reason) from rejected.reason

    def note_not_resent(self) -> None:
        """Record in the job store that this task's re-send was not taken (``resend_refused`` calls it).

        Nothing here: a task that runs no job has nothing to record. ``migrate_account`` and
        ``migrate_shard`` set their own (``tasks._noting_not_resent``), which ``status`` reads.
        """


def resend(task: Task, again: Any) -> None:
    """Publish ``again``, a signature of ``task``'s own message (Celery's publish retry policy).

    Raises ``resend_refused``'s ``Reject`` when the broker still does not take it (kombu's
    ``OperationalError``); any other error is a programming error and propagates as it is.
    """
    try:
        again.apply_async()
    except OperationalError as exc:
        raise resend_refused(task, exc) from exc


def resend_refused(task: Task, error: BaseException) -> Reject:
    """What a task raises when its re-send was not published: its message handed back, not acknowledged."""
    request = task.request
    account = list(request.args or [])
    migration_logger().error(
        "task_not_resent",
        task=task.name,
        task_id=request.id,
        company_sso_id=account[0] if account else None,
        shard=account[1] if len(account) > 1 else None,
        error=type(error).__name__,
    )
    note = getattr(task, "note_not_resent", None)
    if callable(note):
        note()
    company = account[0] if account else "?"
    why = (
        f"the broker took no re-send of {task.name} for company {company} ({type(error).__name__}, "
        "after Celery's publish retries): this message is handed back unacknowledged, to be delivered "
        "again when the broker answers (after its visibility timeout if it is still down now); the job "
        "keeps its cursor. If the broker lost its messages (status --all: runner none), "
        f"`crm-audit-migrate enqueue --company-sso-id {company}` sends it again"
    )
    return Reject(BrokerUnavailable(why), requeue=True)
