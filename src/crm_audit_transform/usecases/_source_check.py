"""The checks of a job's source mark and mapping mark, made before anything reads a row of the
source for that job: each run and shard run (``usecases.run``) and verify (``usecases.verify``);
and the growth of the source mark over rows added since, before a run hands one over."""

from __future__ import annotations

from typing import Final

import attrs

from ..errors import JobAlreadyRunning, MappingChanged, SourceChanged
from ..jobs import IN_PROGRESS, MigrationJob
from ..ports import AuditSource, GrowingSourceMarks, SourceMarks
from ..ports.job_store import RunJobStore
from ..transformer import Transformer


def check_source(source: AuditSource, job: MigrationJob) -> None:
    """``SourceChanged`` when ``source`` no longer holds what the job's ``source_mark`` marked (a file
    rewritten since the job was made): its cursor and counts are of rows the source may not hold
    now, so nothing is read; the job keeps them. ``audit_id`` is the job's cursor (a shard's view:
    the shard's). A job without a mark, or a source that keeps none, is not checked."""
    if job.source_mark is None or not isinstance(source, SourceMarks):
        return
    reason = source.mark_changed(job.source_mark)
    if reason is not None:
        raise SourceChanged.rewritten(job.last_audit_id, reason)


def check_mapping(transformer: Transformer, job: MigrationJob) -> None:
    """``MappingChanged`` when the running rules' mark (``Transformer.mapping_mark``) is not the
    job's ``mapping_mark``: its logs so far were written under another mapping, and the rest would
    be written under this one. A job without a mark (stored before it, a dry run's) is not checked."""
    if job.mapping_mark is not None and job.mapping_mark != transformer.mapping_mark:
        raise MappingChanged(job.job_id, job.mapping_mark, transformer.mapping_mark)


GROW_TRIES: Final = 64
"""How many times a run grows its job's mark again when another run's growth, stored first, does not
cover its own. Another run's growth covers the whole source as it read it, so one read after this
run's first growth covers it (the source only grows, or the growth raises): only a growth read
before, at most one per other run, can fall short. More than this many (the runner's most shards)
is not other runs' growth."""


def grow_source_mark(source: AuditSource, jobs: RunJobStore, job: MigrationJob, owner: str) -> MigrationJob:
    """``job`` with its ``source_mark`` grown over what ``source`` holds now, stored (under
    ``owner``'s lease), when the source holds more than the mark covers: rows added after the job
    was made (a file's rows appended), which the run has read or may read. Called before the run
    hands over a page, so every row behind its cursor lies within the stored mark, and a later
    run or verify refuses a source whose rows there changed, added ones included
    (``SourceChanged``); a crash between the growth and the page's writes leaves a mark that covers
    more than was written, never less. One cheap look (a ``stat``) while the source holds no more.

    Another run (a shard's) that stored its growth first does not refuse this one: when its mark
    covers this run's growth, the same bytes (``GrowingSourceMarks.mark_covers``), it is this run's
    too; else this run grows that mark and stores it in turn (``GROW_TRIES``).

    ``job`` as it is when nothing grew; the stored job (not in progress: cancelled or ended
    meanwhile) when the write found it so, for the run to stop; ``LeaseHeld`` when another runner
    holds the lease; the source's own error when what the mark covers changed under the run.
    ``JobAlreadyRunning`` when the stored mark fell short of this run's growth ``GROW_TRIES`` times.
    A source that marks but cannot grow a mark (``SourceMarks`` without ``GrowingSourceMarks``) is
    left as it was: its mark is checked, never grown.
    """
    if job.source_mark is None or not isinstance(source, GrowingSourceMarks):
        return job
    mark = job.source_mark
    grown = source.grown_mark(mark)
    if grown is None:
        return job
    for _ in range(GROW_TRIES):
        stored = jobs.grow_source_mark(job.job_id, owner, grown, previous=mark)
        if stored.status != IN_PROGRESS:
            return stored
        job = attrs.evolve(job, source_mark=stored.source_mark)
        if stored.source_mark == grown or stored.source_mark is None:
            return job
        # Another run grew the mark first. Its growth covers the whole source as it read it: when
        # that covers this one (the rows this run read), it stands for both.
        if source.mark_covers(stored.source_mark, grown):
            return job
        mark = stored.source_mark
        regrown = source.grown_mark(mark)
        if regrown is None:  # a source that shrank: the mark's next check says so
            return job
        grown = regrown
    raise JobAlreadyRunning(
        f"job {job.job_id}: its audits source's mark was grown by other runs, short of this run's, "
        f"under each of {GROW_TRIES} tries to grow it: run again"
    )
