"""The checks of a job's source mark and mapping mark, made before anything reads a row of the
source for that job: each run and shard run (``usecases.run``) and verify (``usecases.verify``)."""

from __future__ import annotations

from ..errors import MappingChanged, SourceChanged
from ..jobs import MigrationJob
from ..ports import AuditSource, SourceMarks
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
