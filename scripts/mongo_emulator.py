"""Serve the MongoDB wire protocol from mongoeco's in-memory engine: an emulator, not MongoDB.

Run it with the emulator's own interpreter (``scripts/mongoeco-env`` builds it; mongoeco needs
Python >= 3.13)::

    "$(scripts/mongoeco-env)" scripts/mongo_emulator.py            # mongodb://127.0.0.1:27017
    "$(scripts/mongoeco-env)" scripts/mongo_emulator.py --port 0   # a free port

The first line on stdout is the URI to give pymongo (``CRM_AUDIT_MONGO_URI``). Data lives in
memory and is gone when the process ends. It stops on SIGINT or SIGTERM, and with
``--until-stdin-closes`` also when its standard input closes: a test session that dies without
cleaning up, ``kill -9`` included, takes its server with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from mongoeco.engines.memory import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


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
