"""MigrateBatch: write at most 20 activity logs idempotently and say what became of each.

Idempotency is the store's unique ``(company_sso_id, external_id)`` index, not a read before the
write: a record already there comes back ``skipped: duplicate_external_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .. import reasons
from ..domain import ActivityLog, BatchResult, EncodedLog, WriteResult
from ..errors import BatchTooLarge
from ..ports import ActivityLogWriter, ContactDirectory

MAX_BATCH_SIZE: Final = 20
"""The CDP's bulk-create limit; larger batches are refused with ``BATCH_TOO_LARGE``."""


def migrate_batch(
    logs: Sequence[ActivityLog | EncodedLog],
    writer: ActivityLogWriter,
    *,
    max_size: int = MAX_BATCH_SIZE,
    contacts: ContactDirectory | None = None,
) -> BatchResult:
    """Write one batch through ``writer``: counts and one ``WriteResult`` per log, in order.

    An ``EncodedLog`` must be ``writer``'s own encoding (``ports.ActivityLogWriter``).

    With ``contacts`` (the HTTP route's records, built outside a run), a log is written only when
    its ``customer_id`` is the contact of its account that its ``metadata.crm_person_id`` names — as
    a run finds it (``rules.contact``); any other is ``skipped: contact_not_found``, as a run counts
    a row whose person has no contact of the account, and never written. One contacts look-up per
    account of the batch. An ``EncodedLog`` (a run's own, already checked) is not looked up.

    ``BatchTooLarge`` above ``max_size`` (nothing written); ``StoreUnavailable`` propagates (from
    the look-up: nothing written).
    """
    if len(logs) > max_size:
        raise BatchTooLarge(len(logs), max_size)
    if not logs:
        return BatchResult(0, 0, 0, ())
    refused = _not_the_accounts_contact(logs, contacts) if contacts is not None else {}
    if refused:
        kept = [log for index, log in enumerate(logs) if index not in refused]
        written = iter(writer.insert_batch(kept) if kept else ())
        results = tuple(refused[i] if i in refused else next(written) for i in range(len(logs)))
    else:
        results = tuple(writer.insert_batch(logs))
    counts = {"inserted": 0, "skipped": 0, "failed": 0}
    for result in results:
        counts[result.status] += 1
    return BatchResult(counts["inserted"], counts["skipped"], counts["failed"], results)


def _not_the_accounts_contact(
    logs: Sequence[ActivityLog | EncodedLog], contacts: ContactDirectory
) -> dict[int, WriteResult]:
    """By position: the logs whose ``customer_id`` is not the contact their ``crm_person_id`` names."""
    people: dict[str, set[int]] = {}
    for log in logs:
        if isinstance(log, ActivityLog):
            person = _person_id(log)
            if person is not None:
                people.setdefault(log.company_sso_id, set()).add(person)
    found = {company: contacts.contacts_by_crm_ids(company, sorted(ids)) for company, ids in people.items()}
    refused: dict[int, WriteResult] = {}
    for index, log in enumerate(logs):
        if not isinstance(log, ActivityLog):
            continue
        person = _person_id(log)
        if person is None:
            detail = "metadata.crm_person_id names no CRM person: the customer cannot be checked"
        else:
            contact = found.get(log.company_sso_id, {}).get(person)
            if contact is not None and contact.id == log.customer_id:
                continue
            detail = (
                f"CRM person {person} has no contact of company {log.company_sso_id}"
                if contact is None
                else f"CRM person {person} is contact {contact.id} of company {log.company_sso_id}, "
                f"not customer {log.customer_id}"
            )
        refused[index] = WriteResult(log.external_id, "skipped", reasons.CONTACT_NOT_FOUND, detail[:300])
    return refused


def _person_id(log: ActivityLog) -> int | None:
    person = log.metadata.get("crm_person_id")
    return person if type(person) is int else None
