"""MongoActivityLogStore: unordered idempotent inserts, write-error mapping, retries, rollback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from crm_audit_adapters.mongo import MongoActivityLogStore, RetryPolicy, apply_migration
from crm_audit_transform.domain import WriteResult
from crm_audit_transform.errors import ConnectionRejected, StoreUnavailable
from support.mongo import FirstAnswerLost, activity_log, fresh_database, mongo_backends, native_log_document

NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)


def _store(collection: Any) -> MongoActivityLogStore:
    return MongoActivityLogStore(collection, retry=NO_WAIT)


def _statuses(results: Iterable[WriteResult]) -> list[tuple[str, str, str]]:
    return [(r.external_id, r.status, r.reason) for r in results]


class FlakyCollection:
    """A collection whose first ``insert_many`` calls fail with a network error.

    mongomock never drops a connection, so the failure is injected here. ``write_first`` decides
    whether the failing call wrote before failing — the lost-acknowledgement case, where the server
    committed the insert but the client never heard back.
    """

    def __init__(self, inner: Any, *, failures: int = 1, write_first: bool, error: type = AutoReconnect):
        self._inner = inner
        self._failures = failures
        self._write_first = write_first
        self._error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.calls += 1
        if self.calls > self._failures:
            return self._inner.insert_many(documents, ordered=ordered)
        if self._write_first:
            with contextlib.suppress(BulkWriteError):  # a duplicate changes nothing here
                self._inner.insert_many(documents, ordered=ordered)
        raise self._error("connection reset by peer")


class UnconfirmedCollection(FlakyCollection):
    """A collection whose first ``insert_many`` calls write, then report a write-concern error
    (``wtimeout``), as a replica set does when ``w=majority`` is not confirmed in time."""

    def __init__(self, inner: Any, *, failures: int) -> None:
        super().__init__(inner, failures=failures, write_first=True)

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.calls += 1
        details: dict[str, Any] = {"writeErrors": [], "nInserted": 0}
        try:
            self._inner.insert_many(documents, ordered=ordered)
        except BulkWriteError as exc:
            details = dict(exc.details)
        if self.calls > self._failures:
            if details["writeErrors"]:
                raise BulkWriteError(details)
            return None
        details["writeConcernErrors"] = [{"code": 64, "errmsg": "waiting for replication timed out"}]
        raise BulkWriteError(details)


class ValidatingCollection:
    """Refuses chosen documents with a server-style write error (default: validation, 121), inserts the rest.

    mongomock has no document validators, so this stands in for one; the error it raises has the
    shape a server's ``BulkWriteError`` has, merged with the real errors of the real insert.
    """

    def __init__(self, inner: Any, refuse: set[str], error: dict[str, Any] | None = None):
        self._inner = inner
        self._refuse = refuse
        self._error = error or {"code": 121, "errmsg": "Document failed validation"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        errors: list[dict[str, Any]] = []
        keep: list[tuple[int, dict[str, Any]]] = []
        for position, doc in enumerate(documents):
            if doc.get("external_id") in self._refuse:
                errors.append({"index": position, **self._error})
            else:
                keep.append((position, doc))
        if keep:
            try:
                self._inner.insert_many([doc for _, doc in keep], ordered=ordered)
            except BulkWriteError as exc:
                errors += [{**e, "index": keep[e["index"]][0]} for e in exc.details["writeErrors"]]
        if errors:
            raise BulkWriteError({"writeErrors": sorted(errors, key=lambda e: e["index"]), "nInserted": 0})


@pytest.fixture
def logs(mongo_db: Any) -> Any:
    apply_migration(mongo_db, "up")
    return mongo_db.activity_logs


class TestInsertBatch:
    def test_new_logs_are_inserted_in_order(self, logs: Any) -> None:
        """Each record of a fresh batch comes back inserted, in input order, and is stored."""
        batch = [activity_log(n) for n in (3, 1, 2)]
        results = _store(logs).insert_batch(batch)
        assert _statuses(results) == [(log.external_id, "inserted", "") for log in batch]
        assert logs.count_documents({"source_tag": "crm_migration"}) == 3

    def test_a_replayed_batch_is_all_skipped_duplicates(self, logs: Any) -> None:
        """Writing the same batch again inserts nothing and reports duplicate_external_id for each."""
        batch = [activity_log(n) for n in range(1, 6)]
        _store(logs).insert_batch(batch)
        results = _store(logs).insert_batch(batch)
        assert {(r.status, r.reason) for r in results} == {("skipped", "duplicate_external_id")}
        assert logs.count_documents({}) == 5

    def test_duplicates_do_not_stop_the_rest_of_the_batch(self, logs: Any) -> None:
        """Unordered insert: records after a duplicate are still written."""
        _store(logs).insert_batch([activity_log(2)])
        results = _store(logs).insert_batch([activity_log(1), activity_log(2), activity_log(3)])
        assert [r.status for r in results] == ["inserted", "skipped", "inserted"]
        assert logs.count_documents({}) == 3

    def test_a_duplicate_inside_one_batch_is_written_once(self, logs: Any) -> None:
        """Two records with one external_id in a batch: the first lands, the second is skipped."""
        results = _store(logs).insert_batch([activity_log(1), activity_log(1)])
        assert [r.status for r in results] == ["inserted", "skipped"]
        assert logs.count_documents({}) == 1

    def test_same_external_id_for_another_company_is_inserted(self, logs: Any) -> None:
        """Idempotency is per company; another account's identical external_id is its own record."""
        _store(logs).insert_batch([activity_log(1, company="company-a")])
        results = _store(logs).insert_batch([activity_log(1, company="company-b")])
        assert [r.status for r in results] == ["inserted"]

    def test_native_logs_never_cause_a_skip(self, logs: Any) -> None:
        """Live-feed logs without external_id neither block a migrated log nor get matched by one."""
        logs.insert_many([native_log_document(n=n) for n in range(3)])
        results = _store(logs).insert_batch([activity_log(1), activity_log(2)])
        assert [r.status for r in results] == ["inserted", "inserted"]
        assert logs.count_documents({"external_id": {"$exists": False}}) == 3

    def test_a_non_duplicate_write_error_fails_only_that_record(self, logs: Any) -> None:
        """A write error other than 11000 is failed: write_error with the server's message."""
        refused = activity_log(2).external_id
        store = _store(ValidatingCollection(logs, {refused}))
        _store(logs).insert_batch([activity_log(3)])
        results = store.insert_batch([activity_log(1), activity_log(2), activity_log(3)])
        assert _statuses(results) == [
            (activity_log(1).external_id, "inserted", ""),
            (refused, "failed", "write_error"),
            (activity_log(3).external_id, "skipped", "duplicate_external_id"),
        ]
        assert results[1].detail == "code 121: Document failed validation"

    def test_a_duplicate_on_another_unique_index_is_a_failure(self, logs: Any) -> None:
        """11000 whose keyPattern is not the idempotency key is a write error, not a skip."""
        error = {
            "code": 11000,
            "errmsg": "E11000 duplicate key error index: uniq_customer_day",
            "keyPattern": {"customer_id": 1, "day": 1},
        }
        refused = activity_log(1).external_id
        results = _store(ValidatingCollection(logs, {refused}, error)).insert_batch([activity_log(1)])
        assert _statuses(results) == [(refused, "failed", "write_error")]

    def test_a_duplicate_naming_the_idempotency_key_is_a_skip(self, logs: Any) -> None:
        """11000 with keyPattern (company_sso_id, external_id), as a server reports it, is a skip."""
        error = {
            "code": 11000,
            "errmsg": "E11000 duplicate key error index: uniq_company_external_id",
            "keyPattern": {"company_sso_id": 1, "external_id": 1},
        }
        refused = activity_log(1).external_id
        results = _store(ValidatingCollection(logs, {refused}, error)).insert_batch([activity_log(1)])
        assert _statuses(results) == [(refused, "skipped", "duplicate_external_id")]

    def test_a_log_without_external_id_fails_without_being_written(self, logs: Any) -> None:
        """The store never writes a log it could not write idempotently."""
        results = _store(logs).insert_batch([activity_log(1, external_id=""), activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [("failed", "write_error"), ("inserted", "")]
        assert logs.count_documents({}) == 1

    def test_an_oversized_log_fails_alone(self, logs: Any) -> None:
        """A document over 16 MiB is failed before the insert; the rest of the batch lands."""
        huge = activity_log(1, metadata={"blob": "x" * (16 * 1024 * 1024)})
        results = _store(logs).insert_batch([huge, activity_log(2)])
        assert [r.status for r in results] == ["failed", "inserted"]
        assert "exceeds" in results[0].detail

    def test_an_empty_batch_touches_nothing(self, logs: Any) -> None:
        """No records, no insert call, no results."""
        assert _store(logs).insert_batch([]) == ()


class TestNetworkRetries:
    def test_an_error_before_the_write_is_retried(self, logs: Any) -> None:
        """AutoReconnect before anything was written: the retry inserts every record once."""
        flaky = FlakyCollection(logs, write_first=False)
        results = _store(flaky).insert_batch([activity_log(1), activity_log(2)])
        assert [r.status for r in results] == ["inserted", "inserted"]
        assert flaky.calls == 2
        assert logs.count_documents({}) == 2

    def test_a_lost_acknowledgement_still_counts_inserted(self, logs: Any) -> None:
        """The first attempt wrote but the reply was lost: its own records come back inserted, not skipped."""
        flaky = FlakyCollection(logs, write_first=True, error=NetworkTimeout)
        results = _store(flaky).insert_batch([activity_log(1), activity_log(2)])
        assert [r.status for r in results] == ["inserted", "inserted"]
        assert logs.count_documents({}) == 2

    def test_a_retry_still_skips_what_was_there_before(self, logs: Any) -> None:
        """Records stored by an earlier batch stay skipped duplicates on a retried attempt."""
        _store(logs).insert_batch([activity_log(1)])
        flaky = FlakyCollection(logs, write_first=True)
        results = _store(flaky).insert_batch([activity_log(1), activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [
            ("skipped", "duplicate_external_id"),
            ("inserted", ""),
        ]

    def test_a_retry_fails_a_key_another_tools_log_holds(self, logs: Any) -> None:
        """On a retried attempt too, a key held by a log without our ``source_tag`` (here none at
        all, as another tool may write) fails; the attempt's own lost write still counts inserted."""
        logs.insert_one({"company_sso_id": "company-a", "external_id": "crm:tenant_a:audit:1"})
        flaky = FlakyCollection(logs, write_first=True)
        results = _store(flaky).insert_batch([activity_log(1), activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [("failed", "write_error"), ("inserted", "")]
        assert logs.count_documents({"source_tag": "crm_migration"}) == 1

    def test_too_many_network_errors_raise_store_unavailable(self, logs: Any) -> None:
        """After the last attempt the caller gets StoreUnavailable, and the backoff was followed."""
        delays: list[float] = []
        policy = RetryPolicy(attempts=3, base_delay_s=0.5, jitter=False, sleep=delays.append)
        flaky = FlakyCollection(logs, failures=5, write_first=False)
        with pytest.raises(StoreUnavailable, match="after 3 attempts"):
            MongoActivityLogStore(flaky, retry=policy).insert_batch([activity_log(1)])
        assert flaky.calls == 3
        assert delays == [0.5, 1.0]

    def test_an_unconfirmed_write_concern_is_retried_and_its_logs_count_once(self, logs: Any) -> None:
        """``w=majority`` timing out: the server applied the batch but did not confirm it as asked, so
        it is not counted yet; the retry meets its own logs and counts them inserted, each stored once."""
        unconfirmed = UnconfirmedCollection(logs, failures=1)
        results = _store(unconfirmed).insert_batch([activity_log(1), activity_log(2)])
        assert [r.status for r in results] == ["inserted", "inserted"]
        assert unconfirmed.calls == 2
        assert logs.count_documents({}) == 2

    def test_a_write_concern_never_confirmed_is_store_unavailable_without_the_documents(
        self, logs: Any
    ) -> None:
        """Every attempt unconfirmed: StoreUnavailable (the run stops before its cursor moves), naming
        the server's code and words, never a document's value."""
        unconfirmed = UnconfirmedCollection(logs, failures=5)
        planted = activity_log(1, metadata={"note": "hunter2-s3cret"})
        with pytest.raises(StoreUnavailable, match="did not confirm the write after 3 attempts") as caught:
            _store(unconfirmed).insert_batch([planted])
        assert "code 64: waiting for replication timed out" in str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert unconfirmed.calls == 3

    def test_a_non_network_error_is_not_retried(self, logs: Any) -> None:
        """An operation failure (say, a bad value) becomes StoreUnavailable at once."""

        class Refusing(FlakyCollection):
            def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
                self.calls += 1
                raise OperationFailure("bad value in cdp", code=2)

        refusing = Refusing(logs, write_first=False)
        with pytest.raises(StoreUnavailable, match="bad value"):
            _store(refusing).insert_batch([activity_log(1)])
        assert refusing.calls == 1

    @pytest.mark.parametrize("code", [13, 18])
    def test_a_refused_login_or_privilege_is_configuration_and_not_retried(
        self, logs: Any, code: int
    ) -> None:
        """Unauthorized (13) and AuthenticationFailed (18) are ConnectionRejected (exit 3) at once."""

        class Unauthorized(FlakyCollection):
            def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
                self.calls += 1
                raise OperationFailure("not authorized on cdp", code=code)

        refusing = Unauthorized(logs, write_first=False)
        with pytest.raises(ConnectionRejected, match="mongo_uri"):
            _store(refusing).insert_batch([activity_log(1)])
        assert refusing.calls == 1

    def test_a_login_refused_while_selecting_a_server_is_configuration(self, logs: Any) -> None:
        """A pool whose handshake is refused times out selecting a server "Authentication failed": exit 3."""

        class RefusedInSelection(FlakyCollection):
            def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
                self.calls += 1
                raise ServerSelectionTimeoutError("127.0.0.1:27017: Authentication failed., full error: {}")

        refusing = RefusedInSelection(logs, write_first=False)
        with pytest.raises(ConnectionRejected, match="authentication failed"):
            _store(refusing).insert_batch([activity_log(1)])
        assert refusing.calls == 1

    def test_a_login_refused_without_a_code_is_configuration(self, logs: Any) -> None:
        """The wire-protocol emulator refuses a wrong password with an OperationFailure that has no
        code, only "Authentication failed": exit 3 at once, as a real server's code 18 is."""

        class RefusedWithoutCode(FlakyCollection):
            def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
                self.calls += 1
                raise OperationFailure("Authentication failed.")

        refusing = RefusedWithoutCode(logs, write_first=False)
        with pytest.raises(ConnectionRejected, match="authentication failed"):
            _store(refusing).insert_batch([activity_log(1)])
        assert refusing.calls == 1


def _indexes_of(plan: Mapping[str, Any]) -> set[str]:
    """The indexes an ``explain()`` names for its query: a server's winning plan's ``indexName``s,
    or the emulator's ``usableVirtualIndexes`` (mongoeco plans no index scan of its own; it names
    the indexes MongoDB's rules let the query use: a partial one only when the query implies its
    filter)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "indexName" and isinstance(value, str):
                    found.add(value)
                elif key == "usableVirtualIndexes":
                    found.update(value)
                elif key != "rejectedPlans":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    planner = plan.get("queryPlanner", plan)
    walk(planner.get("winningPlan", planner) if isinstance(planner, Mapping) else planner)
    return found


@pytest.fixture(params=[b for b in mongo_backends() if b != "mongomock"])
def served_logs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``activity_logs`` with migration 035 on a server that explains its queries (the emulator,
    and a real server when configured; mongomock has no query planner)."""
    for db in fresh_database(request, monkeypatch, request.param):
        apply_migration(db, "up")
        yield db.activity_logs


class TestRollbackChunkIndex:
    def test_a_chunks_query_is_one_the_idempotency_index_serves(self, served_logs: Any) -> None:
        """``migrated_chunk``'s first query implies ``uniq_company_external_id``'s partial filter
        (``external_id: {$type: "string"}``), so the index can serve it from the company's prefix;
        the ``external_id: {$exists: true}`` it sent before does not, and no index serves that."""
        _store(served_logs).insert_batch([activity_log(n) for n in (1, 2, 3)])
        served_logs.insert_many([native_log_document("company-a", n) for n in range(3)])
        sent: list[dict[str, Any]] = []

        class Recording:
            def __init__(self, inner: Any) -> None:
                self._inner = inner

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

            def find(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                sent.append(query)
                return self._inner.find(query, *args, **kwargs)

        assert len(_store(Recording(served_logs)).migrated_chunk("company-a", 2)) == 2
        assert len(sent) == 1  # two string ids filled the chunk: the other query was not sent
        explained = served_logs.find(sent[0], {"_id": 1}).limit(2).explain()
        assert "uniq_company_external_id" in _indexes_of(explained)
        before = {**sent[0], "external_id": {"$exists": True}}
        assert "uniq_company_external_id" not in _indexes_of(served_logs.find(before, {"_id": 1}).explain())


class TestRollback:
    def test_deletes_only_this_companys_migrated_logs(self, logs: Any) -> None:
        """Rollback removes company A's crm_migration logs; B's and every native log stay."""
        _store(logs).insert_batch([activity_log(n, company="company-a") for n in range(1, 4)])
        _store(logs).insert_batch([activity_log(n, company="company-b") for n in range(1, 3)])
        logs.insert_many([native_log_document("company-a", n) for n in range(2)])
        assert _store(logs).delete_migrated("company-a") == 3
        assert _store(logs).count_migrated("company-a") == 0
        assert _store(logs).count_migrated("company-b") == 2
        assert logs.count_documents({"company_sso_id": "company-a", "source_tag": "live_feed"}) == 2

    def test_is_idempotent(self, logs: Any) -> None:
        """A second rollback deletes nothing and says so."""
        _store(logs).insert_batch([activity_log(1)])
        assert _store(logs).delete_migrated("company-a") == 1
        assert _store(logs).delete_migrated("company-a") == 0

    def test_a_tagged_log_without_external_id_is_not_ours(self, logs: Any) -> None:
        """Only logs with an external_id are deleted, even if another writer reused the tag."""
        logs.insert_one({**native_log_document(), "source_tag": "crm_migration"})
        assert _store(logs).delete_migrated("company-a") == 0
        assert logs.count_documents({}) == 1

    def test_count_survives_a_retried_delete(self, logs: Any) -> None:
        """A delete whose reply was lost is retried, and the count still says how many went."""
        _store(logs).insert_batch([activity_log(n) for n in (1, 2)])

        assert _store(FirstAnswerLost(logs, "delete_many")).delete_migrated("company-a") == 2
        assert logs.count_documents({}) == 0

    def test_a_chunk_sent_late_deletes_none_of_the_logs_written_since(self, logs: Any) -> None:
        """A rollback frozen between its half-lease check and its delete sends that delete after
        another rollback ended the job and a new job wrote the same external ids again: the
        chunk names documents by ``_id``, and the new ones have new ``_id``s, so none goes."""
        _store(logs).insert_batch([activity_log(n) for n in (1, 2, 3)])
        chunk = _store(logs).migrated_chunk("company-a", 2)
        assert _store(logs).delete_migrated("company-a") == 3  # the rollback that took over
        _store(logs).insert_batch([activity_log(n) for n in (1, 2, 3)])  # the new job's logs
        assert _store(logs).delete_migrated_chunk("company-a", chunk) == 0
        assert _store(logs).count_migrated("company-a") == 3

    def test_a_chunk_takes_string_ids_first_then_the_others(self, logs: Any) -> None:
        """Logs whose ``external_id`` is a string fill a chunk first (the query the idempotency
        index serves); one they do not fill takes the tagged logs with another ``external_id``
        too, so the account still ends empty; native logs are never in a chunk."""
        _store(logs).insert_batch([activity_log(n) for n in (1, 2, 3)])
        odd = [
            {**native_log_document("company-a", n), "source_tag": "crm_migration", "external_id": n}
            for n in (7, 8)
        ]
        logs.insert_many(odd)
        logs.insert_many([native_log_document("company-a", n) for n in range(2)])
        first = _store(logs).migrated_chunk("company-a", 2)
        strings = {d["_id"] for d in logs.find({"external_id": {"$type": "string"}}, {"_id": 1})}
        assert set(first) <= strings
        second = _store(logs).migrated_chunk("company-a", 4)
        assert len(second) == 4
        assert strings <= set(second)
        deleted = 0
        while chunk := _store(logs).migrated_chunk("company-a", 2):
            deleted += _store(logs).delete_migrated_chunk("company-a", chunk)
        assert (deleted, logs.count_documents({"company_sso_id": "company-a"})) == (5, 2)

    def test_a_chunks_count_survives_a_retried_delete(self, logs: Any) -> None:
        """A chunk's delete whose reply was lost is retried (it then reports 0): the count is the
        chunk's logs no longer there, 2, not 0; the log outside the chunk stays."""
        _store(logs).insert_batch([activity_log(n) for n in (1, 2, 3)])
        chunk = _store(logs).migrated_chunk("company-a", 2)

        assert _store(FirstAnswerLost(logs, "delete_many")).delete_migrated_chunk("company-a", chunk) == 2
        assert logs.count_documents({}) == 1
