"""The audited 5.8.0 corpus and the derived lookup data, as domain values and in-memory ports."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crm_audit_transform.domain import AuditRow, Contact, CrmUser
from crm_audit_transform.testing import (
    InMemoryContactDirectory,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
)

HERE = Path(__file__).parent
CORPUS = HERE.parent / "fixtures" / "audited-5.8.0"
TEXT_TENANTS = ("acme", "globex", "nusantara_retail")
JSONB_TENANTS = ("acme_jsonb", "globex_jsonb")


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def audit_row(record: dict[str, Any]) -> AuditRow:
    fields = dict(record)
    fields["created_at"] = _time(fields["created_at"])
    return AuditRow(**fields)


def audit_rows(tenant: str) -> list[AuditRow]:
    """Every audit row of one tenant, in id order."""
    path = CORPUS / "jsonb" / "audits.jsonl" if tenant in JSONB_TENANTS else CORPUS / "audits.jsonl"
    return [audit_row(r) for r in _jsonl(path) if r["tenant"] == tenant]


def companies() -> dict[str, str]:
    return dict(json.loads((HERE / "companies.json").read_text(encoding="utf-8")))


def users() -> dict[str, list[CrmUser]]:
    by_tenant: dict[str, list[CrmUser]] = defaultdict(list)
    for r in _jsonl(CORPUS / "users.jsonl"):
        by_tenant[r["tenant"]].append(CrmUser(r["id"], r["email"], r["full_name"], _time(r["deleted_at"])))
    return dict(by_tenant)


def contacts() -> list[Contact]:
    return [
        Contact(r["_id"], r["company_sso_id"], r["crm_data"]["id"], _time(r["created_at"]))  # type: ignore[arg-type]
        for r in _jsonl(HERE / "contacts.jsonl")
    ]


def sso_ids() -> dict[str, str]:
    return {r["email"]: r["sso_id"] for r in _jsonl(HERE / "sso.jsonl")}


def user_directory() -> InMemoryUserDirectory:
    return InMemoryUserDirectory(users())


def sso_directory(*, failing: bool = False) -> InMemorySsoDirectory:
    return InMemorySsoDirectory(sso_ids(), failing=failing)


def contact_directory() -> InMemoryContactDirectory:
    return InMemoryContactDirectory(contacts())
