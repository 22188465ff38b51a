"""``Runtime.use_shard_processes``: what a shard process is given is what the runner runs by.

Only settings and the rule chain cross to a shard process (``shard_processes``); a runtime built
with parts that cannot cross is refused rather than run by other rules in its shards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from crm_audit_adapters import shard_processes
from crm_audit_adapters.bootstrap import Runtime, build_runtime
from crm_audit_adapters.flags import ConfiguredFeatureFlags
from crm_audit_adapters.settings import Settings
from crm_audit_adapters.shard_processes import SettingsShardRun
from crm_audit_transform.chain import RuleChain, Stage
from crm_audit_transform.config import MappingConfig
from crm_audit_transform.errors import ConfigError
from crm_audit_transform.jobs import MigrationJob

SETTINGS = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", mongo_uri="mongodb://127.0.0.1:1")


def with_trail(config: MappingConfig) -> RuleChain:
    """A rule chain of the embedding service's own (module level: it must pickle)."""
    return RuleChain.from_config(config).inserting(Stage("trail", lambda draft: None), after="actor")


class _FixedClock:
    def now(self) -> dt.datetime:
        return dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    def monotonic(self) -> float:
        return 0.0


class _Launcher:
    """Stands in for ``ProcessShardLauncher``: keeps what it was given, starts nothing."""

    def __init__(self, workers: int, run: SettingsShardRun) -> None:
        self.workers, self.run = workers, run

    def close(self) -> None:
        pass


class TestWhatCrosses:
    def test_the_runtimes_rule_chain_goes_to_every_shard(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The shards transform by the runner's rules: its ``rule_chain`` is in what each process runs."""
        monkeypatch.setattr(shard_processes, "ProcessShardLauncher", _Launcher)
        with build_runtime(SETTINGS, rule_chain=with_trail) as runtime:
            runtime.use_shard_processes(2)
            launcher = runtime._shards
            assert isinstance(launcher, _Launcher)
            assert launcher.run == SettingsShardRun(SETTINGS, with_trail)

    def test_a_shard_process_builds_its_runtime_with_that_chain(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``SettingsShardRun`` builds the process's runtime with the chain it carries."""
        built: list[Runtime] = []

        class _Service:
            def run_shard(self, company: str, shard: int, **_: Any) -> str:
                return f"{company}/{shard}"

        def build(settings: Settings, **overrides: Any) -> Runtime:
            runtime = Runtime(settings, **overrides)
            runtime.__dict__["service"] = _Service()  # the shard's run itself is not under test
            built.append(runtime)
            return runtime

        monkeypatch.setattr("crm_audit_adapters.bootstrap.build_runtime", build)
        never: Callable[[], bool] = lambda: False  # noqa: E731
        seen: Callable[[MigrationJob], None] = lambda job: None  # noqa: E731
        ran = SettingsShardRun(SETTINGS, with_trail)(
            "co", 1, owner="h:1", should_stop=never, on_progress=seen
        )
        assert ran == "co/1"
        assert built[0].transformer.chain.names[-1] == "trail"

    @pytest.mark.parametrize(
        "part",
        [
            {"clock": _FixedClock()},
            {"flags": ConfiguredFeatureFlags(["co"])},
        ],
        ids=["clock", "flags"],
    )
    def test_a_given_clock_or_flags_is_refused(self, part: dict[str, Any]) -> None:
        """A shard process would run by the settings' clock and flags, not these: ``ConfigError``."""
        with build_runtime(SETTINGS, **part) as runtime, pytest.raises(ConfigError) as refused:
            runtime.use_shard_processes(2)
        assert [path for path, _ in refused.value.problems] == ["workers"]
        assert runtime._shards is None

    def test_one_worker_keeps_the_shards_one_after_another(self) -> None:
        with build_runtime(SETTINGS, clock=_FixedClock()) as runtime:
            runtime.use_shard_processes(1)
            assert runtime._shards is None
