"""A job's final status as it must read after a crash and a resume: the clean run's, to the count.

The mission's rule is that a crash at any point resumes to the same final state as a clean run,
``status`` included. What may differ is when and by whom it ran (the job's id, its times, the
lease), never a count: outcomes, enrichment, cursor, progress, shards' counts, ``logs_deleted``.
"""

from __future__ import annotations

from typing import Any

from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.usecases.status import MigrationStatus

WHEN_AND_WHO = ("job_id", "created_at", "updated_at", "finished_at", "lease_owner", "lease_expires_at")
"""What a resumed run may change: the job's identity, its times and the lease."""


def final_status(job: MigrationJob | None, *, basis: bool = True) -> dict[str, Any]:
    """``status``'s document of ``job`` without ``WHEN_AND_WHO`` (its shards' leases too), and with
    ``basis`` the halt rule's basis, which ``status`` does not show but the halt rule reads: a crash
    keeps it; a ``--resume`` (after a cancel or a halt) sets it to the tally then, by design."""
    assert job is not None
    doc: dict[str, Any] = dict(MigrationStatus.of(job).as_dict())
    for key in WHEN_AND_WHO:
        doc.pop(key, None)
    doc["shards"] = [
        {k: v for k, v in shard.items() if k not in ("lease_owner", "lease_expires_at")}
        for shard in doc.get("shards", [])
    ]
    if basis:
        doc["halt_basis"] = job.halt_basis
    return doc
