"""Where a sharded job's shards run side by side: each elsewhere (another process), with ports of its own."""

from __future__ import annotations

from typing import Literal, Protocol

from attrs import frozen

from ..jobs import MigrationJob

ShardEventKind = Literal["progress", "done", "failed", "lost"]


@frozen
class ShardEvent:
    """What a shard running elsewhere reports (``ShardLauncher.next_event``).

    ``progress``: ``job`` is the shard's view after a durable batch (``usecases.shards.shard_view``).
    ``done``: its run ended; ``job`` is the whole job as its ``run_shard`` settled it, ``stopped``
    whether a stop request ended it. ``failed``: its run raised ``error`` (its lease was handed
    back, as ``run_shard`` does). ``lost``: its process ended without a word (killed, out of memory):
    ``error`` says how; its lease is still held by ``owner`` until handed back or expired.
    """

    shard: int
    kind: ShardEventKind
    job: MigrationJob | None = None
    stopped: bool = False
    error: BaseException | None = None


class ShardLauncher(Protocol):
    """Runs shards of an account's sharded job elsewhere, side by side: each a full ``run_shard``
    over ports of its own (its own connections and lookup cache) under a lease of its own.

    ``workers`` is how many may run at once (≥ 2). ``start`` returns the owner name the shard's
    lease is taken under. ``next_event`` waits at most ``timeout`` seconds (None if nothing came);
    every started shard ends with exactly one ``done``, ``failed`` or ``lost``. ``stop`` asks every
    running shard to stop after its batch in flight (``should_stop``); ``close`` ends any still
    running at once (their batches in flight are replayed by the next run).
    """

    @property
    def workers(self) -> int: ...

    def start(self, company_sso_id: str, shard: int) -> str: ...

    def next_event(self, timeout: float) -> ShardEvent | None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
