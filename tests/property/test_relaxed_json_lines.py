"""The files sink's one-pass relaxed Extended JSON reads back as bson.json_util's own text does."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import bson
import orjson
import pytest
from bson import Decimal128, json_util
from bson.json_util import RELAXED_JSON_OPTIONS
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_adapters.files.keys import WrittenKeys
from crm_audit_adapters.files.sink import BSON_BYTES_PER_JSON_BYTE
from crm_audit_adapters.mongo.bson_values import BSON, ValueEncoder, encode_decimal
from crm_audit_adapters.mongo.documents import activity_log_document, encode_activity_log
from crm_audit_adapters.mongo.extended_json import _WALK, RELAXED_JSON, relaxed_json_line
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange

offsets = st.builds(
    dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=14), max_value=dt.timedelta(hours=14))
)
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.one_of(st.none(), offsets),
)
edge_decimals = st.sampled_from(
    [
        "-0",
        "0E-6176",
        "1E+6111",
        "1E+6112",
        "1E-6177",
        "-NaN",
        "sNaN",
        "NaN123",
        "-Infinity",
        "1234567890123456789012345678901234",
        "12345678901234567890123456789012345",
        "0.000",
        "1E+3",
    ]
).map(Decimal)
edge_floats = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e16, 5e-324])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**34 - 1, 10**34, 10**60]),
    st.floats(),
    edge_floats,
    st.text(),
    st.decimals(),
    edge_decimals,
    st.dates(),
    datetimes,
)
keys = (
    st.text(alphabet=st.sampled_from(["a", "b", ".", "$", "%", "\x00", '"', "\\", "é", "2", "E"]), max_size=6)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
metadata_keys = st.sampled_from(["crm_audit_id", "crm_person_id", "linked_entity_id", "combined", "username"])
logs = st.builds(
    ActivityLog,
    company_sso_id=st.text(max_size=8),
    customer_id=st.text(max_size=8),
    category=st.sampled_from(["deal", "contact"]),
    action=st.sampled_from(["update", "link"]),
    actor=st.builds(
        Actor, st.sampled_from(["user", "system"]), st.text(max_size=8), st.none() | st.text(max_size=4)
    ),
    changes=st.lists(st.builds(FieldChange, keys, st.text(max_size=6), values, values), max_size=4).map(
        tuple
    ),
    timestamp=st.datetimes(
        min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
    ),
    external_id=st.text(max_size=12),
    source_tag=st.just("crm_migration"),
    metadata=st.dictionaries(keys | metadata_keys, values, max_size=4),
)


def walked_document(log: ActivityLog, encoder: ValueEncoder) -> dict[str, Any]:
    """The document's definition: every value and the metadata through ``encoder``."""
    actor: dict[str, Any] = {"type": log.actor.kind, "name": log.actor.name}
    if log.actor.sso_id:
        actor["id"] = log.actor.sso_id
    doc: dict[str, Any] = {
        "company_sso_id": log.company_sso_id,
        "customer_id": log.customer_id,
        "category": log.category,
        "action": log.action,
        "actor": actor,
        "attributes": [
            {"field": c.field, "label": c.label, "from": encoder.value(c.from_), "to": encoder.value(c.to)}
            for c in log.changes
        ],
        "timestamp": encoder.datetime(log.timestamp),
    }
    if log.external_id:
        doc["external_id"] = log.external_id
    doc["source_tag"] = log.source_tag
    doc["metadata"] = encoder.mapping(log.metadata)
    return doc


def json_util_line(log: ActivityLog) -> str:
    return json_util.dumps(encode_activity_log(log), json_options=RELAXED_JSON_OPTIONS)


READ_BACK = RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=dt.UTC)


class TestRelaxedJsonLine:
    @given(logs)
    def test_the_line_reads_back_to_json_utils_document(self, log: ActivityLog) -> None:
        """Any log's compact line loads (json_util) to the same BSON as json_util.dumps of its document;
        a log orjson refuses (a lone surrogate) is one BSON refuses too."""
        try:
            line = relaxed_json_line(log)
        except TypeError:
            with pytest.raises(ValueError, match="surrogate"):
                bson.encode(encode_activity_log(log))
            return
        ours = json_util.loads(line, json_options=READ_BACK)
        theirs = json_util.loads(json_util_line(log), json_options=READ_BACK)
        assert bson.encode(ours) == bson.encode(theirs)

    @given(logs)
    def test_the_documents_are_those_of_the_value_walk(self, log: ActivityLog) -> None:
        """The shortcut document (plain values put in as they are) is the document of sending every
        value through the encoder: the same JSON bytes, the same BSON, or refused alike."""
        for encoder, dump in ((RELAXED_JSON, orjson.dumps), (BSON, bson.encode)):
            try:
                reference = dump(walked_document(log, encoder))
            except (TypeError, ValueError):
                with pytest.raises((TypeError, ValueError)):
                    dump(activity_log_document(log, encoder))
                continue
            assert dump(activity_log_document(log, encoder)) == reference

    @given(datetimes.map(lambda value: value.replace(tzinfo=value.tzinfo or dt.UTC).astimezone(dt.UTC)))
    def test_a_dates_text_is_isoformats(self, value: dt.datetime) -> None:
        """A datetime from the epoch on prints its seconds as ``isoformat`` does, then milliseconds and Z."""
        millis = value.microsecond // 1000
        value = value.replace(microsecond=millis * 1000)
        if value < dt.datetime(1970, 1, 1, tzinfo=dt.UTC):
            return
        seconds = value.isoformat(timespec="seconds")[:19]
        assert RELAXED_JSON.datetime(value) == {
            "$date": f"{seconds}.{millis:03d}Z" if millis else f"{seconds}Z"
        }

    @given(values | datetimes | st.decimals() | edge_decimals)
    def test_the_shortcuts_give_the_walks_own_leaves(self, value: Any) -> None:
        """The datetime and Decimal shortcuts of ``RELAXED_JSON`` give what the walk without them gives,
        at the top of a value and inside it, for a datetime of any zone and any decimal."""
        expected = orjson.dumps(_WALK.value(value))
        assert orjson.dumps(RELAXED_JSON.value(value)) == expected
        assert orjson.dumps(RELAXED_JSON.value([value, {"k": value}])) == orjson.dumps(
            _WALK.value([value, {"k": value}])
        )
        if isinstance(value, dt.datetime):
            assert RELAXED_JSON.datetime(value) == _WALK.datetime(value)

    @pytest.mark.parametrize(
        "value",
        [
            dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
            dt.datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=dt.UTC),
            dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
            dt.datetime(2019, 1, 1, 0, 36, 47, 520_123, tzinfo=dt.UTC),
            dt.datetime(2019, 1, 1, 0, 36, 47, 1_000, tzinfo=dt.UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        ],
    )
    def test_a_datetimes_shortcut_at_the_edges(self, value: dt.datetime) -> None:
        """Around the epoch and the millisecond: the shortcut's text is the walk's."""
        assert RELAXED_JSON.datetime(value) == _WALK.datetime(value)

    @pytest.mark.parametrize(
        "text",
        ["0E-6001", "1E+6001", "1234567890123456789012345678901234", "-0.000000000000000000000000000001"],
    )
    def test_a_decimals_shortcut_at_the_edges(self, text: str) -> None:
        """Past the shortcut's bounds (±6000 adjusted, 34 characters) the walk decides, alike."""
        value = Decimal(text)
        assert RELAXED_JSON.value(value) == _WALK.value(value)

    @given(logs)
    def test_bson_never_outgrows_the_bound_over_the_json_line(self, log: ActivityLog) -> None:
        """The sink's size shortcut holds: BSON bytes ≤ 7 × JSON line bytes for any encodable log."""
        try:
            line = relaxed_json_line(log).encode()
            size = len(bson.encode(encode_activity_log(log)))
        except (TypeError, ValueError):  # a lone surrogate: neither encoder takes it
            return
        assert size <= BSON_BYTES_PER_JSON_BYTE * len(line)

    def test_the_bound_is_tight_for_an_array_of_digits(self) -> None:
        """The worst case named in the sink: a long array of one-digit ints needs the factor 7 (> 5)."""
        log = ActivityLog(
            company_sso_id="c", customer_id="p", category="deal", action="update",
            actor=Actor("system", "Q", None),
            changes=(FieldChange("ids", "Ids", None, [1] * 200_000),),
            timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), external_id="x",
            source_tag="crm_migration", metadata={},
        )  # fmt: skip
        ratio = len(bson.encode(encode_activity_log(log))) / len(relaxed_json_line(log).encode())
        assert 5 < ratio <= BSON_BYTES_PER_JSON_BYTE


def reference_decimal(value: Decimal) -> Decimal128 | str:
    """The definition: Decimal128 when it round-trips to the same text, else the text."""
    try:
        encoded = Decimal128(value)
    except (ValueError, ArithmeticError):
        return str(value)
    return encoded if str(encoded.to_decimal()) == str(value) else str(value)


class TestDecimalShortcut:
    @given(st.decimals() | edge_decimals | st.integers(min_value=-(10**40), max_value=10**40).map(Decimal))
    def test_the_range_check_agrees_with_the_round_trip(self, value: Decimal) -> None:
        """Decimals inside Decimal128's digits and exponents skip the round trip with the same result."""
        got, expected = encode_decimal(value), reference_decimal(value)
        assert type(got) is type(expected)
        assert str(got) == str(expected)
        if isinstance(got, Decimal128):
            assert got.bid == expected.bid  # type: ignore[union-attr]


external_ids = st.one_of(
    st.integers(min_value=0, max_value=2**64).map(lambda n: f"crm:t:audit:{n}"),
    st.sampled_from(
        ["crm:t:audit:007", "crm:t:audit:-1", "crm:t:audit:", "42", ":42", "crm:t:audit:²", "a:b"]
    ),
    st.text(max_size=6),
)
operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard"]), st.sampled_from(["c1", "c2"]), external_ids), max_size=60
)


class TestWrittenKeys:
    @given(operations, st.lists(st.tuples(st.sampled_from(["c1", "c2"]), external_ids), max_size=10))
    def test_it_behaves_like_a_set_of_key_tuples(self, ops: list[Any], probes: list[tuple[str, str]]) -> None:
        """After any adds and discards, membership is exactly that of a plain set of (company, id)."""
        compact, plain = WrittenKeys(), set[tuple[str, str]]()
        for op, company, external_id in ops:
            key = (company, external_id)
            if op == "add":
                compact.add(key)
                plain.add(key)
            else:
                compact.discard_all([key])
                plain.discard(key)
        for key in [(c, e) for _, c, e in ops] + probes:
            assert (key in compact) == (key in plain)
        assert len(compact) == len(plain)

    def test_ids_out_of_order_are_merged_without_loss(self) -> None:
        """Thousands of ids added backwards (several merges) and then some removed: exact membership."""
        keys = WrittenKeys()
        for number in range(10_000, 0, -1):
            keys.add(("c", f"crm:t:audit:{number}"))
        keys.discard_all([("c", f"crm:t:audit:{n}") for n in range(1, 10_001, 2)])
        assert len(keys) == 5_000
        assert all((("c", f"crm:t:audit:{n}") in keys) == (n % 2 == 0) for n in range(1, 10_001))
        assert ("c", "crm:t:audit:0") not in keys
        assert ("c", "crm:t:audit:10002") not in keys

    def test_a_runs_dense_ids_take_about_a_bit_each(self) -> None:
        """727,000 ascending ids out of 1,000,000 (a 1M-row dry run's logs) fit in 16 bitmaps (128 KiB),
        where a sorted int64 array took 5.8 MB; membership stays exact at the blocks' edges."""
        keys = WrittenKeys()
        kept = [n for n in range(1, 1_000_001) if n % 11 not in (3, 7, 9)]
        for number in kept:
            keys.add_token(keys.token("c", f"crm:t:audit:{number}"))
        (ids,) = keys._ids.values()
        assert sum(len(block) for block in ids._blocks.values()) <= 16 * 8192
        assert len(keys) == len(kept)
        for edge in (65_535, 65_536, 65_537, 131_071, 131_072, 999_999, 1_000_000, 1_000_001):
            assert (("c", f"crm:t:audit:{edge}") in keys) == (
                edge <= 1_000_000 and edge % 11 not in (3, 7, 9)
            )
