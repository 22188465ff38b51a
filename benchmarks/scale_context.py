"""What every scale-benchmark stage shares: the data set, the scope, the cutoff, the same WHERE."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import attrs
from psycopg import sql

from crm_audit_adapters.files import AUDIT_COLUMNS  # the audits table's columns, in table order

__all__ = ["AUDIT_COLUMNS", "PAGE_SIZE", "Context"]

PAGE_SIZE = 500


@attrs.define
class Context:
    dsn: str
    schema: str
    data_dir: Path
    out_dir: Path
    mongo_uri: str | None = None
    limit: int | None = None  # stop after this many rows (profiling runs)
    usman_url: str | None = None  # a USMAN (usman_peer.py) for the stages whose lookups go over HTTP

    @cached_property
    def manifest(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data_dir / "manifest.json").read_text())
        return loaded

    @property
    def company_sso_id(self) -> str:
        return str(self.manifest["company_sso_id"])

    @cached_property
    def config(self) -> Any:
        """The default mapping, plus this synthetic tenant with the union of the corpus id-sets."""
        from crm_audit_transform.config import load_default_config
        from crm_audit_transform.config.model import TenantConfig

        config = load_default_config()
        union: dict[str, set[int]] = {}
        for tenant in config.tenants.values():
            for name, ids in tenant.id_sets.items():
                union.setdefault(name, set()).update(ids)
        bench = TenantConfig(id_sets={name: frozenset(ids) for name, ids in union.items()})
        return attrs.evolve(config, tenants={**config.tenants, self.schema: bench})

    @cached_property
    def scope(self) -> tuple[str, ...]:
        return tuple(self.config.scope)

    @cached_property
    def cutoff(self) -> dt.datetime:
        """The run loop's cutoff with no date_range_start: the oldest in-scope audit."""
        import psycopg
        from psycopg import sql

        query = sql.SQL("SELECT min(created_at) FROM {}.audits WHERE auditable_type = ANY(%s)").format(
            sql.Identifier(self.schema)
        )
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(query, (list(self.scope),)).fetchone()
        if row is None or row[0] is None:
            raise RuntimeError(f"no in-scope audits in {self.schema}")
        oldest: dt.datetime = row[0]
        return oldest.replace(tzinfo=dt.UTC)

    def select(self, columns: Sequence[str]) -> sql.Composed:
        """The extractor's query over the whole range, for COPY and for untimed row feeds."""
        return sql.SQL(
            "SELECT {} FROM {}.audits WHERE auditable_type = ANY(%s) AND created_at >= %s ORDER BY id"
        ).format(sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(self.schema))

    @property
    def params(self) -> tuple[list[str], dt.datetime]:
        return list(self.scope), self.cutoff.replace(tzinfo=None)
