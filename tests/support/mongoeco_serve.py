"""Serve MongoDB's wire protocol from mongoeco's in-memory engine on 127.0.0.1 (run under Python ≥ 3.13).

Usage: ``python3.13 mongoeco_serve.py`` — prints the chosen port on one line, then serves until
it is terminated. Started by ``wire_mongo.py``; not imported by the tests.
"""

import asyncio

from mongoeco.engines.memory import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve() -> None:
    server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host="127.0.0.1", port=0)
    address = await server.start()
    print(address.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(serve())
