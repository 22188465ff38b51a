"""An audits file changed between two runs in different processes: a job made over it keeps its
mark (``MigrationJob.source_mark``: the file's size and SHA-256), and a run over a file that is not
the job's any more (rewritten behind the cursor with the same ids, a byte changed mid-file at the
same size, cut short, replaced) raises ``SourceChanged`` (``BAD_INPUT``) before it reads a row: the
job keeps its cursor, counts and lease-free state, the output is untouched. It used to read the new
file on from the cursor, so the output held logs of two files. Rows appended after the file's end
(the supported case) are read on, to a clean run's counts and bytes; so is a job stored before the
field (no mark: only its ``rows_at_cursor`` is checked, ``test_files_changed_repeats``)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from test_files_audits import TEXT_AUDITS, write_psql_csv
from test_files_resume_repeats import COMPANY, TENANT, Account, FailingSave, Ran, pipelines, result

from crm_audit_adapters.cli.exit_codes import BAD_INPUT, error_code, exit_code_for
from crm_audit_adapters.files import CheckedRows, FileAuditSource, file_marks, mounts, read_audit_rows
from crm_audit_adapters.files.errors import FileChangedWhileRead
from crm_audit_adapters.files.file_marks import GrowingMark, digest_changed, digest_mark
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform import SourceChanged
from crm_audit_transform.errors import StoreUnavailable
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.usecases.guards import new_job
from crm_audit_transform.usecases.verify import VerifyPorts, VerifySettings, verify_account
from crm_audit_transform.verification import VerifyReport

LINES = [
    json.dumps(doc)
    for doc in (
        json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if doc["tenant"] == TENANT
][:60]
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
STOP_AT = 5
"""The step a first run stops after (settings: pages of 9, batches of 3): the cursor is mid-file."""


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _clean(tmp_path: Path, workers: int, shards: int = 1) -> Ran:
    """A clean run of a marked job over all of ``LINES``, in a folder of its own: what a resume reaches."""
    whole = tmp_path / "whole"
    whole.mkdir()
    _write(whole / "audits.jsonl", LINES)
    fresh = Account(whole, whole / "audits.jsonl", whole / "out.jsonl", workers, shards=shards, marked=True)
    with pipelines(workers) as pool:
        return result(fresh, fresh.run(pool))


def _stopped(
    tmp_path: Path, lines: list[str], workers: int, shards: int = 1, *, stop_at: int | None = STOP_AT
) -> tuple[Account, MigrationJob]:
    """A marked job run over ``lines`` until its ``stop_at``-th step (None: to its end)."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, lines)
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", workers, shards=shards, marked=True)
    calls = iter(range(1, 10_000))
    with pipelines(workers) as pool:
        job = account.run(pool, should_stop=lambda: next(calls) == stop_at)
    account.sink.close()
    assert job.status == ("in_progress" if stop_at is not None else "completed")
    # The digest alone: a stamp is taken only RACY_NS (3 s) after the file's last write, which a
    # slow run may pass between the trigger's mark and this one.
    assert job.source_mark is not None
    assert job.source_mark.split(":")[:3] == str(digest_mark(audits)).split(":")[:3]
    return account, job


def _other_first_row(lines: list[str]) -> list[str]:
    """The first row (behind the cursor) with another remote address: same ids, other content."""
    return _other_row(lines, 0)


def _other_row(lines: list[str], index: int) -> list[str]:
    """Row ``index`` with another remote address: same ids, other content."""
    doc = json.loads(lines[index])
    doc["remote_address"] = "203.0.113.9"
    return [*lines[:index], json.dumps(doc), *lines[index + 1 :]]


def _same_size_mid_file(lines: list[str]) -> list[str]:
    """One request uuid in the middle written backwards: the file's size and both ends as they were."""
    changed = list(lines)
    for index in range(len(lines) // 2, len(lines)):
        doc = json.loads(lines[index])
        uuid = doc.get("request_uuid")
        if isinstance(uuid, str) and uuid != uuid[::-1]:
            doc["request_uuid"] = uuid[::-1]
            changed[index] = json.dumps(doc)
            return changed
    raise AssertionError("no request uuid to turn")


def _cut_short(lines: list[str]) -> list[str]:
    return lines[:-10]


def _replaced_larger(lines: list[str]) -> list[str]:
    return [*_other_first_row(lines), *lines[-3:]]


REWRITES: dict[str, Callable[[list[str]], list[str]]] = {
    "behind-the-cursor": _other_first_row,
    "same-size-mid-file": _same_size_mid_file,
    "cut-short": _cut_short,
    "replaced-larger": _replaced_larger,
}


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_run_over_a_file_rewritten_since_its_job_was_made_raises(
    tmp_path: Path, rewrite: str, workers: int, shards: int
) -> None:
    """Another process resumes the job over the rewritten file: ``SourceChanged`` naming the reason,
    nothing read or written, the job as it was left but its lease handed back."""
    account, stopped = _stopped(tmp_path, LINES, workers, shards)
    written = account.out.read_bytes()
    changed = REWRITES[rewrite](LINES)
    _write(account.audits, changed)
    if rewrite == "same-size-mid-file":
        assert len("\n".join(changed)) == len("\n".join(LINES))
    account.anew(keep_sink=False)
    with pipelines(workers) as pool, pytest.raises(SourceChanged) as raised:
        account.run(pool)
    account.sink.close()
    error = raised.value
    assert error.reason is not None
    assert (error.audit_id, error.counted, error.found) == (
        (stopped.shards[0] if shards > 1 else stopped).last_audit_id,
        None,
        None,
    )
    assert (error_code(error), exit_code_for(error)) == ("BAD_INPUT", BAD_INPUT)
    assert str(account.audits) not in str(error)
    job = account.jobs.latest(COMPANY)
    assert job is not None
    assert (job.status, job.last_audit_id, job.tally, job.lease_owner) == (
        "in_progress",
        stopped.last_audit_id,
        stopped.tally,
        None,
    )
    assert [(s.last_audit_id, s.tally, s.lease_owner) for s in job.shards] == [
        (s.last_audit_id, s.tally, None) for s in stopped.shards
    ]
    assert account.out.read_bytes() == written


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_rows_appended_after_the_files_end_are_read_on_to_a_clean_runs_result(
    tmp_path: Path, workers: int, shards: int
) -> None:
    """The job made over the first 40 rows, stopped, the other 20 appended: the resume completes
    with the counts and bytes of a clean run over the 60."""
    account, _ = _stopped(tmp_path, LINES[:40], workers, shards)
    with account.audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[40:]) + "\n")
    account.anew(keep_sink=False)
    with pipelines(workers) as pool:
        resumed = result(account, account.run(pool))
    clean = _clean(tmp_path, workers, shards)
    assert resumed[1] == "completed"
    assert (resumed[0], resumed[1], resumed[4]) == (clean[0], clean[1], clean[4])
    assert resumed[0].processed == len(LINES)


MARKED = 40
"""The rows a job is made over before the rest of ``LINES`` is appended to its file."""
PAST = int(json.loads(LINES[MARKED + 5])["id"])
"""A run over the appended rows stops once its cursor is here: rows appended behind it."""


def _cursor(job: MigrationJob) -> int:
    """The cursor of the rows appended: the job's, or its last shard's (its range is open-ended)."""
    return job.shards[-1].last_audit_id if job.shards else job.last_audit_id


def _appended_and_read(
    tmp_path: Path, workers: int, shards: int, upto: int = len(LINES)
) -> tuple[Account, MigrationJob]:
    """A job made over ``LINES[:MARKED]``, ``LINES[MARKED:upto]`` appended, run until its cursor
    passed ``PAST`` (stopped there; the next run is another process's: a new source and sink)."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, LINES[:MARKED])
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", workers, shards=shards, marked=True)
    made = account.jobs.latest(COMPANY)
    assert made is not None
    assert made.source_mark is not None
    assert made.source_mark.startswith(f"sha256:{audits.stat().st_size}:")
    with audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[MARKED:upto]) + "\n")

    def past() -> bool:
        job = account.jobs.latest(COMPANY)
        return job is not None and _cursor(job) >= PAST

    account.anew(keep_sink=False)
    with pipelines(workers) as pool:
        account.run(pool, should_stop=past)
    account.sink.close()
    stopped = account.jobs.latest(COMPANY)
    assert stopped is not None
    assert stopped.status == "in_progress"
    assert PAST <= _cursor(stopped) < int(json.loads(LINES[upto - 1])["id"])
    return account, stopped


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_rows_appended_read_by_a_run_and_then_rewritten_are_refused_at_the_next(
    tmp_path: Path, workers: int, shards: int
) -> None:
    """The run that handed rows appended after the job's mark grew the mark over them first: a row
    of those rewritten before the next run (behind its cursor) is ``SourceChanged``, nothing read
    or written. The mark covered the bytes the file held when the job was made, and the next run
    read on from the cursor, its counts including a row the file no longer holds."""
    account, stopped = _appended_and_read(tmp_path, workers, shards)
    assert stopped.source_mark is not None
    assert stopped.source_mark.split(":")[:3] == str(digest_mark(account.audits)).split(":")[:3]
    written = account.out.read_bytes()
    _write(account.audits, _other_row(LINES, MARKED + 1))
    account.anew(keep_sink=False)
    with pipelines(workers) as pool, pytest.raises(SourceChanged) as raised:
        account.run(pool)
    account.sink.close()
    size = int(stopped.source_mark.split(":")[1])
    assert raised.value.reason == f"its first {size} bytes are not those the job was made over"
    job = account.jobs.latest(COMPANY)
    assert job is not None
    assert (job.status, _cursor(job), job.tally) == ("in_progress", _cursor(stopped), stopped.tally)
    assert account.out.read_bytes() == written


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_run_stopped_among_rows_appended_resumes_to_a_clean_runs_result(
    tmp_path: Path, workers: int, shards: int
) -> None:
    """Rows appended, a run stopped among them (its mark grown), more rows appended: the resume
    reads on, growing the mark again, to the counts and bytes of a clean run over all of them."""
    account, stopped = _appended_and_read(tmp_path, workers, shards, upto=len(LINES) - 3)
    assert stopped.source_mark is not None
    assert stopped.source_mark.startswith(f"sha256:{account.audits.stat().st_size}:")
    with account.audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[-3:]) + "\n")
    account.anew(keep_sink=False)
    with pipelines(workers) as pool:
        resumed = result(account, account.run(pool))
    done = account.jobs.latest(COMPANY)
    assert done is not None
    assert done.source_mark is not None
    assert done.source_mark.split(":")[:3] == str(digest_mark(account.audits)).split(":")[:3]
    clean = _clean(tmp_path, workers, shards)
    assert resumed[1] == "completed"
    assert (resumed[0], resumed[4]) == (clean[0], clean[4])


@pytest.mark.parametrize("save", [1, 2, 3])
def test_a_run_killed_after_its_mark_grew_resumes_to_a_clean_runs_result(tmp_path: Path, save: int) -> None:
    """The mark grown over rows appended, the process gone at its ``save``-th progress write (a
    step written, its progress not): the resume, under the grown mark, counts each row once."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, LINES[:MARKED])
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1, marked=True)
    with audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[MARKED:]) + "\n")
    account.anew(keep_sink=True, jobs=FailingSave(account.jobs, save))
    with pytest.raises(StoreUnavailable):
        account.run(None)
    crashed = account.jobs.latest(COMPANY)
    assert crashed is not None
    assert crashed.source_mark is not None
    assert crashed.source_mark.startswith(f"sha256:{audits.stat().st_size}:")
    account.anew(keep_sink=True)
    resumed = result(account, account.run(None))
    clean = _clean(tmp_path, 1)
    assert (resumed[0], resumed[1], resumed[4]) == (clean[0], clean[1], clean[4])


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
def test_a_psql_csv_files_appended_rows_rewritten_after_a_run_read_them_are_refused(
    tmp_path: Path, shards: int
) -> None:
    """The same with a psql CSV export (records spanning lines, no tenant column): the rows appended
    after the trigger, read by a run that stopped among them, then one rewritten: ``SourceChanged``
    at the resume; unchanged, the resume completes."""
    jsonl = tmp_path / "rows.jsonl"
    _write(jsonl, LINES)
    rows = list(read_audit_rows(jsonl))
    changed = [
        *rows[: MARKED + 1],
        attrs.evolve(rows[MARKED + 1], remote_address="203.0.113.9"),
        *rows[MARKED + 2 :],
    ]
    audits, tail = tmp_path / "audits.csv", tmp_path / "tail.csv"
    write_psql_csv(audits, rows[:MARKED])
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1, shards=shards, marked=True)
    write_psql_csv(tail, rows[MARKED:])
    with audits.open("ab") as grown:
        grown.write(tail.read_bytes().split(b"\n", 1)[1])  # the header once

    def past() -> bool:
        job = account.jobs.latest(COMPANY)
        return job is not None and _cursor(job) >= PAST

    account.anew(keep_sink=False)
    account.run(None, should_stop=past)
    stopped = account.jobs.latest(COMPANY)
    assert stopped is not None
    assert stopped.status == "in_progress"
    assert PAST <= _cursor(stopped) < rows[-1].id
    write_psql_csv(audits, changed)
    account.anew(keep_sink=False)
    with pytest.raises(SourceChanged):
        account.run(None)
    write_psql_csv(audits, rows)
    account.anew(keep_sink=False)
    assert account.run(None).status == "completed"
    account.sink.close()


def test_only_a_triggers_job_over_a_file_keeps_its_mark(tmp_path: Path) -> None:
    """``new_job`` marks a file source's job; the dry run's (``every_row``) is not marked: it runs
    in the process that made it, and its file is not read end to end before the run."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, LINES)
    source = FileAuditSource(audits, TENANT)
    made = {
        every_row: new_job(
            COMPANY, TENANT, source=source, scope=("Crm::Company",), now=T0, every_row=every_row
        ).source_mark
        for every_row in (False, True)
    }
    size = audits.stat().st_size
    assert made[True] is None
    assert made[False] is not None
    assert made[False].startswith(f"sha256:{size}:")


class TestDigestMarks:
    def test_a_file_grown_at_its_end_matches_and_any_other_change_does_not(self, tmp_path: Path) -> None:
        """Appended bytes match; a cut, or one byte changed anywhere before the marked size, is told
        in byte counts."""
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 3_000_000)
        mark = digest_mark(path)
        assert mark is not None
        with path.open("ab") as grown:
            grown.write(b"y" * 10)
        assert digest_changed(path, mark) is None
        for at in (0, 1_500_000, 2_999_999):
            data = bytearray(path.read_bytes())
            data[at] = ord("z")
            path.write_bytes(bytes(data))
            assert digest_changed(path, mark) == "its first 3000000 bytes are not those the job was made over"
            data[at] = ord("x")
            path.write_bytes(bytes(data))
        assert digest_changed(path, mark) is None
        path.write_bytes(b"x" * 10)
        assert digest_changed(path, mark) == (
            "the file holds 10 bytes, short of the 3000000 bytes it held when the job was made"
        )

    def test_a_pipe_is_not_marked_and_not_taken_for_a_marked_file(self, tmp_path: Path) -> None:
        """A FIFO has no mark (it cannot be read twice), and a marked job run over one is refused."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        assert digest_mark(fifo) is None
        assert digest_changed(fifo, "sha256:1:" + "0" * 64) == (
            "the file is not a regular file now: it cannot be checked against the job's"
        )

    @pytest.mark.parametrize(
        "mark", ["", "sha256", "md5:1:" + "0" * 64, "sha256:x:" + "0" * 64, "sha256:1:00"]
    )
    def test_a_mark_no_file_source_makes_is_refused(self, tmp_path: Path, mark: str) -> None:
        """A hand-edited or foreign mark is a changed source, never a match."""
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x")
        assert digest_changed(path, mark) == "the job's mark of its file is not one a file source makes"


def _verify(account: Account, *, repair: bool = False) -> VerifyReport:
    """``verify_account`` as another process makes it: a new source over the file as it is now."""
    with FileAuditSource(account.audits, TENANT, checked=CheckedRows(account.audits)) as source:
        ports = VerifyPorts(
            source=source,
            users=account.ports.users,
            sso=account.ports.sso,
            contacts=account.ports.contacts,
            reader=JsonlMigratedLogReader(account.out),
            jobs=account.jobs,
            logs=account.sink,
            clock=account.ports.clock,
            indexes=account.ports.indexes,
        )
        return verify_account(
            COMPANY, ports, account.transformer, tenant=TENANT, settings=VerifySettings(repair=repair)
        )


@pytest.mark.parametrize("repair", [False, True], ids=["report", "repair"])
@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_verify_over_a_file_rewritten_since_its_job_was_made_raises(
    tmp_path: Path, rewrite: str, shards: int, repair: bool
) -> None:
    """The job completed, then its file rewritten: verify raises ``SourceChanged`` (its reason, the
    job's cursor) before it reads a row or takes the lease, where it compared the logs of one file
    with the rows of another. The same job over its file as it was verifies clean."""
    account, _ = _stopped(tmp_path, LINES, 1, shards, stop_at=None)
    account.anew(keep_sink=False)
    assert _verify(account, repair=repair).clean
    done = account.jobs.latest(COMPANY)
    assert done is not None
    assert done.status == "completed"
    written = account.out.read_bytes()
    _write(account.audits, REWRITES[rewrite](LINES))
    with pytest.raises(SourceChanged) as raised:
        _verify(account, repair=repair)
    account.sink.close()
    error = raised.value
    assert error.reason is not None
    assert (error.audit_id, error.counted, error.found) == (done.last_audit_id, None, None)
    assert (error_code(error), exit_code_for(error)) == ("BAD_INPUT", BAD_INPUT)
    assert str(account.audits) not in str(error)
    assert account.jobs.latest(COMPANY) == done
    assert account.out.read_bytes() == written


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
def test_verify_over_rows_appended_migrated_and_then_rewritten_raises(tmp_path: Path, shards: int) -> None:
    """The job made over 40 rows, 20 appended and migrated by its run, then one of those rewritten:
    verify raises ``SourceChanged`` before it reads a row, where it compared the logs of the rows
    as they were with the rows as they are."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, LINES[:MARKED])
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1, shards=shards, marked=True)
    with audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[MARKED:]) + "\n")
    account.anew(keep_sink=False)
    assert account.run(None).status == "completed"
    account.anew(keep_sink=False)
    assert _verify(account).clean
    done = account.jobs.latest(COMPANY)
    assert done is not None
    _write(audits, _other_row(LINES, len(LINES) - 5))
    with pytest.raises(SourceChanged):
        _verify(account)
    account.sink.close()
    assert account.jobs.latest(COMPANY) == done


class TestGrowingMarks:
    """A mark grown over the bytes appended since it was taken: the same as a mark taken of the
    file now, read from where the last check stopped; refused when the marked bytes changed."""

    def test_a_mark_grows_only_over_bytes_appended(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 3_000_000)
        mark = digest_mark(path)
        assert mark is not None
        growing = GrowingMark(path)
        assert growing.changed(mark) is None
        assert growing.grown(mark) is None
        with path.open("ab") as grown:
            grown.write(b"y" * 10)
        bigger = growing.grown(mark)
        assert bigger is not None
        assert bigger.split(":")[:3] == str(digest_mark(path)).split(":")[:3]
        assert GrowingMark(path).grown(mark) == bigger  # from the first byte: the same mark
        assert digest_changed(path, bigger) is None
        assert growing.grown(bigger) is None

    def test_a_check_that_read_the_marked_bytes_is_not_read_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 3_000_000)
        mark = digest_mark(path)
        assert mark is not None
        with path.open("ab") as grown:
            grown.write(b"y" * 10)
        growing = GrowingMark(path)
        assert growing.changed(mark) is None
        starts: list[int] = []
        feed = file_marks._feed

        def recorded(descriptor: int, digest: object, start: int, limit: int | None) -> int:
            starts.append(start)
            return feed(descriptor, digest, start, limit)  # type: ignore[arg-type]

        monkeypatch.setattr(file_marks, "_feed", recorded)
        assert growing.grown(mark) is not None
        assert starts
        assert min(starts) == 3_000_000

    @pytest.mark.parametrize("at", [0, 1_500_000, 2_999_999])
    def test_a_byte_changed_under_the_mark_is_refused(self, tmp_path: Path, at: int) -> None:
        """Read from the first byte, the growth refuses it; grown from a check that read the bytes
        before the change, the mark is of bytes the file no longer holds: the next check refuses."""
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 3_000_000)
        mark = digest_mark(path)
        assert mark is not None
        growing = GrowingMark(path)
        assert growing.changed(mark) is None
        data = bytearray(path.read_bytes() + b"y" * 10)
        data[at] = ord("z")
        path.write_bytes(bytes(data))
        with pytest.raises(FileChangedWhileRead, match="its first 3000000 bytes are not those"):
            GrowingMark(path).grown(mark)
        grown = growing.grown(mark)
        assert grown is not None
        assert digest_changed(path, grown) == "its first 3000010 bytes are not those the job was made over"

    def test_a_grown_mark_keeps_a_stamp_only_for_a_file_written_long_enough_before(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As ``digest_mark``'s rule: with the file's last write ``RACY_NS`` before the read began,
        the stamp, and a check then reads nothing; a file written just now, none."""
        _on(monkeypatch, "ext4")
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 100)
        mark = digest_mark(path)
        assert mark is not None
        with path.open("ab") as grown:
            grown.write(b"y" * 10)
        monkeypatch.setattr(file_marks, "RACY_NS", 60 * 10**9)
        assert len(str(GrowingMark(path).grown(mark)).split(":")) == 3
        monkeypatch.setattr(file_marks, "RACY_NS", 0)
        stamped = GrowingMark(path).grown(mark)
        assert stamped is not None
        assert len(stamped.split(":")) == 4

        def no_read(descriptor: int, limit: int | None) -> tuple[str, int]:
            raise AssertionError("digested")

        monkeypatch.setattr(file_marks, "_digest", no_read)
        assert digest_changed(path, stamped) is None


class TestStampedMarks:
    """A mark taken of a file last written ``RACY_NS`` or more before keeps its stamp, and a check
    that finds the stamp as it was reads nothing; any write since is digested as before."""

    @pytest.fixture
    def stamped(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
        monkeypatch.setattr(file_marks, "RACY_NS", 0)  # the file was written just now
        _on(monkeypatch, "ext4")  # whatever holds tmp_path here
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 3_000_000)
        mark = digest_mark(path)
        assert mark is not None
        assert len(mark.split(":")) == 4
        return path, mark

    def test_a_file_not_written_since_is_not_read(
        self, stamped: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path, mark = stamped

        def no_read(descriptor: int, limit: int | None) -> tuple[str, int]:
            raise AssertionError("digested")

        monkeypatch.setattr(file_marks, "_digest", no_read)
        assert digest_changed(path, mark) is None

    def test_any_write_since_is_digested(self, stamped: tuple[Path, str]) -> None:
        """The same size, the first bytes rewritten in place: the stamp moved, the digest decides."""
        path, mark = stamped
        before = path.stat()
        with path.open("r+b") as stream:
            stream.seek(1_500_000)
            stream.write(b"z")
        after = path.stat()
        assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
        assert after.st_ctime_ns != before.st_ctime_ns
        assert digest_changed(path, mark) == "its first 3000000 bytes are not those the job was made over"
        with path.open("r+b") as stream:  # written back: the stamp moved, the bytes are the mark's
            stream.seek(1_500_000)
            stream.write(b"x")
        assert digest_changed(path, mark) is None
        with path.open("ab") as grown:
            grown.write(b"y")
        assert digest_changed(path, mark) is None

    def test_a_file_written_in_the_last_seconds_keeps_no_stamp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write in the same clock tick after the mark could keep its times: such a file is
        digested at every check."""
        monkeypatch.setattr(file_marks, "RACY_NS", 60 * 10**9)
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 10)
        mark = digest_mark(path)
        assert mark is not None
        assert len(mark.split(":")) == 3

    def test_a_mark_without_a_stamp_is_digested_as_before(self, stamped: tuple[Path, str]) -> None:
        """A job stored before the stamp keeps ``sha256:{size}:{digest}``: still checked."""
        path, mark = stamped
        unstamped = mark.rsplit(":", 1)[0]
        assert digest_changed(path, unstamped) is None
        path.write_bytes(b"x" * 2_999_999 + b"z")
        assert (
            digest_changed(path, unstamped) == "its first 3000000 bytes are not those the job was made over"
        )


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_a_run_over_a_rewritten_file_raises_with_a_stamped_mark(
    tmp_path: Path, rewrite: str, shards: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger's mark keeps the file's stamp (written long enough before): each rewrite still
    raises ``SourceChanged`` at the next run, as with the digest alone."""
    monkeypatch.setattr(file_marks, "RACY_NS", 0)
    _on(monkeypatch, "ext4")
    account, _ = _stopped(tmp_path, LINES, 1, shards)
    stopped = account.jobs.latest(COMPANY)
    assert stopped is not None
    assert stopped.source_mark is not None
    assert len(stopped.source_mark.split(":")) == 4
    _write(account.audits, REWRITES[rewrite](LINES))
    account.anew(keep_sink=False)
    with pytest.raises(SourceChanged):
        account.run(None)
    account.sink.close()


def _on(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Every file taken for one on a mount of type ``kind`` (as ``/proc/self/mountinfo`` names it)."""
    monkeypatch.setattr(mounts, "file_system", lambda device: kind)


class _SshfsTimes:
    """``os`` as ``file_marks`` sees it on sshfs: a file's change time is its modification time
    (SFTP v3 carries no change time), so ``os.utime`` after a write sets both back."""

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    @staticmethod
    def fstat(descriptor: int) -> _SshfsStatus:
        return _SshfsStatus(os.fstat(descriptor))


class _SshfsStatus:
    def __init__(self, status: os.stat_result) -> None:
        self._status = status
        self.st_ctime_ns = status.st_mtime_ns

    def __getattr__(self, name: str) -> object:
        return getattr(self._status, name)


def _copied_over_keeping_times(path: Path, lines: list[str]) -> None:
    """``cp -p`` of a file of the same size over ``path``: its bytes written in place, its
    modification time set back to what it was."""
    before = path.stat()
    _write(path, lines)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


class TestMountsWithoutChangeTimes:
    """On a mount not known to keep change times (FUSE, network, unknown) a mark keeps no stamp:
    a same-size rewrite that keeps the modification time is digested, and caught. With the
    stamp, on sshfs's times, it passed on one ``fstat``."""

    @pytest.mark.parametrize("kind", ["fuse.sshfs", "nfs4", "fuse.rclone"])
    def test_a_mark_there_keeps_no_stamp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
    ) -> None:
        monkeypatch.setattr(file_marks, "RACY_NS", 0)
        _on(monkeypatch, kind)
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 100)
        mark = digest_mark(path)
        assert mark is not None
        assert len(mark.split(":")) == 3

    def test_a_mark_where_the_type_cannot_be_read_keeps_no_stamp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(file_marks, "RACY_NS", 0)
        monkeypatch.setattr(mounts, "MOUNTINFO", str(tmp_path / "absent"))  # as off Linux
        path = tmp_path / "a.jsonl"
        path.write_bytes(b"x" * 100)
        mark = digest_mark(path)
        assert mark is not None
        assert len(mark.split(":")) == 3

    @pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
    def test_a_same_size_copy_keeping_times_is_caught(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int
    ) -> None:
        monkeypatch.setattr(file_marks, "RACY_NS", 0)
        monkeypatch.setattr(file_marks, "os", _SshfsTimes())
        _on(monkeypatch, "fuse.sshfs")
        account, _ = _stopped(tmp_path, LINES, 1, shards)
        stopped = account.jobs.latest(COMPANY)
        assert stopped is not None
        assert stopped.source_mark is not None
        _copied_over_keeping_times(account.audits, _same_size_mid_file(LINES))
        assert digest_changed(account.audits, stopped.source_mark) == (
            f"its first {account.audits.stat().st_size} bytes are not those the job was made over"
        )
        account.anew(keep_sink=False)
        with pytest.raises(SourceChanged):
            account.run(None)
        account.sink.close()
        assert account.jobs.latest(COMPANY) == stopped

    def test_a_stamp_already_taken_there_is_not_trusted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A job made on sshfs by a release that stamped every file system: its 4-field mark is
        digested there at each check, so the same-size copy keeping times is caught."""
        monkeypatch.setattr(file_marks, "RACY_NS", 0)
        monkeypatch.setattr(file_marks, "os", _SshfsTimes())
        _on(monkeypatch, "ext4")  # as the old release took it: stamped
        path = tmp_path / "a.jsonl"
        _write(path, LINES)
        mark = digest_mark(path)
        assert mark is not None
        assert len(mark.split(":")) == 4
        _on(monkeypatch, "fuse.sshfs")
        _copied_over_keeping_times(path, _same_size_mid_file(LINES))
        assert (
            digest_changed(path, mark)
            == f"its first {path.stat().st_size} bytes are not those the job was made over"
        )


@pytest.mark.parametrize("shards", [1, 2], ids=["job", "shards"])
def test_rows_appended_after_the_job_completed_and_repaired_are_then_covered_by_its_mark(
    tmp_path: Path, shards: int
) -> None:
    """The job completed over 40 rows, 20 appended after it, written by ``verify --repair``: the
    repair grew the job's mark over them before it wrote them (under its lease), so one of them
    rewritten since is ``SourceChanged`` at the next verify. Before, the mark was left as it was,
    and the rewrite showed as a ``drifted`` log: the row's content, not the file, had changed."""
    audits = tmp_path / "audits.jsonl"
    _write(audits, LINES[:MARKED])
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1, shards=shards, marked=True)
    assert account.run(None).status == "completed"
    account.sink.close()
    with audits.open("a", encoding="utf-8") as grown:
        grown.write("\n".join(LINES[MARKED:]) + "\n")
    account.anew(keep_sink=False)
    repaired = _verify(account, repair=True)
    assert repaired.repaired > 0  # the appended rows that migrate (some skip)
    done = account.jobs.latest(COMPANY)
    assert done is not None
    assert (done.status, done.lease_owner) == ("completed", None)
    assert done.source_mark is not None
    assert done.source_mark.split(":")[:3] == str(digest_mark(audits)).split(":")[:3]
    assert _verify(account).clean
    _write(audits, _other_row(LINES, len(LINES) - 5))
    with pytest.raises(SourceChanged):
        _verify(account)
    account.sink.close()
    assert account.jobs.latest(COMPANY) == done
