"""Verify's seam checks: a log past its contact's watermark, an association log the live feed holds too.

See ``usecases.verify`` for where they run in the walk and docs/verify.md for the findings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from ..domain import ActivityLog, Contact
from ..enrichment.model import ASSOCIATION_ACTIONS, MatchKey, as_referent_id
from ..lookup import LookupContext
from ..ports import ContactDirectory, MigratedLogReader
from ..verification import MigratedDoc
from ._verify_findings import Found


def seam_may_fire(log: ActivityLog, contacts: Mapping[str, Contact]) -> bool:
    """Whether a seam check could report the stored copy of ``log`` (its fields are the log's).

    Only its timestamp may differ (whole milliseconds in a store), and never upward: a log before
    its contact's ``created_at`` is stored before it too. Association logs feed the overlap check;
    a customer the page's contacts lack is left to the full check (its contact is looked up).
    """
    if log.action in ASSOCIATION_ACTIONS:
        return True
    contact = contacts.get(log.customer_id)
    return contact is None or log.timestamp >= contact.created_at


def seam_of_log(
    audit_id: int,
    log: ActivityLog,
    contacts: Mapping[str, Contact],
    keys: dict[MatchKey, tuple[int, str]] | None,
) -> bool:
    """The seam checks of a stored copy of ``log`` that is its document; False if it must be read.

    Its fields are the log's, its timestamp in whole milliseconds (``StoredMigratedLog``). Before
    its contact's ``created_at`` (known from the page) only an association log's match key is
    needed, made here when ``keys`` is given (the store may hold live-feed logs). Otherwise (a
    customer the page did not name, a timestamp at or past the watermark) the copy is read.
    """
    contact = contacts.get(log.customer_id)
    if contact is None or log.timestamp >= contact.created_at:
        return False
    if keys is not None and log.action in ASSOCIATION_ACTIONS:
        entity = as_referent_id(log.metadata.get("linked_entity_id"))
        if entity is not None:
            at = log.timestamp
            stored_at = at.replace(microsecond=at.microsecond - at.microsecond % 1000)
            key = MatchKey(log.company_sso_id, log.customer_id, log.category, log.action, entity, stored_at)
            keys[key] = (audit_id, log.external_id)
    return True


def add_seam_contacts(
    contacts: dict[str, Contact],
    ctx: LookupContext,
    docs: Sequence[MigratedDoc],
    directory: ContactDirectory,
    company_sso_id: str,
) -> None:
    """Add to ``contacts`` (by id) those of stored logs naming a customer no row of the page named."""
    people = sorted(
        {
            doc.crm_person_id
            for doc in docs
            if doc.customer_id not in contacts
            and doc.crm_person_id is not None
            and doc.crm_person_id not in ctx.contacts
        }
    )
    if people:
        found = directory.contacts_by_crm_ids(company_sso_id, people)
        contacts.update((c.id, c) for c in found.values())


def add_seam(
    past_watermark: Found,
    audit_id: int,
    doc: MigratedDoc,
    contacts: Mapping[str, Contact],
    keys: dict[MatchKey, tuple[int, str]],
) -> None:
    """Report ``doc`` at or past its contact's ``created_at``; keep an association log's match key."""
    contact = contacts.get(doc.customer_id)
    if contact is not None and doc.timestamp >= contact.created_at:
        past_watermark.add(
            audit_id,
            doc.external_id,
            f"log at {doc.timestamp.isoformat()}, "
            f"contact {contact.id} synced {contact.created_at.isoformat()}",
        )
    if doc.action in ASSOCIATION_ACTIONS and doc.linked_entity_id is not None:
        key = MatchKey(
            doc.company_sso_id,
            doc.customer_id,
            doc.category,
            doc.action,
            doc.linked_entity_id,
            doc.timestamp,
        )
        keys[key] = (audit_id, doc.external_id)


def add_overlap(
    overlap: Found,
    reader: MigratedLogReader,
    keys: Mapping[MatchKey, tuple[int, str]],
    window: dt.timedelta,
) -> None:
    """Report each match key the live feed also holds a log for (only when the reader holds one)."""
    if not keys or not reader.holds_live_feed:
        return
    for key, candidates in reader.live_feed_candidates(list(keys), window).items():
        if candidates:
            audit_id, ext_id = keys[key]
            docs = ", ".join(f"{c.doc_id} at {c.timestamp.isoformat()}" for c in candidates)
            overlap.add(audit_id, ext_id, f"live-feed log(s) {docs}")
