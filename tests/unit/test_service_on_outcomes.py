"""``MigrationService.run`` and ``run_shard`` hand each saved step's outcomes to ``on_outcomes``, as
``run_job`` and ``MigrationService.dry_run`` do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from crm_audit_transform.domain import Outcome
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World

SETTINGS = RunSettings(page_size=200, halt_threshold=1.0)


def every_id(world: World) -> list[int]:
    job = world.jobs.latest(world.company)
    assert job is not None
    return sorted(
        row.id
        for row in world.source.page(
            world.tenant, world.transformer.scope, after_id=-(2**63), cutoff=job.cutoff, limit=10**6
        )
    )


class TestOnOutcomes:
    @pytest.mark.parametrize("shards", [1, 3])
    def test_run_gives_every_rows_outcome_once(self, shards: int) -> None:
        """An unsharded job's run, and a sharded one's shards run one after another here: each row's
        outcome once, and as many as the job processed."""
        world = World()
        world.trigger(shards=shards)
        seen: list[Outcome] = []
        result = world.service(settings=SETTINGS).run(
            world.company, owner="runner-1", on_outcomes=seen.extend
        )
        assert result.job.status == "completed"
        assert sorted(o.audit_id for o in seen) == every_id(world)
        assert len(seen) == result.job.tally.processed

    def test_run_shard_gives_its_own_rows_outcomes(self) -> None:
        """One shard's run: the outcomes of that shard's rows only."""
        world = World()
        world.trigger(shards=2)
        seen: list[Outcome] = []
        result = world.service(settings=SETTINGS).run_shard(
            world.company, 0, owner="runner-1", on_outcomes=seen.extend
        )
        shard = result.job.shards[0]
        assert shard.until_id is not None
        assert seen
        assert all(shard.after_id < o.audit_id <= shard.until_id for o in seen)
        assert len(seen) == shard.tally.processed

    def test_shards_run_side_by_side_refuse_it_before_running(self) -> None:
        """Shards in other processes: their outcomes cannot reach the hook, so it is refused, and no
        shard is started."""
        world = World()
        world.trigger(shards=2)

        class Launcher:
            workers = 2

            def __getattr__(self, name: str) -> Any:
                raise AssertionError(f"a shard was started ({name})")

        def keep(outcomes: Sequence[Outcome]) -> None:
            raise AssertionError("no outcome expected")

        service = world.service(settings=SETTINGS, shards=Launcher())
        with pytest.raises(ValueError, match="side by side"):
            service.run(world.company, owner="runner-1", on_outcomes=keep)
