"""Where a run left its job (``RunResult``) and where the halt rule decided to halt (``HaltPoint``)."""

from __future__ import annotations

from attrs import frozen

from ..jobs import MigrationJob


@frozen
class HaltPoint:
    """Where the halt rule decided to halt: the cursor (last audit id counted) and the reason."""

    audit_id: int
    reason: str


@frozen
class RunResult:
    """Where a run left its job; ``stopped`` when a stop request ended it before the end.

    ``would_halt`` is the first point where the halt rule said halt: the job then is ``halted``
    there, or — with ``enforce_halt=False`` (the dry run) — it went on and only reports it.
    A job cancelled mid-run comes back with status ``cancelled``.
    """

    job: MigrationJob
    steps: int = 0
    stopped: bool = False
    would_halt: HaltPoint | None = None
