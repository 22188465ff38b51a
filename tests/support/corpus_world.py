"""The one builder of a synthetic CDP from the audited 5.8.0 corpus: companies, contacts, SSO ids.

The corpus (tests/fixtures/audited-5.8.0/) has CRM rows only; a migration also needs the CDP side.
This module reads the corpus once and derives that side by fixed rules, so that every test sees
the same world. Two rule sets exist, because two published artefacts were built from them and must
not change:

* ``KIT`` — the golden testing kit's package data (src/crm_audit_transform/data/audited-5.8.0/,
  written by tests/data/derive.py; the golden snapshots read it). Readable contact ids
  (``contact-acme-12``), which the snapshots quote.
* ``ACCOUNT`` — the runner's tests and the bundled ``dry-run --example`` sample
  (tests/support/corpus_account.py): contact ids are ``str(ObjectId)``, as MongoDB and the files
  adapters require, and the contacts cover 93-94% of each tenant's people (the suite's coverage gate
  is 90%, tests/conftest.py).

                         KIT                                   ACCOUNT
    company_sso_id       company-<tenant, dashes>              UUID5 of the tenant
    people               Crm::Person entities and audit refs   Crm::Person entities
    no contact (→ contact_not_found)   person id % 7 == 0      person id % 15 == 0
    contact created_at   id ≡ 2 (mod 5): the median of the     id % 10 == 0: 2022-01-01 (its later
                         person's own audits; else a day        rows → post_sync_live_feed); else
                         after the tenant's last audit          2026-01-01
    SSO id known for     users with an email, id % 4 != 3      live users with an email, not user 7
    SSO id               UUID5 of "sso:<email>"                UUID5 of "crm-audit-transform:sso:<email>"
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0"
PERSON = "Crm::Person"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@frozen
class Corpus:
    """What the rules read: every audit line (text and jsonb tenants), user and entity of the fixtures."""

    audits: tuple[dict[str, Any], ...]
    users: tuple[dict[str, Any], ...]
    entities: tuple[dict[str, Any], ...]

    @property
    def tenants(self) -> list[str]:
        return sorted({str(a["tenant"]) for a in self.audits})

    @functools.cached_property
    def person_audit_times(self) -> Mapping[tuple[str, int], Sequence[dt.datetime]]:
        """(tenant, person id) → the sorted ``created_at`` of the audits naming that person."""
        times: dict[tuple[str, int], list[dt.datetime]] = defaultdict(list)
        for row in self.audits:
            created_at = parse_time(row["created_at"])
            for kind, key in (("auditable_type", "auditable_id"), ("associated_type", "associated_id")):
                if row[kind] == PERSON and isinstance(row[key], int) and created_at is not None:
                    times[(row["tenant"], row[key])].append(created_at)
        return {key: sorted(value) for key, value in times.items()}

    @functools.cached_property
    def last_audit(self) -> Mapping[str, dt.datetime]:
        """Tenant → the ``created_at`` of its latest audit."""
        last: dict[str, dt.datetime] = {}
        for row in self.audits:
            created_at = parse_time(row["created_at"])
            assert created_at is not None
            last[row["tenant"]] = max(created_at, last.get(row["tenant"], created_at))
        return last

    def entity_people(self, tenant: str) -> set[int]:
        return {e["id"] for e in self.entities if e["tenant"] == tenant and e["type"] == PERSON}


@functools.cache  # the fixtures do not change within a session
def corpus() -> Corpus:
    audits = [*read_jsonl(CORPUS / "audits.jsonl"), *read_jsonl(CORPUS / "jsonb" / "audits.jsonl")]
    # Audits of a (fixture) tenant stay in id order, as each file keeps them.
    users, entities = read_jsonl(CORPUS / "users.jsonl"), read_jsonl(CORPUS / "entities.jsonl")
    return Corpus(tuple(audits), tuple(users), tuple(entities))


class Rules(Protocol):
    """How a CDP account is derived from one corpus tenant (the module's table)."""

    def company_sso_id(self, tenant: str) -> str: ...

    def people(self, world: Corpus, tenant: str) -> set[int]: ...

    def contact(self, world: Corpus, tenant: str, person_id: int) -> tuple[str, dt.datetime] | None:
        """The person's contact ``(_id, created_at)``, or None when the CDP has none."""
        ...

    def sso_id(self, user: Mapping[str, Any]) -> str | None:
        """The SSO id USMAN knows for the user's email, or None."""
        ...

    def stamp(self, value: dt.datetime) -> str:
        """A contact's ``created_at`` as its line writes it."""
        ...


class KitRules:
    """The golden kit's CDP (its package data and snapshots are built from it)."""

    def company_sso_id(self, tenant: str) -> str:
        return f"company-{tenant.replace('_', '-')}"

    def people(self, world: Corpus, tenant: str) -> set[int]:
        audited = {pid for (t, pid) in world.person_audit_times if t == tenant}
        return world.entity_people(tenant) | audited

    def contact(self, world: Corpus, tenant: str, person_id: int) -> tuple[str, dt.datetime] | None:
        if person_id % 7 == 0:
            return None
        times = world.person_audit_times.get((tenant, person_id), ())
        if person_id % 5 == 2 and times:
            created_at = times[len(times) // 2]
        else:
            created_at = world.last_audit[tenant] + dt.timedelta(days=1)
        return f"contact-{tenant}-{person_id}", created_at

    def sso_id(self, user: Mapping[str, Any]) -> str | None:
        if user["id"] % 4 == 3 or not user["email"]:
            return None
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sso:{user['email']}"))

    def stamp(self, value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AccountRules:
    """The runner tests' CDP account (and the bundled ``dry-run --example`` sample)."""

    SYNCED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    EARLY_SYNC = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    UNKNOWN_TO_USMAN = frozenset({7})
    """An active user USMAN does not know."""

    def company_sso_id(self, tenant: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm-audit-transform:company:{tenant}"))

    def people(self, world: Corpus, tenant: str) -> set[int]:
        return world.entity_people(tenant)

    def contact(self, world: Corpus, tenant: str, person_id: int) -> tuple[str, dt.datetime] | None:
        if person_id % 15 == 0:
            return None
        contact_id = hashlib.sha1(f"{tenant}:person:{person_id}".encode()).hexdigest()[:24]
        return contact_id, self.EARLY_SYNC if person_id % 10 == 0 else self.SYNCED

    def sso_id(self, user: Mapping[str, Any]) -> str | None:
        if not user["email"] or user["deleted_at"] is not None or user["id"] in self.UNKNOWN_TO_USMAN:
            return None
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm-audit-transform:sso:{user['email']}"))

    def stamp(self, value: dt.datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")


KIT = KitRules()
ACCOUNT = AccountRules()


def contact_docs(rules: Rules, tenant: str) -> list[dict[str, Any]]:
    """The tenant's contacts as ``{_id, company_sso_id, crm_data: {id}, created_at}`` lines, by person id."""
    world, company = corpus(), rules.company_sso_id(tenant)
    docs = []
    for person_id in sorted(rules.people(world, tenant)):
        found = rules.contact(world, tenant, person_id)
        if found is not None:
            contact_id, created_at = found
            docs.append(
                {
                    "_id": contact_id,
                    "company_sso_id": company,
                    "crm_data": {"id": person_id},
                    "created_at": rules.stamp(created_at),
                }
            )
    return docs


def sso_docs(rules: Rules, tenant: str | None = None) -> list[dict[str, str]]:
    """``{email, sso_id}`` of every user USMAN knows (of ``tenant``, or of every tenant), in file order."""
    docs = []
    for user in corpus().users:
        sso_id = rules.sso_id(user) if tenant is None or user["tenant"] == tenant else None
        if sso_id is not None:
            docs.append({"email": user["email"], "sso_id": sso_id})
    return docs


def companies(rules: Rules) -> dict[str, str]:
    """CRM tenant → CDP ``company_sso_id``, for every tenant of the corpus."""
    return {tenant: rules.company_sso_id(tenant) for tenant in corpus().tenants}


def kit_files() -> dict[str, str]:
    """The golden kit's derived package data under ``KIT``: file name → its exact text."""
    contacts = [doc for tenant in corpus().tenants for doc in contact_docs(KIT, tenant)]
    return {
        "companies.json": json.dumps(companies(KIT), indent=2) + "\n",
        "contacts.jsonl": _sorted_jsonl(contacts),
        "sso.jsonl": _sorted_jsonl(sorted(sso_docs(KIT), key=lambda doc: doc["email"])),
    }


def _sorted_jsonl(records: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
