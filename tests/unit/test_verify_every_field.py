"""Verify compares every field the run writes, and ``--repair`` sets a drifted log back (in memory).

One stored log of the acme account has one field changed — each top-level field of the document, each
metadata key the run writes (``linked_entity_name`` and ``combined`` among them), one the run writes
removed, one the recomputed log lacks added — and verify must name that field, a repair must set the
log back to the recomputed one (keeping the keys that are not the run's), and a second verify must be
clean. On both in-memory stores: the plain one and the enrichment timeline.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import pytest

from crm_audit_transform.domain import ActivityLog, Actor, FieldChange
from crm_audit_transform.testing import (
    FixedClock,
    InMemoryActivityLogStore,
    InMemoryEnrichmentStore,
    InMemoryJobStore,
    InMemoryMigratedLogReader,
)
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases.verify import verify_account
from crm_audit_transform.verification import RUN_METADATA_KEYS
from support.corpus_account import World, audit_rows

DRIFTED_ID = 84
"""An association log (``link``) with every metadata key of the run but ``combined``: a user-less
audit's ``username`` and a named linked entity among them."""

Drift = Callable[[ActivityLog], ActivityLog]


def _metadata(log: ActivityLog, **changed: Any) -> ActivityLog:
    metadata = {**log.metadata, **changed}
    return attrs.evolve(log, metadata={k: v for k, v in metadata.items() if v is not None})


def _other(value: Any) -> Any:
    return value + 1 if type(value) is int else f"{value}-edited"


TOP_LEVEL: dict[str, Drift] = {
    "customer_id": lambda log: attrs.evolve(log, customer_id="contact-acme-999"),
    "category": lambda log: attrs.evolve(log, category="other"),
    "action": lambda log: attrs.evolve(log, action="other"),
    "actor": lambda log: attrs.evolve(log, actor=Actor("user", "Someone Else", "sso-else")),
    "attributes": lambda log: attrs.evolve(log, changes=log.changes[:-1]),
    "timestamp": lambda log: attrs.evolve(log, timestamp=log.timestamp - dt.timedelta(seconds=1)),
}
KEYS_CHANGED: dict[str, Drift] = {
    f"metadata.{key}": (lambda log, key=key: _metadata(log, **{key: _other(log.metadata[key])}))
    for key in RUN_METADATA_KEYS
    if key != "combined"
}
KEYS_ADDED_OR_REMOVED: dict[str, Drift] = {
    "metadata.combined": lambda log: _metadata(log, combined=True),
    "metadata.linked_entity_name": lambda log: _metadata(log, linked_entity_name=None),
    "metadata.username": lambda log: _metadata(log, username=None),
}
DRIFTS = {**TOP_LEVEL, **KEYS_CHANGED}
EDGES = {f"{name} (added or removed)": (name, drift) for name, drift in KEYS_ADDED_OR_REMOVED.items()}
CASES = [pytest.param(name, drift, id=name) for name, drift in DRIFTS.items()] + [
    pytest.param(name, drift, id=case) for case, (name, drift) in EDGES.items()
]
STORES = {
    "plain": lambda logs: InMemoryActivityLogStore(logs),
    "timeline": lambda logs: InMemoryEnrichmentStore(logs=logs),
}


ROWS = [row for row in audit_rows("acme") if 80 <= row.id <= 92]


@pytest.fixture(scope="module")
def migrated() -> World:
    """A few audits of the acme account, run once with the CRM's entities (its logs named)."""
    world = World("acme", rows=[row for row in audit_rows("acme") if 80 <= row.id <= 92], enrich=True)
    world.trigger()
    world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
    return world


def migrated_world(
    migrated: World, logs: list[ActivityLog], store: Callable[[list[ActivityLog]], Any]
) -> World:
    """The migrated account with ``logs`` stored in the store ``store`` makes, its job a copy."""
    world = copy.copy(migrated)  # its directories are read only
    job = migrated.jobs.latest(migrated.company)
    assert job is not None
    world.clock = FixedClock(migrated.clock.now())
    world.jobs = InMemoryJobStore([job], clock=world.clock)
    world.logs = store(logs)
    return world


def stored(world: World, external_id: str) -> ActivityLog:
    (log,) = [log for log in world.logs.logs if log.external_id == external_id]
    return log


def test_every_metadata_key_the_run_writes_is_covered(
    migrated: World,
) -> None:
    """The drifts above name every key of ``RUN_METADATA_KEYS``, and the transformer and the run's
    naming write no key outside it: a key added to one without the other fails here."""
    assert {name.removeprefix("metadata.") for name in {**KEYS_CHANGED, **KEYS_ADDED_OR_REMOVED}} == set(
        RUN_METADATA_KEYS
    )
    written = {key for log in migrated.logs.logs for key in log.metadata}
    assert written <= set(RUN_METADATA_KEYS)
    assert written >= set(RUN_METADATA_KEYS) - {"combined"}


@pytest.mark.parametrize("store", list(STORES))
@pytest.mark.parametrize(("field", "drift"), CASES)
def test_a_drifted_field_is_reported_and_repair_sets_it_back(
    migrated: World, field: str, drift: Drift, store: str
) -> None:
    """One field of one stored log differs from what the run writes now: verify reports that log
    drifted on that field, ``--repair`` sets it back (an enrichment key of another writer kept),
    and a second verify is clean. Before, ``linked_entity_name`` and ``combined`` (and a run key the
    recomputed log lacks) were not compared, and repair left every drifted log as it was: the
    metadata cases fail on the old code, and every case fails its repair there."""
    logs = list(migrated.logs.logs)
    (index,) = [n for n, log in enumerate(logs) if log.metadata.get("crm_audit_id") == DRIFTED_ID]
    original = logs[index]
    assert set(original.metadata) >= set(RUN_METADATA_KEYS) - {"combined"}
    foreign = {**original.metadata, "crm_note": "kept"}  # a key of another writer's: not the run's
    logs[index] = drift(attrs.evolve(original, metadata=foreign))
    assert logs[index] != attrs.evolve(original, metadata=foreign)
    world = migrated_world(migrated, logs, STORES[store])

    found = world.verify()
    assert [(f.audit_id, f.detail) for f in found.findings["drifted"].items] == [(DRIFTED_ID, field)]
    assert found.outstanding == {"drifted": 1}

    repaired = world.verify(repair=True)
    assert (repaired.restored, repaired.repaired, repaired.outstanding) == (1, 0, {})
    assert repaired.clean, repaired.to_json()
    restored = stored(world, original.external_id)
    assert restored == attrs.evolve(original, metadata={**original.metadata, "crm_note": "kept"})

    again = world.verify(repair=True)
    assert again.clean, again.to_json()
    assert (again.count("drifted"), again.restored) == (0, 0)


def test_without_the_crms_entities_a_stored_name_is_enrichments(
    migrated: World,
) -> None:
    """Verify without an entities port (a run that names nothing) leaves a stored
    ``linked_entity_name`` alone: it is the ``enrich`` command's, and a repair keeps it."""
    logs = list(migrated.logs.logs)
    (index,) = [n for n, log in enumerate(logs) if log.metadata.get("crm_audit_id") == DRIFTED_ID]
    original = logs[index]
    logs[index] = attrs.evolve(original, category="other")
    world = migrated_world(migrated, logs, InMemoryActivityLogStore)
    ports = attrs.evolve(world.verify_ports(), entities=None)
    found = verify_account(world.company, ports, world.transformer)
    assert [f.detail for f in found.findings["drifted"].items] == ["category"]
    repaired = verify_account(world.company, ports, world.transformer, settings=VerifySettings(repair=True))
    assert (repaired.restored, repaired.outstanding) == (1, {})
    assert stored(world, original.external_id) == original


def test_a_log_of_another_source_tag_is_reported_not_restored(
    migrated: World,
) -> None:
    """A log of our external id under another ``source_tag`` is another tool's for the write path
    (``insert_batch`` fails its key): reported drifted, never taken over by a repair."""
    logs = list(migrated.logs.logs)
    (index,) = [n for n, log in enumerate(logs) if log.metadata.get("crm_audit_id") == DRIFTED_ID]
    logs[index] = attrs.evolve(logs[index], source_tag="other_tool", category="other")
    edited = logs[index]
    world = migrated_world(migrated, logs, InMemoryActivityLogStore)
    repaired = world.verify(repair=True)
    (finding,) = repaired.findings["drifted"].items
    assert finding.detail.startswith("category, source_tag 'other_tool'")
    assert (repaired.restored, repaired.outstanding) == (0, {"drifted": 1})
    assert stored(world, edited.external_id) == edited


@pytest.mark.parametrize(
    ("typed", "plain"),
    [
        (Decimal("12.50"), {"$decimal": "12.50"}),
        (b"\x01", {"$bytes": "01"}),
        ({1: "a"}, {"1": "a"}),
        ({"$literal": 1}, {"$literal": {"$literal": 1}}),
    ],
)
def test_the_in_memory_reader_tells_a_dict_from_the_value_it_looks_like(typed: object, plain: object) -> None:
    """A changed value that is a plain dict spelt as the in-memory reader's tag is not the tagged
    value, nor a hash with an integer key the one with its string: their forms differ, so such a
    drift is found. Before, both were the same JSON text: this test fails there."""
    log = ActivityLog(
        "co",
        "contact-1",
        "deal",
        "update",
        Actor("system", "Qontak System"),
        (FieldChange("amount", "Amount", None, typed),),
        dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        external_id="crm:acme:audit:1",
    )
    reader = InMemoryMigratedLogReader(InMemoryActivityLogStore())
    edited = attrs.evolve(log, changes=(FieldChange("amount", "Amount", None, plain),))
    assert reader.content_of(log)["attributes"] != reader.content_of(edited)["attributes"]
