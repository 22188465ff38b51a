"""Logs encoded ahead (``EncodedLog``): each writer's encoder, the writers taking its bytes as they are,
the rule of which logs a pool may encode, and a page's result on its way back from a worker.

The encoded bytes must be exactly what each writer makes of the log itself: the JSONL line of
``sink_line``, the BSON the Mongo store sends (``_id`` first). The run-level identity (same files,
same documents with ``--workers 2`` as with one process) is in tests/integration/test_run_page_pool.py.
"""

from __future__ import annotations

import datetime as dt
import pickle
import sys
from pathlib import Path
from typing import Any

import attrs
import bson
import mongomock
import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions, TypeRegistry
from prometheus_client import CollectorRegistry
from pymongo import MongoClient

from crm_audit_adapters.files.sink import JSONL_ENCODING, JsonlActivityLogSink, jsonl_log, sink_line
from crm_audit_adapters.mongo import MongoActivityLogStore
from crm_audit_adapters.mongo.activity_logs import BSON_ENCODING, BsonLogEncoder, with_id
from crm_audit_adapters.mongo.bson_values import MONGODB_MAX_NESTING, NESTS_PAST_MONGODB
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_adapters.observability import MigrationMetrics
from crm_audit_adapters.observability.ports import TimedActivityLogWriter, observed_ports, timed_log_writer
from crm_audit_adapters.page_pool.wire import pack, unpack
from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, EncodedLog, Failed, FieldChange, Migrated, Skipped
from crm_audit_transform.packed import pack_outcomes
from crm_audit_transform.ports import PackedLogWriter
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing import InMemoryActivityLogStore
from crm_audit_transform.transformer import PageResult
from crm_audit_transform.usecases.pages import encode_ahead, encoded_log
from support.corpus_account import World
from support.mongo import activity_log

OPTIONS: CodecOptions[Any] = CodecOptions(tz_aware=True)


def association_log(audit_id: int = 5, **metadata: Any) -> ActivityLog:
    """A ``link`` log naming its linked entity's type and id, as the rules make one."""
    base = activity_log(audit_id, action="link")
    return attrs.evolve(
        base, metadata={**base.metadata, "linked_entity_type": "deal", "linked_entity_id": 9, **metadata}
    )


class TestEncodeAhead:
    def test_a_log_the_loop_may_name_is_left_as_a_log_when_it_names_entities(self) -> None:
        """With ``names_entities``, an association log without its name stays an ``ActivityLog``."""
        log = association_log()
        assert encode_ahead(log, jsonl_log, names_entities=True) is log
        assert encode_ahead(log, jsonl_log, names_entities=False) == jsonl_log(log)

    def test_every_other_log_is_encoded(self) -> None:
        """A plain update, and an association log already named, are encoded even when naming."""
        named = association_log(linked_entity_name="Big deal")
        for log in (activity_log(1), named):
            encoded = encode_ahead(log, jsonl_log, names_entities=True)
            assert isinstance(encoded, EncodedLog)
        assert jsonl_log(named).named is True
        assert jsonl_log(activity_log(1)).named is False

    def test_an_encoded_log_carries_what_the_loop_reads(self) -> None:
        """Company, external id, action and source tag are the log's; data is the sink's line."""
        log = activity_log(3)
        encoded = jsonl_log(log)
        assert (encoded.company_sso_id, encoded.external_id, encoded.action, encoded.source_tag) == (
            log.company_sso_id,
            log.external_id,
            log.action,
            log.source_tag,
        )
        assert (encoded.encoding, encoded.data, encoded.problem) == (JSONL_ENCODING, sink_line(log)[1], "")


class TestJsonlSinkTakesItsEncodedLines:
    def test_an_encoded_log_is_written_as_its_bytes(self, tmp_path: Path) -> None:
        """The sink writes the encoded line as it is, and a log exactly as it encodes it itself."""
        one, two = activity_log(1), activity_log(2)
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink:
            results = sink.insert_batch([jsonl_log(one), two])
        assert [r.status for r in results] == ["inserted", "inserted"]
        assert (tmp_path / "a.jsonl").read_bytes() == sink_line(one)[1] + sink_line(two)[1]

    def test_an_encoded_duplicate_is_skipped_and_counted_like_a_log(self, tmp_path: Path) -> None:
        """The key of an encoded log is its company and external id: a repeat is a duplicate."""
        log = activity_log(1)
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink:
            sink.insert_batch([log])
            (result,) = sink.insert_batch([jsonl_log(log)])
            assert sink.count_migrated(log.company_sso_id) == 1
        assert (result.status, result.reason) == ("skipped", reasons.DUPLICATE_EXTERNAL_ID)

    def test_a_problem_found_ahead_is_a_failed_write_with_its_detail(self, tmp_path: Path) -> None:
        """An encoder's ``problem`` is reported as the sink reports a log it cannot encode."""
        bad = encoded_log(activity_log(1), JSONL_ENCODING, b"", "cannot encode the document: boom")
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink:
            (result,) = sink.insert_batch([bad])
        assert (result.status, result.reason, result.detail) == (
            "failed",
            reasons.WRITE_ERROR,
            "cannot encode the document: boom",
        )
        assert (tmp_path / "a.jsonl").read_bytes() == b""

    def test_another_writers_encoding_is_refused(self, tmp_path: Path) -> None:
        """BSON bytes never reach a JSONL file: a wiring mistake is a ``TypeError``."""
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink, pytest.raises(TypeError, match="bson"):
            sink.insert_batch([BsonLogEncoder(OPTIONS)(activity_log(1))])


class TestBsonEncodedAhead:
    def test_the_bytes_are_the_ones_the_store_would_send(self) -> None:
        """``with_id`` over the encoder's bytes equals ``bson.encode`` of the document with ``_id`` first."""
        log = activity_log(1, metadata={"crm_audit_id": 1, "when": dt.date(2024, 1, 2), "big": 2**40})
        encoded = BsonLogEncoder(OPTIONS)(log)
        doc_id = ObjectId()
        expected = bson.encode({"_id": doc_id, **encode_activity_log(log)}, codec_options=OPTIONS)
        assert encoded.encoding == BSON_ENCODING
        assert with_id(doc_id, encoded.data) == expected

    def test_a_log_without_external_id_or_unencodable_is_a_problem_not_bytes(self) -> None:
        """The encoder says why the store would refuse a log, in the store's words."""
        encoder = BsonLogEncoder(OPTIONS)
        no_key = encoder(activity_log(1, external_id=""))
        assert (no_key.data, no_key.problem) == (
            b"",
            "an activity log without external_id cannot be written idempotently",
        )
        lone = encoder(activity_log(2, customer_id="\ud800"))
        assert lone.data == b""
        assert lone.problem.startswith("cannot encode the document:")

    def test_the_encoder_pickles(self) -> None:
        """It is sent to the worker processes: it must survive pickling, options included."""
        encoder = BsonLogEncoder(OPTIONS)
        assert pickle.loads(pickle.dumps(encoder)) == encoder

    def test_a_pymongo_collection_has_an_encoder_unless_its_codec_options_carry_a_type_registry(self) -> None:
        """Bytes made ahead are the store's own only without custom type codecs: with a
        ``type_registry`` the store encodes each document itself (no encoder)."""
        client: MongoClient[dict[str, Any]] = MongoClient("mongodb://127.0.0.1:9", connect=False)
        try:
            plain = client["cdp"].get_collection("activity_logs", codec_options=OPTIONS)
            assert MongoActivityLogStore(plain).log_encoder() == BsonLogEncoder(OPTIONS)
            registry = TypeRegistry(fallback_encoder=repr)
            custom = client["cdp"].get_collection(
                "activity_logs", codec_options=OPTIONS.with_options(type_registry=registry)
            )
            assert MongoActivityLogStore(custom).log_encoder() is None
        finally:
            client.close()

    def test_a_collection_handed_dicts_has_no_encoder_and_refuses_bytes(self) -> None:
        """mongomock is handed documents, not bytes: no encoder, and an encoded log is a ``TypeError``."""
        store = MongoActivityLogStore(mongomock.MongoClient(tz_aware=True)["cdp"]["activity_logs"])
        assert store.log_encoder() is None
        with pytest.raises(TypeError, match="bson"):
            store.insert_batch([BsonLogEncoder(OPTIONS)(activity_log(1))])


class TestWritersWithoutAnEncoder:
    def test_the_in_memory_store_refuses_an_encoded_log(self) -> None:
        """A writer without ``log_encoder`` is never handed one: getting one is a ``TypeError``."""
        with pytest.raises(TypeError, match="no log encoder"):
            InMemoryActivityLogStore().insert_batch([jsonl_log(activity_log(1))])


class TestThePageOnTheWire:
    def test_every_kind_of_outcome_comes_back_equal(self) -> None:
        """Encoded and plain migrated logs, skipped and failed rows: unpack(pickled pack) is the page."""
        outcomes = (
            Migrated(1, jsonl_log(activity_log(1))),
            Migrated(2, association_log(2)),
            Skipped(3, reasons.CONTACT_NOT_FOUND),
            Failed(4, "malformed_yaml", "line 1"),
            Migrated(5, encoded_log(activity_log(5), JSONL_ENCODING, b"", "too large")),
        )
        page = PageResult(
            outcomes, Tally.of(outcomes, 1, 0), (False, True, False, False, False), (False,) * 5
        )
        back = unpack(pickle.loads(pickle.dumps(pack(page), 5)))
        assert back == page
        assert [type(o) for o in back.outcomes] == [Migrated, Migrated, Skipped, Failed, Migrated]
        assert type(back.outcomes[1].log) is ActivityLog  # type: ignore[union-attr]

    def test_a_tally_not_counted_yet_is_not_counted_on_the_way(self) -> None:
        """A worker's page whose tally nobody read crosses without one (a Tally.of a page saved on the
        two-core run's critical path); the page rebuilt counts it when read, to the same counts."""
        outcomes = (Migrated(1, jsonl_log(activity_log(1))), Skipped(2, reasons.CONTACT_NOT_FOUND))
        page = PageResult(outcomes, None, (True, False), (False, False))
        wire = pack(page)
        assert wire[1] is None
        assert page.counted_tally is None  # pack did not count it either
        back = unpack(pickle.loads(pickle.dumps(wire, 5)))
        assert back.tally == Tally.of(outcomes, 1, 0) == page.tally

    def test_an_encoded_row_crosses_as_its_bytes_and_little_more(self) -> None:
        """What crosses per migrated row is its encoded bytes and a few shared strings (< 100 B more)."""
        logs = [activity_log(i) for i in range(200)]
        encoded = PageResult(tuple(Migrated(i, jsonl_log(log)) for i, log in enumerate(logs)), Tally())
        lines = sum(len(sink_line(log)[1]) for log in logs)
        assert lines < len(pickle.dumps(pack(encoded), 5)) < lines + 100 * len(logs)


class TestEncodingThroughTheWire:
    def test_pack_encodes_each_log_as_encode_ahead_says(self) -> None:
        """With ``encode``, a plain log crosses as its encoding and a log left as is crosses whole."""
        outcomes = (Migrated(1, activity_log(1)), Migrated(2, association_log(2)), Skipped(3, "x"))
        page = PageResult(outcomes, Tally.of(outcomes))
        back = unpack(pack(page, lambda log: encode_ahead(log, jsonl_log, names_entities=True)))
        assert back.outcomes == (Migrated(1, jsonl_log(activity_log(1))), outcomes[1], outcomes[2])


class TestTimedWriterKeepsTheEncoder:
    def test_the_metrics_wrapper_hands_on_its_writers_encoder(self, tmp_path: Path) -> None:
        """Timing the writes must not turn encoding ahead off: the wrapper forwards ``log_encoder``."""
        metrics = MigrationMetrics(CollectorRegistry())
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink:
            assert TimedActivityLogWriter(sink, metrics).log_encoder() is jsonl_log
        assert TimedActivityLogWriter(InMemoryActivityLogStore(), metrics).log_encoder() is None

    def test_the_metrics_wrapper_keeps_a_packed_writers_packed_path_and_times_it(
        self, tmp_path: Path
    ) -> None:
        """``run --metrics-port`` must not turn the packed path off: behind ``observed_ports`` the
        JSONL sink is still a ``PackedLogWriter``, its packed step timed as a batch; a writer
        without ``insert_packed`` gets a wrapper that claims none."""
        registry = CollectorRegistry()
        metrics = MigrationMetrics(registry)
        assert not isinstance(timed_log_writer(InMemoryActivityLogStore(), metrics), PackedLogWriter)
        with JsonlActivityLogSink(tmp_path / "a.jsonl") as sink:
            ports = observed_ports(attrs.evolve(World().run_ports(), logs=sink), metrics)
            assert isinstance(ports.logs, PackedLogWriter)
            packed = pack_outcomes([Migrated(i, jsonl_log(activity_log(i))) for i in range(1, 4)])
            assert ports.logs.insert_packed(packed) is None
            assert sink.count_migrated("company-a") == 3
        assert registry.get_sample_value("crm_audit_batch_write_seconds_count") == 1


def _nested_past_the_stack(where: str = "attribute") -> ActivityLog:
    """A log whose one value, in an attribute or in ``metadata``, nests past the interpreter's
    recursion limit (the loader may allow it)."""
    value: Any = "x"
    for _ in range(sys.getrecursionlimit() + 10):
        value = [value]
    if where == "metadata":
        base = activity_log(1)
        return attrs.evolve(base, metadata={**base.metadata, "extra": value})
    return activity_log(1, changes=(FieldChange("notes", "Notes", None, value),))


PAST_MONGODB = f"cannot encode the document: {NESTS_PAST_MONGODB}"


def _frames() -> int:
    """How many frames the stack holds here."""
    frame, count = sys._getframe(), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1  # type: ignore[assignment]
    return count


@pytest.mark.parametrize("where", ["attribute", "metadata"])
class TestNestedPastTheStack:
    """No writer catches ``RecursionError``: MongoDB's nesting check stops such a value first."""

    def test_the_jsonl_line_is_a_problem_not_a_recursion_error(self, where: str) -> None:
        """``sink_line`` (and so the workers' ``jsonl_log``) names the nesting instead of raising."""
        problem, line = sink_line(_nested_past_the_stack(where))
        assert (problem, line) == (PAST_MONGODB, b"")
        assert jsonl_log(_nested_past_the_stack(where)).problem == PAST_MONGODB

    def test_the_bson_encoder_ahead_gives_the_same_problem(self, where: str) -> None:
        """``BsonLogEncoder`` (run in ``--workers`` processes) refuses the log with the same words."""
        assert BsonLogEncoder(OPTIONS)(_nested_past_the_stack(where)).problem == PAST_MONGODB

    def test_the_mongo_store_fails_that_log_alone(self, where: str) -> None:
        """The store's own encoding fails the one log ``write_error``; its batch-mate is inserted."""
        store = MongoActivityLogStore(mongomock.MongoClient().db.activity_logs)
        results = store.insert_batch([_nested_past_the_stack(where), activity_log(2)])
        assert [(r.status, r.reason, r.detail) for r in results] == [
            ("failed", reasons.WRITE_ERROR, PAST_MONGODB),
            ("inserted", "", ""),
        ]

    def test_the_deepest_log_the_check_lets_through_encodes_within_400_frames(self, where: str) -> None:
        """97 levels in an attribute, 98 in metadata: encoded with at most 400 frames to spare, far
        below the default recursion limit (1,000), so the check leaves no depth for RecursionError."""
        base = activity_log(1)
        deepest = (
            attrs.evolve(base, metadata={**base.metadata, "extra": _nested(98)})
            if where == "metadata"
            else activity_log(1, changes=(FieldChange("notes", "Notes", None, _nested(97)),))
        )
        assert _mongodb_depth(encode_activity_log(deepest)) == MONGODB_MAX_NESTING
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(_frames() + 400)
        try:
            problems = [
                sink_line(deepest)[0],
                jsonl_log(deepest).problem,
                BsonLogEncoder(OPTIONS)(deepest).problem,
            ]
        finally:
            sys.setrecursionlimit(limit)
        assert problems == ["", "", ""]


def _nested(levels: int, inner: Any = "x") -> Any:
    """``inner`` inside ``levels`` one-item lists."""
    value = inner
    for _ in range(levels):
        value = [value]
    return value


def _mongodb_depth(doc: Any) -> int:
    """A document's nesting as MongoDB counts it (the document is 1; an empty list or dict adds none)."""
    if isinstance(doc, dict | list) and doc:
        items = doc.values() if isinstance(doc, dict) else doc
        return 1 + max(_mongodb_depth(item) for item in items)
    return 0


def _problems(log: ActivityLog) -> list[str]:
    """What the three writers say of ``log``: the JSONL sink, the BSON encoder ahead, the Mongo store."""
    store = MongoActivityLogStore(mongomock.MongoClient().db.activity_logs)
    (stored,) = store.insert_batch([log])
    return [sink_line(log)[0], BsonLogEncoder(OPTIONS)(log).problem, stored.detail]


class TestNestedPastMongoDB:
    """MongoDB refuses a document nested past 100 levels; mongomock does not, so the writers check."""

    def test_a_value_that_brings_its_document_to_the_limit_is_written(self) -> None:
        """97 levels in an attribute make a document of exactly 100 levels: every writer takes it."""
        log = activity_log(1, changes=(FieldChange("notes", "Notes", None, _nested(97)),))
        assert _mongodb_depth(encode_activity_log(log)) == MONGODB_MAX_NESTING
        assert _problems(log) == ["", "", ""]

    def test_one_level_more_fails_the_row_on_every_writer(self) -> None:
        """98 levels (a 99-deep audited_changes, which the loader's default 100 allows) is refused alike."""
        log = activity_log(1, changes=(FieldChange("notes", "Notes", _nested(98), None),))
        assert _problems(log) == [PAST_MONGODB] * 3
        assert jsonl_log(log).problem == PAST_MONGODB

    def test_empty_lists_and_dicts_do_not_count(self) -> None:
        """As on the server, an empty innermost list or dict adds no level."""
        for empty in ([], {}):
            log = activity_log(1, changes=(FieldChange("notes", "Notes", None, _nested(97, empty)),))
            assert _problems(log) == ["", "", ""]

    def test_dicts_count_as_lists_do(self) -> None:
        """A hash nested one level past the limit, under a list, is refused as well."""
        value: Any = "x"
        for level in range(98):
            value = {"k": value} if level % 2 else [value]
        log = activity_log(1, changes=(FieldChange("notes", "Notes", None, value),))
        assert _problems(log) == [PAST_MONGODB] * 3

    def test_a_metadata_value_has_one_level_more_room(self) -> None:
        """``metadata`` is level 2: a value there may nest 98 levels, not 99."""
        base = activity_log(1)
        fits = attrs.evolve(base, metadata={**base.metadata, "extra": _nested(98)})
        past = attrs.evolve(base, metadata={**base.metadata, "extra": _nested(99)})
        assert _mongodb_depth(encode_activity_log(fits)) == MONGODB_MAX_NESTING
        assert _problems(fits) == ["", "", ""]
        assert _problems(past) == [PAST_MONGODB] * 3
