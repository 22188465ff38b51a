"""The Celery app of the migration, configured from ``Settings`` (docs/scale-out.md).

Every task is acknowledged *late* (after it returns) and rejected back to the queue when its
worker process is lost, and a worker reserves one message at a time
(``worker_prefetch_multiplier=1``): a worker that dies mid-account leaves its message to be
delivered again, and the job document (cursor, lease) plus the unique index on
``(company_sso_id, external_id)`` make the second delivery resume where the first left off.

With Redis the message of a dead worker comes back only after the broker's
``visibility_timeout`` (``CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT``, 3,600 s by default). It must be
longer than the longest task (an account's whole run), or a live worker's task is handed to a
second worker; the second one then meets the lease and waits (``LeaseHeld`` → retry), so nothing is
written twice, but the wait is wasted. Messages carry ids only (JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from celery import Celery

from crm_audit_transform.errors import ConfigError

from ..bootstrap import Runtime, build_runtime
from ..settings import Settings
from .resend import publish_policy
from .tasks import register_tasks

QUEUE: Final = "crm_audit_migration"


def make_app(settings: Settings, *, runtime_factory: Callable[[], Runtime] | None = None) -> Celery:
    """A Celery app on ``settings.broker_url`` with the migration's tasks registered.

    ``runtime_factory`` builds a worker process's ``Runtime`` on its first task (never at import,
    never in a prefork parent: pymongo clients must not cross a fork). ``ConfigError`` without a
    broker URL, or with a lease (``lease_seconds``) as long as the visibility timeout or longer
    (``_lease_fits_visibility``). Nothing connects here.
    """
    if not settings.broker_url:
        raise ConfigError(
            [("broker_url", "not set: give CRM_AUDIT_BROKER_URL or `broker_url` in the configuration file")]
        )
    _lease_fits_visibility(settings)
    app = Celery(
        "crm_audit", broker=settings.broker_url, backend=settings.result_backend, set_as_current=False
    )
    transport: dict[str, float] = {"visibility_timeout": settings.broker_visibility_timeout}
    # kombu sweeps the unacknowledged set only every 10th call (~100 s) by default: sweep every
    # call (~10 s), so a dead worker's task returns soon after the visibility timeout, not minutes later.
    broker_transport = {**transport, "unacked_restore_throttle": 1}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=broker_transport,
        result_backend_transport_options=transport,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=settings.result_backend is None,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Every publish, a task's re-send above all, waits about a minute for a broker that is down
        # (resend.PUBLISH_RETRY_POLICY), where Celery's default gave up after 0.6 s.
        task_publish_retry=True,
        task_publish_retry_policy=publish_policy(),
        # Flower and `celery events` see tasks as they start.
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    register_tasks(app, runtime_factory or (lambda: build_runtime(settings)))
    return app


def require_redis_transport(app: Celery) -> None:
    """``ConfigError`` unless the app's broker is served by kombu's Redis transport (``redis://``,
    ``rediss://``, ``redis+socket://``, ``sentinel://``): what a worker checks before it connects.

    The tasks' delivery guarantees rest on Redis's semantics as kombu implements them
    (docs/scale-out.md, "Another broker"): a message stays unacknowledged in kombu's unacked set
    until its task returns (``acks_late``) and comes back after ``visibility_timeout`` when the
    worker is lost; a task's ``Reject(requeue=True)`` (a re-send the broker did not take,
    ``resend.resend_refused``) puts it back at the head of the queue (``QoS.reject``); a retry's
    countdown is held unacknowledged in the worker. No other transport was tried with them, and
    some differ in ways that lose or repeat an account's only message (RabbitMQ's delivery
    acknowledgement timeout, an in-process ``memory://`` queue no other process sees), so a worker
    on one refuses to start rather than take tasks. Nothing connects here: the class is resolved
    from the URL's scheme.
    """
    from kombu.transport.redis import Transport as RedisTransport

    url = app.conf.broker_url or ""
    with app.connection_for_write() as connection:
        transport = connection.get_transport_cls()  # a scheme kombu has none for fails the settings' checks
    if isinstance(transport, type) and issubclass(transport, RedisTransport):
        return
    scheme = url.split("://", 1)[0] if "://" in url else url.split(":", 1)[0]
    why = (
        f"the {scheme}:// transport is not supported: the tasks' requeue (acks_late, a rejected "
        "message put back, a lost worker's message restored after the visibility timeout) is "
        "relied on as kombu's Redis transport does it; use a redis://, rediss:// or sentinel:// broker "
        '(docs/scale-out.md, "Another broker")'
    )
    raise ConfigError([("broker_url", why)], source="the worker's broker")


def _lease_fits_visibility(settings: Settings) -> None:
    """Refuse ``lease_seconds`` >= ``broker_visibility_timeout`` (docs/scale-out.md, Redelivery).

    A task that meets a held lease is retried with a countdown of ``lease_seconds``, and Redis keeps
    that message unacknowledged until it runs: past the visibility timeout kombu puts it back on the
    queue while the first copy still waits, so each wait adds a copy. Seen with a 5 s lease and a
    2 s timeout on two workers: one account's single message was received 96 times (73 of them
    retried on the lease) before its job completed. Nothing is written twice (the lease), but the
    copies multiply until each has spent its retries.
    """
    lease, visibility = settings.run.lease_seconds, settings.broker_visibility_timeout
    if lease >= visibility:
        why = (
            f"{lease:g} s is not below broker_visibility_timeout ({visibility:g} s): a task waiting "
            "one lease for a held job would be handed to another worker meanwhile, again and again; "
            "lower CRM_AUDIT_LEASE_SECONDS or raise CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT"
        )
        raise ConfigError([("lease_seconds", why)], source="the runner's settings")
