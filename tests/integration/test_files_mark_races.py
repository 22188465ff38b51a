"""Shards of one job over a growing audits file, each growing the job's mark in a process of its
own: one shard's growth is never refused for another's (``usecases._source_check.grow_source_mark``).

Each shard's run grows the job's mark before it hands a page, in one compare-and-set write. A run
that lost that write to another shard's growth grew the stored mark again and tried again, and
after 5 such losses stopped with ``JobAlreadyRunning``; a loss to a growth shorter than its own read
the file again from its first byte, long enough to lose again while rows were being appended. Now
another shard's growth that covers this run's (the same bytes) is this run's too, and a shorter one
is grown on from the mark this run last grew from.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from pymongo import MongoClient
from test_files_audits import TEXT_AUDITS

from crm_audit_adapters.bootstrap.runtime import SystemClock
from crm_audit_adapters.files import FileAuditSource, file_marks
from crm_audit_adapters.files.errors import FileChangedWhileRead
from crm_audit_adapters.files.file_marks import GrowingMark, digest_mark
from crm_audit_adapters.mongo import MongoJobStore
from crm_audit_transform.domain import ScopeBounds
from crm_audit_transform.errors import JobAlreadyRunning
from crm_audit_transform.usecases._source_check import grow_source_mark
from crm_audit_transform.usecases.shards import ShardJobs, split_shards
from support.mongo import T0, migration_job

SHARDS = 4
GROWS = 40
"""Growths each shard's process makes while rows are appended."""
START_BYTES = 8 << 20
"""The file's size at the trigger: a read of it from its first byte takes milliseconds."""


def _collection(client: MongoClient[dict[str, Any]], database: str) -> Any:
    return client[database].crm_activity_log_migration_jobs


def _grow_as_a_shard(uri: str, database: str, index: int, path: str, results: Any) -> None:
    """Shard ``index``'s run: its lease, its check of the mark, then ``GROWS`` growths."""
    failures = 0
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        jobs = MongoJobStore(_collection(client, database), clock=SystemClock())
        job = jobs.get("job-1")
        assert job is not None
        view = ShardJobs(jobs, job, index)
        owner = f"shard-{index}"
        job = view.acquire_lease("job-1", owner, dt.timedelta(minutes=10))
        with FileAuditSource(path, "acme") as source:
            assert job.source_mark is not None
            assert source.mark_changed(job.source_mark) is None
            for _ in range(GROWS):
                try:
                    job = grow_source_mark(source, view, job, owner)
                except JobAlreadyRunning:
                    failures += 1
                    fresh = jobs.get("job-1")
                    assert fresh is not None
                    job = attrs.evolve(job, source_mark=fresh.source_mark)
    results.put((index, failures))


def test_shards_growing_one_files_mark_side_by_side_are_never_refused(
    tmp_path: Path, shared_mongo_uri: str, wire_mongo_database: str
) -> None:
    """Four shard processes grow the job's mark 40 times each while rows are appended to the file:
    none is refused, and the stored mark is of the file's bytes (its check passes)."""
    lines = TEXT_AUDITS.read_bytes()
    path = tmp_path / "audits.jsonl"
    with path.open("wb") as out:
        while out.tell() < START_BYTES:
            out.write(lines)
    shards = split_shards(ScopeBounds(1, 400, T0, 400), SHARDS)
    job = migration_job(tenant="acme", first_audit_id=1, max_audit_id=400, last_audit_id=0, shards=shards)
    job = attrs.evolve(job, source_mark=digest_mark(path))
    with MongoClient(shared_mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        MongoJobStore(_collection(client, wire_mongo_database), clock=SystemClock()).create(job)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(
            target=_grow_as_a_shard, args=(shared_mongo_uri, wire_mongo_database, index, str(path), results)
        )
        for index in range(SHARDS)
    ]
    for process in processes:
        process.start()
    row = lines.split(b"\n", 1)[0] + b"\n"
    with path.open("ab") as appended:
        while any(process.is_alive() for process in processes):
            appended.write(row * 8)
            appended.flush()
            time.sleep(0.001)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    failures = dict(results.get(timeout=10) for _ in processes)
    assert failures == dict.fromkeys(range(SHARDS), 0)
    with MongoClient(shared_mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        stored = MongoJobStore(_collection(client, wire_mongo_database), clock=SystemClock()).get("job-1")
    assert stored is not None
    assert stored.source_mark is not None
    assert stored.source_mark != job.source_mark
    assert GrowingMark(path).changed(stored.source_mark) is None
    assert int(stored.source_mark.split(":")[1]) <= os.stat(path).st_size


def _marked(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    mark = digest_mark(path)
    assert mark is not None
    return path, mark


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The offsets each read of the file (``file_marks._feed``) starts at, from now on."""
    starts: list[int] = []
    feed = file_marks._feed

    def recorded(descriptor: int, digest: Any, start: int, limit: int | None) -> int:
        starts.append(start)
        return feed(descriptor, digest, start, limit)

    monkeypatch.setattr(file_marks, "_feed", recorded)
    return starts


class TestAnotherRunsGrowth:
    """``GrowingMark.covers``: another run's stored growth stands for this one's when it covers the
    same bytes; ``grown`` from a shorter one reads on from the mark this one grew from."""

    def _grown(self, tmp_path: Path) -> tuple[Path, str, GrowingMark, str]:
        path, mark = _marked(tmp_path, "a.jsonl", b"x" * 1_000_000)
        growing = GrowingMark(path)
        assert growing.changed(mark) is None
        with path.open("ab") as out:
            out.write(b"y" * 1000)
        grown = growing.grown(mark)
        assert grown is not None
        return path, mark, growing, grown

    def test_the_same_growth_covers(self, tmp_path: Path) -> None:
        """Another run's growth of the same bytes covers this one's."""
        _, _, growing, grown = self._grown(tmp_path)
        assert growing.covers(":".join(grown.split(":")[:3]), grown)  # its stamp, if any, aside

    def test_a_longer_growth_is_read_on_from_this_ones_end(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Grown after more rows were appended, it covers this one: only the bytes between are read."""
        path, _, growing, grown = self._grown(tmp_path)
        with path.open("ab") as out:
            out.write(b"z" * 500)
        theirs = digest_mark(path)
        assert theirs is not None
        starts = _reads(monkeypatch)
        assert growing.covers(theirs, grown)
        assert starts == [1_001_000]
        assert growing.grown(theirs) is None

    def test_a_shorter_growth_does_not_cover_and_grows_from_the_mark_before(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Grown before this one read its last rows, it covers fewer: this run grows it, reading
        from the mark it grew from (not from the file's first byte)."""
        path, _, growing, grown = self._grown(tmp_path)
        _, shorter = _marked(tmp_path, "b.jsonl", path.read_bytes()[:1_000_400])
        assert not growing.covers(shorter, grown)
        starts = _reads(monkeypatch)
        assert growing.grown(shorter) == grown
        assert min(starts) == 1_000_000

    @pytest.mark.parametrize("tail", [b"w" * 1000, b"y" * 999 + b"w" + b"z" * 500])
    def test_other_bytes_where_both_cover_the_file_are_refused(self, tmp_path: Path, tail: bytes) -> None:
        """A growth of other bytes than this one's, at its size or past it: the file changed."""
        path, _, growing, grown = self._grown(tmp_path)
        _, other = _marked(tmp_path, "b.jsonl", b"x" * 1_000_000 + tail)
        with path.open("ab") as out:
            out.write(b"z" * 500)
        with pytest.raises(FileChangedWhileRead, match="another run's mark"):
            growing.covers(other, grown)

    def test_a_file_cut_below_this_growth_is_refused(self, tmp_path: Path) -> None:
        """A shorter growth while the file no longer holds this one's bytes: it was cut."""
        path, mark, growing, grown = self._grown(tmp_path)
        os.truncate(path, 1_000_100)
        with pytest.raises(FileChangedWhileRead):
            growing.covers(mark, grown)
