"""``dry-run --verify`` of the output of a dry run that did not finish: it says so and where it
stopped, and the rows it had not reached are ``pending`` (exit 10), not a list of ``missing`` ones.

The dry run keeps its job beside ``--out`` (``{out}.unfinished``, ``files.dry_run_progress``) from
before its first write until it completes. Before, a stopped dry run left nothing of where it got
to, and verify listed every row past it as missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from processes import CLI, wait_for

from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.files.dry_run_progress import DryRunProgress, ProgressJobs
from crm_audit_adapters.files.errors import FileFormatError
from support.corpus_account import company_sso_id, contact_docs, dump_jsonl, sso_docs
from support.corpus_world import CORPUS

TENANT = "acme"
COMPANY = company_sso_id(TENANT)
BAD_AT = 2000
"""The line of the copies a bad line comes after: the dry run stops there, pages before it written."""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["dry-run", *args], env={"CRM_AUDIT_SETTINGS": ""})
    return result.exit_code, result.stdout, result.stderr


def _copies(blocks: int = 3) -> list[str]:
    """The tenant's corpus rows, ``blocks`` times, each block's ids a million higher."""
    rows = [json.loads(line) for line in (CORPUS / "audits.jsonl").read_text(encoding="utf-8").splitlines()]
    ours = [doc for doc in rows if doc["tenant"] == TENANT]
    return dump_jsonl(
        [{**doc, "id": doc["id"] + block * 1_000_000} for block in range(blocks) for doc in ours]
    ).splitlines()


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "contacts.jsonl").write_text(dump_jsonl(contact_docs(TENANT)), encoding="utf-8")
    (tmp_path / "sso.jsonl").write_text(dump_jsonl(sso_docs(TENANT)), encoding="utf-8")
    audits = tmp_path / "audits.jsonl"
    audits.write_text("\n".join(_copies()) + "\n", encoding="utf-8")
    return [
        "--company-sso-id", COMPANY, "--tenant", TENANT, "--audits", str(audits),
        "--users", str(CORPUS / "users.jsonl"), "--contacts", str(tmp_path / "contacts.jsonl"),
        "--sso-directory", str(tmp_path / "sso.jsonl"), "--no-progress",
    ]  # fmt: skip


def _stopped_by_a_bad_line(tmp_path: Path, inputs: list[str], workers: str) -> Path:
    """A dry run of the copies with a bad line after ``BAD_AT``: exit 7, the pages before it kept."""
    lines = _copies()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*lines[:BAD_AT], "not json", *lines[BAD_AT:]]) + "\n", encoding="utf-8")
    given = [*inputs, "--workers", workers]
    given[given.index("--audits") + 1] = str(broken)
    out = tmp_path / "logs.jsonl"
    code, _, stderr = invoke(*given, "--out", str(out))
    assert code == exit_codes.BAD_INPUT, stderr
    assert out.read_bytes().count(b"\n") > 0
    return out


@pytest.mark.parametrize("workers", ["1", "2"])
def test_verify_of_a_dry_run_stopped_partway_says_so_and_finds_nothing_missing(
    tmp_path: Path, inputs: list[str], workers: str
) -> None:
    """Stopped by a bad line: the output verifies against the mended file with the rows past where
    the dry run stopped ``pending`` (exit 10, the job in progress at its cursor, consistent) and none
    ``missing``; stderr says the dry run did not finish, where, and to run it again. Run again with
    the same ``--out``, it completes, its progress file goes, and the output verifies clean."""
    out = _stopped_by_a_bad_line(tmp_path, inputs, workers)
    progress = DryRunProgress(out)
    stopped = progress.read()
    assert stopped is not None
    assert (stopped.company_sso_id, stopped.tenant, stopped.status) == (COMPANY, TENANT, "in_progress")
    assert 0 < stopped.tally.processed < len(_copies())
    report = tmp_path / "verify.json"
    code, stdout, stderr = invoke(*inputs, "--out", str(out), "--verify", "--report", str(report))
    assert code == exit_codes.NOT_VERIFIED, stdout + stderr
    doc = json.loads(report.read_text())
    assert doc["findings"]["missing"]["count"] == 0
    assert doc["pending"]["count"] > 0
    assert min(item["audit_id"] for item in doc["pending"]["items"]) > stopped.last_audit_id
    assert doc["job"]["status"] == "in_progress"
    assert doc["job"]["consistent"], doc["job"]
    assert (
        f"the dry run that wrote {out} did not finish: it stopped after audit id {stopped.last_audit_id}, "
        f"{stopped.tally.processed} rows processed"
    ) in stderr
    assert "missing" not in stdout
    code, _, stderr = invoke(*inputs, "--workers", workers, "--out", str(out))
    assert code == 0, stderr
    assert not progress.path.exists()
    code, stdout, stderr = invoke(*inputs, "--out", str(out), "--verify")
    assert code == 0, stdout + stderr
    assert "did not finish" not in stderr


def test_a_dry_run_that_completes_leaves_no_progress_file(tmp_path: Path, inputs: list[str]) -> None:
    out = tmp_path / "logs.jsonl"
    code, _, stderr = invoke(*inputs, "--out", str(out))
    assert code == 0, stderr
    assert not DryRunProgress(out).path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audits.jsonl",
        "contacts.jsonl",
        "logs.jsonl",
        "sso.jsonl",
    ]


def test_a_dry_run_stopped_by_ctrl_c_keeps_where_it_stopped(tmp_path: Path, inputs: list[str]) -> None:
    """SIGINT to a dry run under way (exit 130): its progress file holds the job as last saved, and
    verify of its output finds nothing missing."""
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(_copies(40)) + "\n", encoding="utf-8")
    given = [*inputs]
    given[given.index("--audits") + 1] = str(many)
    out = tmp_path / "logs.jsonl"
    env = {**os.environ, "CRM_AUDIT_SETTINGS": ""}
    process = subprocess.Popen(
        [CLI, "dry-run", *given, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    progress = DryRunProgress(out)
    # Under way = a step's job saved, not bytes in --out: a batch's logs are written before the job
    # that counts them is saved, and a Ctrl-C between the two keeps the job before them (see below).
    seen: list[int] = []

    def saved_a_step() -> bool:
        job = progress.read()
        if job is None or not job.tally.processed:
            return False
        seen.append(job.tally.processed)
        return True

    wait_for(saved_a_step, timeout_s=120, what="a saved step in the progress file")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_codes.INTERRUPTED, stderr
    stopped = progress.read()
    assert stopped is not None
    assert stopped.tally.processed >= seen[-1]
    assert out.stat().st_size > 0
    report = tmp_path / "verify.json"
    code, stdout, _ = invoke(*given, "--out", str(out), "--verify", "--report", str(report))
    assert code == exit_codes.NOT_VERIFIED, stdout
    doc = json.loads(report.read_text())
    assert (doc["findings"]["missing"]["count"], doc["job"]["consistent"]) == (0, True)
    assert doc["pending"]["count"] > 0


def test_a_ctrl_c_between_a_batch_written_and_its_job_saved_keeps_the_job_before_it(
    tmp_path: Path, inputs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C once the first batch's logs are in --out and before the job counting them is saved
    (exit 130): the progress file holds the job as created, nothing processed, and verify finds the
    rows of the logs written past its cursor pending, not stray, nothing missing."""

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ProgressJobs, "save_progress", interrupted)
    out = tmp_path / "logs.jsonl"
    code, _, stderr = invoke(*inputs, "--out", str(out))
    assert code == exit_codes.INTERRUPTED, stderr
    stopped = DryRunProgress(out).read()
    assert stopped is not None
    assert (stopped.tally.processed, stopped.last_audit_id) == (0, 0)
    assert out.read_bytes().count(b"\n") > 0
    monkeypatch.undo()
    report = tmp_path / "verify.json"
    code, stdout, _ = invoke(*inputs, "--out", str(out), "--verify", "--report", str(report))
    assert code == exit_codes.NOT_VERIFIED, stdout
    doc = json.loads(report.read_text())
    assert (doc["findings"]["missing"]["count"], doc["findings"]["stray"]["count"]) == (0, 0)
    assert doc["job"]["consistent"], doc["job"]
    assert doc["pending"]["count"] > 0


@pytest.mark.parametrize(
    "text", ["", "{}", "[1]", '{"format": 1}', "not json", '{"format": 2, "job_id": "x"}']
)
def test_a_progress_file_that_is_not_one_is_bad_input(tmp_path: Path, text: str) -> None:
    progress = DryRunProgress(tmp_path / "logs.jsonl")
    progress.path.write_text(text, encoding="utf-8")
    with pytest.raises(FileFormatError, match="not a dry run's progress"):
        progress.read()


TORN_STARTS = [b'{"company_sso_id":"', b'{"company_sso_id":"' + COMPANY.encode() + b'","ex']
"""Where a kill mid-write may cut a log's line: in its first key, or past its company."""


@pytest.mark.parametrize("torn", TORN_STARTS)
def test_verify_of_a_dry_run_killed_mid_write_reads_past_the_torn_line(
    tmp_path: Path, inputs: list[str], torn: bytes
) -> None:
    """A kill mid-write leaves the output's last line torn (the start of a log, no newline) beside
    the progress file: verify leaves that line out, as the sink drops it when it opens the file, and
    says the dry run did not finish (exit 10, nothing missing) rather than refuse the output."""
    out = _stopped_by_a_bad_line(tmp_path, inputs, "1")
    stopped = DryRunProgress(out).read()
    assert stopped is not None
    with out.open("ab") as stream:
        stream.write(torn)
    report = tmp_path / "verify.json"
    code, stdout, stderr = invoke(*inputs, "--out", str(out), "--verify", "--report", str(report))
    assert code == exit_codes.NOT_VERIFIED, stdout + stderr
    doc = json.loads(report.read_text())
    assert (doc["findings"]["missing"]["count"], doc["job"]["consistent"]) == (0, True)
    assert doc["pending"]["count"] > 0
    assert f"stopped after audit id {stopped.last_audit_id}" in stderr
    assert f"Its last line, cut off mid-write at byte {out.stat().st_size - len(torn)}, is left out" in stderr
    assert out.read_bytes().endswith(torn), "verify reads the output, it never changes it"


def test_a_torn_last_line_with_no_progress_file_is_still_refused(tmp_path: Path, inputs: list[str]) -> None:
    """Without a progress file the output claims a finished dry run: a torn last line is then not a
    crash state of it, and verify refuses the file (exit 7) as before."""
    out = tmp_path / "logs.jsonl"
    code, _, stderr = invoke(*inputs, "--out", str(out))
    assert code == 0, stderr
    with out.open("ab") as stream:
        stream.write(b'{"company_sso_id":"')
    code, stdout, stderr = invoke(*inputs, "--out", str(out), "--verify")
    assert code == exit_codes.BAD_INPUT, stdout + stderr
    assert "not a JSON document" in stderr
