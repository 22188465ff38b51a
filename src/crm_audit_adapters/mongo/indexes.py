"""Index migrations shipped as golang-migrate MongoDB JSON files, and a function that applies them.

``data/migrations/035_crm_migration_indexes.{up,down}.json`` are arrays of database commands, exactly
what golang-migrate's MongoDB driver runs. ``apply_migration`` reads the same files and turns each
command into the driver's ``create_index`` / ``drop_index`` calls — one code path for a real server
and for mongomock (which has no ``createIndexes`` command). Applying ``up`` twice is harmless (an
identical index is a no-op); ``down`` drops only what exists, so it is harmless twice as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final, Literal

from pymongo.database import Database
from pymongo.errors import OperationFailure

from crm_audit_transform.errors import IndexConflict

from .names import CollectionNames
from .retry import RetryPolicy, call_with_retry

__all__ = ["MIGRATION", "apply_migration", "index_names", "load_migration", "missing_indexes"]

MIGRATION: Final = "035_crm_migration_indexes"
_NOT_FOUND_CODES: Final = frozenset({26, 27})  # NamespaceNotFound, IndexNotFound
# IndexAlreadyExists, IndexOptionsConflict, IndexKeySpecsConflict, duplicate data under a unique index.
_CONFLICT_CODES: Final = frozenset({68, 85, 86, 11000, 11001})
Direction = Literal["up", "down"]


def load_migration(direction: Direction, name: str = MIGRATION) -> list[dict[str, Any]]:
    """The commands of one migration file, as golang-migrate would run them."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    path = resources.files("crm_audit_adapters") / "data" / "migrations" / f"{name}.{direction}.json"
    commands: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return commands


def index_names(names: CollectionNames | None = None) -> dict[str, tuple[str, ...]]:
    """Collection → the index names the ``up`` migration creates there."""
    names = names or CollectionNames()
    found: dict[str, tuple[str, ...]] = {}
    for command in load_migration("up"):
        collection = names.resolve(command["createIndexes"])
        found[collection] = found.get(collection, ()) + tuple(i["name"] for i in command["indexes"])
    return found


def missing_indexes(db: Database[Any], names: CollectionNames | None = None) -> tuple[str, ...]:
    """``collection.index`` of every index of the migration that the database lacks."""
    missing: list[str] = []
    for collection, wanted in index_names(names).items():
        present = db[collection].index_information()
        missing.extend(f"{collection}.{index}" for index in wanted if index not in present)
    return tuple(missing)


def apply_migration(
    db: Database[Any],
    direction: Direction,
    names: CollectionNames | None = None,
    *,
    retry: RetryPolicy | None = None,
) -> tuple[str, ...]:
    """Run the migration's commands against ``db``; return one line per step for the operator.

    Raises ``IndexConflict`` when an index of the same name exists with other options, or when a
    unique index cannot be built over the data already stored (say, two in-progress jobs of one
    account); ``StoreUnavailable`` when the server cannot be reached.
    """
    names = names or CollectionNames()
    policy = retry or RetryPolicy()
    done: list[str] = []
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
    return tuple(done)


def _create(db: Database[Any], collection: str, spec: Mapping[str, Any], policy: RetryPolicy) -> str:
    name = spec["name"]
    keys: Sequence[tuple[str, Any]] = list(spec["key"].items())
    options = {k: v for k, v in spec.items() if k not in ("key", "name")}

    def create(_: int) -> None:
        try:
            db[collection].create_index(keys, name=name, **options)
        except OperationFailure as exc:
            # mongomock raises its conflicts without a code; a real server always sets one.
            if exc.code is None or exc.code in _CONFLICT_CODES:
                raise IndexConflict(collection, name, str(exc)) from exc
            raise

    call_with_retry(create, policy, f"create index {name} on {collection}")
    return f"created {collection}.{name}"


def _drop(db: Database[Any], collection: str, name: str, policy: RetryPolicy) -> str:
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
