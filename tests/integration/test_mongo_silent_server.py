"""A server that stops answering, or drops the connection: each ends typed or counted once.

A server that stops answering: each attempt is bounded by ``socketTimeoutMS``, and the run halts.

The runner's client sets ``socketTimeoutMS`` from the lease (``socket_timeout_ms``) unless the URI
sets it: without one, an insert sent to a server that applied it but never answers waited forever,
its lease running out under it. Here a proxy in front of the emulator passes every request on and,
once told to, drops the server's answers: the insert is applied and unanswered, as after a network
partition or a stalled primary.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient

from crm_audit_adapters.bootstrap.mongo_client import (
    MIN_SOCKET_TIMEOUT_MS,
    mongo_client_for,
    socket_timeout_ms,
)
from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.errors import StoreUnavailable
from crm_audit_transform.jobs import COMPLETED, IN_PROGRESS
from crm_audit_transform.usecases import RunSettings
from support.corpus_account import World, audit_rows
from support.mongo import activity_log

ROWS = [r for r in audit_rows("acme") if r.id <= 30]
SETTINGS = RunSettings(page_size=30, halt_threshold=1.0, lease_seconds=1)


INSERT = b"\x02insert\x00"
"""The head of an ``insert`` command (its first key, a BSON string), in the request's first bytes."""


class _Connection:
    """One client connection through the proxy. A driver's connection sends a request and waits for
    its answer before the next, so the request's first bytes say what the answer is to."""

    __slots__ = ("answered", "request")

    def __init__(self) -> None:
        self.request = b""
        self.answered = True


class MutingProxy:
    """A TCP proxy to ``target``; while ``mute`` is set, what the server sends back is dropped; with
    ``cut`` set, the next answer to an ``insert`` is not passed on and both sockets of its connection
    are closed; each answer is held ``slow`` seconds before it is passed on. ``insert_dropped`` is
    set once an answer to an insert was dropped: the server applied it.

    The client's monitors (its heartbeat and round-trip checks, on connections of their own) pass
    through the proxy too, at times the load decides: ``cut`` waits for the insert's answer, so a
    heartbeat's answer arriving first is not the one cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mute = threading.Event()
        self.cut = threading.Event()
        self.insert_dropped = threading.Event()
        self.slow = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            connection = _Connection()
            threading.Thread(target=self._requests, args=(client, server, connection), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, connection), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket, connection: _Connection) -> None:
        try:
            while data := source.recv(65536):
                if connection.answered:  # a new request's first bytes
                    connection.request, connection.answered = data, False
                sink.sendall(data)
        except OSError:
            pass

    def _answers(self, source: socket.socket, sink: socket.socket, connection: _Connection) -> None:
        try:
            while data := source.recv(65536):
                to_insert = INSERT in connection.request
                connection.answered = True
                if to_insert and self.cut.is_set():
                    self.cut.clear()
                    for sock in (source, sink):  # shutdown: a close alone waits for the other recv
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                if self.slow:
                    time.sleep(self.slow)
                if self.mute.is_set():
                    if to_insert:
                        self.insert_dropped.set()
                    continue
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def proxy(wire_mongo_client: MongoClient[dict[str, Any]]) -> Iterator[MutingProxy]:
    address = wire_mongo_client.address
    assert address is not None
    muting = MutingProxy(address)
    yield muting
    muting.close()


class TestTheDefaultSocketTimeout:
    def test_it_shares_half_the_lease_among_the_attempts_and_the_uris_value_wins(self) -> None:
        """12 s for the default 120 s lease (half of it in five: four attempts and their backoff), a
        floor for a test's short lease, and the URI's own ``socketTimeoutMS`` (0: none) kept."""
        assert socket_timeout_ms(120) == 12_000
        assert socket_timeout_ms(1) == MIN_SOCKET_TIMEOUT_MS
        uri = "mongodb://127.0.0.1:1/?directConnection=true"
        clients = [
            mongo_client_for(uri, lease_seconds=120),
            mongo_client_for(uri + "&socketTimeoutMS=500", lease_seconds=120),
            mongo_client_for(uri + "&sockettimeoutms=0", lease_seconds=120),
            mongo_client_for(uri),
        ]
        try:
            assert [c.options.pool_options.socket_timeout for c in clients] == [12.0, 0.5, None, None]
        finally:
            for client in clients:
                client.close()


class TestASilentServer:
    def test_the_run_halts_typed_and_a_resume_ends_as_a_clean_run(
        self, proxy: MutingProxy, wire_mongo_client: MongoClient[dict[str, Any]]
    ) -> None:
        """The server applies the first batch and never answers: each attempt times out after the
        lease's ``socketTimeoutMS``, the run stops ``StoreUnavailable`` ("timed out") with its cursor
        before that batch; resumed once the server answers, the batch's logs it had applied are
        duplicates of ours, and the timeline and counts are a clean run's."""
        name = f"crm_audit_silent_{id(object())}"
        apply_migration(wire_mongo_client[name], "up")
        client = mongo_client_for(
            f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true", lease_seconds=SETTINGS.lease_seconds
        )
        try:
            retry = RetryPolicy(attempts=1, base_delay_s=0.0, max_delay_s=0.0)  # one timeout is the case
            world = World(rows=ROWS)
            world.logs = MongoActivityLogStore(client[name].activity_logs, retry=retry)  # type: ignore[assignment]
            world.trigger()
            client[name].command("ping")  # a pooled connection: the insert goes out on it
            proxy.mute.set()
            with pytest.raises(StoreUnavailable) as caught:
                world.run(settings=SETTINGS)
            assert "timed out" in str(caught.value)
            # Applied once its answer came back (and was dropped): the client gave up first.
            assert proxy.insert_dropped.wait(60)
            halted = world.jobs.latest(world.company)
            assert halted is not None
            assert (halted.status, halted.last_audit_id) == (IN_PROGRESS, 0)
            applied = wire_mongo_client[name].activity_logs.count_documents({})
            assert applied > 0  # the unanswered insert was applied

            proxy.mute.clear()
            world.clock.advance(SETTINGS.lease_seconds + 1)
            resumed = world.run(owner="runner-2", settings=SETTINGS).job

            clean = World(rows=ROWS)
            clean.trigger()
            done = clean.run(settings=SETTINGS).job
            assert (resumed.status, resumed.tally, resumed.last_audit_id) == (
                COMPLETED,
                done.tally,
                done.last_audit_id,
            )
            stored = sorted(
                doc["external_id"]
                for doc in wire_mongo_client[name].activity_logs.find({}, {"external_id": 1})
            )
            assert stored == sorted(log.external_id for log in clean.logs.logs)
        finally:
            client.close()
            wire_mongo_client.drop_database(name)


class TestAConnectionDroppedMidBatch:
    def test_the_retry_counts_the_applied_batch_once_and_the_run_ends_as_a_clean_run(
        self,
        proxy: MutingProxy,
        wire_mongo_client: MongoClient[dict[str, Any]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The server applies the first batch and the connection drops before its answer: the store
        retries it under the same ``_id``s, finds its own logs and counts them inserted, once; the
        run completes with a clean run's counts and timeline."""
        name = f"crm_audit_dropped_{id(object())}"
        apply_migration(wire_mongo_client[name], "up")
        client = mongo_client_for(
            f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true", lease_seconds=SETTINGS.lease_seconds
        )
        try:
            retry = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0)
            world = World(rows=ROWS)
            world.logs = MongoActivityLogStore(client[name].activity_logs, retry=retry)  # type: ignore[assignment]
            world.trigger()
            client[name].command("ping")
            proxy.cut.set()
            done = world.run(settings=SETTINGS).job

            clean = World(rows=ROWS)
            clean.trigger()
            expected = clean.run(settings=SETTINGS).job
            assert proxy.cut.is_set() is False  # the answer was cut
            assert (done.status, done.tally, done.last_audit_id) == (
                COMPLETED,
                expected.tally,
                expected.last_audit_id,
            )
            stored = sorted(
                doc["external_id"]
                for doc in wire_mongo_client[name].activity_logs.find({}, {"external_id": 1})
            )
            assert stored == sorted(log.external_id for log in clean.logs.logs)
            assert "mongo attempt 1/2 failed (AutoReconnect)" in caplog.text  # the store's retry
        finally:
            client.close()
            wire_mongo_client.drop_database(name)


class TestALongAccountRead:
    def test_a_count_or_a_chunk_read_outlasting_the_socket_timeout_ends_within_its_own_deadline(
        self, proxy: MutingProxy, wire_mongo_client: MongoClient[dict[str, Any]]
    ) -> None:
        """A rollback's count and chunk read over a large account answered after the client's
        ``socketTimeoutMS`` (here the URI's 200 ms; the server's answers held 0.6 s): they end under
        ``ACCOUNT_READ_TIMEOUT_S``, not the write's bound. Under the socket timeout they failed
        ``StoreUnavailable`` ("timed out"), stopping a rollback that would have worked; a store
        built with none (``account_read_timeout_s=None``) still does."""
        name = f"crm_audit_long_count_{id(object())}"
        apply_migration(wire_mongo_client[name], "up")
        MongoActivityLogStore(wire_mongo_client[name].activity_logs).insert_batch(
            [activity_log(i) for i in range(1, 4)]
        )
        uri = f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true&socketTimeoutMS=200"
        client = mongo_client_for(uri, lease_seconds=SETTINGS.lease_seconds)
        once = RetryPolicy(attempts=1, base_delay_s=0.0, max_delay_s=0.0)
        try:
            store = MongoActivityLogStore(client[name].activity_logs, retry=once)
            proxy.slow = 0.6
            assert store.count_migrated("company-a") == 3
            assert len(store.migrated_chunk("company-a", 10)) == 3
            bounded = MongoActivityLogStore(
                client[name].activity_logs, retry=once, account_read_timeout_s=None
            )
            with pytest.raises(StoreUnavailable, match="timed out"):
                bounded.count_migrated("company-a")
        finally:
            proxy.slow = 0.0
            client.close()
            wire_mongo_client.drop_database(name)
