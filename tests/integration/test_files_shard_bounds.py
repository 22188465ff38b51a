"""A sharded job over a file that repeats ids (library use: ``run_shard`` over a file source): a
shard counts no row set aside past its range's end, which the next shard reads and counts."""

from __future__ import annotations

import json
from pathlib import Path

from test_files_audits import TEXT_AUDITS
from test_files_resume_repeats import COMPANY, OWNER, SETTINGS, TENANT, Account

from crm_audit_transform.testing import InMemoryJobStore
from crm_audit_transform.usecases.guards import new_job
from crm_audit_transform.usecases.shards import run_shard


def sparse_repeats(path: Path) -> int:
    """40 acme rows of even ids, each written three times (its row and two repeats): a shard's
    last page is asked for more rows than its range holds, so its source reads past the range's
    end and sets aside the repeats it meets there. The file's line count."""
    docs = [json.loads(line) for line in TEXT_AUDITS.read_text(encoding="utf-8").splitlines() if line.strip()]
    ours = [doc for doc in docs if doc["tenant"] == TENANT and doc["id"] % 2 == 0][:40]
    lines = [json.dumps(doc) for doc in ours for _ in range(3)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def test_each_row_is_counted_by_one_shard(tmp_path: Path) -> None:
    audits = tmp_path / "audits.jsonl"
    lines = sparse_repeats(audits)
    account = Account(tmp_path, audits, tmp_path / "out.jsonl", 1)
    clock = account.ports.clock
    jobs = InMemoryJobStore(clock=clock)
    scope = tuple(account.transformer.scope)
    jobs.create(new_job(COMPANY, TENANT, source=account.ports.source, scope=scope, now=clock.now(), shards=2))
    for shard in (0, 1):
        account.anew(keep_sink=True)  # each shard with a source of its own, as a shard process has
        job = run_shard(
            COMPANY, shard, account.ports, account.transformer, jobs=jobs, owner=OWNER,
            settings=SETTINGS, should_stop=lambda: False,
        ).job  # fmt: skip
    account.sink.close()
    first, second = job.shards
    assert (job.status, first.status, second.status) == ("completed", "completed", "completed")
    assert first.until_id is not None
    assert first.last_audit_id <= first.until_id  # was 2 past it: the next shard's rows counted here
    assert job.tally.processed == lines  # was 122 of 120
    assert job.tally.failed["duplicate_audit_id"] == lines - 40
