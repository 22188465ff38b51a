"""A job keeps the mark of the mapping its trigger ran under (``MigrationJob.mapping_mark``), and
each run, shard run, verify and resume under another mapping is ``MappingChanged`` (a
``ConfigError``, exit 3) before anything is written. It used to write one account's logs under two
mappings (workers or a resume after a deploy with another ``CRM_AUDIT_MAPPING_CONFIG``), which only
verify showed later. The mark is of the parsed mapping: comments and key order do not count."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import attrs
import pytest

from crm_audit_adapters.cli.exit_codes import CONFIG, exit_code_for
from crm_audit_transform import ConfigError
from crm_audit_transform.chain import RowDraft, RuleChain, Stage, stage_codes
from crm_audit_transform.config import MappingConfig, load_config, load_default_config
from crm_audit_transform.config.mark import mapping_mark
from crm_audit_transform.errors import MappingChanged
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.rules.verdict import Rejection
from crm_audit_transform.transformer import Transformer
from support.corpus_account import World


def _other_mapping() -> MappingConfig:
    """The default mapping with one display name changed: other rules, other logs."""
    config = load_default_config()
    return attrs.evolve(config, actor=attrs.evolve(config.actor, system_name="Another System"))


def _default_text() -> str:
    return resources.files("crm_audit_transform.data").joinpath("default_mapping.yaml").read_text("utf-8")


class TestTheMark:
    def test_comments_and_key_order_leave_the_mark_as_it_was(self, tmp_path: Path) -> None:
        """The default file with a comment on every line and its top-level keys in reverse order
        parses to the same mapping: the same mark as the bundled default."""
        text = _default_text()
        blocks: list[list[str]] = []
        for line in text.splitlines():
            if line and not line[0].isspace() and not line.startswith("#"):
                blocks.append([line])
            elif blocks:
                blocks[-1].append(line)
        assert len(blocks) > 2
        reordered = "\n".join(
            f"{line}  # noted"
            if line.strip() and "#" not in line and not line.rstrip().endswith("|")
            else line
            for block in reversed(blocks)
            for line in block
        )
        path = tmp_path / "mapping.yaml"
        path.write_text("# another header\n" + reordered + "\n", encoding="utf-8")
        assert path.read_text(encoding="utf-8") != text
        assert load_config(path) == load_default_config()
        assert mapping_mark(load_config(path)) == mapping_mark(load_default_config())

    def test_another_value_is_another_mark(self) -> None:
        default = mapping_mark(load_default_config())
        assert default.startswith("mapping-sha256:")
        assert len(default) == len("mapping-sha256:") + 64
        assert mapping_mark(_other_mapping()) != default
        assert Transformer(_other_mapping()).mapping_mark == mapping_mark(_other_mapping())


class TestEveryRunChecksTheJobsMapping:
    def test_trigger_keeps_the_mark_and_a_run_under_another_mapping_writes_nothing(self) -> None:
        world = World()
        job_id = world.service().trigger(world.company, world.tenant).job_id
        job = world.jobs.latest(world.company)
        assert job is not None
        assert job.mapping_mark == mapping_mark(load_default_config())

        world.transformer = Transformer(_other_mapping())
        with pytest.raises(MappingChanged) as caught:
            world.service().run(world.company, owner="runner-b")
        assert isinstance(caught.value, ConfigError)
        assert exit_code_for(caught.value) == CONFIG
        assert "Another System" not in str(caught.value)  # marks only, never the mapping's content
        assert job.mapping_mark in str(caught.value)
        assert not world.logs.logs
        after = world.jobs.latest(world.company)
        assert after is not None
        assert after.job_id == job_id
        assert (after.status, after.last_audit_id, after.lease_owner) == (
            IN_PROGRESS,
            job.last_audit_id,
            None,
        )

        with pytest.raises(MappingChanged):
            world.service().verify(world.company, repair=True)
        assert not world.logs.logs

        world.transformer = Transformer(load_default_config())
        assert world.service().run(world.company, owner="runner-a").job.status == COMPLETED

    def test_a_shard_run_under_another_mapping_writes_nothing(self) -> None:
        world = World()
        world.service().trigger(world.company, world.tenant, shards=2)
        job = world.jobs.latest(world.company)
        assert job is not None
        assert len(job.shards) == 2
        world.transformer = Transformer(_other_mapping())
        with pytest.raises(MappingChanged):
            world.service().run_shard(world.company, 1, owner="runner-b")
        assert not world.logs.logs
        stored = world.jobs.latest(world.company)
        assert stored is not None
        assert stored.shards[1].lease_owner is None

    def test_a_job_without_a_mark_runs_under_any_mapping(self) -> None:
        """A job stored before the mark is not checked."""
        world = World()
        world.service().trigger(world.company, world.tenant)
        job = world.jobs.latest(world.company)
        assert job is not None
        world.jobs.save(attrs.evolve(job, mapping_mark=None))
        world.transformer = Transformer(_other_mapping())
        assert world.service().run(world.company, owner="runner-b").job.status == COMPLETED

    def test_a_resume_under_another_mapping_is_refused_and_fresh_takes_the_new_mark(self) -> None:
        world = World()
        service = world.service()
        service.trigger(world.company, world.tenant)
        service.cancel(world.company)
        cancelled = world.jobs.latest(world.company)
        assert cancelled is not None

        world.transformer = Transformer(_other_mapping())
        other = world.service()
        with pytest.raises(MappingChanged):
            other.trigger(world.company, world.tenant, restart="resume")
        assert world.jobs.latest(world.company) == cancelled

        world.clock.advance(60)  # a job id is its account and trigger time
        other.trigger(world.company, world.tenant, restart="fresh")
        fresh = world.jobs.latest(world.company)
        assert fresh is not None
        assert fresh.job_id != cancelled.job_id
        assert fresh.mapping_mark == mapping_mark(_other_mapping())
        assert other.run(world.company, owner="runner-b").job.status == COMPLETED


_DEFAULT_CATEGORY = RuleChain.from_config(load_default_config())["category"].run


def _category_in_code(draft: RowDraft) -> Rejection | None:
    """A service's own category stage (here the default's rule, but another function)."""
    return _DEFAULT_CATEGORY(draft)


def _chain_in_code() -> RuleChain:
    return RuleChain.from_config(load_default_config()).replacing("category", _category_in_code)


class TestARuleChainPassedInCode:
    def test_the_default_chain_keeps_the_mark_of_the_mapping_alone(self) -> None:
        """The mapping's own chain, passed or not, gives the mark jobs kept before the chain counted."""
        config = load_default_config()
        assert Transformer(config, chain=RuleChain.from_config(config)).mapping_mark == mapping_mark(config)

    def test_another_chain_is_another_mark_and_the_same_chain_the_same(self) -> None:
        """A stage replaced or added in code is other rules: another mark (of the same form); the same
        chain built again, as a worker or shard process builds it, has the same mark. Before, the
        mark was of the mapping alone, whatever chain ran."""
        config = load_default_config()
        replaced = Transformer(config, chain=_chain_in_code()).mapping_mark
        assert replaced != mapping_mark(config)
        assert replaced.startswith("mapping-sha256:")
        assert Transformer(config, chain=_chain_in_code()).mapping_mark == replaced
        added = RuleChain.from_config(config).inserting(Stage("audit", _category_in_code), after="actor")
        assert Transformer(config, chain=added).mapping_mark not in (replaced, mapping_mark(config))
        assert stage_codes(_chain_in_code())[0] == (
            "category",
            f"{__name__}._category_in_code",
        )

    def test_a_run_without_the_triggers_chain_is_refused_before_it_writes(self) -> None:
        """A job triggered by a service with its own chain, then run by a process built from the
        settings alone (a worker without that chain), is ``MappingChanged``: nothing written, the job
        as it was. The trigger's chain runs it to the end."""
        world = World()
        world.transformer = Transformer(load_default_config(), chain=_chain_in_code())
        world.service().trigger(world.company, world.tenant)
        job = world.jobs.latest(world.company)
        assert job is not None
        assert job.mapping_mark == world.transformer.mapping_mark

        world.transformer = Transformer(load_default_config())
        with pytest.raises(MappingChanged):
            world.service().run(world.company, owner="runner-b")
        assert not world.logs.logs
        after = world.jobs.latest(world.company)
        assert after is not None
        assert (after.job_id, after.status, after.last_audit_id, after.lease_owner) == (
            job.job_id,
            job.status,
            job.last_audit_id,
            None,
        )

        world.transformer = Transformer(load_default_config(), chain=_chain_in_code())
        assert world.service().run(world.company, owner="runner-a").job.status == COMPLETED
