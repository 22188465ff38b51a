"""The one document converter: activity-log shape, value rules, job documents, BSON round trips."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import attrs
import bson
import pytest
from bson import Decimal128
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_adapters.mongo import decode_activity_log, decode_job, encode_activity_log, encode_job
from crm_audit_adapters.mongo.bson_values import decode_value, encode_value, escape_key, unescape_key
from crm_audit_transform.domain import Actor, FieldChange
from crm_audit_transform.enrichment_tally import EnrichmentTally
from crm_audit_transform.tally import Tally
from support.mongo import T0, activity_log, migration_job

INT64_MAX = 2**63 - 1


def _bson_round_trip(doc: dict[str, Any]) -> dict[str, Any]:
    return bson.decode(bson.encode(doc))


def _decimal128_exact(value: Decimal) -> bool:
    try:
        return str(Decimal128(value).to_decimal()) == str(value)
    except (ValueError, ArithmeticError):
        return False


def expected_after_round_trip(value: Any) -> Any:
    """What the documented rules promise back for a value of the value model."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float | bytes):
        return value
    if isinstance(value, int):
        if -(2**63) <= value <= INT64_MAX:
            return value
        return Decimal(value) if _decimal128_exact(Decimal(value)) else str(value)
    if isinstance(value, Decimal):
        return value if _decimal128_exact(value) else str(value)
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC)
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): expected_after_round_trip(v) for k, v in value.items()}
    return [expected_after_round_trip(v) for v in value]


def canonical(value: Any) -> Any:
    """A comparable form: NaN equals NaN, a Decimal compares by its exact text, types are kept apart."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value)
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat())
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return (type(value).__name__, value)


offsets = st.builds(
    dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=14), max_value=dt.timedelta(hours=14))
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(),
    st.binary(max_size=8),
    st.decimals(),
    st.dates(),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets),
)
keys = (
    st.text(alphabet=st.sampled_from(["a", "b", ".", "$", "%", "\x00", "2", "E", "_"]), max_size=6)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


class TestEncodeActivityLog:
    def test_document_has_the_cdp_shape(self) -> None:
        """A migrated log becomes exactly the documented document, in the documented key order."""
        doc = encode_activity_log(activity_log(3))
        assert doc == {
            "company_sso_id": "company-a",
            "customer_id": "customer-3",
            "category": "deal",
            "action": "update",
            "actor": {"type": "user", "name": "Ana Souza", "id": "sso-ana"},
            "attributes": [
                {"field": "amount", "label": "Amount", "from": Decimal128("10.50"), "to": Decimal128("12.00")}
            ],
            "timestamp": T0 + dt.timedelta(minutes=3),
            "external_id": "crm:tenant_a:audit:3",
            "source_tag": "crm_migration",
            "metadata": {"crm_audit_id": 3, "crm_tenant": "tenant_a", "auditable_type": "Deal"},
        }
        assert list(doc) == [
            "company_sso_id",
            "customer_id",
            "category",
            "action",
            "actor",
            "attributes",
            "timestamp",
            "external_id",
            "source_tag",
            "metadata",
        ]

    def test_empty_external_id_is_left_out_never_null(self) -> None:
        """A log without external_id has no such key, so the partial unique index never sees a null."""
        doc = encode_activity_log(activity_log(external_id=""))
        assert "external_id" not in doc

    def test_actor_without_sso_id_has_no_id_key(self) -> None:
        """A deleted CRM user or the system is written with type and name only."""
        doc = encode_activity_log(activity_log(actor=Actor("system", "Qontak System")))
        assert doc["actor"] == {"type": "system", "name": "Qontak System"}

    def test_timestamp_is_utc_truncated_to_milliseconds(self) -> None:
        """A +07:00 time with microseconds becomes the same instant in UTC, floored to the millisecond."""
        local = dt.datetime(2024, 1, 2, 10, 0, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=7)))
        doc = encode_activity_log(activity_log(timestamp=local))
        assert doc["timestamp"] == dt.datetime(2024, 1, 2, 3, 0, 0, 999000, tzinfo=dt.UTC)
        assert doc["timestamp"].tzinfo is dt.UTC


class TestValueRules:
    def test_decimal_becomes_decimal128_digit_for_digit(self) -> None:
        """Trailing zeros, -0, NaN and infinities survive as Decimal128."""
        for text in ("1.50", "-0", "NaN", "-Infinity", "1E+6111", "0.000001"):
            encoded = encode_value(Decimal(text))
            assert isinstance(encoded, Decimal128)
            assert str(encoded.to_decimal()) == text

    def test_decimal_beyond_decimal128_is_kept_as_its_text(self) -> None:
        """More than 34 digits or an exponent out of range is stored as a string, never rounded."""
        for text in ("1.2345678901234567890123456789012345", "1E+7000", "1E-7000", "NaN123"):
            assert encode_value(Decimal(text)) == str(Decimal(text))

    def test_integers_beyond_int64_become_decimal128_or_text(self) -> None:
        """int64 stays an int; up to 34 digits becomes Decimal128; longer ones become their digits."""
        assert encode_value(INT64_MAX) == INT64_MAX
        assert encode_value(INT64_MAX + 1) == Decimal128(str(INT64_MAX + 1))
        assert encode_value(10**40) == "1" + "0" * 40

    def test_floats_keep_nan_and_infinity_as_doubles(self) -> None:
        """NaN and ±inf are valid BSON doubles and stay floats."""
        back = _bson_round_trip({"v": [encode_value(math.nan), encode_value(-math.inf)]})["v"]
        assert math.isnan(back[0])
        assert back[1] == -math.inf

    def test_bytes_become_bson_binary(self) -> None:
        """A non-UTF-8 ``!binary`` value is stored as BSON Binary (subtype 0) and read back as bytes."""
        encoded = encode_value(b"\xff\xd8")
        raw = bson.encode({"v": encoded})
        assert raw[4] == 0x05  # BSON element type 5: binary
        assert decode_value(bson.decode(raw)["v"]) == b"\xff\xd8"

    def test_dates_become_iso_strings(self) -> None:
        """A date has no BSON type of its own, so it is stored as YYYY-MM-DD."""
        assert encode_value(dt.date(2023, 12, 31)) == "2023-12-31"

    def test_naive_datetime_is_taken_as_utc(self) -> None:
        """A naive datetime (outside the value model, but possible) is stored as that UTC instant."""
        assert encode_value(dt.datetime(2024, 1, 1, 12)) == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)

    def test_awkward_keys_are_escaped_and_restored(self) -> None:
        """Keys with '.', '%', NUL or a leading '$' are escaped for storage and come back unchanged."""
        original = {"a.b": 1, "$set": 2, "50%": 3, "nul\x00": 4, "plain": 5, "%2E": 6, 7: 7}
        encoded = encode_value(original)
        assert set(encoded) == {"a%2Eb", "%24set", "50%25", "nul%00", "plain", "%252E", "7"}
        assert decode_value(_bson_round_trip({"v": encoded})["v"]) == {str(k): v for k, v in original.items()}

    def test_escaping_is_reversible_for_any_key(self) -> None:
        """unescape_key(escape_key(k)) == k, and an escaped key never has '.' or a leading '$'."""
        for key in ("", "$", "%", "%%2E.", "a.b.c", "$$.%24", "\x00$"):
            escaped = escape_key(key)
            assert unescape_key(escaped) == key
            assert "." not in escaped
            assert not escaped.startswith("$")

    def test_value_outside_the_model_is_a_type_error(self) -> None:
        """An object that is not a value of the value model is refused, not stored as garbage."""
        with pytest.raises(TypeError, match="value model"):
            encode_value(object())  # type: ignore[arg-type]

    @given(values)
    def test_values_survive_bson_within_the_documented_precision(self, value: Any) -> None:
        """encode → BSON bytes → decode gives back every value as the rules promise."""
        back = decode_value(_bson_round_trip({"v": encode_value(value)})["v"])
        assert canonical(back) == canonical(expected_after_round_trip(value))

    @given(st.dictionaries(keys, values, max_size=4), values, values)
    def test_activity_logs_survive_bson_within_the_documented_precision(
        self, metadata: dict[str, Any], before: Any, after: Any
    ) -> None:
        """A whole log's metadata and changes come back through BSON as the rules promise."""
        log = activity_log(metadata=metadata, changes=(FieldChange("f", "F", before, after),))
        back = decode_activity_log(_bson_round_trip(encode_activity_log(log)))
        assert canonical(back.metadata) == canonical(expected_after_round_trip(metadata))
        assert canonical(back.changes[0].from_) == canonical(expected_after_round_trip(before))
        assert canonical(back.changes[0].to) == canonical(expected_after_round_trip(after))
        assert (back.timestamp, back.external_id, back.actor) == (log.timestamp, log.external_id, log.actor)


class TestJobDocuments:
    def test_job_document_carries_derived_figures_for_readers(self) -> None:
        """progress_pct, failure_rate and records_* are written next to the nested tally."""
        tally = Tally(processed=50, migrated=40, skipped={"contact_not_found": 6}, failed={"write_error": 4})
        doc = encode_job(migration_job(last_audit_id=100, tally=tally))
        assert doc["_id"] == "job-1"
        assert doc["progress_pct"] == 50.0
        assert doc["failure_rate"] == 0.08
        assert (doc["records_processed"], doc["records_migrated"]) == (50, 40)
        assert (doc["records_skipped"], doc["records_failed"]) == (6, 4)
        assert doc["tally"]["skipped"] == {"contact_not_found": 6}

    def test_job_round_trips_through_bson(self) -> None:
        """A job with a lease, a halt reason and a tally decodes back equal (times are ms-aligned)."""
        job = migration_job(
            status="halted",
            last_audit_id=77,
            tally=Tally(
                processed=10, migrated=5, skipped={"a.b": 2}, failed={"write_error": 3}, fallthrough=1
            ),
            halted_reason="failure_rate 0.30 > 0.10",
            lease_owner="runner-1",
            lease_expires_at=T0 + dt.timedelta(minutes=2),
            date_range_start=T0 - dt.timedelta(days=30),
        )
        assert decode_job(_bson_round_trip(encode_job(job))) == job

    def test_a_jobs_enrichment_counts_keep_their_stored_shape(self) -> None:
        """A job's enrichment is stored as its five counts; a plan or apply count is added only when set."""
        enrichment = EnrichmentTally(logs=3, complete=3, keys_set=2, skipped={"enrich_ambiguous": 1})
        doc = encode_job(migration_job(enrichment=enrichment))
        assert doc["enrichment"] == {
            "logs": 3,
            "patched": 0,
            "complete": 3,
            "keys_set": 2,
            "skipped": {"enrich_ambiguous": 1},
        }
        planned = attrs.evolve(enrichment, planned_keys=4)
        assert encode_job(migration_job(enrichment=planned))["enrichment"]["planned_keys"] == 4
        assert (
            decode_job(_bson_round_trip(encode_job(migration_job(enrichment=planned)))).enrichment == planned
        )

    def test_naive_stored_datetimes_come_back_aware_utc(self) -> None:
        """pymongo without tz_aware hands out naive datetimes; the job still has aware UTC ones."""
        doc = _bson_round_trip(encode_job(migration_job()))
        assert doc["created_at"].tzinfo is None
        assert decode_job(doc).created_at == T0


class TestStoredDocuments:
    def test_a_stored_log_reads_back_as_written(self, mongo_db: Any) -> None:
        """Through the database (every backend), awkward values come back as the rules promise."""
        metadata = {
            "crm_audit_id": 9,
            "due": dt.date(2024, 2, 29),
            "price": Decimal("19.990"),
            "huge": 10**20,
            "nested.key": {"$op": [math.inf, None, True]},
            "at": dt.datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        }
        log = activity_log(9, metadata=metadata)
        mongo_db.activity_logs.insert_one(encode_activity_log(log))
        stored = mongo_db.activity_logs.find_one({"external_id": log.external_id}, {"_id": 0})
        back = decode_activity_log(stored)
        assert canonical(back.metadata) == canonical(expected_after_round_trip(metadata))
        assert back.timestamp == log.timestamp
        assert back.changes == log.changes
