"""``crm-audit-migrate verify`` end to end (PostgreSQL, mongomock, a local USMAN) and ``dry-run --verify``."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import cli_world
import mongomock
import pytest
from cli_world import COMPANY, TENANT, Cli
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.cli.verify import summary_lines
from crm_audit_transform.testing import InMemoryMigratedLogReader
from crm_audit_transform.usecases.verify import VerifyPorts, verify_account
from crm_audit_transform.verification import JobCheck
from support.corpus_account import World
from support.usman_server import UsmanServer, answer, email_twice, status

usman, client, run_cli = cli_world.usman, cli_world.client, cli_world.run_cli  # the CLI world's fixtures
RECENT = "2024-04-14"
"""Trigger's cutoff: the newest ~150 acme rows keep the walk quick on mongomock."""


@pytest.fixture
def migrated_cli(run_cli: Cli) -> Cli:
    args = ("--company-sso-id", COMPANY)
    assert run_cli("trigger", *args, "--tenant", TENANT, "--date-range-start", RECENT).exit_code == 0
    ran = run_cli("run", *args, "--no-progress")
    assert ran.exit_code == 0, ran.output
    return run_cli


@pytest.mark.postgres
class TestVerifyCommand:
    def test_a_migrated_account_verifies_clean(self, migrated_cli: Cli) -> None:
        """After trigger and run, verify exits 0 with a clean summary."""
        result = migrated_cli("verify", "--company-sso-id", COMPANY)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"verify {COMPANY} ({TENANT}): clean")
        assert "consistent" in result.stdout

    def test_a_missing_log_fails_verify_and_repair_restores_it(
        self, migrated_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A deleted log exits NOT_VERIFIED with its id in the JSON; --repair writes it; verify is clean."""
        logs = client["cdp"]["activity_logs"]
        gone = logs.find_one({"source_tag": "crm_migration"}, sort=[("external_id", 1)])
        assert gone is not None
        logs.delete_one({"_id": gone["_id"]})

        found = migrated_cli("verify", "--company-sso-id", COMPANY, "--json")
        assert found.exit_code == exit_codes.NOT_VERIFIED
        report = json.loads(found.stdout)
        assert report["clean"] is False
        assert report["findings"]["missing"]["items"][0]["external_id"] == gone["external_id"]
        assert report["outstanding"] == {"missing": 1}

        repaired = migrated_cli("verify", "--company-sso-id", COMPANY, "--repair")
        assert repaired.exit_code == 0, repaired.output
        assert "repaired: 1 written, 0 added to the job's counts" in repaired.stdout
        assert logs.count_documents({"external_id": gone["external_id"]}) == 1
        assert migrated_cli("verify", "--company-sso-id", COMPANY).exit_code == 0

    @pytest.mark.parametrize("code", [303, 204])
    @pytest.mark.parametrize("repair", [(), ("--repair",)], ids=["verify", "repair"])
    def test_usman_answering_a_redirect_stops_verify_as_a_configuration_error(
        self, migrated_cli: Cli, client: mongomock.MongoClient, repair: tuple[str, ...], code: int
    ) -> None:
        """A 303 from USMAN (a base URL that is not the endpoint), or a 204 (a 2xx that is not the
        lookup's 200), is DIRECTORY_REFUSED, exit 3, as in a run; a missing log is not written. Before,
        verify took it for an outage: exit 10, every user's actor "unchecked", the account
        unverifiable until the URL was found wrong; this test fails there (for the 204 too)."""
        logs = client["cdp"]["activity_logs"]
        gone = logs.find_one({"source_tag": "crm_migration", "actor.type": "user"}, sort=[("external_id", 1)])
        assert gone is not None
        logs.delete_one({"_id": gone["_id"]})
        with UsmanServer(default=status(code, {"Location": "https://login.example/"})) as redirecting:
            result = migrated_cli(
                "verify", "--company-sso-id", COMPANY, *repair, CRM_AUDIT_USMAN_BASE_URL=redirecting.url
            )
        assert result.exit_code == exit_codes.CONFIG, result.output
        assert result.stderr.startswith("error: DIRECTORY_REFUSED:")
        assert str(code) in result.stderr
        assert logs.count_documents({"external_id": gone["external_id"]}) == 0

    def test_usman_naming_an_email_twice_leaves_every_actor_as_written(
        self, migrated_cli: Cli, client: mongomock.MongoClient, usman: UsmanServer
    ) -> None:
        """``verify --repair`` against a USMAN whose entries name ``email`` twice (the second time
        another user's): the answer is not trusted, the users' actors are counted unchecked (exit 10),
        none is called drifted, and no log is rewritten. Before, Python's reader gave each user
        another's SSO id and verify reported the right actors as drifted (logs to "decide" about, none
        unchecked): this test fails there."""
        logs = client["cdp"]["activity_logs"]
        before = {doc["external_id"]: doc["actor"] for doc in logs.find({"source_tag": "crm_migration"})}
        assert any(actor.get("id") for actor in before.values())
        usman.default = email_twice
        try:
            result = migrated_cli("verify", "--company-sso-id", COMPANY, "--repair", "--json")
        finally:
            usman.default = answer
        assert result.exit_code == exit_codes.NOT_VERIFIED, result.output
        report = json.loads(result.stdout)
        assert report["findings"]["drifted"]["count"] == 0
        assert report["actors_unchecked"] > 0
        after = {doc["external_id"]: doc["actor"] for doc in logs.find({"source_tag": "crm_migration"})}
        assert after == before

    def test_another_tenant_than_the_jobs_is_refused(self, migrated_cli: Cli) -> None:
        """The account is bound to its job's tenant: --tenant naming another exits REFUSED."""
        result = migrated_cli("verify", "--company-sso-id", COMPANY, "--tenant", "globex")
        assert result.exit_code == exit_codes.REFUSED
        assert result.stderr.startswith("error: TENANT_MISMATCH:")


class TestDryRunVerify:
    def test_a_dry_runs_output_verifies_clean_and_an_edit_is_found(self, tmp_path: Path) -> None:
        """dry-run --verify checks the --out file against the inputs: clean, then drifted after an edit."""
        runner = CliRunner()
        out, report = tmp_path / "logs.jsonl", tmp_path / "verify.json"
        assert runner.invoke(cli, ["dry-run", "--example", "--out", str(out)]).exit_code == 0
        clean = runner.invoke(cli, ["dry-run", "--example", "--out", str(out), "--verify"])
        assert clean.exit_code == 0, clean.output
        assert ": clean" in clean.stdout
        lines = out.read_text().splitlines(keepends=True)
        lines[3] = (
            lines[3].replace('"category":"', '"category":"x', 1).replace('"category": "', '"category": "x', 1)
        )
        del lines[0]
        out.write_text("".join(lines))
        found = runner.invoke(
            cli, ["dry-run", "--example", "--out", str(out), "--verify", "--report", str(report)]
        )
        assert found.exit_code == exit_codes.NOT_VERIFIED
        doc = json.loads(report.read_text())
        assert doc["outstanding"] == {"missing": 1, "drifted": 1}
        assert doc["findings"]["drifted"]["items"][0]["detail"] == "category"

    def test_verify_needs_an_existing_output_file(self, tmp_path: Path) -> None:
        """--verify without a written --out file is a usage error."""
        result = CliRunner().invoke(
            cli, ["dry-run", "--example", "--out", str(tmp_path / "none"), "--verify"]
        )
        assert result.exit_code == exit_codes.USAGE


class TestSummaryLines:
    def test_an_external_id_from_the_database_cannot_drive_the_terminal(self) -> None:
        """A stray whose external_id holds ESC, BEL and CR (a title change, a screen clear, an overprinted
        "clean") is shown escaped: the line holds no control character, the JSON keeps the id as is."""
        world = World()
        world.trigger()
        world.run()
        hostile = "crm:acme:audit:\x1b]0;pwned\x07\x1b[2J\x1b[31mRED\x1b[0m\rFAKE: clean\u202e"
        template = next(log for log in world.logs.logs if log.external_id)
        world.logs.insert_batch([attrs.evolve(template, external_id=hostile)])
        ports = VerifyPorts(
            world.source, world.users, world.sso, world.contacts, InMemoryMigratedLogReader(world.logs)
        )
        report = verify_account(world.company, ports, world.transformer, tenant=world.tenant)
        lines = list(summary_lines(report))
        (stray,) = [line for line in lines if line.startswith("  stray:")]
        assert all(line.isprintable() for line in lines)
        assert "\\x1b]0;pwned\\x07\\x1b[2J" in stray
        assert "\\rFAKE: clean\\u202e" in stray
        assert report.findings["stray"].items[0].external_id == hostile

    def test_a_long_external_id_or_job_id_is_shown_cut(self) -> None:
        """A stray whose external_id is 200,000 characters long made a summary line of that size (and
        ten such ids, one per shown id); a job id from the database was shown raw, control characters
        and all. Each is cut to its first 200 characters and its length, and escaped; the report keeps
        the id whole."""
        world = World()
        world.trigger()
        world.run()
        long_id = "crm:acme:audit:" + "9" * 200_000
        template = next(log for log in world.logs.logs if log.external_id)
        world.logs.insert_batch([attrs.evolve(template, external_id=long_id)])
        ports = VerifyPorts(
            world.source, world.users, world.sso, world.contacts, InMemoryMigratedLogReader(world.logs)
        )
        report = verify_account(world.company, ports, world.transformer, tenant=world.tenant)
        hostile_job = JobCheck("job\x1b[2J" + "x" * 5000, "completed", 0)
        lines = list(summary_lines(attrs.evolve(report, job=hostile_job)))
        (stray,) = [line for line in lines if line.startswith("  stray:")]
        assert len(stray) < 400
        assert f"… ({len(long_id)} characters)" in stray
        (job_line,) = [line for line in lines if line.startswith("  job ")]
        assert len(job_line) < 400
        assert job_line.isprintable()
        assert report.findings["stray"].items[0].external_id == long_id


@pytest.mark.postgres
class TestEveryFieldEndToEnd:
    def test_drift_of_the_name_and_of_keys_the_run_writes_is_found_and_set_back(
        self, migrated_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """PostgreSQL, the CDP and a USMAN: one association log's ``linked_entity_name`` edited, one
        log given ``combined``, one whose ``metadata`` is no document. ``verify`` names each field
        (exit 10), ``verify --repair`` sets each back (another writer's key kept) and exits 0, and
        a second ``verify`` is clean. Before, the name and ``combined`` were not compared (the first
        two verified clean) and repair left drifted logs as they were: this test fails there."""
        logs = client["cdp"]["activity_logs"]
        named, plain, whole = list(
            logs.find({"metadata.linked_entity_name": {"$exists": True}}, sort=[("external_id", 1)]).limit(3)
        )
        logs.update_one(
            {"_id": named["_id"]},
            {"$set": {"metadata.linked_entity_name": "Renamed", "metadata.crm_note": "kept"}},
        )
        logs.update_one({"_id": plain["_id"]}, {"$set": {"metadata.combined": True}})
        logs.update_one({"_id": whole["_id"]}, {"$set": {"metadata": None}})

        found = migrated_cli("verify", "--company-sso-id", COMPANY, "--json")
        assert found.exit_code == exit_codes.NOT_VERIFIED, found.output
        report = json.loads(found.stdout)
        details = {item["external_id"]: item["detail"] for item in report["findings"]["drifted"]["items"]}
        assert details[named["external_id"]] == "metadata.linked_entity_name"
        assert details[plain["external_id"]] == "metadata.combined"
        assert details[whole["external_id"]] == ", ".join(f"metadata.{key}" for key in whole["metadata"])
        assert report["outstanding"] == {"drifted": 3}

        repaired = migrated_cli("verify", "--company-sso-id", COMPANY, "--repair")
        assert repaired.exit_code == 0, repaired.output
        assert "repaired: 0 written, 0 added to the job's counts, 3 drifted set back" in repaired.stdout
        now = {
            doc["_id"]: doc for doc in logs.find({"_id": {"$in": [named["_id"], plain["_id"], whole["_id"]]}})
        }
        assert now[named["_id"]]["metadata"] == {**named["metadata"], "crm_note": "kept"}
        assert now[plain["_id"]]["metadata"] == plain["metadata"]
        assert now[whole["_id"]]["metadata"] == whole["metadata"]
        clean = migrated_cli("verify", "--company-sso-id", COMPANY, "--json")
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.stdout)["restored"] == 0


@pytest.mark.postgres
class TestLogsVerifyMustNotMiss:
    def test_an_extra_log_and_another_tenants_log_in_our_account_are_stray(
        self, migrated_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """A ``crm_migration`` log of ours with no source row, and one of another tenant's external id
        under our company: both ``stray`` (exit 10), left as they are by ``--repair``."""
        logs = client["cdp"]["activity_logs"]
        template = logs.find_one({"source_tag": "crm_migration"}, {"_id": 0}, sort=[("external_id", 1)])
        assert template is not None
        extra = {**template, "external_id": f"crm:{TENANT}:audit:999999999"}
        foreign = {**template, "external_id": "crm:globex:audit:1"}
        logs.insert_many([dict(extra), dict(foreign)])
        found = migrated_cli("verify", "--company-sso-id", COMPANY, "--repair", "--json")
        assert found.exit_code == exit_codes.NOT_VERIFIED, found.output
        report = json.loads(found.stdout)
        assert {item["external_id"] for item in report["findings"]["stray"]["items"]} == {
            extra["external_id"],
            foreign["external_id"],
        }
        assert report["outstanding"] == {"stray": 2}
        assert (
            logs.count_documents({"external_id": {"$in": [extra["external_id"], foreign["external_id"]]}})
            == 2
        )

    def test_a_duplicate_external_id_without_the_unique_index_is_found(
        self, migrated_cli: Cli, client: mongomock.MongoClient
    ) -> None:
        """With migration 035's unique index dropped, a second copy of a log is ``duplicate`` (exit
        10), sampled for content or not; ``--repair`` refuses to write without the index."""
        logs = client["cdp"]["activity_logs"]
        logs.drop_index("uniq_company_external_id")
        copy = logs.find_one({"source_tag": "crm_migration"}, {"_id": 0}, sort=[("external_id", -1)])
        assert copy is not None
        logs.insert_one(dict(copy))
        for sample in ((), ("--sample", "1", "--seed", "3")):
            found = migrated_cli("verify", "--company-sso-id", COMPANY, *sample, "--json")
            assert found.exit_code == exit_codes.NOT_VERIFIED, found.output
            report = json.loads(found.stdout)
            assert [item["external_id"] for item in report["findings"]["duplicate"]["items"]] == [
                copy["external_id"]
            ]
            assert report["outstanding"] == {"duplicate": 1}
        refused = migrated_cli("verify", "--company-sso-id", COMPANY, "--repair")
        assert refused.exit_code == exit_codes.CONFIG, refused.output
        assert "INDEXES_MISSING" in refused.stderr


class TestDryRunVerifyMustNotMiss:
    def test_an_extra_line_another_tenants_line_and_a_repeated_line_are_found(self, tmp_path: Path) -> None:
        """A dry run's file: a line of ours with no source row and one of another tenant under our
        company are ``stray``, a line written twice is ``duplicate`` (exit 10)."""
        runner = CliRunner()
        out, report = tmp_path / "logs.jsonl", tmp_path / "verify.json"
        assert runner.invoke(cli, ["dry-run", "--example", "--out", str(out)]).exit_code == 0
        lines = out.read_text().splitlines(keepends=True)
        first = json.loads(lines[0])
        tenant_prefix = first["external_id"].rsplit(":", 1)[0]
        extra = {**first, "external_id": f"{tenant_prefix}:999999999"}
        foreign = {**first, "external_id": "crm:globex:audit:1"}
        with out.open("a") as handle:
            handle.write(json.dumps(extra) + "\n" + json.dumps(foreign) + "\n" + lines[1])
        found = runner.invoke(
            cli, ["dry-run", "--example", "--out", str(out), "--verify", "--report", str(report)]
        )
        assert found.exit_code == exit_codes.NOT_VERIFIED, found.output
        doc = json.loads(report.read_text())
        assert {item["external_id"] for item in doc["findings"]["stray"]["items"]} == {
            extra["external_id"],
            foreign["external_id"],
        }
        assert [item["external_id"] for item in doc["findings"]["duplicate"]["items"]] == [
            json.loads(lines[1])["external_id"]
        ]
        assert doc["outstanding"] == {"stray": 2, "duplicate": 1}
