"""How far a dry run got, kept beside its ``--out`` file until it finishes: ``{out}.unfinished``.

A dry run's job lives in memory, so one stopped partway (Ctrl-C, a line that stops the read, a
crash) would leave no trace of where it stopped, and ``dry-run --verify`` of its output would list
every row it had not reached as ``missing``. So the dry run keeps its job in this small JSON file from
before its first log is written (``ProgressJobs.create``), rewrites it with the job as saved at most
once a second while it runs and once more when it stops on an error or a Ctrl-C, and removes it once
its output is closed at the end of a run that completed. ``--verify`` reads it (``read``): its job
is then verify's, so the rows past its cursor are ``pending`` (not lost: the dry run had not reached
them), and the command says the dry run did not finish and where it stopped (docs/files.md, docs/verify.md).

The file names no path and holds no value of a row: the job's ids, counts and dates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.jobs import IN_PROGRESS, MigrationJob
from crm_audit_transform.ports import Clock
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import InMemoryJobStore

from .errors import FileFormatError, FileWriteError

SUFFIX: Final = ".unfinished"
"""What the progress file adds to the ``--out`` file's name."""
EVERY_NS: Final = 1_000_000_000
"""How often at most a saved job is written while the dry run runs (nanoseconds): a file write a
save would cost a dry run of small batches about 4 %; once a second costs nothing measurable."""
_FORMAT: Final = 1
_DATES: Final = ("cutoff", "created_at", "updated_at")
_NUMBERS: Final = ("first_audit_id", "max_audit_id", "last_audit_id", "rows_at_cursor")


class DryRunProgress:
    """The progress file of the dry run whose output is ``out`` (``{out}.unfinished``)."""

    __slots__ = ("_written_ns", "path")

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(out.name + SUFFIX)
        self._written_ns: int | None = None

    def write(self, job: MigrationJob) -> None:
        """Keep ``job`` as the dry run's progress: a new file moved over the old one (``os.replace``),
        so a reader finds the one before or this one, whole. ``FileWriteError`` (``FILE_ERROR``) when
        it cannot be written: the dry run stops rather than leave an output whose end is unknown."""
        text = json.dumps(_encoded(job), separators=(",", ":"), sort_keys=True) + "\n"
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(text, encoding="ascii")
            os.replace(temporary, self.path)
        except OSError as exc:
            raise FileWriteError(self.path, f"cannot write the dry run's progress: {exc.strerror}") from exc
        self._written_ns = time.monotonic_ns()

    def saved(self, job: MigrationJob) -> None:
        """``write`` the job as saved, unless written less than ``EVERY_NS`` ago."""
        if self._written_ns is None or time.monotonic_ns() - self._written_ns >= EVERY_NS:
            self.write(job)

    def remove(self) -> None:
        """The dry run finished: its progress file goes (none is fine)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FileWriteError(self.path, f"cannot remove the dry run's progress: {exc.strerror}") from exc

    def read(self) -> MigrationJob | None:
        """The job of the dry run that did not finish writing ``out``; None when there is no such
        file (it finished, or never ran). ``FileFormatError`` (``BAD_INPUT``) for a file that is not
        one this module writes."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise FileFormatError(self.path, 1, f"not a dry run's progress: {type(exc).__name__}") from exc
        try:
            return _decoded(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FileFormatError(self.path, 1, f"not a dry run's progress: {type(exc).__name__}") from exc


class ProgressJobs(InMemoryJobStore):
    """The dry run's job store (in memory) that keeps its job in ``progress`` too: when it is made,
    before any log is written, and then as saved (``DryRunProgress.saved``)."""

    def __init__(self, progress: DryRunProgress, *, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.progress = progress

    def create(self, job: MigrationJob) -> None:
        super().create(job)
        self.progress.write(job)

    def save_progress(self, job: MigrationJob, owner: str, ttl: dt.timedelta | None) -> MigrationJob:
        saved = super().save_progress(job, owner, ttl)
        self.progress.saved(saved)
        return saved


def _encoded(job: MigrationJob) -> dict[str, object]:
    """What verify needs of the job: its account, scope, cursor and counts (not its lease)."""
    doc: dict[str, object] = {"format": _FORMAT, "job_id": job.job_id}
    doc["company_sso_id"], doc["tenant"] = job.company_sso_id, job.tenant
    doc.update({name: getattr(job, name).isoformat() for name in _DATES})
    doc.update({name: getattr(job, name) for name in _NUMBERS})
    doc["tally"], doc["enrichment"] = _counts(job.tally), _counts(job.enrichment)
    return doc


def _counts(tally: Tally | EnrichmentTally) -> dict[str, object]:
    return {
        field.name: dict(value) if isinstance(value, Mapping) else value
        for field in attrs.fields(type(tally))
        for value in (getattr(tally, field.name),)
    }


def _decoded(doc: object) -> MigrationJob:
    """The job ``_encoded`` wrote, in progress; ``ValueError``, ``TypeError`` or ``KeyError`` for
    anything else."""
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError("not a progress document")
    dates = {name: dt.datetime.fromisoformat(_text(doc[name])) for name in _DATES}
    numbers = {name: _int(doc[name]) for name in _NUMBERS}
    return MigrationJob(
        job_id=_text(doc["job_id"]),
        company_sso_id=_text(doc["company_sso_id"]),
        tenant=_text(doc["tenant"]),
        status=IN_PROGRESS,
        cutoff=dates["cutoff"],
        created_at=dates["created_at"],
        updated_at=dates["updated_at"],
        first_audit_id=numbers["first_audit_id"],
        max_audit_id=numbers["max_audit_id"],
        last_audit_id=numbers["last_audit_id"],
        rows_at_cursor=numbers["rows_at_cursor"],
        tally=Tally(**_counts_read(doc["tally"], Tally)),
        enrichment=EnrichmentTally(**_counts_read(doc["enrichment"], EnrichmentTally)),
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _counts_read(value: object, kind: type[Tally] | type[EnrichmentTally]) -> dict[str, Any]:
    """A tally's fields as ``_counts`` wrote them: each an integer, or reasons to integers."""
    names = {field.name for field in attrs.fields(kind)}
    if not isinstance(value, dict) or not set(value) <= names:
        raise KeyError("not a tally")
    for count in value.values():
        counts = count.values() if isinstance(count, dict) else (count,)
        if any(type(number) is not int for number in counts):
            raise TypeError("not a count")
    # Any: JSON's values, each an int or a dict of ints (checked above), as the tally's fields take.
    return value
