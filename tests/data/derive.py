"""Derive the corpus lookup data shipped with the golden testing kit, deterministically.

    .venv/bin/python tests/data/derive.py      # rewrites contacts.jsonl, sso.jsonl, companies.json

It reads tests/fixtures/audited-5.8.0/ (entities.jsonl included, which is not shipped) and writes
into the package data (src/crm_audit_transform/data/audited-5.8.0/), next to the shipped copies of
the fixture files; tests/unit/test_golden_corpus_data.py fails when the two disagree.

* companies.json — CRM tenant → CDP ``company_sso_id``.
* contacts.jsonl — CDP contacts ``{"_id", "company_sso_id", "crm_data": {"id"}, "created_at"}`` for
  most people of each tenant: person ids divisible by 7 have none (``contact_not_found``); for ids
  ≡ 2 (mod 5) the contact was created exactly at the median of the person's own audits (earlier
  audits migrate, that one and later ones are ``post_sync_live_feed``); every other contact is
  created a day after the tenant's last audit (its whole history predates the sync).
* sso.jsonl — ``{"email", "sso_id"}`` for every user of users.jsonl except ids ≡ 3 (mod 4), whose
  SSO lookup comes back empty.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "audited-5.8.0"
PACKAGED = ROOT / "src" / "crm_audit_transform" / "data" / "audited-5.8.0"
PERSON = "Crm::Person"


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _rows() -> list[dict[str, object]]:
    rows = []
    for path in (CORPUS / "audits.jsonl", CORPUS / "jsonb" / "audits.jsonl"):
        with path.open(encoding="utf-8") as lines:
            rows.extend(json.loads(line) for line in lines)
    return rows


def derived_files() -> dict[str, str]:
    """File name → the exact text derived from the fixture corpus."""
    rows = _rows()
    tenants = sorted({str(r["tenant"]) for r in rows})
    companies = {tenant: f"company-{tenant.replace('_', '-')}" for tenant in tenants}
    last_audit: dict[str, dt.datetime] = {}
    people: dict[str, set[int]] = defaultdict(set)
    audit_times: dict[tuple[str, int], list[dt.datetime]] = defaultdict(list)
    for row in rows:
        tenant, created_at = str(row["tenant"]), _time(str(row["created_at"]))
        last_audit[tenant] = max(created_at, last_audit.get(tenant, created_at))
        for kind, key in (("auditable_type", "auditable_id"), ("associated_type", "associated_id")):
            if row[kind] == PERSON and isinstance(row[key], int):
                people[tenant].add(row[key])
                audit_times[(tenant, row[key])].append(created_at)
    with (CORPUS / "entities.jsonl").open(encoding="utf-8") as lines:
        for entity in map(json.loads, lines):
            if entity["type"] == PERSON:
                people[entity["tenant"]].add(entity["id"])

    contacts = []
    for tenant in tenants:
        for person_id in sorted(people[tenant]):
            if person_id % 7 == 0:
                continue
            times = sorted(audit_times[(tenant, person_id)])
            if person_id % 5 == 2 and times:
                created_at = times[len(times) // 2]
            else:
                created_at = last_audit[tenant] + dt.timedelta(days=1)
            contacts.append(
                {
                    "_id": f"contact-{tenant}-{person_id}",
                    "company_sso_id": companies[tenant],
                    "crm_data": {"id": person_id},
                    "created_at": _iso(created_at),
                }
            )

    sso = []
    with (CORPUS / "users.jsonl").open(encoding="utf-8") as lines:
        for user in map(json.loads, lines):
            if user["id"] % 4 != 3 and user["email"]:
                sso_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sso:{user['email']}"))
                sso.append({"email": user["email"], "sso_id": sso_id})

    return {
        "companies.json": json.dumps(companies, indent=2) + "\n",
        "contacts.jsonl": _jsonl(contacts),
        "sso.jsonl": _jsonl(sorted(sso, key=lambda s: s["email"])),
    }


def _jsonl(records: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def derive() -> None:
    for name, text in derived_files().items():
        (PACKAGED / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    derive()
