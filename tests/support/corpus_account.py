"""One corpus tenant as a CDP account: the ``ACCOUNT`` world of the one builder, and its ports in memory.

The CDP side (company, contacts, SSO ids) comes from tests/support/corpus_world.py under its
``ACCOUNT`` rules — the same builder that writes the golden kit's data under ``KIT`` — so every run,
test and the bundled ``dry-run --example`` sample see the same account:

* company_sso_id: a UUID5 of the tenant name;
* contacts: one per ``Crm::Person`` entity of the tenant, except person ids divisible by 15
  (→ ``contact_not_found``); synced 2026-01-01, except person ids divisible by 10, synced
  2022-01-01 (their later rows → ``post_sync_live_feed``);
* SSO ids: a UUID5 of each live user's email, except user 7 (an active user USMAN does not know).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, CrmUser, EntityRef
from crm_audit_transform.jobs import MigrationJob
from crm_audit_transform.ports import (
    ActivityLogWriter,
    AuditSource,
    Clock,
    ContactDirectory,
    EnrichmentStore,
    EntityDirectory,
    FeatureFlags,
    IndexState,
    JobStore,
    MigratedLogReader,
    MigratedLogs,
    PagePipeline,
    PeopleCounter,
    SsoDirectory,
    UserDirectory,
)
from crm_audit_transform.service import MigrationService
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryActivityLogStore,
    InMemoryAuditSource,
    InMemoryContactDirectory,
    InMemoryEntityDirectory,
    InMemoryIndexState,
    InMemoryJobStore,
    InMemoryMigratedLogReader,
    InMemoryPeopleCounter,
    InMemorySsoDirectory,
    InMemoryUserDirectory,
    StaticFeatureFlags,
)
from crm_audit_transform.testing.enrichment import InMemoryEnrichmentStore
from crm_audit_transform.transformer import Transformer
from crm_audit_transform.usecases import RunResult, VerifySettings
from crm_audit_transform.usecases.guards import TriggerPorts, trigger
from crm_audit_transform.usecases.run import RunPorts, run_job
from crm_audit_transform.usecases.verify import VerifyPorts, verify_account
from crm_audit_transform.verification import VerifyReport
from support import corpus_world
from support.corpus_world import ACCOUNT, corpus, parse_time


def company_sso_id(tenant: str) -> str:
    return ACCOUNT.company_sso_id(tenant)


def audit_row(doc: Mapping[str, Any]) -> AuditRow:
    fields = dict(doc)
    fields["created_at"] = parse_time(fields["created_at"])
    return AuditRow(**fields)


def audit_docs(tenant: str, every: int = 1) -> list[dict[str, Any]]:
    """The tenant's fixture lines; ``every=5`` keeps the ids divisible by 5 (the example sample)."""
    return [dict(d) for d in corpus().audits if d["tenant"] == tenant and d["id"] % every == 0]


def audit_rows(tenant: str) -> list[AuditRow]:
    return [audit_row(d) for d in audit_docs(tenant)]


def user_docs(tenant: str) -> list[dict[str, Any]]:
    return [dict(d) for d in corpus().users if d["tenant"] == tenant]


def users(tenant: str) -> list[CrmUser]:
    return [
        CrmUser(d["id"], d["email"], d["full_name"], parse_time(d["deleted_at"])) for d in user_docs(tenant)
    ]


def person_ids(tenant: str) -> list[int]:
    return sorted(ACCOUNT.people(corpus(), tenant))


def entity_refs(tenant: str) -> list[EntityRef]:
    """Every CRM entity of the tenant; ``exists: false`` ones are answered as deleted."""
    return [
        EntityRef(d["type"], d["id"], d["name"], d["exists"])
        for d in corpus().entities
        if d["tenant"] == tenant
    ]


def contact_docs(tenant: str) -> list[dict[str, Any]]:
    """Contacts in the ``dry-run`` line format: ``{_id, company_sso_id, crm_data: {id}, created_at}``."""
    return corpus_world.contact_docs(ACCOUNT, tenant)


def contacts(tenant: str) -> list[Contact]:
    return [
        Contact(d["_id"], d["company_sso_id"], d["crm_data"]["id"], parse_time(d["created_at"]))  # type: ignore[arg-type]
        for d in contact_docs(tenant)
    ]


def sso_docs(tenant: str) -> list[dict[str, str]]:
    return corpus_world.sso_docs(ACCOUNT, tenant)


def example_files(tenant: str = "acme") -> dict[str, list[dict[str, Any]]]:
    """The bundled ``dry-run --example`` sample, file name → lines."""
    return {
        "audits.jsonl": audit_docs(tenant, every=5),
        "users.jsonl": user_docs(tenant),
        "contacts.jsonl": contact_docs(tenant),
        "sso.jsonl": sso_docs(tenant),
    }


def dump_jsonl(lines: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)


@frozen
class WorldPorts:
    """A ``ServicePorts`` of plain attributes."""

    source: AuditSource
    users: UserDirectory
    sso: SsoDirectory
    contacts: ContactDirectory
    people: PeopleCounter
    logs: ActivityLogWriter
    jobs: JobStore
    flags: FeatureFlags
    clock: Clock
    indexes: IndexState
    entities: EntityDirectory | None
    enrichment: EnrichmentStore | None
    reader: MigratedLogReader | None = None
    migrated: MigratedLogs | None = None


class World:
    """Every port of one account, in memory, over a corpus tenant (or the rows given).

    ``enrich=True`` also wires association enrichment: the CRM entities of the tenant and an
    enrichment store over the same in-memory timeline (``enrichment is logs``).
    """

    def __init__(
        self,
        tenant: str = "acme",
        rows: list[AuditRow] | None = None,
        *,
        sso_failing: bool = False,
        enabled: bool = True,
        coverage: float = 1.0,
        enrich: bool = False,
    ) -> None:
        self.tenant = tenant
        self.company = company_sso_id(tenant)
        self.transformer = Transformer(load_default_config())
        self.source = InMemoryAuditSource(audit_rows(tenant) if rows is None else rows)
        self.users = InMemoryUserDirectory({tenant: users(tenant)})
        self.sso = InMemorySsoDirectory(
            {d["email"]: d["sso_id"] for d in sso_docs(tenant)}, failing=sso_failing
        )
        known = contacts(tenant)
        self.contacts = InMemoryContactDirectory(known)
        self.people = InMemoryPeopleCounter({tenant: _people(known, coverage)})
        # One in-memory CDP timeline behind the write port and the enrichment port, as in MongoDB.
        timeline = InMemoryEnrichmentStore(persons={(c.company_sso_id, c.id): c.crm_person_id for c in known})
        self.logs = timeline
        self.entities = InMemoryEntityDirectory({tenant: entity_refs(tenant)})
        self.enrichment: InMemoryEnrichmentStore | None = timeline if enrich else None
        self.clock = FixedClock(dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
        # One clock for the runner and the job store (the database's clock) unless a test skews them.
        self.jobs = InMemoryJobStore(clock=self.clock)
        self.flags = StaticFeatureFlags("*" if enabled else ())
        self.indexes = InMemoryIndexState()
        self.pipeline: PagePipeline | None = None
        """Where ``run`` transforms the pages (None: in this process); a test may set a page pool."""
        self.reader: MigratedLogReader | None = None
        """What ``verify`` reads the migrated logs back with (None: an in-memory reader over ``logs``);
        a test that puts ``logs`` in a database sets that database's reader."""

    def service(self, **options: Any) -> MigrationService:
        """The application service over this world's ports (as they are now); the account is bound."""
        enrich = self.enrichment is not None
        ports = WorldPorts(
            source=self.source,
            users=self.users,
            sso=self.sso,
            contacts=self.contacts,
            people=self.people,
            logs=self.logs,
            jobs=self.jobs,
            flags=self.flags,
            clock=self.clock,
            indexes=self.indexes,
            entities=self.entities if enrich else None,
            enrichment=self.enrichment,
            reader=InMemoryMigratedLogReader(self.logs),
            migrated=self.logs,
        )
        options.setdefault("tenants", {self.company: self.tenant})
        return MigrationService(ports, self.transformer, **options)

    def trigger_ports(self) -> TriggerPorts:
        return TriggerPorts(
            self.flags,
            self.contacts,
            self.people,
            self.jobs,
            self.source,
            self.clock,
            self.indexes,
            self.logs,
        )

    def run_ports(self) -> RunPorts:
        enrich = self.enrichment is not None
        return RunPorts(
            self.source,
            self.users,
            self.sso,
            self.contacts,
            self.logs,
            self.jobs,
            self.clock,
            entities=self.entities if enrich else None,
            indexes=self.indexes,
        )

    def verify_ports(
        self,
        jobs: JobStore | None = None,
        *,
        repair: bool = True,
        logs: InMemoryActivityLogStore | None = None,
        source: AuditSource | None = None,
    ) -> VerifyPorts:
        """What ``verify_account`` reads over this account, its logs read back as migrated (by
        ``reader`` when set); the CRM's entities when the world enriches (its run names). ``jobs``,
        ``logs`` (read back in memory) and ``source`` in place of the world's where a test watches
        them. With ``repair``, what a repair writes with too (logs, clock, index state); without,
        ``VerifyPorts``' defaults (None)."""
        if logs is not None:
            reader: MigratedLogReader = InMemoryMigratedLogReader(logs)
        else:
            reader = InMemoryMigratedLogReader(self.logs) if self.reader is None else self.reader
        jobs = self.jobs if jobs is None else jobs
        source = self.source if source is None else source
        # The run's entities (an enriching world's run names its association logs), as the service gives.
        entities = self.entities if self.enrichment is not None else None
        if not repair:
            return VerifyPorts(source, self.users, self.sso, self.contacts, reader, jobs, entities=entities)
        return VerifyPorts(
            source,
            self.users,
            self.sso,
            self.contacts,
            reader,
            jobs,
            self.logs if logs is None else logs,
            self.clock,
            self.indexes,
            entities=entities,
        )

    def verify(self, ports: VerifyPorts | None = None, **settings: Any) -> VerifyReport:
        """``verify_account`` over this account: ``ports`` or ``verify_ports()``, pages of 200 unless
        ``settings`` (``VerifySettings``' fields) say otherwise; a ``sample`` is drawn by a
        ``random.Random(7)``, so a test's draw is the same at every run."""
        settings.setdefault("page_size", 200)
        rng = random.Random(7) if settings.get("sample") is not None else None
        return verify_account(
            self.company,
            self.verify_ports() if ports is None else ports,
            self.transformer,
            settings=VerifySettings(**settings),
            rng=rng,
        )

    def trigger(self, **options: Any) -> MigrationJob:
        return trigger(
            self.company, self.tenant, self.trigger_ports(), scope=self.transformer.scope, **options
        )

    def run(self, owner: str = "runner-1", **options: Any) -> RunResult:
        options.setdefault("pipeline", self.pipeline)
        return run_job(self.company, self.run_ports(), self.transformer, owner=owner, **options)


def _people(known: Sequence[Contact], coverage: float) -> list[int]:
    """The CRM's people ids: every contact's person, plus people without a contact down to ``coverage``."""
    ids = sorted({c.crm_person_id for c in known})
    total = round(len(ids) / coverage) if coverage else len(ids) + 1000
    top = max(ids, default=0)
    return ids + list(range(top + 1, top + 1 + max(0, total - len(ids))))
