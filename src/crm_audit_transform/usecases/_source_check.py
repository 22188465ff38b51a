"""The check of a job's source mark, made before anything reads a row of the source for that job:
each run and shard run (``usecases.run``) and verify (``usecases.verify``)."""

from __future__ import annotations

from ..errors import SourceChanged
from ..jobs import MigrationJob
from ..ports import AuditSource, SourceMarks


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
