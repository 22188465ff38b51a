"""Every error ``CODE`` through the real CLI: its exit code, ``error: CODE: message``, no secret.

One row per way an operator meets each code. The CDP is mongomock shared through ``Overrides``
(unless the row is about reaching MongoDB), the CRM the throwaway PostgreSQL cluster, USMAN a local
HTTP server. The last test checks that the rows cover every code in ``exit_codes.CODES``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cli_world
import mongomock
import pytest
from attrs import field, frozen
from cli_world import COMPANY, TENANT, seed_contacts
from click.testing import CliRunner
from test_cli_lifecycle import cancel_mid_run

from crm_audit_adapters.cli import Overrides, cli, exit_codes
from crm_audit_adapters.mongo import MongoJobStore
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_transform.jobs import CANCELLED, COMPLETED, HALTED, IN_PROGRESS, ROLLED_BACK, MigrationJob
from crm_audit_transform.tally import Tally
from support.page_workers import KillsItsWorkerOnceForked
from support.redis_server import running_redis
from support.usman_server import TOKEN, UsmanServer

pytestmark = pytest.mark.postgres
usman = cli_world.usman  # the CLI world's fixture

SECRET = "Kx9vQ7zR"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "crm_audit_adapters" / "data" / "example"
# Codes no command line can produce: the HTTP route's batch limit, USMAN being down (a run
# degrades those actors and goes on), a drifted log the store refuses to set back (verify --repair
# counts it, restore_refused, and goes on: tests/unit/test_verify_restore_refused.py), verify's
# sample or seed out of range (click refuses it first: USAGE), a guard with no code of its own (every
# guard raised has one), and a worker's task the broker took no re-send of (the worker logs it:
# tests/unit/test_celery_app.py).
NOT_FROM_THE_CLI = {
    "BATCH_TOO_LARGE",
    "DIRECTORY_UNAVAILABLE",
    "RESTORE_REFUSED",
    "INVALID_SAMPLE",
    "INVALID_SEED",
    "GUARD",
    "BROKER_UNAVAILABLE",
}
# Not an error line but a verdict: verify prints its report and exits 10 (tests/e2e/test_cli_verify.py).
VERDICTS = {"NOT_VERIFIED"}
# Error classes that exist with their exit code but that no code path raises yet: each gets a row
# the day something raises it (the last test fails until then).
NOT_RAISED_YET: dict[str, str] = {}
SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def put_job(client: Any, status: str, *, tally: Tally | None = None, lease_owner: str | None = None) -> None:
    """A job document as a runner would have left it, written through the real job store."""
    MongoJobStore.in_database(client["cdp"]).create(
        MigrationJob(
            job_id=f"job-{status}",
            company_sso_id=COMPANY,
            tenant=TENANT,
            status=status,
            cutoff=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
            created_at=T0,
            updated_at=T0,
            first_audit_id=1,
            max_audit_id=1_000_000,
            tally=tally or Tally(),
            lease_owner=lease_owner,
            lease_expires_at=dt.datetime(2100, 1, 1, tzinfo=dt.UTC) if lease_owner else None,
        )
    )


@frozen
class World:
    client: Any
    crm_dsn: str
    tmp: Path


Setup = Callable[[World], None]


@frozen
class Row:
    """``args`` and ``env`` may hold ``{dsn}``, ``{tmp}``, ``{port}``; ``setup`` prepares the world."""

    id: str
    args: tuple[str, ...]
    code: str
    env: dict[str, str] = field(factory=dict)
    stdin: str | None = None
    setup: Setup | None = None
    own_mongo: bool = False  # reach MongoDB through the URI instead of the shared mongomock
    prepare: Callable[[Any], None] | None = None
    hides: str | None = None  # a secret that must not appear in the output
    indexes: bool = True  # migration 035 applied first, as every write path requires
    names: str | None = None  # what the error line must name (a file's path), after formatting


def _raise(error: BaseException) -> Callable[[Any], None]:
    def prepare(_runtime: Any) -> None:
        raise error

    return prepare


WORKER_FORKED = "WORKER_FORKED_MARKER"
"""The environment variable naming the file a dying worker touches (read by ``_workers_die``)."""
WORKER_PAGES = {"CRM_AUDIT_PAGE_SIZE": "10", WORKER_FORKED: "{tmp}/worker-forked"}


def _workers_die(runtime: Any) -> None:
    """The worker is killed as it starts; the runner's first row waits until it was forked, so the
    account (pages of 10: ``WORKER_PAGES``) cannot end on the runner's own pages before it."""
    runtime._rule_chain = KillsItsWorkerOnceForked(Path(os.environ[WORKER_FORKED]))


def _mapping(world: World) -> None:
    (world.tmp / "mapping.yaml").write_text("categories: 5\n")


def _numeric_token(world: World) -> None:
    (world.tmp / "crm.toml").write_text("[usman]\ntoken = 5\n")


def _bad_audits(world: World) -> None:
    (world.tmp / "audits.jsonl").write_text('{"id": 1}\nnot json\n')


def _conflicting_index(world: World) -> None:
    world.client["cdp"]["activity_logs"].create_index([("elsewhere", 1)], name="uniq_company_external_id")


def _fifo(world: World) -> None:
    os.mkfifo(world.tmp / "pipe.jsonl")


def _out_held(world: World) -> None:
    """Another dry run writing {tmp}/logs.jsonl: its lock, held by a descriptor the test leaves open."""
    descriptor = os.open(world.tmp / "logs.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fcntl.flock(descriptor, fcntl.LOCK_EX)


def _contacts(world: World) -> None:
    seed_contacts(world.client)


def _contacts_and(status: str) -> Setup:
    def setup(world: World) -> None:
        seed_contacts(world.client)
        put_job(world.client, status)

    return setup


C = ("--company-sso-id", COMPANY)
DRY_RUN = (
    "dry-run",
    *C,
    "--tenant",
    TENANT,
    "--audits",
    "{tmp}/audits.jsonl",
    "--users",
    f"{EXAMPLE}/users.jsonl",
    "--contacts",
    f"{EXAMPLE}/contacts.jsonl",
    "--sso-directory",
    f"{EXAMPLE}/sso.jsonl",
)
# The example's files, an option given again below replacing its file (click keeps the last).
EXAMPLE_DRY_RUN = (
    "dry-run",
    *C,
    "--tenant",
    TENANT,
    *(part for name in ("audits", "users", "contacts") for part in (f"--{name}", f"{EXAMPLE}/{name}.jsonl")),
    "--sso-directory",
    f"{EXAMPLE}/sso.jsonl",
)

ROWS = [
    Row("usage: a missing option", ("status",), "USAGE"),
    Row("usage: an empty company", ("status", "--company-sso-id", " "), "USAGE"),
    Row("usage: an unknown option", ("status", *C, "--colour"), "USAGE"),
    Row("usage: --resume with --fresh", ("trigger", *C, "--resume", "--fresh"), "USAGE"),
    Row("usage: a cutoff in the future", ("trigger", *C, "--date-range-start", "2099-01-01"), "USAGE"),
    Row(
        "usage: a metrics port past 65,535 (was INTERNAL, the socket's OverflowError, once a job ran)",
        ("run", *C, "--metrics-port", "70000"),
        "USAGE",
        names="--metrics-port",
    ),
    Row(
        "usage: a metrics port of 0 (was served on a port nobody is told)",
        ("run", *C, "--metrics-port", "0"),
        "USAGE",
    ),
    Row("usage: worker's metrics port out of range", ("worker", "--metrics-port", "-1"), "USAGE"),
    Row(
        "usage: a cutoff out of range once in UTC (was INTERNAL, an OverflowError)",
        ("trigger", *C, "--date-range-start", "0001-01-01T00:00:00+01:00"),
        "USAGE",
        names="out of range in UTC",
    ),
    Row(
        "usage: enqueue's cutoff out of range once in UTC (it took no offset)",
        ("enqueue", *C, "--date-range-start", "9999-12-31T23:59:59-01:00"),
        "USAGE",
        names="out of range in UTC",
    ),
    Row(
        "usage: an input file that never ends (/dev/zero hung the dry run)",
        (*EXAMPLE_DRY_RUN, "--users", "/dev/zero"),
        "USAGE",
        names="/dev/zero is not a regular file",
    ),
    Row(
        "usage: an input file that is a FIFO (open() blocked for ever)",
        (*EXAMPLE_DRY_RUN, "--contacts", "{tmp}/pipe.jsonl"),
        "USAGE",
        setup=_fifo,
        names="{tmp}/pipe.jsonl is not a regular file",
    ),
    Row(
        "config: a settings file that is a FIFO (every command hung in open())",
        ("status", *C),
        "CONFIG_INVALID",
        {"CRM_AUDIT_SETTINGS": "{tmp}/pipe.jsonl"},
        setup=_fifo,
        names="not a regular file",
    ),
    Row("config: page_size out of range", ("status", *C), "CONFIG_INVALID", {"CRM_AUDIT_PAGE_SIZE": "0"}),
    Row(
        "config: a malformed DSN",
        ("status", *C),
        "CONFIG_INVALID",
        {"CRM_AUDIT_DATABASE_URL": f"host=crm password={SECRET[:4]} {SECRET[4:]}tail"},
        hides=SECRET,
    ),
    Row(
        "config: a malformed Mongo URI",
        ("status", *C),
        "CONFIG_INVALID",
        {"CRM_AUDIT_MONGO_URI": f"mongodb://cdp:{SECRET}@x@cdp:notaport"},
        hides=SECRET,
    ),
    Row(
        "config: a Mongo URI asking for unacknowledged writes (w=0: every log would count as inserted)",
        ("status", *C),
        "CONFIG_INVALID",
        {"CRM_AUDIT_MONGO_URI": f"mongodb://cdp:{SECRET}@127.0.0.1:{{port}}/?w=0"},
        own_mongo=True,
        hides=SECRET,
        names="unacknowledged writes (w=0)",
    ),
    Row(
        "config: a missing settings file, given after the subcommand",
        ("status", *C, "--settings", "{tmp}/nope.toml"),
        "CONFIG_INVALID",
    ),
    Row(
        "config: a number as the USMAN token in the settings file (a token is text)",
        ("status", *C, "--settings", "{tmp}/crm.toml"),
        "CONFIG_INVALID",
        setup=_numeric_token,
    ),
    Row(
        "config: an invalid mapping file",
        ("trigger", *C, "--tenant", TENANT),
        "CONFIG_INVALID",
        {"CRM_AUDIT_MAPPING_CONFIG": "{tmp}/mapping.yaml"},
        setup=_mapping,
    ),
    Row(
        "config: `config` reads the mapping file as the run would",
        ("config",),
        "CONFIG_INVALID",
        {"CRM_AUDIT_MAPPING_CONFIG": "{tmp}/mapping.yaml"},
        setup=_mapping,
    ),
    Row(
        "config: the CRM database does not exist",
        ("trigger", *C, "--tenant", TENANT),
        "CONNECTION_REJECTED",
        {"CRM_AUDIT_DATABASE_URL": "{dsn_no_such_db}"},
        setup=_contacts,
    ),
    Row(
        "config: a DSN option libpq refuses (sslmode=bogus), never retried",
        ("trigger", *C, "--tenant", TENANT),
        "CONNECTION_REJECTED",
        {"CRM_AUDIT_DATABASE_URL": "{dsn_sslmode_bogus}"},
        setup=_contacts,
    ),
    Row(
        "config: a server option PostgreSQL refuses at login, never retried",
        ("trigger", *C, "--tenant", TENANT),
        "CONNECTION_REJECTED",
        {"CRM_AUDIT_DATABASE_URL": "{dsn_bad_server_option}"},
        setup=_contacts,
    ),
    Row(
        "config: the task broker refuses the password, never retried",
        ("enqueue", *C),
        "CONNECTION_REJECTED",
        {"CRM_AUDIT_BROKER_URL": "redis://:Kx9vQ7zRwq@127.0.0.1:{guarded_redis_port}/0"},
        setup=_contacts,
        hides="Kx9vQ7zRwq",
    ),
    Row(
        "config: a worker whose broker refuses the password stops at once",
        ("worker", "--pool", "solo"),
        "CONNECTION_REJECTED",
        {"CRM_AUDIT_BROKER_URL": "redis://:Kx9vQ7zRwq@127.0.0.1:{guarded_redis_port}/0"},
        hides="Kx9vQ7zRwq",
    ),
    Row(
        "config: mongomock:// without mongomock installed",
        ("status", *C),
        "DEPENDENCY_MISSING",
        {"CRM_AUDIT_MONGO_URI": "mongomock://"},
        own_mongo=True,
    ),
    Row(
        "refused: the flag is off",
        ("trigger", *C, "--tenant", TENANT),
        "FLAG_DISABLED",
        {"CRM_AUDIT_ENABLED_COMPANIES": ""},
    ),
    Row("refused: coverage too low", ("trigger", *C, "--tenant", TENANT), "contacts_not_migrated"),
    Row(
        "refused: a job runs",
        ("trigger", *C, "--tenant", TENANT),
        "JOB_ALREADY_RUNNING",
        setup=_contacts_and(IN_PROGRESS),
    ),
    Row(
        "refused: already completed",
        ("trigger", *C, "--tenant", TENANT),
        "ALREADY_COMPLETED",
        setup=_contacts_and(COMPLETED),
    ),
    Row("refused: no job to run", ("run", *C, "--no-progress"), "JOB_NOT_FOUND"),
    Row(
        "refused: a rolled-back job is not run",
        ("run", *C, "--no-progress"),
        "JOB_NOT_RUNNABLE",
        setup=lambda w: put_job(w.client, ROLLED_BACK),
    ),
    Row(
        "config: a stored job document that is no job",
        ("status", "--all"),
        "JOB_UNREADABLE",
        setup=lambda w: w.client["cdp"]["crm_activity_log_migration_jobs"].insert_one(
            {
                "_id": "junk-1",
                "company_sso_id": "zzz-other",
                "status": "completed",
                "created_at": "2026-01-01",
            }
        ),
    ),
    Row(
        "refused: another runner holds the lease",
        ("run", *C, "--no-progress"),
        "LEASE_HELD",
        setup=lambda w: put_job(w.client, IN_PROGRESS, lease_owner="elsewhere:1"),
    ),
    Row(
        "refused: an unknown tenant",
        ("explain", *C, "--audit-id", "1", "--tenant", "nope"),
        "UNKNOWN_TENANT",
        {"CRM_AUDIT_TENANTS": f"{COMPANY}=nope"},
    ),
    Row(
        "refused: no such audit",
        ("explain", *C, "--audit-id", "999999999", "--tenant", TENANT),
        "AUDIT_NOT_FOUND",
    ),
    Row(
        "refused: an index conflict",
        ("indexes", "up"),
        "INDEX_CONFLICT",
        setup=_conflicting_index,
        indexes=False,
    ),
    Row(
        "config: migration 035 not applied",
        ("trigger", *C, "--tenant", TENANT),
        "INDEXES_MISSING",
        setup=_contacts,
        indexes=False,
    ),
    Row(
        "refused: a tenant other than the bound one", ("trigger", *C, "--tenant", "globex"), "TENANT_MISMATCH"
    ),
    Row(
        "refused: an account with no tenant binding",
        ("trigger", *C, "--tenant", TENANT),
        "TENANT_UNBOUND",
        {"CRM_AUDIT_TENANTS": ""},
    ),
    Row(
        "cancelled: the job was cancelled while the run worked on it",
        ("run", *C, "--no-progress"),
        "CANCELLED",
        setup=_contacts_and(IN_PROGRESS),
        prepare=cancel_mid_run,
    ),
    Row(
        "refused: the job was cancelled before the run (nothing ran)",
        ("run", *C, "--no-progress"),
        "JOB_NOT_RUNNABLE",
        setup=lambda w: put_job(w.client, CANCELLED),
        names="is cancelled: nothing to run; trigger --resume or --fresh",
    ),
    Row(
        "refused: verify --repair into a cancelled job, as run refuses it",
        ("verify", *C, "--repair"),
        "JOB_NOT_RUNNABLE",
        setup=lambda w: put_job(w.client, CANCELLED),
        names="latest job is cancelled: nothing to repair into",
    ),
    Row(
        "config: USMAN refuses the token",
        ("run", *C, "--no-progress"),
        "DIRECTORY_REFUSED",
        {"CRM_AUDIT_USMAN_TOKEN": "not-the-token"},
        setup=_contacts_and(IN_PROGRESS),
    ),
    Row(
        "refused: a halted job needs --resume or --fresh",
        ("trigger", *C, "--tenant", TENANT),
        "RESUME_OR_FRESH",
        setup=_contacts_and(HALTED),
    ),
    Row(
        "halted: the failure rate is over the threshold",
        ("run", *C, "--no-progress"),
        "HALTED",
        {"CRM_AUDIT_HALT_THRESHOLD": "0.05"},
        setup=lambda w: put_job(
            w.client, IN_PROGRESS, tally=Tally(processed=100, failed={"invalid_audit_row": 100})
        ),
    ),
    Row(
        "unavailable: the CRM database does not answer",
        ("trigger", *C, "--tenant", TENANT),
        "SOURCE_UNAVAILABLE",
        {"CRM_AUDIT_DATABASE_URL": "postgresql://ro@127.0.0.1:{port}/crm"},
        setup=_contacts,
    ),
    Row(
        "unavailable: MongoDB does not answer within the URI's timeout",
        ("status", *C),
        "STORE_UNAVAILABLE",
        {"CRM_AUDIT_MONGO_URI": "mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300"},
        own_mongo=True,
    ),
    Row(
        "unavailable: a --workers process is killed mid-run",
        ("run", *C, "--no-progress", "--workers", "2"),
        "WORKER_LOST",
        WORKER_PAGES,
        setup=_contacts_and(IN_PROGRESS),
        prepare=_workers_die,
    ),
    Row(
        "unavailable: the task broker does not answer, so nothing is triggered",
        ("enqueue", *C),
        "UNAVAILABLE",
        {"CRM_AUDIT_BROKER_URL": "redis://:Kx9vQ7zRwq@127.0.0.1:{port}/0"},
        setup=_contacts,
        hides="Kx9vQ7zRwq",
    ),
    Row("input: a malformed audits file", (*DRY_RUN,), "BAD_INPUT", setup=_bad_audits),
    Row(
        "file: --out cannot be written",
        ("dry-run", "--example", "--out", "{tmp}/missing-dir/logs.jsonl"),
        "FILE_ERROR",
        names="{tmp}/missing-dir/logs.jsonl",
    ),
    Row(
        "file: a pipe as --out (the sink reads its file back before appending)",
        ("dry-run", "--example", "--out", "{tmp}/pipe.jsonl"),
        "FILE_ERROR",
        setup=_fifo,
        names="{tmp}/pipe.jsonl",
    ),
    Row(
        "refused: another dry run is writing the same --out",
        ("dry-run", "--example", "--out", "{tmp}/logs.jsonl"),
        "OUTPUT_LOCKED",
        setup=_out_held,
        names="{tmp}/logs.jsonl",
    ),
    Row(
        "config: a settings file that never ends",
        ("status", *C),
        "CONFIG_INVALID",
        {"CRM_AUDIT_SETTINGS": "/dev/zero"},
        names="/dev/zero",
    ),
    Row(
        "config: a mapping file that never ends",
        ("dry-run", "--example", "--config", "/dev/zero"),
        "CONFIG_INVALID",
        names="/dev/zero",
    ),
    Row("declined: rollback with no terminal, an answer piped in", ("rollback", *C), "DECLINED", stdin="y\n"),
    Row("declined: rollback with no terminal and no answer", ("rollback", *C), "DECLINED", stdin=""),
    Row("interrupted: a second Ctrl-C", ("status", *C), "INTERRUPTED", prepare=_raise(KeyboardInterrupt())),
    Row("internal: a bug", ("status", *C), "INTERNAL", prepare=_raise(RuntimeError("a bug"))),
]


@pytest.fixture(scope="module")
def guarded_redis_port() -> Iterator[str]:
    """The port of a Redis that wants a password no row gives."""
    with running_redis(password="the-right-one") as url:
        yield url.rsplit(":", 1)[1].split("/", 1)[0]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_error_code_exits_with_its_class(
    row: Row,
    crm_dsn: str,
    usman: UsmanServer,
    guarded_redis_port: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command ends with ``error: CODE: …`` on stderr, the code's documented exit status, no
    traceback, and no piece of any secret it was given."""
    client = mongomock.MongoClient(tz_aware=True)
    world = World(client, crm_dsn, tmp_path)
    if row.indexes:
        apply_migration(client["cdp"], "up")
    if row.setup is not None:
        row.setup(world)
    if row.code == "DEPENDENCY_MISSING":
        monkeypatch.setitem(sys.modules, "mongomock", None)  # as if the package were not installed
    fill = {
        "dsn": crm_dsn,
        "dsn_no_such_db": re.sub(r"/[^/?]*(\?|$)", r"/no_such_db\1", crm_dsn, count=1)
        if "://" in crm_dsn
        else f"{crm_dsn} dbname=no_such_db",
        "dsn_sslmode_bogus": _with_option(crm_dsn, "sslmode", "bogus"),
        "dsn_bad_server_option": _with_option(crm_dsn, "options", "-c statement_timeout=soon"),
        "tmp": str(tmp_path),
        "port": str(free_port()),
        "guarded_redis_port": guarded_redis_port,
    }
    env = {
        "CRM_AUDIT_SETTINGS": "",
        "CRM_AUDIT_DATABASE_URL": crm_dsn,
        "CRM_AUDIT_MONGO_URI": "mongomock://",
        "CRM_AUDIT_USMAN_BASE_URL": usman.url,
        "CRM_AUDIT_USMAN_TOKEN": TOKEN,
        "CRM_AUDIT_ENABLED_COMPANIES": "*",
        "CRM_AUDIT_TENANTS": f"{COMPANY}={TENANT}",
        **row.env,
    }
    env = {key: value.format(**fill) for key, value in env.items()}
    args = [arg.format(**fill) for arg in row.args]
    overrides = Overrides(mongo_client=None if row.own_mongo else client, prepare=row.prepare)
    result = CliRunner().invoke(cli, args, obj=overrides, env=env, input=row.stdin)

    assert result.exit_code == exit_codes.CODES[row.code], result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {row.code}: "), errors[0]
    assert "Traceback" not in result.output
    if row.names:
        assert row.names.format(**fill) in errors[0]
    if row.hides:
        assert not {row.hides[i : i + 4] for i in range(len(row.hides) - 3)} & set(_windows(result.output))


def _with_option(dsn: str, key: str, value: str) -> str:
    if "://" in dsn:
        return f"{dsn}{'&' if '?' in dsn else '?'}{key}={quote(value)}"
    return f"{dsn} {key}='{value}'"


def _windows(text: str) -> list[str]:
    return [text[i : i + 4] for i in range(len(text) - 3)]


def test_the_rows_cover_every_code_the_cli_can_print() -> None:
    """Every CODE of the exit-code table has a row above, except those no command line can produce."""
    assert {row.code for row in ROWS} == set(exit_codes.CODES) - NOT_FROM_THE_CLI - VERDICTS - set(
        NOT_RAISED_YET
    )
    raised = {
        code
        for code, call in NOT_RAISED_YET.items()
        for path in SRC.rglob("*.py")
        if f"raise {call}" in path.read_text()
    }
    assert raised == set(), f"now raised somewhere: add a row for {sorted(raised)}"


def test_an_unreachable_mongodb_is_announced_and_bounded_by_the_uris_timeout() -> None:
    """With serverSelectionTimeoutMS=1500 in the URI the runner says where it is connecting after a
    second, gives up after that one timeout (no retries on top), and exits 6."""
    env = {
        "CRM_AUDIT_SETTINGS": "",
        "CRM_AUDIT_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=1500",
    }
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["status", *C], obj=Overrides(), env=env)
    elapsed = time.monotonic() - started
    assert result.exit_code == exit_codes.UNAVAILABLE
    assert "connecting to MongoDB at 127.0.0.1:" in result.stderr
    assert "unreachable after 1.5 s (serverSelectionTimeoutMS)" in result.stderr
    assert elapsed < 10, elapsed  # 1.5 s of selection, plus start-up; 4 retries would be 6 s or more
