"""The Celery app's configuration: delivery guarantees, the visibility timeout, ids-only JSON messages."""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace
from typing import Any

import mongomock
import pytest
from celery.app.trace import build_tracer
from celery.exceptions import Reject, Retry
from click.testing import CliRunner
from structlog.testing import capture_logs

from crm_audit_adapters.celery import (
    ENRICH_ACCOUNT,
    MIGRATE_ACCOUNT,
    MIGRATE_SHARD,
    QUEUE,
    VERIFY_ACCOUNT,
    make_app,
    tasks,
)
from crm_audit_adapters.celery.app import require_redis_transport
from crm_audit_adapters.celery.resend import BrokerUnavailable
from crm_audit_adapters.cli import Overrides, cli
from crm_audit_adapters.cli.status_text import runner
from crm_audit_adapters.mongo import MongoJobStore
from crm_audit_adapters.settings import Settings, load_settings
from crm_audit_transform.errors import ConfigError, LeaseHeld, StoreUnavailable, Unavailable
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.testing import FixedClock
from crm_audit_transform.usecases import MigrationStatus
from crm_audit_transform.verification import Finding, Findings, VerifyReport
from support.mongo import T0, migration_job
from support.redis_server import free_port

BROKER = "redis://:broker-secret@redis.internal:6379/0"


class TestCeleryApp:
    def test_every_task_is_acknowledged_late_and_rejected_when_its_worker_is_lost(self) -> None:
        """acks_late, reject_on_worker_lost and a prefetch of one message hold for every migration task."""
        app = make_app(Settings(broker_url=BROKER))
        assert app.conf.task_acks_late is True
        assert app.conf.task_reject_on_worker_lost is True
        assert app.conf.worker_prefetch_multiplier == 1
        for name in (MIGRATE_ACCOUNT, ENRICH_ACCOUNT, VERIFY_ACCOUNT):
            task = app.tasks[name]
            assert (task.acks_late, task.reject_on_worker_lost) == (True, True)

    def test_retries_back_off_and_only_for_infrastructure(self) -> None:
        """Only Unavailable is retried automatically, with exponential backoff and a retry limit."""
        task = make_app(Settings(broker_url=BROKER)).tasks[MIGRATE_ACCOUNT]
        assert task.autoretry_for == (Unavailable,)
        assert not issubclass(LeaseHeld, Unavailable)  # a held lease is retried explicitly, after the lease
        assert task.retry_backoff is True
        assert task.max_retries == 12

    def test_the_visibility_timeout_comes_from_the_settings(self) -> None:
        """CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT reaches Redis's transport options."""
        settings = load_settings(
            environ={"CRM_AUDIT_BROKER_URL": BROKER, "CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT": "7200"}
        )
        app = make_app(settings)
        assert app.conf.broker_transport_options["visibility_timeout"] == 7200.0
        assert app.conf.task_default_queue == QUEUE

    def test_messages_are_json_only(self) -> None:
        """Tasks are sent and accepted as JSON: a message can carry ids, never pickled objects."""
        app = make_app(Settings(broker_url=BROKER))
        assert (app.conf.task_serializer, list(app.conf.accept_content)) == ("json", ["json"])

    def test_no_broker_is_a_configuration_error(self) -> None:
        """Without CRM_AUDIT_BROKER_URL the app is refused with the setting's name."""
        with pytest.raises(ConfigError, match="broker_url"):
            make_app(Settings())

    @pytest.mark.parametrize(("lease", "visibility"), [("5", "2"), ("60", "60")])
    def test_a_lease_not_below_the_visibility_timeout_is_a_configuration_error(
        self, lease: str, visibility: str
    ) -> None:
        """A task retried after one lease is held unacknowledged that long: at or past the visibility
        timeout Redis hands it out again while it waits, so the app is refused naming the setting."""
        settings = load_settings(
            environ={
                "CRM_AUDIT_BROKER_URL": BROKER,
                "CRM_AUDIT_LEASE_SECONDS": lease,
                "CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT": visibility,
            }
        )
        with pytest.raises(ConfigError, match="lease_seconds") as raised:
            make_app(settings)
        assert f"{lease} s is not below broker_visibility_timeout ({visibility} s)" in str(raised.value)

    def test_a_lease_below_the_visibility_timeout_is_accepted(self) -> None:
        """3 s of lease under 4 s of visibility (the redelivery e2e test's values) builds the app."""
        settings = load_settings(
            environ={
                "CRM_AUDIT_BROKER_URL": BROKER,
                "CRM_AUDIT_LEASE_SECONDS": "3",
                "CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT": "4",
            }
        )
        assert make_app(settings).conf.broker_transport_options["visibility_timeout"] == 4.0

    def test_enqueue_with_a_lease_past_the_visibility_timeout_writes_nothing(self) -> None:
        """`enqueue` refuses the settings (CONFIG_INVALID, exit 3) before it reaches any server."""
        env = {
            "CRM_AUDIT_SETTINGS": "",
            "CRM_AUDIT_BROKER_URL": BROKER,
            "CRM_AUDIT_LEASE_SECONDS": "120",
            "CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT": "60",
        }
        args = ["enqueue", "--company-sso-id", "c-1", "--tenant", "acme"]
        result = CliRunner().invoke(cli, args, obj=Overrides(), env=env)
        assert result.exit_code == 3, result.output
        assert "lease_seconds" in result.output
        assert "broker-secret" not in result.output

    def test_config_shows_the_broker_settings_without_the_password(self) -> None:
        """describe() lists the broker URL redacted and the visibility timeout (default 3,600 s)."""
        shown = Settings(broker_url=BROKER).describe()
        assert shown["broker_url"] == "redis://:***@redis.internal:6379/0"
        assert shown["broker_visibility_timeout"] == 3600.0
        assert "broker-secret" not in repr(shown) + repr(Settings(broker_url=BROKER))


class TestOnlyRedisRequeue:
    @pytest.mark.parametrize(
        "url",
        ["amqp://guest:broker-secret@rabbit.internal:5672//", "memory://", "filesystem://"],
    )
    def test_a_worker_on_another_transport_refuses_to_start(self, url: str) -> None:
        """The tasks' requeue is Redis's as kombu does it: `worker` on RabbitMQ, or on a transport of
        one host (memory, filesystem), ends at once, CONFIG_INVALID (exit 3) naming the transport,
        before it connects (rabbit.internal resolves nowhere) and without the password."""
        env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_BROKER_URL": url}
        result = CliRunner().invoke(cli, ["worker", "--pool", "solo"], obj=Overrides(), env=env)
        assert result.exit_code == 3, result.output
        scheme = url.split("://", 1)[0]
        refused = f"in the worker's broker: broker_url: the {scheme}:// transport is not supported"
        assert refused in result.stderr, result.stderr
        assert "broker-secret" not in result.output

    @pytest.mark.parametrize(
        "url",
        [
            BROKER,
            "rediss://:broker-secret@redis.internal:6380/3",
            "redis+socket:///run/redis/redis.sock?virtual_host=0",
            "sentinel://:a@h1:26379;sentinel://:b@h2:26379",
        ],
    )
    def test_the_redis_transports_are_accepted_without_connecting(self, url: str) -> None:
        """redis://, rediss://, redis+socket:// and sentinel:// resolve to kombu's Redis transport; the
        check opens no connection (none of these hosts exists)."""
        require_redis_transport(make_app(Settings(broker_url=url)))


class TestOneTaskPerProcess:
    def test_a_task_on_a_second_thread_of_a_worker_process_is_refused(self) -> None:
        """The process's runtime serves the thread that built it; a task on another thread fails with
        ConfigError before it reaches the runtime (a threads or gevent pool would share its lease owner)."""
        enriched: list[str] = []

        def enrich(company: str) -> Any:
            enriched.append(company)
            return SimpleNamespace(patched=0, keys_set=0)

        built: list[object] = []

        def runtime() -> Any:
            built.append(object())
            return SimpleNamespace(service=SimpleNamespace(enrich=enrich))

        app = make_app(Settings(broker_url=BROKER), runtime_factory=runtime)
        task = app.tasks[ENRICH_ACCOUNT]
        assert task.apply(args=["company-a"], throw=True).get() == {
            "company_sso_id": "company-a",
            "patched": 0,
            "keys_set": 0,
        }
        raised: list[BaseException] = []

        def on_another_thread() -> None:
            try:
                task.apply(args=["company-b"], throw=True)
            except BaseException as exc:
                raised.append(exc)

        other = threading.Thread(target=on_another_thread)
        other.start()
        other.join()
        assert len(raised) == 1
        assert isinstance(raised[0], ConfigError)
        assert "--pool prefork" in str(raised[0])
        assert (enriched, len(built)) == (["company-a"], 1)

    @pytest.mark.parametrize("pool", [["--pool", "threads"], ["-P", "gevent"], ["--pool=eventlet"]])
    def test_the_worker_command_refuses_pools_that_share_a_process(self, pool: list[str]) -> None:
        """`worker` with a threads, gevent or eventlet pool is a usage error, before any broker is needed."""
        result = CliRunner().invoke(cli, ["worker", *pool], obj=Overrides(), env={"CRM_AUDIT_SETTINGS": ""})
        assert result.exit_code == 2, result.output
        assert "is not supported: the migration runs one task per process" in result.output


class TestJobStartedOnlyUnderTheLease:
    def test_a_task_that_waits_for_the_lease_logs_no_job_started(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another process holds the account: the task retries later (task_waits_for_lease) and never
        says job_started, which is logged with the run's first write under the lease."""

        found: MigrationJob = migration_job()

        def held(*_: object, **__: object) -> Any:
            raise LeaseHeld("job job-1 is held by host-b:7:celery until 2026-12-01T00:02:00+00:00")

        monkeypatch.setattr(tasks, "run_account", held)
        runtime = SimpleNamespace(
            service=SimpleNamespace(latest_job=lambda company: found),
            settings=SimpleNamespace(run=SimpleNamespace(lease_seconds=120.0)),
        )
        app = make_app(Settings(broker_url=BROKER), runtime_factory=lambda: runtime)
        with capture_logs() as lines, pytest.raises(Retry):
            app.tasks[MIGRATE_ACCOUNT].apply(args=["company-a"], throw=True)
        events = [line["event"] for line in lines]
        assert "task_waits_for_lease" in events
        assert "job_started" not in events

    @pytest.mark.parametrize(
        ("name", "args"), [(MIGRATE_ACCOUNT, ["company-a"]), (MIGRATE_SHARD, ["company-a", 1])]
    )
    def test_a_copy_that_waited_out_its_retries_waits_on_with_a_warning_never_an_error(
        self, monkeypatch: pytest.MonkeyPatch, name: str, args: list[object]
    ) -> None:
        """A redelivered copy of a task still running meets its lease on every try. Past its last
        retry it used to fail (``ERROR ... raised unexpected: LeaseHeld``) though the account was
        healthy, and, were it the job's only message, the runner's death then left the job with
        none. Now it is sent again, its retry count at 0, with a WARNING naming the account and the
        other worker's lease: it takes the job over if that lease expires, or ends with the job."""

        def held(*_: object, **__: object) -> Any:
            raise LeaseHeld("job job-1 is held by host-b:7:celery until 2026-12-01T00:02:00+00:00")

        monkeypatch.setattr(tasks, "run_account", held)
        monkeypatch.setattr(tasks, "run_account_shard", held)
        runtime = SimpleNamespace(
            service=SimpleNamespace(latest_job=lambda company: None),
            settings=SimpleNamespace(run=SimpleNamespace(lease_seconds=120.0)),
        )
        app = make_app(Settings(broker_url=BROKER), runtime_factory=lambda: runtime)
        with capture_logs() as lines, pytest.raises(Retry) as caught:
            app.tasks[name].apply(args=args, retries=tasks.MAX_RETRIES, throw=True)
        warned = [line for line in lines if line["event"] == "task_waits_on_for_lease"]
        assert len(warned) == 1
        assert (warned[0]["log_level"], warned[0]["company_sso_id"]) == ("warning", "company-a")
        assert "another worker holds this account's lease" in warned[0]["why"]
        assert caught.value.sig is not None
        assert caught.value.sig.options["retries"] == 0
        assert caught.value.when == 120.0
        assert list(caught.value.sig.args) == args

        with capture_logs() as lines, pytest.raises(Retry) as caught:
            app.tasks[name].apply(args=args, retries=tasks.MAX_RETRIES - 1, throw=True)
        assert [line["log_level"] for line in lines if line["event"] == "task_waits_for_lease"] == ["info"]
        assert caught.value.sig.options["retries"] == tasks.MAX_RETRIES

    def test_a_repair_that_waited_out_its_retries_waits_on_with_a_warning_never_an_error(self) -> None:
        """``verify_account`` with ``repair`` on a job a run holds waited ``MAX_RETRIES`` leases, then
        failed (``ERROR ... raised unexpected: LeaseHeld``) though the account was only being run.
        Now, as a run's copy does, it is sent again with its count at 0 and a WARNING saying what
        it waits for, and verifies once the run hands the lease back."""

        def held(*_: object, **__: object) -> Any:
            raise LeaseHeld("verify --repair writes job job-1 whole, so it waits while a runner holds it")

        runtime = SimpleNamespace(
            service=SimpleNamespace(verify=held),
            settings=SimpleNamespace(run=SimpleNamespace(lease_seconds=120.0)),
        )
        app = make_app(Settings(broker_url=BROKER), runtime_factory=lambda: runtime)
        task = app.tasks[VERIFY_ACCOUNT]
        with capture_logs() as lines, pytest.raises(Retry) as caught:
            task.apply(args=["company-a"], kwargs={"repair": True}, retries=tasks.MAX_RETRIES, throw=True)
        warned = [line for line in lines if line["event"] == "task_waits_on_for_lease"]
        assert len(warned) == 1
        assert (warned[0]["log_level"], warned[0]["company_sso_id"]) == ("warning", "company-a")
        assert "verify --repair writes whole" in warned[0]["why"]
        assert caught.value.sig is not None
        assert caught.value.sig.options["retries"] == 0
        assert caught.value.when == 120.0
        assert (list(caught.value.sig.args), caught.value.sig.kwargs) == (["company-a"], {"repair": True})


class TestVerifiedLine:
    def test_a_repair_s_line_counts_the_drifted_logs_it_set_back(self) -> None:
        """``verify_account`` with ``repair`` logs one ``verified`` line, a Celery operator's trace of
        what the repair wrote: ``restored`` (drifted logs overwritten) beside ``repaired`` (missing ones
        written). Before, a repair that set logs back and wrote none said ``repaired=0`` alone: this
        test fails there."""
        report = VerifyReport(
            "company-a",
            "acme",
            findings={"drifted": Findings(2, (Finding(1, "crm-audit-1"), Finding(2, "crm-audit-2")))},
            restored=2,
        )
        runtime = SimpleNamespace(service=SimpleNamespace(verify=lambda *_, **__: report))
        app = make_app(Settings(broker_url=BROKER), runtime_factory=lambda: runtime)
        with capture_logs() as lines:
            answer = app.tasks[VERIFY_ACCOUNT].apply(args=["company-a"], kwargs={"repair": True}).get()
        assert answer["restored"] == 2
        verified = [line for line in lines if line["event"] == "verified"]
        assert [(line["repaired"], line["restored"], line["clean"]) for line in verified] == [(0, 2, True)]
        assert not [key for key in verified[0] if key.startswith("outstanding_")]


class TestShutdownFlagInTheMainProcess:
    def test_the_solo_pool_s_init_signal_leaves_celery_s_sigterm_handler_in_place(self) -> None:
        """The solo pool sends worker_process_init in the worker's main process: there SIGTERM stays
        Celery's warm shutdown while a task runs, never the task's own stop-after-the-batch handler."""
        import signal

        flag = tasks.ShutdownFlag()
        flag.in_pool_child()  # as the solo pool's __init__ calls it, in this very process
        before = signal.getsignal(signal.SIGTERM)
        with flag.sigterm_stops():
            assert signal.getsignal(signal.SIGTERM) is before


class TestHandBack:
    @pytest.mark.parametrize(
        ("name", "args"), [(MIGRATE_ACCOUNT, ["company-a"]), (MIGRATE_SHARD, ["company-a", 1])]
    )
    @pytest.mark.parametrize("retries", [0, tasks.MAX_RETRIES])
    def test_a_run_stopped_by_a_shutdown_is_sent_again_with_its_retry_count_kept(
        self, monkeypatch: pytest.MonkeyPatch, name: str, args: list[object], retries: int
    ) -> None:
        """A worker's shutdown stops the run after its batch and sends the task again for the next
        worker. That was ``task.retry``: each shutdown (a deploy, a scale-in) used one of the
        ``MAX_RETRIES`` meant for outages, and one past them raised ``MaxRetriesExceededError``, which
        acknowledged the message with the account unfinished and no message left to run it. Now
        the task is sent again at once with its retry count as it was."""
        stopped = SimpleNamespace(stopped=True, job=migration_job())
        monkeypatch.setattr(tasks, "run_account", lambda *_, **__: stopped)
        monkeypatch.setattr(tasks, "run_account_shard", lambda *_, **__: stopped)
        runtime = SimpleNamespace(service=SimpleNamespace(latest_job=lambda company: None))
        app = make_app(Settings(broker_url=BROKER), runtime_factory=lambda: runtime)
        with capture_logs() as lines, pytest.raises(Retry) as caught:
            app.tasks[name].apply(args=args, retries=retries, throw=True)
        assert sum(line["event"] == "task_handed_back" for line in lines) == 1
        assert caught.value.sig is not None
        assert caught.value.sig.options["retries"] == retries
        assert caught.value.when == 0
        assert list(caught.value.sig.args) == args


def _on_a_dead_broker(runtime: object) -> Any:
    """The app on a port nothing listens on, its publish retry policy cut to one quick retry."""
    app = make_app(Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0"), runtime_factory=lambda: runtime)
    quick = {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0}
    app.conf.task_publish_retry_policy = {**app.conf.task_publish_retry_policy, **quick}
    return app


class TestReSendTheBrokerDoesNotTake:
    @pytest.mark.parametrize("case", ["outage", "held lease", "held lease past the retries", "hand-back"])
    def test_the_running_message_is_handed_back_with_a_typed_error_never_dropped(
        self, monkeypatch: pytest.MonkeyPatch, case: str
    ) -> None:
        """A task whose re-send (a retry, a wait for a lease, a hand-back) the broker does not take
        ends rejected with requeue and ``BrokerUnavailable`` naming the account, after Celery's
        publish retries and with an ERROR line: its message goes back to the broker. Before, a retry
        rejected it without requeue and a hand-back failed the task, both dropping the account's
        only message: this test fails there."""

        def ran(*_: object, **__: object) -> Any:
            if case == "outage":
                raise StoreUnavailable("the CDP did not answer")
            if case.startswith("held lease"):
                raise LeaseHeld("job job-1 is held by host-b:7:celery until 2026-12-01T00:02:00+00:00")
            return SimpleNamespace(stopped=True, job=migration_job())

        monkeypatch.setattr(tasks, "run_account", ran)
        runtime = SimpleNamespace(
            service=SimpleNamespace(latest_job=lambda company: None),
            settings=SimpleNamespace(run=SimpleNamespace(lease_seconds=120.0)),
        )
        app = _on_a_dead_broker(runtime)
        task = app.tasks[MIGRATE_ACCOUNT]
        retries = tasks.MAX_RETRIES if case.endswith("past the retries") else 0
        request = {"id": "task-1", "retries": retries, "delivery_info": {}, "is_eager": False}
        tracer = build_tracer(MIGRATE_ACCOUNT, task, eager=False, propagate=False, app=app)
        with capture_logs() as lines:
            info = tracer("task-1", ["company-a"], {}, request).info
        assert info.state == "REJECTED"
        rejected = info.retval
        assert isinstance(rejected, Reject)
        assert rejected.requeue is True
        assert isinstance(rejected.reason, BrokerUnavailable)
        assert "company company-a" in str(rejected.reason)
        assert any(line["event"] == "broker_publish_waits" for line in lines)
        refused = [line for line in lines if line["event"] == "task_not_resent"]
        assert [(line["log_level"], line["company_sso_id"]) for line in refused] == [("error", "company-a")]

    @pytest.mark.parametrize(
        ("name", "args", "noted"),
        [
            (MIGRATE_ACCOUNT, ["company-a"], ("company-a", None)),
            (MIGRATE_SHARD, ["company-a", 1], ("company-a", 1)),
        ],
    )
    @pytest.mark.parametrize("store_answers", [True, False])
    def test_a_run_task_not_re_sent_is_noted_in_the_job_store_for_status(
        self,
        monkeypatch: pytest.MonkeyPatch,
        name: str,
        args: list[object],
        noted: tuple[object, ...],
        store_answers: bool,
    ) -> None:
        """The hand-back the broker did not take is recorded on the job (or the message's shard:
        ``JobStore.note_not_resent``), which `status` shows as `not-resent` where it showed `none`. A
        store that fails too is a WARNING: the message is still handed back, never acknowledged."""
        calls: list[tuple[object, ...]] = []

        def note_not_resent(company: str, shard: int | None = None) -> None:
            calls.append((company, shard))
            if not store_answers:
                raise StoreUnavailable("the CDP did not answer")

        stopped = SimpleNamespace(stopped=True, job=migration_job())
        monkeypatch.setattr(tasks, "run_account", lambda *_, **__: stopped)
        monkeypatch.setattr(tasks, "run_account_shard", lambda *_, **__: stopped)
        runtime = SimpleNamespace(
            service=SimpleNamespace(latest_job=lambda company: None),
            jobs=SimpleNamespace(note_not_resent=note_not_resent),
        )
        app = _on_a_dead_broker(runtime)
        request = {"id": "task-1", "retries": 0, "delivery_info": {}, "is_eager": False}
        tracer = build_tracer(name, app.tasks[name], eager=False, propagate=False, app=app)
        with capture_logs() as lines:
            info = tracer("task-1", args, {}, request).info
        assert info.state == "REJECTED"
        assert info.retval.requeue is True
        assert calls == [noted]
        unrecorded = [line for line in lines if line["event"] == "task_not_resent_unrecorded"]
        assert [(line["log_level"], line["error"]) for line in unrecorded] == (
            [] if store_answers else [("warning", "StoreUnavailable")]
        )

    def test_status_reads_the_hand_back_the_broker_did_not_take_from_the_job_store(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """End to end over the MongoDB job store (mongomock): the job in progress that read `runner
        none` after a hand-back the broker did not take reads `not-resent`, with its time in
        `status --json`'s `not_resent_at`; a runner that takes its lease clears it."""
        store = MongoJobStore.in_database(mongomock.MongoClient(tz_aware=True)["cdp"], clock=FixedClock(T0))
        store.create(migration_job(company="company-a"))
        monkeypatch.setattr(
            tasks, "run_account", lambda *_, **__: SimpleNamespace(stopped=True, job=migration_job())
        )
        runtime = SimpleNamespace(service=SimpleNamespace(latest_job=lambda company: None), jobs=store)
        app = _on_a_dead_broker(runtime)
        request = {"id": "task-1", "retries": 0, "delivery_info": {}, "is_eager": False}
        tracer = build_tracer(
            MIGRATE_ACCOUNT, app.tasks[MIGRATE_ACCOUNT], eager=False, propagate=False, app=app
        )
        assert runner(MigrationStatus.of(store.latest("company-a")), T0) == "none"  # type: ignore[arg-type]
        with capture_logs():
            assert tracer("task-1", ["company-a"], {}, request).info.state == "REJECTED"
        noted = store.latest("company-a")
        assert noted is not None
        assert runner(MigrationStatus.of(noted), T0) == "not-resent"
        assert MigrationStatus.of(noted).as_dict()["not_resent_at"] == "2024-03-01T08:30:15.123000Z"
        taken = store.acquire_lease(noted.job_id, "h:1:celery", dt.timedelta(minutes=2))
        assert (taken.not_resent_at, runner(MigrationStatus.of(taken), T0)) == (None, "live")
