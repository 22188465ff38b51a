"""Scale-out through real processes: Redis, Celery workers, PostgreSQL, a MongoDB wire server."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery_world import TENANTS, Scale, clean_run, counts_of, running_usman, scale_world
from processes import wait_for

from support.celery_workers import CLI, WorkerPool
from support.corpus_account import company_sso_id
from support.redis_server import RedisServer, free_port, running_redis_server
from support.usman_server import TOKEN, UsmanServer

pytestmark = [pytest.mark.postgres, pytest.mark.celery]
KILL_CUTOFF = "2024-10-01"


@pytest.fixture(scope="module")
def usman() -> Iterator[UsmanServer]:
    yield from running_usman()


@pytest.fixture
def scale(
    crm_dsn: str, shared_mongo_uri: str, wire_mongo_database: str, usman: UsmanServer, redis_url: str
) -> Iterator[Scale]:
    yield from scale_world(
        crm_dsn=crm_dsn,
        mongo_uri=shared_mongo_uri,
        database=wire_mongo_database,
        usman_url=usman.url,
        redis_url=redis_url,
    )


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may kill and start again (the session's is shared)."""
    with running_redis_server() as server:
        yield server


@pytest.fixture
def scale_on_own_redis(
    crm_dsn: str, shared_mongo_uri: str, wire_mongo_database: str, usman: UsmanServer, own_redis: RedisServer
) -> Iterator[Scale]:
    yield from scale_world(
        crm_dsn=crm_dsn,
        mongo_uri=shared_mongo_uri,
        database=wire_mongo_database,
        usman_url=usman.url,
        redis_url=own_redis.url,
        CRM_AUDIT_PAGE_SIZE="5",
    )


def json_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


class TestAccountsAcrossWorkers:
    def test_three_accounts_on_two_workers_complete_like_single_process_runs(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """Three enqueued accounts are shared by two workers; each ends with a clean run's counts and logs."""
        celery_workers.start(scale.env, count=2)
        for tenant in TENANTS:
            sent = scale.enqueue(tenant)
            assert sent.exit_code == 0, sent.output
            assert sent.stdout.startswith("sent crm_audit.migrate_account")
        companies = {company_sso_id(t) for t in TENANTS}
        statuses = scale.wait_until(
            lambda s: companies <= set(s) and all(s[c]["status"] == "completed" for c in companies)
        )
        for tenant in TENANTS:
            counts, logs = clean_run(tenant)
            company = company_sso_id(tenant)
            assert counts_of(statuses[company]) == counts
            assert scale.logs_of(company) == logs
        lines = [json_lines(celery_workers.output(i)) for i in range(2)]
        batches = [[line for line in worker if line.get("event") == "batch"] for worker in lines]
        assert all(batches), "both workers migrated batches"
        assert {line["company_sso_id"] for worker in batches for line in worker} == companies
        assert all({"job_id", "shard"} <= set(line) for worker in batches for line in worker)
        everything = celery_workers.output(0) + celery_workers.output(1)
        assert TOKEN not in everything


VISIBILITY_S = 4.0
"""The redelivery test's broker visibility timeout (its lease is shorter: 3 s)."""


def redeliverable(broker: Any) -> bool:
    """The broker holds an unacknowledged message older than the visibility timeout: the one kombu's
    Redis transport restores to the queue (its ``QoS.restore_visible``: score <= now - timeout)."""
    return bool(broker.zrangebyscore("unacked_index", "-inf", time.time() - VISIBILITY_S))


def lease_gone(scale: Scale, company: str) -> bool:
    """The account's job holds no live lease (none, or one past its expiry): a new run may take it."""
    job = scale.db["crm_activity_log_migration_jobs"].find_one({"company_sso_id": company})
    expires = None if job is None else job.get("lease_expires_at")
    return expires is None or expires <= dt.datetime.now(dt.UTC)


class TestRedelivery:
    def test_a_worker_killed_mid_batch_has_its_task_redelivered_and_ends_like_a_clean_run(
        self, scale: Scale, celery_workers: WorkerPool, redis_url: str
    ) -> None:
        """kill -9 mid-run: after the visibility timeout another worker resumes the job to a clean state."""
        import redis

        # 125 rows in pages of 5: the worker is still far from done when its first batch is saved.
        scale.env.update(
            CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT=f"{VISIBILITY_S:g}",
            CRM_AUDIT_LEASE_SECONDS="3",
            CRM_AUDIT_PAGE_SIZE="5",
        )
        celery_workers.start(scale.env)
        tenant, company = "globex", company_sso_id("globex")
        assert scale.enqueue(tenant, cutoff=KILL_CUTOFF).exit_code == 0
        scale.wait_for_progress(company)
        celery_workers.kill(0)
        stalled = scale.statuses()[company]
        assert stalled["status"] == "in_progress"
        # Not a fixed sleep: wait until the broker's own record makes the task restorable and the dead
        # worker's lease has expired, the two conditions the next worker's resumption needs.
        # The wait is the visibility timeout's (4 s): a look every 200 ms at most, not every 50 ms.
        broker = redis.Redis.from_url(redis_url)
        wait_for(
            lambda: redeliverable(broker) and lease_gone(scale, company),
            timeout_s=60,
            what="the dead worker's task to become redeliverable",
            pause_max_s=0.2,
        )
        celery_workers.start(scale.env)
        done = scale.wait_until(lambda s: s[company]["status"] == "completed")
        counts, logs = clean_run(tenant, cutoff=KILL_CUTOFF)
        assert counts_of(done[company]) == counts
        assert scale.logs_of(company) == logs
        assert '"event": "job_started"' in celery_workers.output(1)


class TestPreforkMetrics:
    def test_a_prefork_worker_serves_the_sum_of_its_processes(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """worker --metrics-port with the prefork pool counts every child's rows in one /metrics answer."""
        port = free_port()
        celery_workers.start(scale.env, pool="prefork", extra=("--metrics-port", str(port)))
        tenant, company = "acme", company_sso_id("acme")
        assert scale.enqueue(tenant).exit_code == 0
        done = scale.wait_until(lambda s: s.get(company, {}).get("status") == "completed")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        migrated = [
            line for line in text.splitlines() if line.startswith('crm_audit_rows_total{outcome="migrated"')
        ]
        assert migrated, text[:2000]
        assert float(migrated[0].split()[-1]) == done[company]["records_migrated"]

    def test_a_prefork_worker_removes_the_metrics_directory_it_made(
        self, scale: Scale, celery_workers: WorkerPool, tmp_path: Path
    ) -> None:
        """Without PROMETHEUS_MULTIPROC_DIR, worker --metrics-port makes a temporary directory for its
        processes' values; every start left one behind. A worker told to stop removes it."""
        port = free_port()
        env = {**scale.env, "TMPDIR": str(tmp_path)}
        worker = celery_workers.start(env, pool="prefork", extra=("--metrics-port", str(port)))[0]

        def made() -> list[Path]:
            return [path for path in tmp_path.iterdir() if path.name.startswith("crm-audit-metrics-")]

        assert len(made()) == 1
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert made() == []


class TestWarmShutdown:
    @pytest.mark.parametrize("whom", ["main process", "process group"])
    def test_a_prefork_worker_told_to_stop_hands_the_account_to_the_next_worker(
        self, scale: Scale, celery_workers: WorkerPool, whom: str
    ) -> None:
        """SIGTERM to a prefork worker (its main process, or its whole group as systemd sends it):
        the child running the account stops after its batch and sends the task again, the worker
        exits, and a second worker finishes the account to a clean run's counts and logs."""
        scale.env.update(CRM_AUDIT_PAGE_SIZE="5")
        first = celery_workers.start(scale.env, pool="prefork")[0]
        tenant, company = "globex", company_sso_id("globex")
        assert scale.enqueue(tenant, cutoff=KILL_CUTOFF).exit_code == 0
        scale.wait_for_progress(company)
        if whom == "main process":
            os.kill(first.pid, signal.SIGTERM)
        else:
            os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=60)
        assert '"event": "task_handed_back"' in celery_workers.output(0)
        stopped = scale.statuses()[company]
        assert stopped["status"] == "in_progress"
        assert stopped["records_processed"] < clean_run(tenant, cutoff=KILL_CUTOFF)[0]["records_processed"]
        celery_workers.start(scale.env)
        done = scale.wait_until(lambda s: s[company]["status"] == "completed")
        counts, logs = clean_run(tenant, cutoff=KILL_CUTOFF)
        assert counts_of(done[company]) == counts
        assert scale.logs_of(company) == logs

    def test_a_solo_worker_told_to_stop_while_redis_is_down_hands_the_account_back_once_it_returns(
        self, own_redis: RedisServer, scale_on_own_redis: Scale, celery_workers: WorkerPool
    ) -> None:
        """SIGTERM to a solo worker mid-account while Redis is down (killed, so every message it held
        is gone): the run stops after its batch and the task's re-send waits for the broker
        (``broker_publish_waits``); Redis, started again empty, takes it, the worker exits and a
        second worker finishes the account to a clean run's counts and logs. The re-send gave up
        after Celery's default 0.6 s and the task failed, leaving the job in progress with no
        message: this test fails there. (The solo pool announces itself as a pool child, and the
        task's SIGTERM handler once took Celery's warm shutdown over: the worker never exited.)"""
        scale = scale_on_own_redis
        first = celery_workers.start(scale.env)[0]
        tenant, company = "globex", company_sso_id("globex")
        assert scale.enqueue(tenant, cutoff=KILL_CUTOFF).exit_code == 0
        scale.wait_for_progress(company)
        own_redis.kill()
        os.kill(first.pid, signal.SIGTERM)
        # The worker either waits for the broker (and says so) or, as before, gives up and exits.
        wait_for(
            lambda: "broker_publish_waits" in celery_workers.output(0) or first.poll() is not None,
            timeout_s=60,
            what="the hand-back's publish to wait for the broker",
        )
        own_redis.start()
        first.wait(timeout=60)
        output = celery_workers.output(0)
        assert '"event": "task_handed_back"' in output
        assert "task_not_resent" not in output
        assert scale.statuses()[company]["status"] == "in_progress"
        celery_workers.start(scale.env)
        done = scale.wait_until(lambda s: s[company]["status"] == "completed", timeout=120)
        counts, logs = clean_run(tenant, cutoff=KILL_CUTOFF)
        assert counts_of(done[company]) == counts
        assert scale.logs_of(company) == logs
        assert TOKEN not in output + celery_workers.output(1)


class TestWorkerStart:
    def test_a_worker_celery_stops_on_an_error_exits_non_zero(self, scale: Scale, tmp_path: Path) -> None:
        """A worker Celery stopped on an unrecoverable error (here a pidfile it cannot write; also
        kombu failing to reconnect after a broker restart while a task was held) ends as `celery
        worker` does, exit 1, with one error line. ``worker_main`` dropped that status: it exited 0,
        as if shut down, and a supervisor restarting failed processes left it stopped."""
        env = {**os.environ, **scale.env}
        pidfile = tmp_path / "missing" / "worker.pid"
        args = [str(CLI), "worker", "--pool", "solo", "--without-gossip", "--without-mingle"]
        ended = subprocess.run(
            [*args, "--pidfile", str(pidfile)], env=env, capture_output=True, text=True, timeout=120
        )
        assert ended.returncode == 1, ended.stderr[-3000:]
        assert "Unrecoverable error: LockFailed" in ended.stderr
        assert (
            ended.stderr.rstrip()
            .splitlines()[-1]
            .startswith("error: INTERNAL: the Celery worker stopped on an error (its exit status 1;")
        )
        assert TOKEN not in ended.stdout + ended.stderr

    def test_a_worker_stopped_by_ctrl_c_exits_zero_without_an_error_line(
        self, scale: Scale, celery_workers: WorkerPool
    ) -> None:
        """A terminal's Ctrl-C (SIGINT to the worker's process group) is a warm shutdown: exit 0 and
        no error line, as SIGTERM's. Celery gives it exit status 1, which ended as ``error: INTERNAL:
        the Celery worker stopped on an error … its CRITICAL line above says which`` with no such
        line, and told the operator to start it again (this test fails there)."""
        [worker] = celery_workers.start(scale.env)
        celery_workers.kill(0, signal.SIGINT)
        output = celery_workers.output(0)
        assert worker.returncode == 0, output[-3000:]
        assert "Warm shutdown" in output
        assert "error: " not in output
        assert TOKEN not in output

    def test_a_worker_whose_cdp_database_lacks_the_indexes_does_not_start(self, scale: Scale) -> None:
        """A worker with CRM_AUDIT_MONGO_DATABASE naming another database took tasks, found no job there
        and failed them (acknowledged: those jobs were never run). Now it ends before taking any,
        exit 3, naming the database."""
        database = scale.env["CRM_AUDIT_MONGO_DATABASE"] + "_typo"
        env = {**os.environ, **scale.env, "CRM_AUDIT_MONGO_DATABASE": database}
        ended = subprocess.run(
            [str(CLI), "worker", "--pool", "solo"], env=env, capture_output=True, text=True, timeout=120
        )
        assert ended.returncode == 3, ended.stderr[-3000:]
        assert ended.stderr.startswith("error: CONFIG_INVALID: ")
        assert f"database '{database}' lacks migration 035's indexes" in ended.stderr
        assert TOKEN not in ended.stdout + ended.stderr
