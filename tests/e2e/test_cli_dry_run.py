"""``crm-audit-migrate dry-run``: the pipeline on files, no servers, on the corpus and the bundled sample."""

from __future__ import annotations

import base64
import fcntl
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

from crm_audit_adapters import strict_json
from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.cli.dry_run import EXAMPLE_OUT
from crm_audit_adapters.files import JsonlActivityLogSink, encode_log_line
from crm_audit_transform.service import MigrationService
from crm_audit_transform.usecases import RunSettings
from crm_audit_transform.usecases.status import report_counts
from support.corpus_account import (
    World,
    audit_rows,
    company_sso_id,
    contact_docs,
    dump_jsonl,
    example_files,
    sso_docs,
)
from support.corpus_world import CORPUS

TENANT = "acme"
COMPANY = company_sso_id(TENANT)


@pytest.fixture(scope="module")
def clean() -> World:
    world = World(TENANT)
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0))
    return world


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "contacts.jsonl").write_text(dump_jsonl(contact_docs(TENANT)), encoding="utf-8")
    (tmp_path / "sso.jsonl").write_text(dump_jsonl(sso_docs(TENANT)), encoding="utf-8")
    return [
        "--company-sso-id",
        COMPANY,
        "--tenant",
        TENANT,
        "--audits",
        str(CORPUS / "audits.jsonl"),
        "--users",
        str(CORPUS / "users.jsonl"),
        "--contacts",
        str(tmp_path / "contacts.jsonl"),
        "--sso-directory",
        str(tmp_path / "sso.jsonl"),
    ]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["dry-run", *args], env={"CRM_AUDIT_SETTINGS": ""})
    return result.exit_code, result.stdout, result.stderr


class TestTenantBinding:
    def test_a_dry_run_follows_the_tenant_bindings(self, tmp_path: Path, inputs: list[str]) -> None:
        """The runner's bindings apply as for enrich, explain and verify: a bound account reads its
        tenant (--tenant may be left out), another --tenant is TENANT_MISMATCH, and so is a tenant
        bound to another account; nothing is written. Before, the dry run read any tenant given."""
        out = tmp_path / "logs.jsonl"
        without_tenant = [a for i, a in enumerate(inputs) if "--tenant" not in inputs[i - 1 : i + 1]]

        def dry_run(bindings: str, *args: str) -> Result:
            env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_TENANTS": bindings}
            return CliRunner().invoke(cli, ["dry-run", *args, "--out", str(out), "--no-progress"], env=env)

        bound = dry_run(f"{COMPANY}=acme", *without_tenant)
        assert bound.exit_code == 0, bound.output
        assert f"tenant {TENANT}: processed 759" in bound.stderr
        out.unlink()
        for bindings in (f"{COMPANY}=globex", f"other-company={TENANT}"):
            refused = dry_run(bindings, *inputs)
            assert refused.exit_code == exit_codes.REFUSED, refused.output
            assert "TENANT_MISMATCH" in refused.stderr
            assert not out.exists()
        unbound = dry_run("", *inputs)  # an unbound account's own --tenant: writes no CDP, read as given
        assert unbound.exit_code == 0, unbound.output


class TestWouldHalt:
    def test_reports_where_a_real_run_would_halt_by_the_same_rule(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """Rows 230–300 unreadable: the report names the real run's halt point and processes every row."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for doc in rows:
            if doc["tenant"] == TENANT and 230 <= doc["id"] <= 300:
                doc["audited_changes"] = "--- [unclosed"
        (tmp_path / "audits.jsonl").write_text(dump_jsonl(rows), encoding="utf-8")
        args = list(inputs)
        args[args.index("--audits") + 1] = str(tmp_path / "audits.jsonl")
        report = tmp_path / "report.json"
        code, _, stderr = invoke(*args, "--report", str(report))
        assert code == 0
        doc = json.loads(report.read_text())
        assert doc["processed"] == 759
        expected = doc["would_halt"]
        assert expected is not None
        assert expected["reason"].startswith("failure rate")
        assert f"would halt at audit id {expected['audit_id']}" in stderr
        # The real run, over the same rows, halts exactly there.
        broken = [
            attrs.evolve(r, audited_changes="--- [unclosed") if 230 <= r.id <= 300 else r
            for r in audit_rows(TENANT)
        ]
        real = World(TENANT, rows=broken)
        real.trigger()
        halted = real.run().job
        assert (halted.status, halted.last_audit_id) == ("halted", expected["audit_id"])


class TestDryRunOnTheCorpus:
    def test_writes_exactly_the_mongo_documents_and_the_report(
        self, tmp_path: Path, inputs: list[str], clean: World
    ) -> None:
        """--out holds the Mongo adapter's documents of every migrated row; the report counts every row."""
        out, report = tmp_path / "logs.jsonl", tmp_path / "report.json"
        code, stdout, stderr = invoke(*inputs, "--out", str(out), "--report", str(report))
        assert code == 0
        expected = clean.jobs.latest(clean.company)
        assert expected is not None
        assert json.loads(report.read_text()) == {**report_counts(expected.tally), "would_halt": None}
        assert list(json.loads(report.read_text())) == [
            "processed",
            "migrated",
            "skipped",
            "failed",
            "actors_degraded",
            "would_halt",
        ]
        assert out.read_text(encoding="utf-8").splitlines() == [
            encode_log_line(log) for log in clean.logs.logs
        ]
        assert stdout == ""
        final = stderr.strip().splitlines()[-1]
        assert final.startswith(
            f"company {COMPANY}, tenant {TENANT}: processed {expected.tally.processed}, "
            f"migrated {expected.tally.migrated}"
        )
        assert f"logs: {out.absolute()}" in final
        assert f"report: {report.absolute()}" in final

    def test_out_dash_writes_the_documents_to_stdout_and_the_report_to_stderr(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """--out - puts exactly the file's lines on stdout; the report moves to stderr, not into the data."""
        out = tmp_path / "logs.jsonl"
        invoke(*inputs, "--out", str(out))
        code, stdout, stderr = invoke(*inputs, "--out", "-")
        assert code == 0
        assert stdout == out.read_text(encoding="utf-8")
        assert not (Path.cwd() / "-").exists()
        assert '"processed"' in stderr
        assert stderr.strip().splitlines()[-1].endswith("logs: stdout; report: stderr")

    def test_the_report_is_the_same_with_or_without_out(self, tmp_path: Path, inputs: list[str]) -> None:
        """Report-only runs encode and check every log too, so their counts equal a run writing documents."""
        with_out = invoke(*inputs, "--out", str(tmp_path / "logs.jsonl"), "--no-progress")
        without = invoke(*inputs, "--no-progress")
        assert json.loads(without[1]) == json.loads(with_out[1])
        assert "logs: not kept (no --out)" in without[2]

    def test_the_pure_loader_writes_the_same_bytes_as_the_compiled_one(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """With the compiled loader unavailable (no compiler), the documents and report are byte-identical."""
        here, pure = tmp_path / "here", tmp_path / "pure"
        invoke(*inputs, "--out", str(here.with_suffix(".jsonl")), "--report", str(here.with_suffix(".json")))
        code = (
            "import sys\n"
            "sys.modules['crm_audit_transform.loading._cbuild'] = None\n"
            "from crm_audit_transform.loading import available_backends\n"
            "assert 'compiled' not in available_backends(), available_backends()\n"
            "from crm_audit_adapters.cli import cli\n"
            "cli.main(args=sys.argv[1:], prog_name='crm-audit-migrate')\n"
        )
        args = [*inputs, "--out", str(pure.with_suffix(".jsonl")), "--report", str(pure.with_suffix(".json"))]
        done = subprocess.run(
            [sys.executable, "-c", code, "dry-run", *args],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for suffix in (".jsonl", ".json"):
            assert pure.with_suffix(suffix).read_bytes() == here.with_suffix(suffix).read_bytes()

    def test_two_workers_write_the_same_bytes_as_one_process(self, tmp_path: Path, inputs: list[str]) -> None:
        """``--workers 2``: the documents, the report and the per-row outcomes are byte-identical."""
        outputs = outputs_by_workers(tmp_path, inputs)
        assert outputs["1"][0].count(b"\n") > 500
        assert outputs["2"] == outputs["1"]

    def test_a_row_nested_deeper_than_pickle_recurses_fails_alone_with_two_workers(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """jsonb changes nested 500 deep: with ``--workers 2`` that row fails by the depth limit, as alone."""
        deep: dict[str, object] = {"a": 1}
        for _ in range(500):
            deep = {"a": deep}
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for doc in rows:
            if doc["tenant"] == TENANT and doc["id"] == 4:
                doc["audited_changes"] = {"first_name": deep}
        (tmp_path / "audits.jsonl").write_text(dump_jsonl(rows), encoding="utf-8")
        given = [*inputs]
        given[given.index("--audits") + 1] = str(tmp_path / "audits.jsonl")
        outputs = outputs_by_workers(tmp_path, given)
        assert b"nesting depth" in outputs["1"][2]
        assert outputs["2"] == outputs["1"]

    def test_with_workers_the_worker_starts_before_the_run_reads_its_first_page(
        self, tmp_path: Path, inputs: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``--workers 2`` starts its worker process once the inputs are read, before the run's
        first page (as ``run --workers N`` does once it has read its job): a worker process is there
        before the service's dry run begins. Started at the first page, none was (30 s waited)."""
        started: list[set[int | None]] = []
        before = {child.pid for child in multiprocessing.active_children()}
        dry_run = MigrationService.dry_run

        def spy(service: MigrationService, *args: Any, **kwargs: Any) -> Any:
            deadline = time.monotonic() + 30
            seen: set[int | None] = set()
            while not seen and time.monotonic() < deadline:
                seen = {child.pid for child in multiprocessing.active_children()} - before
                time.sleep(0.01)
            started.append(seen)
            return dry_run(service, *args, **kwargs)

        monkeypatch.setattr(MigrationService, "dry_run", spy)
        out = tmp_path / "logs.jsonl"
        code, _, stderr = invoke(*inputs, "--workers", "2", "--no-progress", "--out", str(out))
        assert code == 0, stderr
        assert [len(seen) for seen in started] == [1]
        assert out.read_bytes().count(b"\n") > 500
        assert not {child.pid for child in multiprocessing.active_children()} - before

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_a_value_the_loader_allows_but_the_encoder_cannot_nest_fails_alone_and_verifies(
        self, tmp_path: Path, inputs: list[str], workers: str
    ) -> None:
        """``--loader-max-depth 450``, a value 448 deep: the row fails ``write_error`` (never INTERNAL), and
        ``--verify`` counts it as that failure, as the run did (it was missing: repair retried it forever)."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for doc in rows:
            if doc["tenant"] == TENANT and doc["id"] == 4:
                doc["audited_changes"] = "---\nfirst_name: " + "[" * 448 + "x" + "]" * 448 + "\n"
        (tmp_path / "audits.jsonl").write_text(dump_jsonl(rows), encoding="utf-8")
        given = [*inputs, "--loader-max-depth", "450", "--no-progress", "--workers", workers]
        given[given.index("--audits") + 1] = str(tmp_path / "audits.jsonl")
        out, outcomes = tmp_path / "logs.jsonl", tmp_path / "outcomes.jsonl"
        code, _, stderr = invoke(*given, "--out", str(out), "--outcomes", str(outcomes))
        assert code == 0, stderr
        (row,) = [
            line for line in map(json.loads, outcomes.read_text().splitlines()) if line["audit_id"] == 4
        ]
        assert (row["outcome"], row["reason"]) == ("failed", "write_error")
        assert "nest" in row["detail"]
        assert b'crm:acme:audit:4"' not in out.read_bytes()
        report = tmp_path / "verify.json"
        code, stdout, stderr = invoke(*given, "--out", str(out), "--verify", "--report", str(report))
        assert code == 0, stdout + stderr  # a log no store can hold: the row's counted failure, not missing
        doc = json.loads(report.read_text())
        assert (doc["failed"], doc["findings"]["missing"]["count"]) == ({"write_error": 1}, 0)

    def test_a_dry_run_refused_partway_says_what_it_kept_and_a_run_again_completes_the_file(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """A malformed line after three pages stops the run (exit 7): the error says how many logs the
        file kept; with the line mended, a run into the same ``--out`` gives the clean run's file."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        ours = [doc for doc in rows if doc["tenant"] == TENANT]
        copies = [{**doc, "id": doc["id"] + block * 1_000_000} for block in range(3) for doc in ours]
        lines = dump_jsonl(copies).splitlines()
        broken, mended = tmp_path / "broken.jsonl", tmp_path / "audits.jsonl"
        broken.write_text("\n".join([*lines[:2000], "not json", *lines[2000:]]) + "\n", encoding="utf-8")
        mended.write_text("\n".join(lines) + "\n", encoding="utf-8")
        given = [*inputs, "--no-progress"]
        out, clean = tmp_path / "logs.jsonl", tmp_path / "clean.jsonl"

        given[given.index("--audits") + 1] = str(broken)
        code, _, stderr = invoke(*given, "--out", str(out))
        assert code == exit_codes.BAD_INPUT, stderr
        kept = len(out.read_bytes().splitlines())
        assert kept > 0
        assert "broken.jsonl, line 2001" in stderr
        assert f"; {kept} logs were written to {out} before this error and are kept: run again" in stderr
        assert len(stderr.strip().splitlines()) == 1

        given[given.index("--audits") + 1] = str(mended)
        assert invoke(*given, "--out", str(out))[0] == 0
        assert invoke(*given, "--out", str(clean))[0] == 0
        assert out.read_bytes() == clean.read_bytes()

    @pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers-2"])
    def test_a_dry_run_stopped_by_its_file_changing_asks_for_a_new_out(
        self, tmp_path: Path, inputs: list[str], monkeypatch: pytest.MonkeyPatch, workers: list[str]
    ) -> None:
        """The file is cut short after the first page's logs are written: the run stops (exit 7), and
        the note says those logs are the old file's and asks for a new ``--out`` (a run into the same
        one would keep them beside the new file's), not "run again with the same --out"."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        ours = [doc for doc in rows if doc["tenant"] == TENANT]
        copies = [{**doc, "id": doc["id"] + block * 1_000_000} for block in range(3) for doc in ours]
        audits = tmp_path / "audits.jsonl"
        audits.write_text(dump_jsonl(copies), encoding="utf-8")
        full = audits.read_bytes()
        given = [*inputs, "--no-progress"]
        given[given.index("--audits") + 1] = str(audits)
        out = tmp_path / "logs.jsonl"
        cut = full.index(b"\n", len(full) * 2 // 3) + 1  # at a line end, past the pages read ahead

        def cut_once() -> None:  # rewritten shorter, as a fresh export of fewer rows
            if audits.stat().st_size == len(full):
                with audits.open("r+b") as file:
                    file.truncate(cut)

        def then_cut(write: Callable[..., Any]) -> Callable[..., Any]:
            def written(self: JsonlActivityLogSink, logs: Any) -> Any:
                results = write(self, logs)
                cut_once()
                return results

            return written

        for name in ("insert_batch", "insert_packed"):  # one process writes batches, a pool packed pages
            monkeypatch.setattr(JsonlActivityLogSink, name, then_cut(getattr(JsonlActivityLogSink, name)))
        code, _, stderr = invoke(*given, *workers, "--out", str(out))

        assert code == exit_codes.BAD_INPUT, stderr
        kept = len(out.read_bytes().splitlines())
        assert kept > 0
        assert "it changed while it was read" in stderr
        assert f"; {kept} logs were written to {out} before this error, from the file as it was" in stderr
        assert "run again with a new --out" in stderr
        assert "run again with the same --out" not in stderr

    @pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers-2"])
    def test_a_dry_run_writes_and_counts_nothing_read_after_its_file_changed(
        self, tmp_path: Path, inputs: list[str], monkeypatch: pytest.MonkeyPatch, workers: list[str]
    ) -> None:
        """After the first logs are written the file is written again, shorter, a line past the
        pages read so far unreadable in it (its id still readable). The run stops at the next page
        it reads (exit 7): that line is not counted ``invalid_audit_row`` (it was, before the read
        found the file's end short), and the logs kept are the clean run's first ones."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        ours = [doc for doc in rows if doc["tenant"] == TENANT]
        copies = [{**doc, "id": doc["id"] + block * 1_000_000} for block in range(5) for doc in ours]
        lines = dump_jsonl(copies).splitlines(keepends=True)
        audits = tmp_path / "audits.jsonl"
        audits.write_text("".join(lines), encoding="utf-8")
        size = audits.stat().st_size
        at = len(lines) * 2 // 3  # past the pages read ahead of the first write
        bad = copies[at]["id"]
        rewritten = "".join(
            [*lines[:at], dump_jsonl([{**copies[at], "action": 12345}]), *lines[at + 1 : at + 800]]
        )
        given = [*inputs, "--no-progress"]
        given[given.index("--audits") + 1] = str(audits)
        clean = tmp_path / "clean.jsonl"
        assert invoke(*given, *workers, "--out", str(clean))[0] == 0

        def then_rewritten(write: Callable[..., Any]) -> Callable[..., Any]:
            def written(self: JsonlActivityLogSink, logs: Any) -> Any:
                results = write(self, logs)
                if audits.stat().st_size == size:  # once: truncated, then written, as an export is
                    audits.write_text(rewritten, encoding="utf-8")
                return results

            return written

        for name in ("insert_batch", "insert_packed"):
            monkeypatch.setattr(
                JsonlActivityLogSink, name, then_rewritten(getattr(JsonlActivityLogSink, name))
            )
        out, outcomes = tmp_path / "logs.jsonl", tmp_path / "outcomes.jsonl"
        code, _, stderr = invoke(*given, *workers, "--out", str(out), "--outcomes", str(outcomes))

        assert code == exit_codes.BAD_INPUT, stderr
        assert "it changed while it was read" in stderr
        told = [json.loads(line) for line in outcomes.read_text(encoding="utf-8").splitlines()]
        assert told
        assert bad not in {outcome["audit_id"] for outcome in told}
        kept = out.read_bytes()
        assert kept
        assert clean.read_bytes().startswith(kept)

    def test_with_workers_a_dry_run_refused_partway_keeps_the_pages_before_the_bad_line(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """``--workers 3`` reads pages ahead, past the bad line: the pages before it are still
        written, the same logs one process keeps, and the error says so. Before, none were kept."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        ours = [doc for doc in rows if doc["tenant"] == TENANT]
        copies = [{**doc, "id": doc["id"] + block * 1_000_000} for block in range(3) for doc in ours]
        lines = dump_jsonl(copies).splitlines()
        broken = tmp_path / "broken.jsonl"
        broken.write_text("\n".join([*lines[:2000], "not json", *lines[2000:]]) + "\n", encoding="utf-8")
        given = [*inputs, "--no-progress"]
        given[given.index("--audits") + 1] = str(broken)
        kept: dict[str, bytes] = {}
        for workers in ("1", "3"):
            out = tmp_path / f"logs{workers}.jsonl"
            code, _, stderr = invoke(*given, "--workers", workers, "--out", str(out))
            assert code == exit_codes.BAD_INPUT, stderr
            assert "broken.jsonl, line 2001" in stderr
            kept[workers] = out.read_bytes()
            count = len(kept[workers].splitlines())
            assert f"; {count} logs were written to {out} before this error and are kept" in stderr
        assert kept["1"].count(b"\n") > 0
        assert kept["3"] == kept["1"]

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_a_value_mongodb_would_refuse_for_its_nesting_fails_alone_and_verifies(
        self, tmp_path: Path, inputs: list[str], workers: str
    ) -> None:
        """The loader's default depth (100) lets a 99-deep row through, yet its log would nest 101
        levels: the dry run says ``write_error`` for that row as the run would, and ``--verify`` counts it
        so too, not as missing."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for doc in rows:
            if doc["tenant"] == TENANT and doc["id"] == 4:
                doc["audited_changes"] = "---\nfirst_name: " + "[" * 98 + "x" + "]" * 98 + "\n"
        (tmp_path / "audits.jsonl").write_text(dump_jsonl(rows), encoding="utf-8")
        given = [*inputs, "--no-progress", "--workers", workers]
        given[given.index("--audits") + 1] = str(tmp_path / "audits.jsonl")
        out, outcomes = tmp_path / "logs.jsonl", tmp_path / "outcomes.jsonl"
        code, _, stderr = invoke(*given, "--out", str(out), "--outcomes", str(outcomes))
        assert code == 0, stderr
        (row,) = [
            line for line in map(json.loads, outcomes.read_text().splitlines()) if line["audit_id"] == 4
        ]
        assert (row["outcome"], row["reason"]) == ("failed", "write_error")
        assert "MongoDB's limit" in row["detail"]
        assert b'crm:acme:audit:4"' not in out.read_bytes()
        report = tmp_path / "verify.json"
        code, stdout, stderr = invoke(*given, "--out", str(out), "--verify", "--report", str(report))
        assert code == 0, stdout + stderr  # a log no store can hold: the row's counted failure, not missing
        doc = json.loads(report.read_text())
        assert (doc["failed"], doc["findings"]["missing"]["count"]) == ({"write_error": 1}, 0)

    def test_a_log_dated_before_1970_verifies_clean(self, tmp_path: Path, inputs: list[str]) -> None:
        """A row of 1960 is written with ``{"$date": {"$numberLong"}}`` and ``--verify`` reads it back."""
        rows = [
            json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        for doc in rows:
            if doc["tenant"] == TENANT and doc["id"] == 4:
                doc["created_at"] = "1960-01-01T00:00:00Z"
        (tmp_path / "audits.jsonl").write_text(dump_jsonl(rows), encoding="utf-8")
        given = [*inputs]
        given[given.index("--audits") + 1] = str(tmp_path / "audits.jsonl")
        out = tmp_path / "logs.jsonl"
        code, _, stderr = invoke(*given, "--out", str(out), "--no-progress")
        assert code == 0, stderr
        assert b'"$numberLong":"-315619200000"' in out.read_bytes()
        code, stdout, stderr = invoke(*given, "--out", str(out), "--no-progress", "--verify")
        assert code == 0, stdout + stderr
        assert ": clean" in stdout

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_ids_at_or_below_zero_are_all_read(self, tmp_path: Path, inputs: list[str], workers: str) -> None:
        """The corpus's ids moved below zero (audit ids are bigints): the same counts. Once, a page
        was asked after id 0 instead of after its last id, and one process dropped every row
        between (500 processed)."""
        shifted = tmp_path / "audits.jsonl"
        lines = (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        shifted.write_text(
            "".join(
                json.dumps({**json.loads(line), "id": json.loads(line)["id"] - 5000}) + "\n" for line in lines
            ),
            encoding="utf-8",
        )
        at = inputs.index("--audits") + 1
        reports = []
        for audits in (str(CORPUS / "audits.jsonl"), str(shifted)):
            report = tmp_path / f"report-{len(reports)}.json"
            given = [*inputs[:at], audits, *inputs[at + 1 :]]
            code, _, stderr = invoke(*given, "--no-progress", "--workers", workers, "--report", str(report))
            assert code == exit_codes.OK, stderr
            reports.append(json.loads(report.read_text(encoding="utf-8")))
        assert reports[1] == reports[0]
        assert reports[0]["processed"] > 500

    def test_a_progress_line_goes_to_stderr(self, inputs: list[str]) -> None:
        """The run's progress line (rows, rows/s, cursor) is shown on stderr, and --no-progress hides it."""
        _, _, stderr = invoke(*inputs)
        assert "rows/s" in stderr
        assert "cursor 759/759" in stderr
        _, _, quiet = invoke(*inputs, "--no-progress")
        assert "rows/s" not in quiet

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_audits_out_of_id_order_are_refused_with_the_line(
        self, tmp_path: Path, inputs: list[str], workers: str
    ) -> None:
        """An export not ordered by id stops the dry run with one line naming the file and line (exit
        7), with ``--workers 2`` too (its runner reads each line's id)."""
        lines = (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()[:5]
        shuffled = tmp_path / "audits.jsonl"
        shuffled.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n", encoding="utf-8")
        args = list(inputs)
        args[args.index("--audits") + 1] = str(shuffled)
        code, _, stderr = invoke(*args, "--no-progress", "--workers", workers)
        assert code == exit_codes.BAD_INPUT
        assert "audits.jsonl, line 3" in stderr
        assert "ascending" in stderr

    def test_an_audits_fifo_is_refused_before_it_is_opened_with_workers_too(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """A named pipe as ``--audits`` is refused (exit 2) with ``--workers 2`` as without: neither
        the runner nor a worker ever opens it (an open would wait for a writer for ever)."""
        pipe = tmp_path / "audits.jsonl"
        os.mkfifo(pipe)
        args = list(inputs)
        args[args.index("--audits") + 1] = str(pipe)
        code, _, stderr = invoke(*args, "--no-progress", "--workers", "2")
        assert code == 2
        assert "is not a regular file" in stderr

    def test_a_second_dry_run_into_the_same_file_adds_nothing(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """Rerunning onto the same --out is idempotent: same file, same report."""
        out = tmp_path / "logs.jsonl"
        first = invoke(*inputs, "--out", str(out))
        before = out.read_bytes()
        second = invoke(*inputs, "--out", str(out))
        assert out.read_bytes() == before
        assert json.loads(second[1]) == json.loads(first[1])

    def test_an_explicit_mapping_config_is_used(self, inputs: list[str]) -> None:
        """--config takes a mapping YAML; the bundled default gives the default result."""
        default = resources.files("crm_audit_transform") / "data" / "default_mapping.yaml"
        with resources.as_file(default) as path:
            with_config = invoke(*inputs, "--config", str(path))
        assert with_config[0] == 0
        assert json.loads(with_config[1]) == json.loads(invoke(*inputs)[1])

    def test_missing_inputs_are_a_usage_error(self) -> None:
        """Without --example every input must be named; the message lists what is missing."""
        code, _, stderr = invoke("--tenant", TENANT)
        assert code == exit_codes.USAGE
        assert "--company-sso-id" in stderr
        assert "--audits" in stderr

    @pytest.mark.parametrize("option", ["--report", "--outcomes"])
    def test_dash_is_stdout_only_for_out(
        self, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--report - and --outcomes - are a usage error naming the option, and no file "-" is made."""
        monkeypatch.chdir(tmp_path)
        code, _, stderr = invoke("--example", "--no-progress", "--out", "logs.jsonl", option, "-")
        assert code == exit_codes.USAGE
        assert f"not stdout for {option}" in stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []

    def test_a_malformed_input_line_is_one_line_and_exit_seven(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """A broken contacts file is named with its line, without a traceback."""
        broken = tmp_path / "contacts.jsonl"
        broken.write_text('{"_id": "x", "company_sso_id": "c", "crm_data": {"id": 1}}\nnot json\n')
        code, _, stderr = invoke(*inputs)
        assert code == exit_codes.BAD_INPUT
        assert stderr.startswith("error: ")
        assert "contacts.jsonl" in stderr
        assert len(stderr.strip().splitlines()) == 1


class TestOutputFiles:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ("--out", "--audits"),
            ("--outcomes", "--users"),
            ("--out", "--outcomes"),
            ("--report", "--outcomes"),
        ],
    )
    def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_write(
        self, tmp_path: Path, inputs: list[str], first: str, second: str
    ) -> None:
        """Two options naming one file, one of them written: USAGE (exit 2), and the file is untouched."""
        shared = tmp_path / "shared.jsonl"
        shared.write_bytes((CORPUS / "audits.jsonl").read_bytes())
        before = shared.read_bytes()
        args = list(inputs)
        if second in args:
            args[args.index(second) + 1] = str(shared)
        else:
            args += [second, str(shared)]
        code, _, stderr = invoke(*args, first, str(shared), "--no-progress")
        assert code == exit_codes.USAGE, stderr
        assert "is the same file as" in stderr
        assert shared.read_bytes() == before

    def test_an_output_through_a_symlink_to_an_input_is_refused(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """Files are compared as files: a link to the audits file is the audits file."""
        audits, link = tmp_path / "audits.jsonl", tmp_path / "link.jsonl"
        audits.write_bytes((CORPUS / "audits.jsonl").read_bytes())
        link.symlink_to(audits)
        args = list(inputs)
        args[args.index("--audits") + 1] = str(audits)
        code, _, stderr = invoke(*args, "--out", str(link), "--no-progress")
        assert code == exit_codes.USAGE, stderr
        assert audits.read_bytes() == (CORPUS / "audits.jsonl").read_bytes()

    def test_an_output_in_a_missing_directory_fails_before_the_run(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """``--report`` in a directory that does not exist is FILE_ERROR up front: no log is written."""
        out = tmp_path / "logs.jsonl"
        code, _, stderr = invoke(*inputs, "--out", str(out), "--report", str(tmp_path / "none" / "r.json"))
        assert code == exit_codes.BAD_INPUT, stderr
        assert stderr.startswith("error: FILE_ERROR: --report ")
        assert not out.exists()

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_a_detail_naming_a_file_whose_name_is_not_utf8_is_strict_json_with_the_names_bytes(
        self, tmp_path: Path, inputs: list[str], workers: str
    ) -> None:
        """A line set aside names its file in its outcome's detail. A file name holding a byte that is
        not UTF-8 (Python reads it as a lone surrogate) ended the dry run INTERNAL: the ``--outcomes``
        file's strict encoder refused it; then it was written as its escape ``\\udce9``, which strict
        JSON readers replace or refuse (RFC 8259 §8.2). The file is valid UTF-8 with no surrogate in
        it, the detail shows the byte as U+FFFD, and its ``not_utf8`` member has the name's bytes."""
        lines = (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()
        broken = next(i for i, line in enumerate(lines) if json.loads(line)["tenant"] == TENANT)
        row = json.loads(lines[broken])
        lines[broken] = json.dumps({**row, "version": "x"})
        audits = tmp_path / os.fsdecode(b"caf\xe9.jsonl")
        audits.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        at = inputs.index("--audits") + 1
        given = [*inputs[:at], str(audits), *inputs[at + 1 :]]
        outcomes, report = tmp_path / "outcomes.jsonl", tmp_path / "report.json"
        out = str(tmp_path / "logs.jsonl")
        code, _, stderr = invoke(
            *given,
            "--no-progress",
            "--workers",
            workers,
            "--out",
            out,
            "--outcomes",
            str(outcomes),
            "--report",
            str(report),
        )
        assert code == exit_codes.OK, stderr
        text = outcomes.read_bytes().decode("utf-8")  # strict: valid UTF-8
        assert "\\ud" not in text  # no surrogate escape
        written = [json.loads(line) for line in text.splitlines()]
        (set_aside,) = [line for line in written if line["audit_id"] == row["id"]]
        assert set_aside["reason"] == "invalid_audit_row"
        shown = str(audits).replace("\udce9", "\ufffd")
        assert set_aside["detail"].startswith(f"{shown}, line {broken + 1}: ")
        (name_bytes,) = set_aside["not_utf8"].values()
        assert base64.b64decode(name_bytes).startswith(os.fsencode(audits) + b", line ")
        assert strict_json.restore(set_aside)["detail"].startswith(f"{audits}, line {broken + 1}: ")
        assert [line for line in written if "not_utf8" in line] == [set_aside]
        assert json.loads(report.read_text(encoding="utf-8"))["failed"]["invalid_audit_row"] == 1

    @pytest.mark.parametrize("option", ["--report", "--outcomes"])
    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
    def test_a_full_report_or_outcomes_file_is_named_in_the_file_error(
        self, tmp_path: Path, option: str
    ) -> None:
        """``--report /dev/full`` (or ``--outcomes``): FILE_ERROR naming the option and the file."""
        out = str(tmp_path / "logs.jsonl")
        code, _, stderr = invoke("--example", "--no-progress", "--out", out, option, "/dev/full")
        assert code == exit_codes.BAD_INPUT, stderr
        assert stderr.startswith(f"error: FILE_ERROR: cannot write {option} /dev/full: "), stderr
        assert "No space left on device" in stderr

    @pytest.mark.parametrize("option", ["--report", "--outcomes"])
    def test_a_report_or_outcomes_file_another_writer_holds_is_refused_untouched(
        self, tmp_path: Path, option: str
    ) -> None:
        """``--report`` / ``--outcomes`` naming a file another dry run holds (its ``--out``, under the
        sink's ``flock``): OUTPUT_LOCKED (exit 4) and the file keeps every byte, not overwritten."""
        held = tmp_path / "other-run.jsonl"
        held.write_bytes(b'{"a": 1}\n')
        with held.open("ab") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            code, _, stderr = invoke(
                "--example", "--no-progress", "--out", str(tmp_path / "logs.jsonl"), option, str(held)
            )
        assert code == 4, stderr
        assert "OUTPUT_LOCKED" in stderr
        assert held.read_bytes() == b'{"a": 1}\n'

    @pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
    def test_a_full_stdout_for_the_report_is_named_in_the_file_error(self, tmp_path: Path) -> None:
        """The report on a full stdout: FILE_ERROR saying the report could not go to stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [
                    str(Path(sys.executable).with_name("crm-audit-migrate")),
                    "dry-run",
                    "--example",
                    "--no-progress",
                ],
                cwd=tmp_path,
                env=env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
            )
        assert done.returncode == exit_codes.BAD_INPUT, done.stderr
        assert "error: FILE_ERROR: cannot write the report to stdout: " in done.stderr

    def test_a_refused_dry_run_leaves_an_existing_outcomes_file_as_it_was(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """UNKNOWN_TENANT is found before any outcome: the previous --outcomes file is not truncated."""
        outcomes = tmp_path / "outcomes.jsonl"
        outcomes.write_text('{"audit_id": 1}\n', encoding="utf-8")
        args = list(inputs)
        args[args.index("--tenant") + 1] = "acne"
        code, _, _ = invoke(*args, "--no-progress", "--outcomes", str(outcomes))
        assert code == exit_codes.REFUSED
        assert outcomes.read_text(encoding="utf-8") == '{"audit_id": 1}\n'

    def test_a_run_without_outcomes_still_writes_an_empty_outcomes_file(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """A tenant with no row in scope completes: its --outcomes file exists, empty."""
        audits = tmp_path / "empty.jsonl"
        audits.write_text("", encoding="utf-8")
        args = list(inputs)
        args[args.index("--audits") + 1] = str(audits)
        outcomes = tmp_path / "outcomes.jsonl"
        outcomes.write_text("old\n", encoding="utf-8")
        code, _, stderr = invoke(*args, "--no-progress", "--outcomes", str(outcomes))
        assert code == 0, stderr
        assert outcomes.read_text(encoding="utf-8") == ""


class TestInputFiles:
    def test_an_audits_file_of_no_known_format_is_a_usage_error(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """``--audits aud.txt``: USAGE (exit 2) saying to use .jsonl or .csv, not an internal error."""
        audits = tmp_path / "aud.txt"
        audits.write_bytes((CORPUS / "audits.jsonl").read_bytes())
        args = list(inputs)
        args[args.index("--audits") + 1] = str(audits)
        code, _, stderr = invoke(*args, "--no-progress")
        assert code == exit_codes.USAGE, stderr
        assert "use a .jsonl file (JSON lines) or a .csv file (psql CSV)" in stderr

    def test_a_mapping_file_nested_too_deep_is_config_invalid(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """``--config`` YAML nested 100,000 deep: CONFIG_INVALID (exit 3), not INTERNAL."""
        mapping = tmp_path / "mapping.yaml"
        mapping.write_text("scope: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
        code, _, stderr = invoke(*inputs, "--config", str(mapping), "--no-progress")
        assert code == exit_codes.CONFIG, stderr
        assert "nests collections too deep to read" in stderr


class TestATenantWithoutRows:
    def test_a_tenant_the_audits_file_does_not_name_is_refused(
        self, tmp_path: Path, inputs: list[str]
    ) -> None:
        """--tenant matching no row of a file of other tenants is UNKNOWN_TENANT (exit 4), naming them."""
        args = list(inputs)
        args[args.index("--tenant") + 1] = "acne"
        report = tmp_path / "report.json"
        code, stdout, stderr = invoke(*args, "--no-progress", "--report", str(report))
        assert code == exit_codes.REFUSED
        assert stderr.splitlines() == [
            f"error: UNKNOWN_TENANT: no row of tenant 'acne' in {CORPUS / 'audits.jsonl'}; its rows are of "
            "acme, globex, nusantara_retail"
        ]
        assert (stdout, report.exists()) == ("", False)

    @pytest.mark.parametrize(
        "lines",
        [
            pytest.param([], id="an empty JSONL file"),
            pytest.param(
                [{"tenant": TENANT, "id": 1, "auditable_type": "Crm::Note", "action": "create"}],
                id="rows of the tenant, none in scope",
            ),
        ],
    )
    def test_a_tenant_with_no_row_in_scope_is_a_warning_and_an_empty_report(
        self, tmp_path: Path, inputs: list[str], lines: list[dict[str, object]]
    ) -> None:
        """No row to migrate is no error (a run of such a tenant completes empty), but stderr says so."""
        audits = tmp_path / "audits.jsonl"
        audits.write_text(dump_jsonl([{**line, "created_at": "2024-01-01T00:00:00Z"} for line in lines]))
        args = list(inputs)
        args[args.index("--audits") + 1] = str(audits)
        code, stdout, stderr = invoke(*args, "--no-progress")
        assert code == 0, stderr
        assert json.loads(stdout)["processed"] == 0
        assert (
            f"warning: no row of tenant 'acme' in {audits} is in the mapping's scope: nothing to migrate"
            in stderr.splitlines()
        )

    def test_a_csv_export_without_rows_is_a_warning(self, tmp_path: Path, inputs: list[str]) -> None:
        """A psql CSV has no tenant column: a header alone is the tenant's empty export: a warning."""
        audits = tmp_path / "audits.csv"
        audits.write_text("id,auditable_type,action,audited_changes,created_at\n")
        args = list(inputs)
        args[args.index("--audits") + 1] = str(audits)
        code, _, stderr = invoke(*args, "--no-progress")
        assert code == 0, stderr
        assert "warning: no row of tenant 'acme'" in stderr


class TestExample:
    def test_example_runs_on_the_bundled_sample(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--example needs no argument, prints the report, and keeps its documents in a file it names."""
        monkeypatch.chdir(tmp_path)
        code, stdout, stderr = invoke("--example")
        assert code == 0
        report = json.loads(stdout)
        assert report["processed"] == 151
        assert report["migrated"] + sum(report["skipped"].values()) + sum(report["failed"].values()) == 151
        logs = tmp_path / EXAMPLE_OUT
        assert len(logs.read_text(encoding="utf-8").splitlines()) == report["migrated"]
        final = stderr.strip().splitlines()[-1]
        assert final.startswith(f"company {COMPANY}, tenant {TENANT}: processed 151")
        assert f"logs: {logs}" in final

    def test_example_refuses_input_files(self, tmp_path: Path) -> None:
        """--example runs on the bundled sample only: an --audits beside it is USAGE, not ignored."""
        other = tmp_path / "other.jsonl"
        other.write_text("", encoding="utf-8")
        code, _, stderr = invoke("--example", "--audits", str(other), "--out", str(tmp_path / "o.jsonl"))
        assert code == exit_codes.USAGE
        assert "--example runs on the bundled sample: drop --audits" in stderr

    def test_bundled_sample_is_the_documented_derivation_of_the_corpus(self) -> None:
        """The package data equals what the derivation rules make from the corpus today."""
        root = resources.files("crm_audit_adapters") / "data" / "example"
        for name, lines in example_files(TENANT).items():
            assert (root / name).read_text(encoding="utf-8") == dump_jsonl(lines), name
        account = json.loads((root / "account.json").read_text(encoding="utf-8"))
        assert account == {"company_sso_id": COMPANY, "tenant": TENANT}

    def test_installed_console_script_runs_the_example_anywhere(self, tmp_path: Path) -> None:
        """The crm-audit-migrate entry point finds its sample as package data, from any directory."""
        script = Path(sys.executable).with_name("crm-audit-migrate")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_AUDIT_")}
        done = subprocess.run(
            [str(script), "dry-run", "--example", "--out", "logs.jsonl", "--report", "report.json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["processed"] == 151
        assert len((tmp_path / "logs.jsonl").read_text().splitlines()) == report["migrated"]


def outputs_by_workers(tmp_path: Path, inputs: list[str]) -> dict[str, list[bytes]]:
    """The documents, report and outcomes of one dry run with ``--workers 1`` and one with 2, by count."""
    outputs = {}
    for workers in ("1", "2"):
        here = tmp_path / f"w{workers}"
        args = ["--out", str(here.with_suffix(".jsonl")), "--report", str(here.with_suffix(".json"))]
        args += ["--outcomes", str(here.with_suffix(".outcomes")), "--no-progress", "--workers", workers]
        code, _, stderr = invoke(*inputs, *args)
        assert code == 0, stderr
        outputs[workers] = [here.with_suffix(s).read_bytes() for s in (".jsonl", ".json", ".outcomes")]
    return outputs
