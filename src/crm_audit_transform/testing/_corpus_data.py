"""The corpus files shipped in the package data, read into domain values (no other I/O)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from ..domain import AuditRow, Contact, CrmUser

CORPUS_FOLDER = "audited-5.8.0"


def _file(*parts: str) -> Traversable:
    return resources.files("crm_audit_transform").joinpath("data", CORPUS_FOLDER, *parts)


def _records(*parts: str) -> Iterator[dict[str, Any]]:
    with _file(*parts).open("r", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def companies() -> dict[str, str]:
    """CRM tenant → CDP ``company_sso_id``, for every tenant of the corpus."""
    return {str(k): str(v) for k, v in json.loads(_file("companies.json").read_text("utf-8")).items()}


def audit_rows(tenant: str, *, jsonb: bool) -> tuple[AuditRow, ...]:
    """Every audit row of one tenant, in id order (the files are ordered by tenant, then id)."""
    parts = ("jsonb", "audits.jsonl") if jsonb else ("audits.jsonl",)
    rows = []
    for record in _records(*parts):
        if record["tenant"] == tenant:
            record["created_at"] = _time(record["created_at"])
            rows.append(AuditRow(**record))
    return tuple(rows)


def jsonb_tenants() -> frozenset[str]:
    """Tenants whose ``audited_changes`` column is jsonb (their rows are in ``jsonb/``)."""
    return frozenset(str(r["tenant"]) for r in _records("jsonb", "audits.jsonl"))


def users(tenant: str) -> tuple[CrmUser, ...]:
    return tuple(
        CrmUser(r["id"], r["email"], r["full_name"], _time(r["deleted_at"]))
        for r in _records("users.jsonl")
        if r["tenant"] == tenant
    )


def contacts(company_sso_id: str) -> tuple[Contact, ...]:
    found = []
    for r in _records("contacts.jsonl"):
        if r["company_sso_id"] == company_sso_id:
            created_at = _time(r["created_at"])
            assert created_at is not None  # every derived contact has a sync time
            found.append(Contact(r["_id"], r["company_sso_id"], r["crm_data"]["id"], created_at))
    return tuple(found)


def sso_ids() -> dict[str, str]:
    """SSO id by email; the corpus users' emails are unique across tenants."""
    return {str(r["email"]): str(r["sso_id"]) for r in _records("sso.jsonl")}
