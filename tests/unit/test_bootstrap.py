"""The composition root wires the service from settings and opens nothing before an operation needs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_audit_adapters.bootstrap import DryRunFiles, build_http_app, build_runtime, dry_run_service
from crm_audit_adapters.settings import Settings
from crm_audit_transform.chain import RuleChain, Stage
from crm_audit_transform.config import MappingConfig
from crm_audit_transform.errors import ConfigError
from crm_audit_transform.jobs import COMPLETED, NOT_STARTED
from crm_audit_transform.testing import InMemoryActivityLogStore


class TestBootstrap:
    def test_status_opens_neither_the_crm_nor_usman(self) -> None:
        """A runtime whose CRM DSN points nowhere answers status from the job store alone."""
        settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", mongo_uri="mongomock://")
        with build_runtime(settings) as runtime:
            assert runtime.service.status("company-x").status == NOT_STARTED
            assert "_pg" not in vars(runtime)
            assert "sso" not in vars(runtime)

    def test_a_ctrl_c_in_one_closer_ends_that_closer_not_the_close(self) -> None:
        """A Ctrl-C while the runtime closes (after the work was done) leaves no exception, and the
        closers after it still run; before, the KeyboardInterrupt left ``__exit__`` and a completed
        run ended as interrupted (exit 130)."""
        closed: list[str] = []

        def interrupted() -> None:
            raise KeyboardInterrupt

        try:
            with build_runtime(Settings(mongo_uri="mongomock://")) as runtime:
                assert runtime.service.status("company-x").status == NOT_STARTED
                # Closers run last opened first: the session's close after the interrupted one.
                runtime._closers.extend([lambda: closed.append("session"), interrupted])
        except KeyboardInterrupt:
            pytest.fail("the Ctrl-C in a closer left the runtime's close")
        assert closed == ["session"]

    def test_a_ctrl_c_that_interrupted_the_work_still_ends_it_interrupted(self) -> None:
        """The KeyboardInterrupt that left the ``with`` block goes on after the close."""
        closed: list[str] = []
        runtime = build_runtime(Settings(mongo_uri="mongomock://"))
        runtime._closers.append(lambda: closed.append("session"))

        def interrupted_work() -> None:
            with runtime:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted_work()
        assert closed == ["session"]

    def test_an_embedding_service_plugs_in_its_own_rule_chain(self) -> None:
        """``rule_chain=`` receives the mapping config and its chain is the one the service runs."""
        seen: list[MappingConfig] = []

        def with_audit_trail(config: MappingConfig) -> RuleChain:
            seen.append(config)
            return RuleChain.from_config(config).inserting(Stage("trail", lambda draft: None), after="actor")

        with build_runtime(Settings(mongo_uri="mongomock://"), rule_chain=with_audit_trail) as runtime:
            assert runtime.transformer.chain.names[-1] == "trail"
            assert seen == [runtime.mapping]

    def test_the_http_app_needs_both_secrets_from_settings(self) -> None:
        """Without the BasicAuth password and the session secret the HTTP app is a ConfigError naming both."""
        with pytest.raises(ConfigError) as caught:
            build_http_app(Settings(mongo_uri="mongomock://", session_secret=None))
        assert {path for path, _ in caught.value.problems} == {
            "CRM_AUDIT_HTTP_PASSWORD",
            "CRM_AUDIT_SESSION_SECRET",
        }

    def test_dry_run_service_runs_the_bundled_example_into_the_sink(self) -> None:
        """The dry-run wiring reads the example files and writes every migrated log to the sink."""
        root = Path(__file__).parents[2] / "src" / "crm_audit_adapters" / "data" / "example"
        account = json.loads((root / "account.json").read_text(encoding="utf-8"))
        files = DryRunFiles(
            root / "audits.jsonl", root / "users.jsonl", root / "contacts.jsonl", root / "sso.jsonl"
        )
        sink = InMemoryActivityLogStore()
        service = dry_run_service(account["company_sso_id"], account["tenant"], files, sink)
        result = service.dry_run(account["company_sso_id"], account["tenant"])
        assert result.job.status == COMPLETED
        assert len(sink.logs) == result.job.tally.migrated > 0


class TestMongoSocketTimeout:
    """The lease bounds every socket read of the runner's client, but `indexes`' (67570a0's follow-up)."""

    URI = "mongodb://127.0.0.1:1/?directConnection=true"

    def test_a_runtime_sets_the_lease_share_unless_told_not_to(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import crm_audit_adapters.bootstrap.runtime as runtime_module

        monkeypatch.setattr(runtime_module, "wait_for_mongo", lambda *_a, **_k: None)  # nothing listens
        timeouts = []
        for bounded in (True, False):
            with build_runtime(Settings(mongo_uri=self.URI), lease_bounded_mongo=bounded) as runtime:
                timeouts.append(runtime.mongo_db.client.options.pool_options.socket_timeout)
        assert timeouts == [12.0, None]

    @pytest.mark.parametrize(
        ("args", "bounded"),
        [(["indexes", "up"], False), (["indexes", "status"], False), (["status", "--all"], True)],
    )
    def test_indexes_builds_its_client_without_it(
        self, monkeypatch: pytest.MonkeyPatch, args: list[str], bounded: bool
    ) -> None:
        """An index build over a large collection waits on one answer longer than a lease's share."""
        from click.testing import CliRunner

        import crm_audit_adapters.cli.state as state_module
        from crm_audit_adapters.cli import Overrides, cli

        seen: list[object] = []

        def recording(settings: Settings, **overrides: object) -> object:
            seen.append(overrides.get("lease_bounded_mongo", True))
            raise RuntimeError("recorded")

        monkeypatch.setattr(state_module, "build_runtime", recording)
        env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": self.URI}
        CliRunner().invoke(cli, args, obj=Overrides(), env=env)
        assert seen == [bounded]
