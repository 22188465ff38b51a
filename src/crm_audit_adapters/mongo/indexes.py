"""Index migrations shipped as golang-migrate MongoDB JSON files, and a function that applies them.

``data/migrations/035_crm_migration_indexes.{up,down}.json`` are arrays of database commands, exactly
what golang-migrate's MongoDB driver runs. ``apply_migration`` reads the same files and turns each
command into the driver's ``create_index`` / ``drop_index`` calls — one code path for a real server
and for mongomock (which has no ``createIndexes`` command). Applying ``up`` twice is harmless (an
identical index is a no-op); ``down`` drops only what exists, so it is harmless twice as well.

The applied version is recorded as golang-migrate records it — one document ``{version, dirty}``
— in a collection of our own, ``crm_audit_schema_migrations``, so the CDP's own migration history
(golang-migrate's ``schema_migrations``) is never touched. ``up`` records ``dirty: true`` before its
first step and ``dirty: false`` after its last; ``down`` removes the record after its last step.
A run that died half-way therefore reads as dirty, as golang-migrate reports it.

``index_status`` compares the database with the migration file: an index of the right name but
other keys or options (say, an older ``$exists`` filter) counts as *differs*, and every write
path treats it as missing (``MongoIndexState``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final, Literal

from attrs import frozen
from pymongo.errors import OperationFailure

from crm_audit_transform.errors import IndexConflict, LeaseHeld
from crm_audit_transform.jobs import lease_is_live
from crm_audit_transform.timestamps import as_utc

from .documents_types import Document, MongoDatabase, ReadDocument
from .leases import ANY_LIVE_ON_THE_SERVER
from .names import CollectionNames
from .retry import DEFAULT_RETRY, RetryPolicy, call_with_retry, driver_cause

__all__ = [
    "MIGRATION",
    "MIGRATION_VERSION",
    "VERSION_COLLECTION",
    "IndexReport",
    "MongoIndexState",
    "applied_version",
    "apply_migration",
    "index_names",
    "index_status",
    "load_migration",
    "missing_indexes",
]

MIGRATION: Final = "035_crm_migration_indexes"
MIGRATION_VERSION: Final = 35
VERSION_COLLECTION: Final = "crm_audit_schema_migrations"
_NOT_FOUND_CODES: Final = frozenset({26, 27})  # NamespaceNotFound, IndexNotFound
# IndexAlreadyExists, IndexOptionsConflict, IndexKeySpecsConflict, duplicate data under a unique index.
_CONFLICT_CODES: Final = frozenset({68, 85, 86, 11000, 11001})
Direction = Literal["up", "down"]


def load_migration(direction: Direction, name: str = MIGRATION) -> list[Document]:
    """The commands of one migration file, as golang-migrate would run them."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    path = resources.files("crm_audit_adapters") / "data" / "migrations" / f"{name}.{direction}.json"
    commands: list[Document] = json.loads(path.read_text(encoding="utf-8"))
    return commands


def index_names(names: CollectionNames | None = None) -> dict[str, tuple[str, ...]]:
    """Collection → the index names the ``up`` migration creates there."""
    names = names or CollectionNames()
    found: dict[str, tuple[str, ...]] = {}
    for command in load_migration("up"):
        collection = names.resolve(command["createIndexes"])
        found[collection] = found.get(collection, ()) + tuple(i["name"] for i in command["indexes"])
    return found


@frozen
class IndexReport:
    """One index of the migration: ``state`` is ``present``, ``missing`` or ``differs``."""

    collection: str
    name: str
    state: str

    @property
    def qualified(self) -> str:
        return f"{self.collection}.{self.name}"


def index_status(db: MongoDatabase, names: CollectionNames | None = None) -> tuple[IndexReport, ...]:
    """Each index of the up migration as the database holds it (keys and options compared)."""
    names = names or CollectionNames()
    reports: list[IndexReport] = []
    for command in load_migration("up"):
        collection = names.resolve(command["createIndexes"])
        present = db[collection].index_information()
        for spec in command["indexes"]:
            info = present.get(spec["name"])
            state = "missing" if info is None else "present" if _same(spec, info) else "differs"
            reports.append(IndexReport(collection, spec["name"], state))
    return tuple(reports)


def _same(spec: ReadDocument, info: ReadDocument) -> bool:
    keys = [(k, v) for k, v in spec["key"].items()]
    return (
        [(k, v) for k, v in info.get("key", ())] == keys
        and bool(info.get("unique", False)) == bool(spec.get("unique", False))
        and _plain(info.get("partialFilterExpression")) == _plain(spec.get("partialFilterExpression"))
    )


def _plain(value: Any) -> Any:
    # A server answers SON; the file holds dicts: compare as plain values.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def missing_indexes(db: MongoDatabase, names: CollectionNames | None = None) -> tuple[str, ...]:
    """``collection.index`` of every index of the migration the database lacks or defines otherwise."""
    return tuple(r.qualified for r in index_status(db, names) if r.state != "present")


def applied_version(db: MongoDatabase) -> tuple[int, bool] | None:
    """``(version, dirty)`` as ``up``/``down`` recorded it, or None when nothing is recorded."""
    doc = db[VERSION_COLLECTION].find_one({}, {"version": 1, "dirty": 1})
    if doc is None:
        return None
    return int(doc["version"]), bool(doc.get("dirty", False))


def _record_version(db: MongoDatabase, version: int | None, dirty: bool) -> None:
    # golang-migrate keeps exactly one document; so do we.
    collection = db[VERSION_COLLECTION]
    if version is None:
        collection.delete_many({})
        return
    collection.replace_one({"_id": "version"}, {"version": version, "dirty": dirty}, upsert=True)


class MongoIndexState:
    """``ports.IndexState`` over a database: what ``missing_indexes`` finds, asked on each call.

    Each write path asks once before it writes (a run, a trigger, one HTTP batch), which costs one
    ``listIndexes`` per collection.
    """

    __slots__ = ("_db", "_names", "_retry")

    def __init__(
        self, db: MongoDatabase, names: CollectionNames | None = None, *, retry: RetryPolicy | None = None
    ) -> None:
        self._db = db
        self._names = names
        self._retry = retry or DEFAULT_RETRY

    def missing_indexes(self) -> tuple[str, ...]:
        return call_with_retry(
            lambda _: missing_indexes(self._db, self._names), self._retry, "list migration 035's indexes"
        )


def apply_migration(
    db: MongoDatabase,
    direction: Direction,
    names: CollectionNames | None = None,
    *,
    retry: RetryPolicy | None = None,
    now: dt.datetime | None = None,
) -> tuple[str, ...]:
    """Run the migration's commands against ``db``; return one line per step for the operator.

    Raises ``IndexConflict`` when an index of the same name exists with other options, or when a
    unique index cannot be built over the data already stored (say, two in-progress jobs of one
    account); ``StoreUnavailable`` when the server cannot be reached. ``down`` raises ``LeaseHeld``
    (nothing dropped) while a job or one of its shards holds a lease that is live on the server's
    clock (``$$NOW``; at ``now`` when given: mongomock cannot evaluate ``$$NOW``): a live runner, or
    ``verify --repair``, checked the indexes when it started and would go on writing without the
    unique index that makes its writes exactly-once. That check and the drops are two steps, not
    one: a run or repair that checks the indexes before the drops and takes its lease after the
    check is not seen (docs/mongodb.md says what to do).
    """
    names = names or CollectionNames()
    policy = retry or DEFAULT_RETRY
    done: list[str] = []
    if direction == "up":
        _record_version(db, MIGRATION_VERSION, dirty=True)
    else:
        _refuse_while_leased(db, names, policy, now)
        current = applied_version(db)
        _record_version(db, MIGRATION_VERSION if current is None else current[0], dirty=True)
    for command in load_migration(direction):
        if "createIndexes" in command:
            collection = names.resolve(command["createIndexes"])
            for spec in command["indexes"]:
                done.append(_create(db, collection, spec, policy))
        elif "dropIndexes" in command:
            collection = names.resolve(command["dropIndexes"])
            done.append(_drop(db, collection, command["index"], policy))
        else:
            raise ValueError(f"unsupported migration command: {sorted(command)}")
    _record_version(db, MIGRATION_VERSION if direction == "up" else None, dirty=False)
    return tuple(done)


def _refuse_while_leased(
    db: MongoDatabase, names: CollectionNames, policy: RetryPolicy, now: dt.datetime | None
) -> None:
    """``LeaseHeld`` when a job or a shard of one holds a live lease: an owner and an expiry after
    the server's ``$$NOW``, or after ``now`` when given (mongomock, which cannot evaluate ``$$NOW``).

    A job's shards are a sub-document keyed by shard number (``documents.encode_job``), so they are
    read as its values (``$objectToArray``), not as an array.
    """
    jobs = db[names.jobs]
    if now is None and type(db).__module__.startswith("mongomock"):
        now = dt.datetime.now(dt.UTC)  # an in-process double: this process's clock is its server's
    shown = {"company_sso_id": 1, "status": 1}
    held: ReadDocument | None
    if now is None:
        held = call_with_retry(
            lambda _: jobs.find_one({"$expr": ANY_LIVE_ON_THE_SERVER}, shown),
            policy,
            "look for a runner holding a job's lease",
        )
    else:
        at = as_utc(now)

        def first_leased(_: int) -> ReadDocument | None:
            cursor = jobs.find({}, {**shown, "lease_owner": 1, "lease_expires_at": 1, "shards": 1})
            return next((doc for doc in cursor if _leased_at(doc, at)), None)

        held = call_with_retry(first_leased, policy, "look for a runner holding a job's lease")
    if held is not None:
        raise LeaseHeld(
            f"job {held['_id']} of company {held.get('company_sso_id')} ({held.get('status')}) is leased "
            "to a runner that is writing: indexes down would leave it writing without the unique index. "
            "Cancel it (or let it end), wait for its lease to expire (status shows it), then run it again"
        )


def _leased_at(doc: ReadDocument, at: dt.datetime) -> bool:
    """The job of ``doc`` or one of its shards holds a lease live at ``at`` (``jobs.lease_is_live``;
    an expiry that is no date holds nothing, as in ``leases``' filters)."""
    shards = doc.get("shards")
    entries = list(shards.values()) if isinstance(shards, dict) else []
    for entry in (doc, *entries):
        if not isinstance(entry, Mapping):
            continue
        until = entry.get("lease_expires_at")
        expiry = as_utc(until, naive="utc") if isinstance(until, dt.datetime) else None
        if lease_is_live(entry.get("lease_owner"), expiry, at):
            return True
    return False


def _create(db: MongoDatabase, collection: str, spec: ReadDocument, policy: RetryPolicy) -> str:
    name = spec["name"]
    keys: Sequence[tuple[str, Any]] = list(spec["key"].items())
    options = {k: v for k, v in spec.items() if k not in ("key", "name")}

    def create(_: int) -> bool:
        existed = name in db[collection].index_information()
        try:
            db[collection].create_index(keys, name=name, **options)
        except OperationFailure as exc:
            # mongomock raises its conflicts without a code; a real server always sets one. Its
            # words as STORE_UNAVAILABLE has a driver's: one clause of at most 300 characters, not
            # pymongo's full reply (both index specs, a duplicate's key values). Not chained to
            # pymongo's error either: a printed traceback would show that reply in full.
            if exc.code is None or exc.code in _CONFLICT_CODES:
                raise IndexConflict(collection, name, driver_cause(exc)) from None
            raise
        return not existed  # createIndexes of an identical index is a no-op: say so

    created = call_with_retry(create, policy, f"create index {name} on {collection}")
    return f"{'created' if created else 'present'} {collection}.{name}"


def _drop(db: MongoDatabase, collection: str, name: str, policy: RetryPolicy) -> str:
    def drop(_: int) -> bool:
        if name not in db[collection].index_information():
            return False
        try:
            db[collection].drop_index(name)
        except OperationFailure as exc:
            if exc.code in _NOT_FOUND_CODES:
                return False  # dropped by someone else between the check and the drop
            raise
        return True

    dropped = call_with_retry(drop, policy, f"drop index {name} on {collection}")
    return f"dropped {collection}.{name}" if dropped else f"absent {collection}.{name}"
