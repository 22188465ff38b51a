"""Our own code at scale: extraction alone, transform alone, the whole dry run, the Mongo write path.

Each stage covers the whole in-scope range of the synthetic tenant in pages of 500, exactly as the
run loop does, and returns the rows it handled (plus, where only part of the work is timed, the
timed seconds). A stage whose code is not importable raises :class:`Missing` naming what is absent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import importlib
import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from scale_context import PAGE_SIZE, Context


def _rss_now() -> int:
    """VmRSS in KiB: what the ports' data (contacts, SSO ids) cost before the loop starts."""
    for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115 - tiny procfs read
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Missing(Exception):
    """The code a stage measures is not there (yet): the message names the missing module or name."""


def need(module: str, *names: str) -> Any:
    """Import ``module`` and return it (or the named attributes), or raise ``Missing``."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise Missing(f"{module} ({exc})") from None
    absent = [name for name in names if not hasattr(loaded, name)]
    if absent:
        raise Missing(f"{module}.{', '.join(absent)}")
    return loaded if not names else tuple(getattr(loaded, name) for name in names)


class WorkerSso:
    """The SSO file's directory in memory, sent to a page pool's workers as it is (``worker_copy``,
    ``ports.WorkerCopy``), as ``run --workers`` sends its USMAN client: the workers then look their
    pages up themselves, one trip a page."""

    def __init__(self, directory: Any) -> None:
        self._directory = directory

    def sso_ids_by_emails(self, company_sso_id: str, emails: Any) -> Any:
        return self._directory.sso_ids_by_emails(company_sso_id, emails)

    def worker_copy(self) -> WorkerSso:
        return self


def _session(ctx: Context) -> Any:
    (ReadOnlySession,) = need("crm_audit_adapters.crm_postgres", "ReadOnlySession")
    return ReadOnlySession.from_dsn(ctx.dsn)


def _source(ctx: Context, session: Any = None) -> Any:
    (PostgresAuditSource,) = need("crm_audit_adapters.crm_postgres", "PostgresAuditSource")
    return PostgresAuditSource(session or _session(ctx))


def _pages(ctx: Context, source: Any) -> Iterator[Any]:
    after_id = 0
    while page := source.page(ctx.schema, ctx.scope, after_id=after_id, cutoff=ctx.cutoff, limit=PAGE_SIZE):
        yield page
        after_id = page[-1].id
        if ctx.limit and after_id >= ctx.limit:
            return


def extract(ctx: Context) -> dict[str, Any]:
    source = _source(ctx)
    rows = 0
    for page in _pages(ctx, source):
        rows += len(page)
    return {"rows": rows}


class Lookups:
    """The lookup ports of a dry run: CRM users from PostgreSQL, contacts and SSO ids from the JSONL."""

    def __init__(self, ctx: Context, *, users_in_memory: bool, contacts_in_memory: bool) -> None:
        read_contacts, read_sso_directory, JsonlContactDirectory = need(
            "crm_audit_adapters.files", "read_contacts", "read_sso_directory", "JsonlContactDirectory"
        )
        sso_cls, contacts_cls, users_cls = need(
            "crm_audit_transform.testing",
            "InMemorySsoDirectory",
            "InMemoryContactDirectory",
            "InMemoryUserDirectory",
        )
        self.sso = sso_cls(read_sso_directory(ctx.data_dir / "sso.jsonl", ctx.company_sso_id))
        contacts_path = ctx.data_dir / "contacts.jsonl"
        # The dry run keeps only an index of person ids and line offsets in memory (the file is read
        # per page); the transform stage keeps every contact in memory to time the transform alone.
        if contacts_in_memory:
            self.contacts = contacts_cls(read_contacts(contacts_path))
        else:
            self.contacts = JsonlContactDirectory(contacts_path)
        if users_in_memory:
            self.users = users_cls({ctx.schema: self._users(ctx)})
        else:
            (PostgresUserDirectory,) = need("crm_audit_adapters.crm_postgres", "PostgresUserDirectory")
            self.users = PostgresUserDirectory(_session(ctx))

    @staticmethod
    def _users(ctx: Context) -> list[Any]:
        import psycopg
        from psycopg import sql

        (CrmUser,) = need("crm_audit_transform.domain", "CrmUser")
        query = sql.SQL("SELECT id, email, full_name, deleted_at FROM {}.users").format(
            sql.Identifier(ctx.schema)
        )
        with psycopg.connect(ctx.dsn) as conn:
            rows = conn.execute(query).fetchall()
        return [
            CrmUser(id, email, full_name, None if deleted is None else deleted.replace(tzinfo=dt.UTC))
            for id, email, full_name, deleted in rows
        ]


def _row_feed(ctx: Context) -> Iterator[list[Any]]:
    """Pages of AuditRow from one server-side cursor: the rows a transform needs, fetched untimed."""
    import psycopg

    from scale_context import AUDIT_COLUMNS

    (AuditRow,) = need("crm_audit_transform.domain", "AuditRow")
    with psycopg.connect(ctx.dsn) as conn, conn.cursor(name="feed") as cursor:
        cursor.itersize = PAGE_SIZE
        cursor.execute(ctx.select(AUDIT_COLUMNS), ctx.params)
        while batch := cursor.fetchmany(PAGE_SIZE):
            page = []
            for values in batch:
                fields = dict(zip(AUDIT_COLUMNS, values, strict=True))
                fields["created_at"] = fields["created_at"].replace(tzinfo=dt.UTC)
                page.append(AuditRow(tenant=ctx.schema, **fields))
            yield page
            if ctx.limit and page[-1].id >= ctx.limit:
                return


def transform(ctx: Context) -> dict[str, Any]:
    (Transformer,) = need("crm_audit_transform.transformer", "Transformer")
    fetch_lookups, LookupPorts = need("crm_audit_transform.lookup", "fetch_lookups", "LookupPorts")
    lookups = Lookups(ctx, users_in_memory=True, contacts_in_memory=True)
    transformer = Transformer(ctx.config)
    company = ctx.company_sso_id
    rows = 0
    timed = 0.0
    outcomes: dict[str, int] = {}
    clock = time.perf_counter
    for page in _row_feed(ctx):
        started = clock()
        prepared = transformer.prepare(page)
        lookup_ctx = fetch_lookups(
            transformer.plan(prepared),
            company_sso_id=company,
            tenant=ctx.schema,
            ports=LookupPorts(lookups.users, lookups.sso, lookups.contacts),
        )
        result = transformer.transform(prepared, lookup_ctx, company_sso_id=company)
        timed += clock() - started
        rows += len(page)
        for outcome in result.outcomes:
            key = type(outcome).__name__ + ("" if not hasattr(outcome, "reason") else f":{outcome.reason}")
            outcomes[key] = outcomes.get(key, 0) + 1
    return {"rows": rows, "seconds": timed, "outcomes": outcomes}


class _Limited:
    """An AuditSource that ends after ``limit`` ids (to profile part of a range)."""

    def __init__(self, source: Any, limit: int) -> None:
        self._source, self._limit = source, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def page(self, tenant: str, scope: Any, *, after_id: int, cutoff: dt.datetime, limit: int) -> Any:
        if after_id >= self._limit:
            return ()
        return self._source.page(tenant, scope, after_id=after_id, cutoff=cutoff, limit=limit)

    def page_ids(self, tenant: str, scope: Any, *, after_id: int, cutoff: dt.datetime, limit: int) -> Any:
        if after_id >= self._limit:
            return ()
        return self._source.page_ids(tenant, scope, after_id=after_id, cutoff=cutoff, limit=limit)


class _RowsOnly:
    """The source without its page ids (``ports.AuditPageIds``): the pool is sent the rows, as
    before workers read their own pages by id range."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def scope_bounds(self, *args: Any, **kwargs: Any) -> Any:
        return self._source.scope_bounds(*args, **kwargs)

    def page(self, *args: Any, **kwargs: Any) -> Any:
        return self._source.page(*args, **kwargs)

    def audit_by_id(self, *args: Any, **kwargs: Any) -> Any:
        return self._source.audit_by_id(*args, **kwargs)


def _postmaster(dsn: str) -> int | None:
    """The PostgreSQL server's postmaster pid (the parent of a backend), None when it is not a
    process of this machine that /proc lets us read."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        try:
            return int(_stat_fields(int(row[0]))[1]) if row else None
        except (OSError, IndexError, ValueError):
            return None


def _server_cpu_seconds(postmaster: int | None) -> float | None:
    """The server's CPU so far: the postmaster's own, its ended children's (every backend that has
    closed: ``cutime + cstime``, reaped by the postmaster) and its live children's (``utime + stime``).

    A difference of two readings is the server's CPU in between, give or take what a backend that
    ended in between had spent before the first reading."""
    if postmaster is None:
        return None
    ticks = 0
    try:
        ticks += sum(int(field) for field in _stat_fields(postmaster)[11:15])
    except (OSError, IndexError, ValueError):
        return None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and ")": split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _run_loop_collection() -> Any:
    """The collector settings the run and dry-run commands use around their loop (a tree from
    before ``crm_audit_adapters.collector`` ran with CPython's defaults, as its commands did)."""
    try:
        (run_loop_collection,) = need("crm_audit_adapters.collector", "run_loop_collection")
    except Missing:
        return contextlib.nullcontext()
    return run_loop_collection()


def _collector_passes() -> list[int]:
    """The collector's passes so far, per generation (young, middle, full)."""
    return [generation["collections"] for generation in gc.get_stats()]


def _usage_since(started: Any, passes: list[int]) -> dict[str, Any]:
    """What a loop cost this process beyond its CPU seconds: user and system CPU apart, page faults
    (minor: a page first touched or copied on write after a fork), context switches (voluntary: a
    wait for PostgreSQL or the disk) and the collector's passes per generation."""
    ended = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user_seconds": round(ended.ru_utime - started.ru_utime, 3),
        "system_seconds": round(ended.ru_stime - started.ru_stime, 3),
        "minor_faults": ended.ru_minflt - started.ru_minflt,
        "major_faults": ended.ru_majflt - started.ru_majflt,
        "voluntary_switches": ended.ru_nvcsw - started.ru_nvcsw,
        "involuntary_switches": ended.ru_nivcsw - started.ru_nivcsw,
        "collector_passes": [now - before for now, before in zip(_collector_passes(), passes, strict=True)],
    }


def _run_loop(
    ctx: Context,
    logs: Any,
    sso: Any = None,
    pipeline: Any = None,
    *,
    rows_only: bool = False,
    shard: int | None = None,
    ready: Any = None,
    run_options: dict[str, Any] | None = None,
    two_trips: bool = False,
    job: Any = None,
) -> dict[str, Any]:
    """The ops runner's loop over the whole range: PostgreSQL → transform → ``logs``.

    SSO ids come from ``sso`` when given (the USMAN HTTP client), else from the file in memory;
    ``pipeline`` transforms the pages (None: in this process); ``rows_only`` hides the source's page
    ids, so a pool is sent the rows. With ``shard`` (0 or 1) the job is cut into ``IDEAL_SHARDS``
    shards of equal row counts and only that shard is run (``usecases.shards.run_shard``);
    ``ready``, if given, is called once the setup is done, just before the timed loop.
    ``run_options`` go to ``run_shard`` (``owner``, ``should_stop``, ``on_progress``); the result
    then holds the ``RunResult`` under ``"result"``. The SSO directory can be sent to a pool's
    workers (``WorkerSso``), as ``run``'s USMAN client can, unless ``two_trips``: the pool then makes
    the lookups in this process, as before one trip a page. ``job``: the job as already cut (a
    shard process of ``end_to_end_shards`` is given its runner's, as a product shard process reads
    it from the store), instead of cutting it here (the splitter's queries).
    """
    (Transformer,) = need("crm_audit_transform.transformer", "Transformer")
    RunPorts, RunSettings, run_job = need(
        "crm_audit_transform.usecases.run", "RunPorts", "RunSettings", "run_job"
    )
    (new_job,) = need("crm_audit_transform.usecases.guards", "new_job")
    InMemoryJobStore, FixedClock, InMemoryIndexState = need(
        "crm_audit_transform.testing", "InMemoryJobStore", "FixedClock", "InMemoryIndexState"
    )
    session = _session(ctx)
    source = _source(ctx, session)
    if ctx.limit:
        source = _Limited(source, ctx.limit)
    if rows_only:
        source = _RowsOnly(source)
    lookups = Lookups(ctx, users_in_memory=False, contacts_in_memory=False)
    transformer = Transformer(ctx.config)
    clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    jobs = InMemoryJobStore()
    shards = 1 if shard is None else IDEAL_SHARDS
    jobs.create(
        job
        or new_job(
            ctx.company_sso_id,
            ctx.schema,
            source=source,
            scope=transformer.scope,
            now=clock.now(),
            shards=shards,
        )
    )
    ports = RunPorts(
        source=source,
        users=lookups.users,
        sso=sso if sso is not None else (lookups.sso if two_trips else WorkerSso(lookups.sso)),
        contacts=lookups.contacts,
        logs=logs,
        jobs=jobs,
        clock=clock,
        indexes=InMemoryIndexState(),
    )
    # No halt: a benchmark must cover the whole range whatever the failure rate (failures are counted).
    settings = RunSettings(halt_threshold=1.0)
    setup_rss = _rss_now()
    server = _postmaster(ctx.dsn)
    server_started = _server_cpu_seconds(server)
    if ready is not None:
        ready()
    started, cpu_started = time.perf_counter(), time.process_time()
    usage_started, passes_started = resource.getrusage(resource.RUSAGE_SELF), _collector_passes()
    with _run_loop_collection():  # as the run and dry-run commands run it
        heap = {"tracked_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count()}
        if shard is None:
            result = run_job(
                ctx.company_sso_id, ports, transformer, owner="bench", settings=settings, pipeline=pipeline
            )
        else:
            (run_shard,) = need("crm_audit_transform.usecases.shards", "run_shard")
            options = {"owner": "bench", **(run_options or {})}
            result = run_shard(
                ctx.company_sso_id, shard, ports, transformer, jobs=jobs, settings=settings, **options
            )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    usage = {**_usage_since(usage_started, passes_started), "heap_at_loop_start": heap}
    server_ended = _server_cpu_seconds(server)  # before the pool stops: its backends still live
    tally = result.job.tally
    if shard is not None:
        tally = result.job.shards[shard].tally
    return {
        **({"result": result} if run_options is not None else {}),
        "cpu_seconds": cpu_seconds,
        "usage": usage,
        "server_cpu_seconds": (
            None
            if server_started is None or server_ended is None
            else round(server_ended - server_started, 2)
        ),
        "rows": tally.processed,
        "seconds": seconds,
        "setup_rss_kib": setup_rss,
        "status": result.job.status,
        "steps": result.steps,
        "fallthrough": tally.fallthrough,
        "outcomes": {
            "migrated": tally.migrated,
            **{f"skipped:{k}": v for k, v in tally.skipped.items()},
            **{f"failed:{k}": v for k, v in tally.failed.items()},
        },
    }


def end_to_end(ctx: Context) -> dict[str, Any]:
    (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
    out = ctx.out_dir / f"activity-logs-{ctx.schema}.jsonl"
    out.unlink(missing_ok=True)
    with JsonlActivityLogSink(out, fsync="close") as sink:  # as the dry-run command writes
        result = _run_loop(ctx, sink)
    result["written_bytes"] = out.stat().st_size
    out.unlink()
    return result


def end_to_end_preloaded(ctx: Context) -> dict[str, Any]:
    """``end_to_end`` in a process that first imports what the fork server preloads for ``run
    --workers N`` (``fork_server.RUN_PRELOAD``), as a shard process has it: whether a row costs
    less for what is imported, not for where the process comes from."""
    (RUN_PRELOAD,) = need("crm_audit_adapters.fork_server", "RUN_PRELOAD")
    for module in RUN_PRELOAD:
        importlib.import_module(module)
    return end_to_end(ctx)


WORKERS = 2
"""``end_to_end_workers``: the pool's size, as ``run --workers 2``."""
IDEAL_SHARDS = 2
"""``end_to_end_ideal``: independent processes, one a shard of the account."""


IDEAL_WAIT_S = 3 * 3600
"""How long ``end_to_end_ideal`` waits at a barrier or for a shard's result (1M rows take minutes)."""


def end_to_end_ideal(ctx: Context) -> dict[str, Any]:
    """The two-core ideal for ``--workers 2``: ``end_to_end`` as ``IDEAL_SHARDS`` independent
    processes, each running one shard of the account (disjoint id ranges of equal row counts, as
    ``run_shard`` cuts them), each into its own file, nothing shared between them.

    The processes are forked from this one and set up (connections, lookups) before a barrier; the
    time runs from the barrier to the last one's end. ``cpu_seconds`` is their CPU summed
    (``shard_cpu_seconds`` each), ``server_cpu_seconds`` the PostgreSQL server's over the same
    span, read before the processes close their connections.
    """
    import multiprocessing

    (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
    ctx.cutoff  # noqa: B018 - read once here, not by each process (a query each)
    forked = multiprocessing.get_context("fork")
    # Bounded waits: a process that fails before a barrier, or never reports, breaks the barriers
    # and ends the stage with an error instead of hanging it (and a quiet window) for ever.
    start = forked.Barrier(IDEAL_SHARDS + 1, timeout=IDEAL_WAIT_S)
    stop = forked.Barrier(IDEAL_SHARDS + 1, timeout=IDEAL_WAIT_S)
    results = forked.Queue()

    def one(shard: int) -> None:
        try:
            out = ctx.out_dir / f"activity-logs-ideal-{shard}-{ctx.schema}.jsonl"
            out.unlink(missing_ok=True)
            with JsonlActivityLogSink(out, fsync="close") as sink:
                result = _run_loop(ctx, sink, shard=shard, ready=start.wait)
            ended = time.perf_counter()
            result["written_bytes"] = out.stat().st_size
            result["peak_rss_kib"] = _status_kib(os.getpid(), "VmHWM:")
            out.unlink()
        except BaseException as exc:
            start.abort()  # the parent and the other process stop waiting at once
            stop.abort()
            results.put((shard, 0.0, {"error": f"{type(exc).__name__}: {exc}"}))
            raise
        results.put((shard, ended, result))
        stop.wait()  # the server's CPU is read while this process's backend still lives

    # Daemons: a parent that fails does not wait for them at exit.
    processes = [forked.Process(target=one, args=(shard,), daemon=True) for shard in range(IDEAL_SHARDS)]
    for process in processes:
        process.start()
    server = _postmaster(ctx.dsn)
    start.wait()
    started = time.perf_counter()
    server_started = _server_cpu_seconds(server)
    shards = sorted(results.get(timeout=IDEAL_WAIT_S) for _ in processes)
    failed = [result["error"] for _, _, result in shards if "error" in result]
    if failed:
        raise RuntimeError(f"an ideal shard's process failed: {failed[0]}")
    server_ended = _server_cpu_seconds(server)
    stop.wait()
    for process in processes:
        process.join()
    ends = [ended for _, ended, _ in shards]
    parts = [result for _, _, result in shards]
    outcomes: dict[str, int] = {}
    for part in parts:
        for key, count in part["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + count
    return {
        "rows": sum(part["rows"] for part in parts),
        "seconds": max(ends) - started,
        "cpu_seconds": round(sum(part["cpu_seconds"] for part in parts), 2),
        "shard_cpu_seconds": [round(part["cpu_seconds"], 2) for part in parts],
        "shard_usage": [part["usage"] for part in parts],
        "shard_seconds": [round(ended - started, 2) for ended in ends],
        "shard_rows": [part["rows"] for part in parts],
        "shard_peak_rss_kib": [part["peak_rss_kib"] for part in parts],
        "server_cpu_seconds": (
            None
            if server_started is None or server_ended is None
            else round(server_ended - server_started, 2)
        ),
        "status": [part["status"] for part in parts],
        "steps": sum(part["steps"] for part in parts),
        "outcomes": outcomes,
        "written_bytes": sum(part["written_bytes"] for part in parts),
    }


@attrs.frozen
class ShardIntoFile:
    """A shard process's run for ``end_to_end_shards`` (a ``shard_processes.ShardRun``): the
    shard's ``_run_loop`` into a JSONL file of its own, as ``end_to_end_ideal``'s processes; what
    it measured goes to ``shard-{n}.json`` beside the file, with its phases (``PHASES``).
    ``job``: the job as the runner cut it (None: each process cuts it again, as this stage did
    before, two queries over the whole range each)."""

    ctx: Context
    job: Any = None

    def __call__(self, company_sso_id: str, shard: int, **options: Any) -> Any:
        marks = [("entered", time.monotonic(), time.process_time())]

        def mark(name: str) -> None:
            marks.append((name, time.monotonic(), time.process_time()))

        (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
        out = self.ctx.out_dir / f"activity-logs-shards-{shard}-{self.ctx.schema}.jsonl"
        out.unlink(missing_ok=True)
        with JsonlActivityLogSink(out, fsync="close") as sink:
            measured = _run_loop(
                self.ctx, sink, shard=shard, run_options=options, ready=lambda: mark("ready"), job=self.job
            )
            mark("loop_end")
        mark("sink_closed")
        # One clock for every process (CLOCK_MONOTONIC, Linux): the parent lines the phases up.
        measured["loop_span"] = [marks[1][1], marks[2][1]]
        result = measured.pop("result")
        measured["written_bytes"] = out.stat().st_size
        measured["peak_rss_kib"] = _status_kib(os.getpid(), "VmHWM:")
        out.unlink()
        mark("returned")
        measured["marks"] = marks
        (self.ctx.out_dir / f"shard-{shard}.json").write_text(json.dumps(measured))
        return result


class _TimedLauncher:
    """A ``ShardLauncher`` that notes when the parent started each shard and read its end."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.started: dict[int, list[float]] = {}
        self.ended: dict[int, float] = {}
        self.closed: list[float] = []

    @property
    def workers(self) -> int:
        return int(self.launcher.workers)

    def start(self, company_sso_id: str, shard: int) -> str:
        asked = time.monotonic()
        owner: str = self.launcher.start(company_sso_id, shard)
        self.started[shard] = [asked, time.monotonic()]
        return owner

    def next_event(self, timeout: float) -> Any:
        event = self.launcher.next_event(timeout)
        if event is not None and event.kind != "progress":
            self.ended[event.shard] = time.monotonic()
        return event

    def stop(self) -> None:
        self.launcher.stop()

    def close(self) -> None:
        asked = time.monotonic()
        self.launcher.close()
        self.closed = [asked, time.monotonic()]


def early_fork_server() -> float | None:
    """What ``console.start_fork_server_for`` does for ``run --workers N``: the fork server started
    first, with the product's ``RUN_PRELOAD`` (the benchmark's shard run imports nothing it lacks:
    its in-memory job store comes with ``crm_audit_adapters.bootstrap``), so its imports overlap
    the caller's. The ``time.monotonic()`` it was asked at; None in a tree without ``RUN_PRELOAD``
    (nothing started: the launcher starts it, as before)."""
    try:
        RUN_PRELOAD, ensure_fork_server = need(
            "crm_audit_adapters.fork_server", "RUN_PRELOAD", "ensure_fork_server"
        )
    except Missing:
        return None
    asked = time.monotonic()
    ensure_fork_server(RUN_PRELOAD)
    return asked


def _fork_server_cpu_seconds() -> float | None:
    """The fork server's CPU so far (its preload, mostly): it lives until this process ends."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # no public handle
    try:
        return None if pid is None else round(_cpu_seconds(pid), 2)
    except OSError:
        return None


PHASES = ("entered", "ready", "loop_end", "sink_closed", "returned")
"""A shard process's marks (``ShardIntoFile``): its run called (after the fork and the unpickling
of its arguments), its setup done (connections, lookups, the job), its loop and settle done, its
file closed (``fsync``), its result written."""


def end_to_end_shards(ctx: Context, *, early: bool = True, shards: int = IDEAL_SHARDS) -> dict[str, Any]:
    """``run --workers 2`` on a job cut in ``shards`` (``IDEAL_SHARDS``): the product's executor
    (``usecases.side_by_side.run_side_by_side`` over ``shard_processes.ProcessShardLauncher``)
    starts a process per shard (forkserver), each running ``ShardIntoFile`` — the ideal's shard
    run, into its own file — and reporting each batch on its pipe.

    ``early`` (the default), as the product does: the fork server is started when the stage
    starts, with the product's ``RUN_PRELOAD``, before the stage reads its job (the console
    script's early start for ``run --workers N``), and each shard process is given the job as the
    runner cut it (a product shard process reads it from the store). Else, as this stage measured
    before (``end_to_end_shards_late``): the launcher starts the fork server, and each shard
    process cuts the job again (the splitter's two queries over the whole range).

    ``seconds`` runs from the first shard's loop start to the last one's end (as ``end_to_end``
    and ``end_to_end_ideal`` time their loops, not their setup; the shards are not held at a
    barrier, so a late start counts); ``total_seconds`` is what a run takes besides: from the
    launcher's construction (the fork server's start unless ``early``, the processes' imports and
    setup: connections, lookups) to the end of ``run_side_by_side``; ``stage_seconds`` from the
    stage's start (the early start, the job's reading and cut). ``cpu_seconds`` is this
    process's, ``worker_cpu_seconds`` each shard process's loop; ``phases`` the timeline (seconds
    from the stage's start) and the CPU (seconds, cumulative) of each process at each mark.
    """
    begun = time.monotonic()
    server_asked = early_fork_server() if early else None
    (ProcessShardLauncher,) = need("crm_audit_adapters.shard_processes", "ProcessShardLauncher")
    (run_side_by_side,) = need("crm_audit_transform.usecases.side_by_side", "run_side_by_side")
    (RunSettings,) = need("crm_audit_transform.usecases", "RunSettings")
    (new_job,) = need("crm_audit_transform.usecases.guards", "new_job")
    InMemoryJobStore, FixedClock = need("crm_audit_transform.testing", "InMemoryJobStore", "FixedClock")
    ctx.cutoff  # noqa: B018 - read once here
    clock = FixedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    source = _source(ctx)
    if ctx.limit:
        source = _Limited(source, ctx.limit)
    # The parent's view of the job: the same cut each shard process makes of the same rows.
    job = new_job(
        ctx.company_sso_id, ctx.schema, source=source, scope=ctx.scope, now=clock.now(), shards=shards
    )
    jobs = InMemoryJobStore()
    jobs.create(job)
    seen: list[Any] = []
    for shard in range(shards):
        (ctx.out_dir / f"shard-{shard}.json").unlink(missing_ok=True)
    job_read = time.monotonic()
    cpu_started = time.process_time()
    origin = begun
    run = ShardIntoFile(ctx, job if early else None)
    # Two, the launcher's least: a one-shard job starts one process all the same.
    launcher = _TimedLauncher(ProcessShardLauncher(max(2, shards), run))
    built = time.monotonic()
    run_side_by_side(
        job,
        launcher,
        jobs=jobs,
        clock=clock,
        settings=RunSettings(halt_threshold=1.0),
        on_progress=seen.append,
    )
    ended = time.monotonic()
    total_seconds = ended - job_read
    cpu_seconds = time.process_time() - cpu_started
    parts = [json.loads((ctx.out_dir / f"shard-{shard}.json").read_text()) for shard in range(shards)]
    first, last = min(p["loop_span"][0] for p in parts), max(p["loop_span"][1] for p in parts)
    outcomes: dict[str, int] = {}
    for part in parts:
        for key, count in part["outcomes"].items():
            outcomes[key] = outcomes.get(key, 0) + count
    whole = seen[-1]

    def at(moment: float) -> float:
        return round(moment - origin, 3)

    phases: dict[str, Any] = {
        "early_start": server_asked is not None,
        "runner": {
            "job_read": at(job_read),
            "launcher_built": at(built),
            "started": {str(s): [at(a), at(b)] for s, (a, b) in sorted(launcher.started.items())},
            "end_read": {str(s): at(t) for s, t in sorted(launcher.ended.items())},
            "closed": [at(t) for t in launcher.closed],
            "returned": at(ended),
            "cpu_seconds": round(time.process_time(), 2),
        },
        "fork_server_cpu_seconds": _fork_server_cpu_seconds(),
        "shards": [{name: [at(t), round(cpu, 3)] for name, t, cpu in part["marks"]} for part in parts],
    }
    return {
        "rows": whole.tally.processed,
        "seconds": last - first,
        "total_seconds": round(total_seconds, 3),
        "stage_seconds": round(ended - begun, 3),
        "workers": shards,
        "cpu_seconds": round(cpu_seconds, 2),
        "worker_cpu_seconds": [round(part["cpu_seconds"], 2) for part in parts],
        "shard_usage": [part["usage"] for part in parts],
        "shard_rows": [part["rows"] for part in parts],
        "shard_loop_seconds": [round(part["seconds"], 2) for part in parts],
        "shard_loop_starts": [round(part["loop_span"][0] - first, 2) for part in parts],
        "shard_peak_rss_kib": [part["peak_rss_kib"] for part in parts],
        "server_cpu_seconds": None,
        "status": [shard.status for shard in whole.shards],
        "progress_reports": len(seen),
        "outcomes": outcomes,
        "written_bytes": sum(part["written_bytes"] for part in parts),
        "phases": phases,
    }


def end_to_end_shards_late(ctx: Context) -> dict[str, Any]:
    """``end_to_end_shards`` as it measured before it did what the product does: the fork server
    started by the launcher, the job cut again in each shard process."""
    return end_to_end_shards(ctx, early=False)


def end_to_end_shards_one(ctx: Context) -> dict[str, Any]:
    """``end_to_end`` (one process, every row) in a process forked from the fork server as a shard
    process is (the product's ``RUN_PRELOAD``, started as ``run --workers N`` starts it), instead of
    a process started afresh: its ``cpu_seconds`` against ``end_to_end``'s is a row's CPU in a shard
    process's kind of process against one's, for the same rows and the same loop."""
    import multiprocessing

    if early_fork_server() is None:
        raise Missing("crm_audit_adapters.fork_server.RUN_PRELOAD")
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(end_to_end, (ctx,))
    return result


def end_to_end_workers(
    ctx: Context,
    *,
    share: bool = True,
    pages_per_worker: int | None = None,
    own_pages: int | None = None,
    rows_only: bool = False,
    two_trips: bool = False,
    early: bool = False,
    switch_interval_s: float | None = None,
    workers: int = WORKERS,
) -> dict[str, Any]:
    """``end_to_end`` with the pages loaded and transformed by ``workers`` processes (``--workers``):
    this one and ``workers - 1`` workers; without ``share``, ``workers`` workers and this process only
    reads, looks up and writes (the design before the runner shared the work). The workers read
    their pages' rows by id range; with ``rows_only`` this process reads the rows and sends them (the
    design before that). The workers make their pages' lookups (one trip a page) unless ``two_trips``.

    The time includes starting the pool (at the first page), as a run's does. With ``early`` the fork
    server is started first, with the product's ``RUN_PRELOAD``, as ``run --workers N`` starts it
    before its CLI loads (``scale_stages.py`` starts it before this process imports the package:
    ``stage_start``; else ``early_fork_server``), so its imports overlap this stage's imports and
    setup, and the pool is built as ``run --workers N`` builds it (its workers started at once where
    the tree does so: ``ProcessPagePipeline.started``); without it (as this stage always measured)
    the pool starts the fork server at its first page, and the runner waits for its imports there.
    ``switch_interval_s``: the pool's thread switch interval during the run (its
    ``switch_interval_s``; None: the pool's default, Python's 5 ms). Besides
    this process's peak RSS, ``worker_peak_rss_kib`` is each worker's (VmHWM), and
    ``worker_cpu_seconds`` their CPU time, read before the pool stops.
    """
    server_asked = early_fork_server() if early else None
    (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
    ProcessPagePipeline, TransformerRecipe = need(
        "crm_audit_adapters.page_pool", "ProcessPagePipeline", "TransformerRecipe"
    )
    out = ctx.out_dir / f"activity-logs-workers-{ctx.schema}.jsonl"
    out.unlink(missing_ok=True)
    recipe = TransformerRecipe(ctx.config)
    # Early, as `run --workers N` builds its pool (Runtime.use_workers): its workers started at once,
    # where the tree does so (`ProcessPagePipeline.started`), else at the run's first page.
    build = getattr(ProcessPagePipeline, "started", ProcessPagePipeline) if early else ProcessPagePipeline
    # As dry-run --workers wires it: the run loop hands the sink's log_encoder to the workers, which
    # encode the lines; the parent writes them.
    with (
        build(
            workers,
            recipe,
            share=share,
            **_depth(pages_per_worker),
            **_own(own_pages),
            **_switch(switch_interval_s),
        ) as pool,
        JsonlActivityLogSink(out, fsync="close") as sink,
    ):
        result = _run_loop(ctx, sink, pipeline=pool, rows_only=rows_only, two_trips=two_trips)
        workers = _grandchildren()
        result["worker_peak_rss_kib"] = [_status_kib(pid, "VmHWM:") for pid in workers]
        result["worker_cpu_seconds"] = [round(_cpu_seconds(pid), 2) for pid in workers]
    result["workers"] = workers
    result["early_start"] = server_asked is not None
    result["share"] = share
    if pages_per_worker is not None:
        result["pages_per_worker"] = pages_per_worker
    if own_pages is not None:
        result["own_pages"] = own_pages
    if switch_interval_s is not None:
        result["switch_interval_s"] = switch_interval_s
    result["rows_sent"] = rows_only
    result["two_trips"] = two_trips
    result["written_bytes"] = out.stat().st_size
    out.unlink()
    return result


def end_to_end_workers_early(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` started as ``run --workers N`` is: the fork server first
    (``early_fork_server``), its preload overlapping the stage's setup, before the pool's first page.
    Raises ``Missing`` in a tree without ``RUN_PRELOAD`` (it would measure the late start)."""
    result = end_to_end_workers(ctx, early=True)
    if not result["early_start"]:
        raise Missing("crm_audit_adapters.fork_server.RUN_PRELOAD")
    return result


def end_to_end_workers_early_n3(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` as ``run --workers 3`` (two worker processes and this one), on
    whatever cores the machine has: whether a third process fills the two cores' idle moments."""
    return end_to_end_workers(ctx, early=True, workers=3)


def end_to_end_workers_early_ppw3(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 3 pages in flight on the worker instead of 2 (this
    process's own still 2): a worker with a page queued while the runner takes a step of its own."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=3, own_pages=2)


def end_to_end_workers_early_p3o3(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 3 pages in flight on the worker and 3 of this process's own
    (instead of 2 and 2): each side has a page more to go on while the other holds its pages."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=3, own_pages=3)


def end_to_end_workers_early_p4o4(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 4 pages in flight on the worker and 4 of this process's own."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=4, own_pages=4)


def end_to_end_workers_early_p2o2(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 2 pages in flight on the worker and 2 of this process's own,
    whatever the pool's default (it was 2 and 2 until the pool's depth round)."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=2, own_pages=2)


def end_to_end_workers_early_p2o1(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 1 page of this process's own in flight (the worker's 2):
    this process takes a page of its own only one at a time, the worker more of the pages."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=2, own_pages=1)


def end_to_end_workers_early_p3o1(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 3 pages in flight on the worker and 1 of this process's own."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=3, own_pages=1)


def end_to_end_workers_early_p3o2(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 3 pages in flight on the worker and 2 of this process's own."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=3, own_pages=2)


def end_to_end_workers_early_p4o2(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with 4 pages in flight on the worker and 2 of this process's own."""
    return end_to_end_workers(ctx, early=True, pages_per_worker=4, own_pages=2)


def end_to_end_workers_early_si05ms(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with a 0.5 ms thread switch interval during the run (the pool's
    ``switch_interval_s``; Python's default is 5 ms)."""
    return end_to_end_workers(ctx, early=True, switch_interval_s=0.0005)


def end_to_end_workers_early_si1ms(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers_early`` with a 1 ms switch interval during the run."""
    return end_to_end_workers(ctx, early=True, switch_interval_s=0.001)


def end_to_end_workers_unshared(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` as before the runner shared the work: ``WORKERS`` worker processes."""
    return end_to_end_workers(ctx, share=False)


def end_to_end_workers_two_trips(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` with the lookups made in this process: two trips a page, as before
    the workers looked their pages up themselves."""
    return end_to_end_workers(ctx, two_trips=True)


def end_to_end_workers_rows(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` as before the workers read their own pages: this process reads the
    rows and sends them."""
    return end_to_end_workers(ctx, rows_only=True)


def end_to_end_workers_w3(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` with 3 pages in flight on the worker, 2 of this process's own."""
    return end_to_end_workers(ctx, pages_per_worker=3, own_pages=2)


def end_to_end_workers_own1(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` with 1 page of this process's own in flight, 2 on the worker."""
    return end_to_end_workers(ctx, own_pages=1)


def _depth(pages_per_worker: int | None) -> dict[str, int]:
    """``pages_per_worker`` if asked for; None: the pool's own default, as ``run --workers N`` builds
    it (until the pool's depth round this stage passed 2, then also the pool's default)."""
    return {} if pages_per_worker is None else {"pages_per_worker": pages_per_worker}


def _own(own_pages: int | None) -> dict[str, int]:
    """``own_pages`` for a pool that takes it (a tree from before it had none)."""
    return {} if own_pages is None else {"own_pages": own_pages}


def _switch(switch_interval_s: float | None) -> dict[str, float]:
    """``switch_interval_s`` for a pool that takes it (a tree from before it had none)."""
    return {} if switch_interval_s is None else {"switch_interval_s": switch_interval_s}


def end_to_end_workers_deep(ctx: Context) -> dict[str, Any]:
    """``end_to_end_workers`` with 4 pages in flight a process instead of 2."""
    return end_to_end_workers(ctx, pages_per_worker=4)


def _grandchildren() -> list[int]:
    """The pool's workers: children of this process's children (the fork server's)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return sorted(pid for child in parents.get(os.getpid(), []) for pid in parents.get(child, []))


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mongo_write(ctx: Context) -> dict[str, Any]:
    """The same run writing into MongoDB (a scratch database, dropped afterwards)."""
    if not ctx.mongo_uri:
        raise Missing("not measured: no server (set CRM_AUDIT_TEST_MONGO_URI or pass --mongo-uri)")
    import pymongo

    (MongoActivityLogStore,) = need("crm_audit_adapters.mongo", "MongoActivityLogStore")
    (apply_migration,) = need("crm_audit_adapters.mongo.indexes", "apply_migration")
    client: Any = pymongo.MongoClient(ctx.mongo_uri)
    name = f"crm_audit_bench_{ctx.schema}"
    try:
        client.drop_database(name)
        db = client[name]
        apply_migration(db, "up")
        return _run_loop(ctx, MongoActivityLogStore.in_database(db))
    finally:
        client.drop_database(name)
        client.close()


def verify_files(ctx: Context) -> dict[str, Any]:
    """The run into JSONL, then verify of that file against PostgreSQL: both rates from one process.

    ``rows``/``seconds`` are verify's (index build of the file included); ``run_rows_per_s`` is the
    run's over the same range just before, so ``verify_vs_run`` is a ratio within one run.
    """
    (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
    (JsonlMigratedLogReader,) = need("crm_audit_adapters.files.verification", "JsonlMigratedLogReader")
    (Transformer,) = need("crm_audit_transform.transformer", "Transformer")
    VerifyPorts, VerifySettings, verify_account = need(
        "crm_audit_transform.usecases.verify", "VerifyPorts", "VerifySettings", "verify_account"
    )
    out = ctx.out_dir / f"activity-logs-verify-{ctx.schema}.jsonl"
    out.unlink(missing_ok=True)
    try:
        with JsonlActivityLogSink(out, fsync="close") as sink:
            run = _run_loop(ctx, sink)
        source = _source(ctx)
        if ctx.limit:
            source = _Limited(source, ctx.limit)
        lookups = Lookups(ctx, users_in_memory=False, contacts_in_memory=False)
        started, cpu_started = time.perf_counter(), time.process_time()
        ports = VerifyPorts(source, lookups.users, lookups.sso, lookups.contacts, JsonlMigratedLogReader(out))
        report = verify_account(
            ctx.company_sso_id,
            ports,
            Transformer(ctx.config),
            tenant=ctx.schema,
            settings=VerifySettings(page_size=PAGE_SIZE),
        )
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    finally:
        out.unlink(missing_ok=True)
    run_rate = run["rows"] / run["seconds"] if run["seconds"] else 0.0
    rate = report.audits / seconds if seconds else 0.0
    return {
        "rows": report.audits,
        "seconds": seconds,
        "run_rows": run["rows"],
        "run_seconds": round(run["seconds"], 3),
        "run_rows_per_s": round(run_rate, 1),
        "verify_vs_run": round(rate / run_rate, 3) if run_rate else None,
        # This process's CPU time only (PostgreSQL's is the same pages for both): less exposed to a
        # shared machine's load than the wall-clock ratio.
        "verify_vs_run_cpu": round(run["cpu_seconds"] / cpu_seconds, 3) if cpu_seconds else None,
        "clean": report.clean,
        "migrated": report.migrated,
        "content_checked": report.content_checked,
        "outstanding": dict(report.outstanding),
    }


def _usman(ctx: Context) -> str:
    if not ctx.usman_url:
        raise Missing("no USMAN: run_scale.py starts usman_peer.py for this stage (--usman-url)")
    return ctx.usman_url


def end_to_end_http(ctx: Context) -> dict[str, Any]:
    """``end_to_end`` with SSO ids from USMAN over HTTP (batched per page): the naive port's setting."""
    from usman_peer import TOKEN

    (JsonlActivityLogSink,) = need("crm_audit_adapters.files", "JsonlActivityLogSink")
    UsmanClient, UsmanConfig = need("crm_audit_adapters.usman", "UsmanClient", "UsmanConfig")
    out = ctx.out_dir / f"activity-logs-http-{ctx.schema}.jsonl"
    out.unlink(missing_ok=True)
    with (
        UsmanClient(UsmanConfig(base_url=_usman(ctx), token=TOKEN)) as sso,
        JsonlActivityLogSink(out, fsync="close") as sink,
    ):
        result = _run_loop(ctx, sink, sso)
    result["written_bytes"] = out.stat().st_size
    out.unlink()
    return result


def _naive(ctx: Context, memoise: bool) -> dict[str, Any]:
    from naive_port import NaivePort
    from usman_peer import TOKEN

    out = ctx.out_dir / f"activity-logs-naive-{ctx.schema}.jsonl"
    port = NaivePort(ctx, _usman(ctx), TOKEN, memoise=memoise)
    try:
        started = time.perf_counter()
        with out.open("w", encoding="utf-8") as stream:
            rows = port.run(stream)
        seconds = time.perf_counter() - started
    finally:
        port.close()
        out.unlink(missing_ok=True)
    return {"rows": rows, "seconds": seconds, "outcomes": dict(port.counts)}


def naive(ctx: Context) -> dict[str, Any]:
    """The plan ported straight (naive_port.py): a query, a USMAN call and a contact lookup per row."""
    return _naive(ctx, memoise=False)


def naive_memo(ctx: Context) -> dict[str, Any]:
    """The naive port keeping every lookup it made in a dict."""
    return _naive(ctx, memoise=True)
