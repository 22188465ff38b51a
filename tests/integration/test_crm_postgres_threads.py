"""ReadOnlySession shared by threads (the HTTP app calls the service from a thread pool)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from crm_audit_adapters.crm_postgres import ReadOnlySession

pytestmark = pytest.mark.postgres

OVERLAP_WAIT_S = 1.0
"""How long the first unit of work waits for the second to start inside it (it never does once the
session serialises them: the wait then just runs out)."""


class TestThreads:
    def test_a_unit_of_work_started_while_another_runs_waits_for_it(self, crm_dsn: str) -> None:
        """Thread B's ``run`` begins while thread A's transaction is open and A ends first: both answer.

        On one shared connection, unserialised, B's block became a savepoint inside A's transaction
        and A's commit failed ("commit at the wrong nesting level"): a SourceUnavailable, a 503 over
        HTTP, for a database that is up.
        """
        results: dict[str, object] = {}
        b_inside = threading.Event()

        def work_b(conn: psycopg.Connection) -> tuple[object, ...] | None:
            b_inside.set()
            # Still inside while A's block ends, as a slower page query would be.
            return conn.execute("SELECT pg_sleep(0.2), txid_current_if_assigned(), 'b'").fetchone()

        def run_b() -> None:
            try:
                results["b"] = session.run(work_b)
            except Exception as exc:  # the assertion below shows it
                results["b"] = exc

        b = threading.Thread(target=run_b)

        def work_a(conn: psycopg.Connection) -> tuple[object, ...] | None:
            row = conn.execute("SELECT 'a'").fetchone()
            b.start()
            b_inside.wait(OVERLAP_WAIT_S)
            return row

        with ReadOnlySession.from_dsn(crm_dsn) as session:
            try:
                results["a"] = session.run(work_a)
            except Exception as exc:
                results["a"] = exc
            b.join(timeout=30)
            assert not b.is_alive()
            assert results == {"a": ("a",), "b": ("", None, "b")}
            # The connection is left usable: a third unit of work runs as the first did.
            assert session.run(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)

    def test_many_threads_sharing_one_session_all_answer(self, crm_dsn: str) -> None:
        """Eight threads, five units of work each, on one session: every answer is its own."""
        answers: dict[int, list[object]] = {}

        def worker(n: int) -> None:
            got: list[object] = []
            for i in range(5):
                value = n * 10 + i
                try:
                    got.append(
                        session.run(lambda conn, v=value: conn.execute("SELECT %s::int", (v,)).fetchone())
                    )
                except Exception as exc:
                    got.append(exc)
            answers[n] = got

        with ReadOnlySession.from_dsn(crm_dsn) as session:
            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert answers == {n: [(n * 10 + i,) for i in range(5)] for n in range(8)}
