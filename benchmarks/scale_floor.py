"""The physical floor: what no implementation can beat on this machine and this data.

* ``copy_floor``: PostgreSQL's COPY of the extractor's exact query (same columns, same WHERE, same
  order), read through psycopg's copy — the fastest way rows leave the server.
* ``parse_floor``: libyaml (``yaml.CSafeLoader``) parsing the same ``audited_changes`` texts with
  nothing else: Ruby tags are built as plain maps/strings, no value model, no limits. Only the
  ``yaml.load`` calls are timed; the texts are fetched untimed in batches (flat memory).
* ``parse_events`` (for information, not part of the floor): libyaml's event stream alone
  (``yaml.parse`` with ``CLoader``), the least any libyaml-based loader must do before building.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
import yaml
from psycopg import sql

from scale_context import AUDIT_COLUMNS, Context


class FloorLoader(yaml.CSafeLoader):
    """CSafeLoader that builds any tag by its node kind, so Ruby-tagged rows parse instead of raising."""


def _by_kind(loader: FloorLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


FloorLoader.add_multi_constructor("!", _by_kind)
FloorLoader.add_multi_constructor("tag:yaml.org,2002:", _by_kind)


def copy_floor(ctx: Context) -> dict[str, Any]:
    query = sql.SQL("COPY ({}) TO STDOUT").format(ctx.select(AUDIT_COLUMNS))
    rows = size = 0
    with psycopg.connect(ctx.dsn) as conn:
        scope, cutoff = ctx.params
        started = time.perf_counter()
        with conn.cursor().copy(query, (scope, cutoff)) as copy:
            for block in copy:
                rows += bytes(block).count(b"\n")  # text format escapes newlines inside values
                size += len(block)
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "bytes": size}


def parse_floor(ctx: Context) -> dict[str, Any]:
    rows = errors = text_chars = 0
    parsing = cpu = 0.0
    load, loader, clock, cpu_clock = yaml.load, FloorLoader, time.perf_counter, time.process_time
    with psycopg.connect(ctx.dsn) as conn, conn.cursor(name="parse_floor") as cursor:
        cursor.itersize = 5000
        cursor.execute(ctx.select(("audited_changes",)), ctx.params)
        while batch := cursor.fetchmany(5000):
            texts = [text for (text,) in batch]
            text_chars += sum(len(t) for t in texts if t)
            started, cpu_started = clock(), cpu_clock()
            for text in texts:
                try:
                    load(text or "{}", loader)
                except yaml.YAMLError:
                    errors += 1
            parsing += clock() - started
            cpu += cpu_clock() - cpu_started
            rows += len(texts)
    return {
        "rows": rows,
        "seconds": parsing,
        "cpu_seconds": cpu,
        "parse_errors": errors,
        "text_chars": text_chars,
    }


def parse_events(ctx: Context) -> dict[str, Any]:
    rows = events = 0
    parsing = 0.0
    parse, loader, clock = yaml.parse, yaml.CLoader, time.perf_counter
    with psycopg.connect(ctx.dsn) as conn, conn.cursor(name="parse_events") as cursor:
        cursor.itersize = 5000
        cursor.execute(ctx.select(("audited_changes",)), ctx.params)
        while batch := cursor.fetchmany(5000):
            texts = [text or "{}" for (text,) in batch]
            started = clock()
            for text in texts:
                for _ in parse(text, loader):
                    events += 1
            parsing += clock() - started
            rows += len(texts)
    return {"rows": rows, "seconds": parsing, "events": events}
