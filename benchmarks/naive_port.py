"""The peer we measure against: a straightforward port of the plan, one audit row at a time.

It does what the plan's steps say, the obvious way, over the same data and the same kinds of
servers as our run (``scale_pipeline.end_to_end_http``):

* pages of 500 by the same keyset query on PostgreSQL;
* ``yaml.load(audited_changes, NaiveLoader)``: libyaml's ``CSafeLoader`` with constructors for the
  Ruby tags audited writes (TimeWithZone → its ``utc``, BigDecimal → Decimal, TimeZone → its name,
  HashWithIndifferentAccess → dict), jsonb as it comes;
* the mapping config's tables for category and action, the changes as ``from``/``to`` pairs;
* the actor: one ``SELECT`` of the CRM user per row, then one USMAN HTTP request per row for the
  SSO id (``[Deleted CRM User]`` on any failure, ``Qontak System`` without a user);
* the contact: the comment's ``crm_person_id``, the person columns, the associated and auditable
  person, each tried with a lookup of its own in the same contacts store as ours;
* the sync watermark, then the document through ``bson.json_util.dumps`` (relaxed Extended JSON),
  one line per document.

``memoise=True`` is the same port keeping every user, SSO id and contact it looked up in a dict,
the first thing anyone tunes. Neither does exactly-once bookkeeping, limits or typed failures: the
peer only has to do the same amount of useful work, and it does less.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable
from typing import Any

import psycopg
import yaml
from bson import Decimal128, json_util
from bson.json_util import RELAXED_JSON_OPTIONS
from psycopg import sql

from scale_context import AUDIT_COLUMNS, PAGE_SIZE, Context

_DELETED, _SYSTEM = "[Deleted CRM User]", "Qontak System"


class NaiveLoader(yaml.CSafeLoader):
    """CSafeLoader with the Ruby tags audited writes."""


def _mapping(loader: NaiveLoader, node: yaml.Node) -> dict[Any, Any]:
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _time_with_zone(loader: NaiveLoader, node: yaml.Node) -> Any:
    return _mapping(loader, node).get("utc")


def _time_zone(loader: NaiveLoader, node: yaml.Node) -> Any:
    return _mapping(loader, node).get("name")


def _big_decimal(loader: NaiveLoader, node: yaml.Node) -> decimal.Decimal:
    return decimal.Decimal(str(loader.construct_scalar(node)).partition(":")[2])  # type: ignore[arg-type]


def _any_ruby(loader: NaiveLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return _mapping(loader, node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


NaiveLoader.add_constructor("!ruby/object:ActiveSupport::TimeWithZone", _time_with_zone)
NaiveLoader.add_constructor("!ruby/object:ActiveSupport::TimeZone", _time_zone)
NaiveLoader.add_constructor("!ruby/object:BigDecimal", _big_decimal)
NaiveLoader.add_constructor("!ruby/hash:ActiveSupport::HashWithIndifferentAccess", _mapping)
NaiveLoader.add_multi_constructor("!ruby/", _any_ruby)
NaiveLoader.add_multi_constructor("!", _any_ruby)


def _bson_value(value: Any) -> Any:
    """What json_util can write: Decimal as Decimal128, a date as midnight UTC, containers walked."""
    if isinstance(value, decimal.Decimal):
        return Decimal128(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, dict):
        return {str(k): _bson_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bson_value(v) for v in value]
    return value


def _as_id(value: Any) -> int | None:
    if isinstance(value, list) and len(value) == 2:
        value = value[1] if value[1] is not None else value[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class NaivePort:
    """The whole migration of one account, row by row (see the module docstring)."""

    def __init__(self, ctx: Context, usman_url: str, usman_token: str, *, memoise: bool) -> None:
        import httpx

        from crm_audit_adapters.files import JsonlContactDirectory

        self.ctx, self.memoise = ctx, memoise
        self.config = ctx.config
        self.company = ctx.company_sso_id
        self.conn = psycopg.connect(ctx.dsn, autocommit=True)
        self.http = httpx.Client(base_url=usman_url, headers={"Authorization": f"Bearer {usman_token}"})
        self.contacts = JsonlContactDirectory(ctx.data_dir / "contacts.jsonl")
        self.user_query = sql.SQL("SELECT email, full_name, deleted_at FROM {}.users WHERE id = %s").format(
            sql.Identifier(ctx.schema)
        )
        self.caches: dict[str, dict[Any, Any]] = {"user": {}, "sso": {}, "contact": {}}
        self.counts = {"migrated": 0, "skipped": 0, "failed": 0}

    def close(self) -> None:
        self.http.close()
        self.conn.close()

    def _cached(self, kind: str, key: Any, look: Callable[[], Any]) -> Any:
        if not self.memoise:
            return look()
        cache = self.caches[kind]
        if key not in cache:
            cache[key] = look()
        return cache[key]

    def _user(self, user_id: Any) -> Any:
        return self._cached(
            "user", user_id, lambda: self.conn.execute(self.user_query, (user_id,)).fetchone()
        )

    def _sso(self, email: str) -> str | None:
        def ask() -> str | None:
            try:
                response = self.http.post(
                    "/api/v1/users/sso-ids", json={"company_sso_id": self.company, "emails": [email]}
                )
                response.raise_for_status()
                data = response.json().get("data") or []
                return str(data[0]["sso_id"]) if data else None
            except Exception:
                return None

        return self._cached("sso", email, ask)  # type: ignore[no-any-return]

    def _contact(self, person_id: int) -> Any:
        return self._cached(
            "contact",
            person_id,
            lambda: self.contacts.contacts_by_crm_ids(self.company, [person_id]).get(person_id),
        )

    def _actor(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["user_id"] is None:
            return {"type": "system", "name": _SYSTEM}
        user = self._user(row["user_id"])
        if user is None or user[2] is not None or not user[0]:
            return {"type": "user", "name": _DELETED}
        sso = self._sso(user[0])
        if sso is None:
            return {"type": "user", "name": _DELETED}
        return {"type": "user", "name": user[1] or user[0], "id": sso}

    def _person_ids(
        self, row: dict[str, Any], changes: dict[str, Any], columns: tuple[str, ...]
    ) -> list[int]:
        found: list[int] = []
        comment = row["comment"]
        if comment and comment.lstrip().startswith("{"):
            try:
                parsed = json.loads(comment)
                person = _as_id(parsed.get("crm_person_id")) if isinstance(parsed, dict) else None
            except ValueError:
                person = None
            if person is not None:
                found.append(person)
        for column in columns:
            person = _as_id(changes.get(column))
            if person is not None:
                found.append(person)
        if row["associated_type"] == self.config.person_class and row["associated_id"] is not None:
            found.append(row["associated_id"])
        if row["auditable_type"] == self.config.person_class and row["auditable_id"] is not None:
            found.append(row["auditable_id"])
        return found

    def document(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The activity log document of one row, or None when the plan skips it."""
        config = self.config
        mapping = config.types[row["auditable_type"]]
        raw = row["audited_changes"]
        changes = raw if isinstance(raw, dict) else yaml.load(raw or "{}", NaiveLoader)
        if not isinstance(changes, dict):
            return None
        if mapping.link is not None and row["action"] in config.link_actions:
            action = config.link_actions[row["action"]]
        else:
            action = {**config.actions, **(mapping.actions or {})}.get(row["action"])
            if action is None:
                return None
        contact = None
        for person_id in self._person_ids(row, changes, mapping.person_id_columns):
            contact = self._contact(person_id)
            if contact is not None:
                break
        if contact is None:
            return None
        created_at = row["created_at"].replace(tzinfo=dt.UTC)
        if created_at >= contact.created_at:
            return None
        ignored = set(config.columns.ignored) | set(mapping.ignored_columns)
        attributes = []
        for field, value in changes.items():
            if field in ignored:
                continue
            if row["action"] == "update" and isinstance(value, list) and len(value) == 2:
                old, new = value
            elif row["action"] == "destroy":
                old, new = value, None
            else:
                old, new = None, value
            label = mapping.labels.get(field) or config.columns.labels.get(field) or field
            attributes.append(
                {"field": field, "label": label, "from": _bson_value(old), "to": _bson_value(new)}
            )
        return {
            "company_sso_id": self.company,
            "customer_id": contact.id,
            "category": mapping.category,
            "action": action,
            "actor": self._actor(row),
            "attributes": attributes,
            "timestamp": created_at,
            "external_id": f"crm:{self.ctx.schema}:audit:{row['id']}",
            "source_tag": "crm_migration",
            "metadata": {
                "crm_audit_id": row["id"],
                "crm_tenant": self.ctx.schema,
                "auditable_type": row["auditable_type"],
                "auditable_id": row["auditable_id"],
            },
        }

    def run(self, out: Any) -> int:
        """Every in-scope row, page by page; returns the rows read."""
        query = sql.SQL(
            "SELECT {} FROM {}.audits WHERE id > %s AND auditable_type = ANY(%s) AND created_at >= %s "
            "ORDER BY id LIMIT %s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, AUDIT_COLUMNS)), sql.Identifier(self.ctx.schema))
        scope, cutoff = self.ctx.params
        after, rows = 0, 0
        while True:
            page = self.conn.execute(query, (after, scope, cutoff, PAGE_SIZE)).fetchall()
            if not page:
                return rows
            for values in page:
                row = dict(zip(AUDIT_COLUMNS, values, strict=True))
                try:
                    doc = self.document(row)
                except Exception:
                    self.counts["failed"] += 1
                    continue
                if doc is None:
                    self.counts["skipped"] += 1
                    continue
                out.write(json_util.dumps(doc, json_options=RELAXED_JSON_OPTIONS) + "\n")
                self.counts["migrated"] += 1
            rows += len(page)
            after = page[-1][0]
            if self.ctx.limit and after >= self.ctx.limit:
                return rows
