"""What a page costs to cross between the run loop and a ``--workers`` process, per row, against
the work that crosses: loading, the rules, encoding the line.

    .venv/bin/python benchmarks/bench_page_transfer.py --dsn DSN [--schema bench_100000] [--pages 4]

Reads ``--pages`` pages of 500 rows of a ``generate.py`` tenant from PostgreSQL, then times in this
one process (CPU time, best of 3) each step a page takes through ``crm_audit_adapters.page_pool``:
the rows as field tuples out and back into ``AuditRow``, ``prepare``, the lookup context out and
back, ``transform``, encoding the logs (``jsonl_log``: the sink's ``log_encoder``), and the page's
result out and back: as the worker sends it (``wire.pack``: encoded logs as tuples of builtins) and,
for comparison, as objects (the ``PageResult`` with its ``ActivityLog`` objects, pickled whole).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scale_context
import scale_pipeline
from _machine import Stopwatch, uptime
from crm_audit_adapters.files.sink import jsonl_log
from crm_audit_adapters.page_pool.sending import wire_rows as _wire
from crm_audit_adapters.page_pool.wire import pack, unpack
from crm_audit_transform.domain import ActivityLog, AuditRow, Migrated
from crm_audit_transform.lookup import LookupPorts, fetch_lookups
from crm_audit_transform.transformer import PageResult, Transformer

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", default="bench_100000")
    parser.add_argument("--pages", type=int, default=4)
    args = parser.parse_args(argv)
    ctx = scale_context.Context(
        dsn=args.dsn,
        schema=args.schema,
        data_dir=HERE / "data" / args.schema,
        out_dir=HERE / "out",
        mongo_uri=None,
        limit=None,
        usman_url=None,
    )
    lookups = scale_pipeline.Lookups(ctx, users_in_memory=True, contacts_in_memory=True)
    source = scale_pipeline._source(ctx)
    transformer = Transformer(ctx.config)
    pages: list[Any] = []
    after = 0
    for _ in range(args.pages):
        page = source.page(ctx.schema, ctx.scope, after_id=after, cutoff=ctx.cutoff, limit=500)
        pages.append(page)
        after = page[-1].id
    rows = sum(len(page) for page in pages)
    print(f"{rows} rows, load before: {uptime()}")

    def clock(label: str, step: Callable[[], Any]) -> Any:
        best = float("inf")
        for _ in range(3):
            with Stopwatch() as took:
                result = step()
            best = min(best, took.cpu)
        print(f"{label:32s} {best / rows * 1e6:7.1f} µs/row")
        return result

    wired = [_wire(page)[0] for page in pages]
    sent = clock("rows: pickle (field tuples)", lambda: [pickle.dumps(w, 5) for w in wired])
    clock("rows: unpickle + AuditRow", lambda: [[AuditRow(*v) for v in pickle.loads(b)] for b in sent])
    prepared = clock("prepare (load, ids)", lambda: [transformer.prepare(page) for page in pages])
    ports = LookupPorts(lookups.users, lookups.sso, lookups.contacts)
    contexts = [
        fetch_lookups(transformer.plan(p), company_sso_id=ctx.company_sso_id, tenant=ctx.schema, ports=ports)
        for p in prepared
    ]
    back = clock("lookup context: pickle", lambda: [pickle.dumps(c, 5) for c in contexts])
    clock("lookup context: unpickle", lambda: [pickle.loads(b) for b in back])
    company = ctx.company_sso_id
    results = clock(
        "transform (rules)",
        lambda: [
            transformer.transform(p, c, company_sso_id=company)
            for p, c in zip(prepared, contexts, strict=True)
        ],
    )

    def encode(result: PageResult) -> PageResult:
        outcomes = tuple(
            Migrated(o.audit_id, jsonl_log(o.log))
            if isinstance(o, Migrated) and isinstance(o.log, ActivityLog)
            else o
            for o in result.outcomes
        )
        return PageResult(outcomes, result.tally, result.fell_through, result.degraded)

    encoded = clock("encode logs (jsonl_log)", lambda: [encode(r) for r in results])
    out = clock("objects: pickle", lambda: [pickle.dumps(r, 5) for r in results])
    print(f"{'objects: bytes':32s} {sum(map(len, out)) / rows:7.0f} B/row")
    clock("objects: unpickle", lambda: [pickle.loads(b) for b in out])
    wire = clock("wire: pack + pickle", lambda: [pickle.dumps(pack(r), 5) for r in encoded])
    print(f"{'wire: bytes':32s} {sum(map(len, wire)) / rows:7.0f} B/row")
    clock("wire: unpickle + unpack", lambda: [unpack(pickle.loads(b)) for b in wire])
    return 0


if __name__ == "__main__":
    sys.exit(main())
