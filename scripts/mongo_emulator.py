"""Serve the MongoDB wire protocol from mongoeco's in-memory engine: an emulator, not MongoDB.

Run it with the emulator's own interpreter (``scripts/mongoeco-env`` builds it; mongoeco needs
Python >= 3.13)::

    "$(scripts/mongoeco-env)" scripts/mongo_emulator.py            # mongodb://127.0.0.1:27017
    "$(scripts/mongoeco-env)" scripts/mongo_emulator.py --port 0   # a free port

The first line on stdout is the URI to give pymongo (``CRM_AUDIT_MONGO_URI``). Data lives in
memory and is gone when the process ends.

mongoeco stores a document of any size and nesting; MongoDB does not. So that a test against the
emulator cannot pass what a server refuses, an ``insert`` is checked here first, as the server's own
insert path checks it: a document past 16 MiB (``_id`` included) is a write error ``BadValue`` (2,
"object to insert too large"), one nested past 100 levels (MongoDB's documented "Nested Depth for
BSON Documents"; the document is level 1, each non-empty embedded document or array one more) a
write error ``Overflow`` (15). The other documents are inserted as the server would: all of them
unordered, those before the first refused one ordered. An update (``update``, ``findAndModify``, a
replacement too) whose resulting document would pass 16 MiB is refused before it is stored, with the
server's write error 17419 ("Resulting document after update is larger than 16777216"); the document
stays as it was. An upsert that inserts such a document is refused with 17420 ("Document to upsert is
larger than 16777216") and inserts nothing. An update or upsert whose document would nest past 100
levels is refused with ``Overflow`` (15, "Document exceeds maximum nesting depth of 100"), as the
server's storage validation refuses it. It stops on SIGINT or SIGTERM, and with
``--until-stdin-closes`` also when its standard input closes: a test session that dies without
cleaning up, ``kill -9`` included, takes its server with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from typing import Any

import bson
from mongoeco.engines import memory as memory_engine
from mongoeco.engines.memory import MemoryEngine
from mongoeco.errors import WriteError
from mongoeco.wire import AsyncMongoEcoProxyServer
from mongoeco.wire.bson_bridge import encode_wire_value
from mongoeco.wire.executor import WireCommandExecutor

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # crm_audit_adapters.mongo.document_limits
MAX_NESTING = 100  # crm_audit_adapters.mongo.bson_values.MONGODB_MAX_NESTING
BAD_VALUE, OVERFLOW, RESULT_TOO_LARGE, UPSERT_TOO_LARGE = 2, 15, 17419, 17420


def _nests_past(value: object, levels: int) -> bool:
    """Whether ``value``'s non-empty documents and arrays nest more than ``levels`` deep."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    if not items:
        return False
    return levels <= 0 or any(_nests_past(item, levels - 1) for item in items)


def refusal(document: dict[str, Any]) -> dict[str, Any] | None:
    """The write error MongoDB gives for inserting ``document``, or None when it takes it."""
    size = len(bson.encode(encode_wire_value(document)))  # mongoeco decoded it to its own types
    if size > MAX_DOCUMENT_BYTES:
        message = f"object to insert too large. size in bytes: {size}, max size: {MAX_DOCUMENT_BYTES}"
        return {"code": BAD_VALUE, "codeName": "BadValue", "errmsg": message}
    if _nests_past(document, MAX_NESTING):
        message = f"cannot insert document because it exceeds {MAX_NESTING} levels of nesting"
        return {"code": OVERFLOW, "codeName": "Overflow", "errmsg": message}
    return None


_execute_prepared = WireCommandExecutor.execute_prepared


async def _execute_within_limits(executor: WireCommandExecutor, context: Any) -> dict[str, Any]:
    """``insert`` with MongoDB's refusals of a document past its limits; every other command as is."""
    documents = context.command_document.get("documents") if context.command_name == "insert" else None
    refused = {i: error for i, doc in enumerate(documents or ()) if (error := refusal(doc)) is not None}
    if not refused:
        return await _execute_prepared(executor, context)
    ordered = context.command_document.get("ordered", True)
    first = min(refused)
    kept = [i for i in range(len(documents)) if i not in refused and (not ordered or i < first)]
    result: dict[str, Any] = {"ok": 1.0, "n": 0}
    if kept:
        command = {**context.command_document, "documents": [documents[i] for i in kept]}
        result = await _execute_prepared(executor, dataclasses.replace(context, command_document=command))
        if not result.get("ok"):
            return result
    errors = [{**error, "index": kept[error["index"]]} for error in result.get("writeErrors", [])]
    if not (ordered and errors):  # an ordered insert stopped at its first error, wherever it was
        errors += [{"index": i, **error} for i, error in refused.items() if not ordered or i == first]
    return {**result, "writeErrors": sorted(errors, key=lambda error: error["index"])}


# mongoeco 4.11's executor has no hook: its one entry point is wrapped (the version is pinned).
WireCommandExecutor.execute_prepared = _execute_within_limits  # type: ignore[method-assign]

_validate_document = memory_engine.enforce_collection_document_validation


def _validate_within_limits(
    document: Any, *args: Any, original_document: Any = None, is_upsert_insert: bool = False, **kwargs: Any
) -> None:
    """The engine's check of a document about to be stored, with MongoDB's limits for an update and
    an upsert: the memory engine calls it with ``original_document`` for each document an update
    changes, after applying the update to a copy and before storing it, and with
    ``is_upsert_insert`` for the document an upsert inserts (an insert's is checked above)."""
    if original_document is not None or is_upsert_insert:
        error = _stored_refusal(document, is_upsert_insert)
        if error is not None:
            raise WriteError(error["errmsg"], error["code"], error)
    _validate_document(
        document, *args, original_document=original_document, is_upsert_insert=is_upsert_insert, **kwargs
    )


def _stored_refusal(document: dict[str, Any], upsert: bool) -> dict[str, Any] | None:
    """The write error MongoDB gives for storing ``document`` after an update, or as an upsert's
    insert (``upsert``), or None when it takes it."""
    size = len(bson.encode(encode_wire_value(document)))
    if size > MAX_DOCUMENT_BYTES:
        if upsert:
            message = f"Document to upsert is larger than {MAX_DOCUMENT_BYTES}"
            return {"code": UPSERT_TOO_LARGE, "codeName": "Location17420", "errmsg": message}
        message = f"Resulting document after update is larger than {MAX_DOCUMENT_BYTES}"
        return {"code": RESULT_TOO_LARGE, "codeName": "Location17419", "errmsg": message}
    if _nests_past(document, MAX_NESTING):
        message = f"Document exceeds maximum nesting depth of {MAX_NESTING}"
        return {"code": OVERFLOW, "codeName": "Overflow", "errmsg": message}
    return None


# Likewise the memory engine's one check of an updated document (by its module's name for it).
memory_engine.enforce_collection_document_validation = _validate_within_limits


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(host: str, port: int, until_stdin_closes: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # The in-memory engine, named rather than defaulted: mongoeco's SQLite engine rejects some of our
    # documents, and the tests rely on every server starting empty.
    async with AsyncMongoEcoProxyServer(engine=MemoryEngine(), host=host, port=port) as server:
        print(server.address.uri, flush=True)
        waits = [asyncio.ensure_future(stop.wait())]
        if until_stdin_closes:
            waits.append(asyncio.ensure_future(_stdin_closed()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=27017, help="0 picks a free port")
    parser.add_argument("--until-stdin-closes", action="store_true", help="also stop when stdin closes")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.until_stdin_closes))


if __name__ == "__main__":
    main()
