"""Memory of a file source's set-aside rows: handed over a page at a time, never all held."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from pathlib import Path

from crm_audit_adapters.files import CheckedRows, FileAuditSource
from crm_audit_transform import reasons
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed

EXAMPLE = Path(__file__).parents[2] / "src/crm_audit_adapters/data/example/audits.jsonl"
SCOPE = tuple(load_default_config().scope)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def write_half_unreadable(path: Path, count: int) -> str:
    """``count`` example rows with ids 1..count, every second one without ``action``; the tenant."""
    rows = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]
    with path.open("w") as out:
        for i in range(count):
            row = dict(rows[i % len(rows)], id=i + 1)
            if i % 2:
                del row["action"]
            out.write(json.dumps(row) + "\n")
    return str(rows[0]["tenant"])


def test_set_aside_outcomes_are_not_kept_once_taken(tmp_path: Path) -> None:
    """Paged as the run loop pages it (``take_set_aside`` after each page), a file of 8,000 rows
    half unreadable holds no set-aside outcome once taken: ``CheckedRows`` used to keep every one
    (~400 bytes each with its detail) for the whole run."""
    path = tmp_path / "audits.jsonl"
    tenant = write_half_unreadable(path, 8000)
    checked = CheckedRows(path)
    taken = 0
    with FileAuditSource(path, tenant, checked=checked) as source:
        after = 0
        tracemalloc.start()
        try:
            base = 0
            while True:
                rows = source.page(tenant, SCOPE, after_id=after, cutoff=EPOCH, limit=100)
                aside = source.take_set_aside()
                assert all(isinstance(o, Failed) and o.reason == reasons.INVALID_AUDIT_ROW for o in aside)
                taken += len(aside)
                del aside
                if not rows:
                    break
                after = rows[-1].id
                if not base:
                    base = tracemalloc.get_traced_memory()[0]  # after the first page: the reader's buffers
                del rows
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
    assert taken == 4000
    assert held < 256 * 1024
    assert checked.outcomes == []
