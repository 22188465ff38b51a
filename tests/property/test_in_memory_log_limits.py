"""The in-memory stores' fast size of a log gives what its plain form gives: the document built and
sized (``log_document``, ``document_bytes``), errors included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_transform.bson_nesting import nests_past
from crm_audit_transform.domain import NO_EXTERNAL_ID, ActivityLog, Actor, FieldChange
from crm_audit_transform.testing._bson_size import ID_BYTES, MAX_DOCUMENT_BYTES, document_bytes
from crm_audit_transform.testing._log_limits import (
    NESTS_TOO_DEEP,
    log_bytes,
    log_document,
    log_refusal,
    too_large,
)

offsets = st.builds(
    dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=14), max_value=dt.timedelta(hours=14))
)
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=offsets
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**60]),
    st.floats(),
    st.text(),
    st.decimals(),
    st.sampled_from(["NaN", "sNaN", "-Infinity", "1E+6112", "12345678901234567890123456789012345"]).map(
        Decimal
    ),
    st.dates(),
    st.datetimes(timezones=st.none() | offsets),
    st.binary(max_size=8),
)
keys = st.text(alphabet=st.sampled_from(["a", ".", "$", "%", "\x00", "é", '"']), max_size=5) | st.text()
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=10,
)


def _nested(depth: int) -> object:
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


deep = st.integers(min_value=95, max_value=101).map(_nested)
"""Values about MongoDB's nesting limit: a change's or a metadata value's room is 97 or 98 levels."""
outside = st.sampled_from([{1, 2}, frozenset(), complex(1, 2), object(), dt.time(1, 2), dt.timedelta(1)])
"""Values outside the value model: each refused, the first in the document's order named."""
any_value = st.one_of(values, values, values, deep, outside)
texts = st.text(max_size=12)
logs = st.builds(
    ActivityLog,
    company_sso_id=texts,
    customer_id=texts,
    category=texts,
    action=texts,
    actor=st.builds(
        Actor, kind=st.sampled_from(["user", "deleted_user", "system"]), name=texts, sso_id=st.none() | texts
    ),
    changes=st.lists(
        st.builds(FieldChange, field=texts, label=texts, from_=any_value, to=any_value), max_size=12
    ).map(tuple),
    timestamp=datetimes,
    external_id=st.just("") | texts,
    source_tag=texts,
    metadata=st.dictionaries(
        st.sampled_from(["crm_audit_id", "crm_person_id", "linked_entity_id", "x.y", "$z"]) | keys,
        any_value,
        max_size=5,
    ),
)


def refusal_as_built(log: ActivityLog) -> str:
    """``log_refusal`` as it was: any() of the nesting walks, then the document built and sized."""
    if not log.external_id:
        return NO_EXTERNAL_ID
    if any(nests_past(c.from_, 97) or nests_past(c.to, 97) for c in log.changes):
        return NESTS_TOO_DEEP
    if any(nests_past(value, 98) for value in log.metadata.values()):
        return NESTS_TOO_DEEP
    try:
        size = document_bytes(log_document(log)) + ID_BYTES
    except TypeError as exc:
        return f"cannot encode the document: {exc}"
    return too_large(size) if size > MAX_DOCUMENT_BYTES else ""


def _outcome(fn: Any, log: ActivityLog) -> tuple[str, object]:
    """What ``fn(log)`` gives, or the type and words of what it raises."""
    try:
        return "value", fn(log)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=100)  # each example builds a log of up to 12 changes of recursive values
@given(logs)
def test_a_logs_refusal_and_size_are_those_of_its_built_document(log: ActivityLog) -> None:
    """Every value of the value model, nested about the limit or outside the model: the same
    refusal, and where the log has an external id the same size (or the same error) as built."""
    assert log_refusal(log) == refusal_as_built(log)
    if log.external_id:
        assert _outcome(log_bytes, log) == _outcome(lambda log: document_bytes(log_document(log)), log)


@pytest.mark.parametrize("over", [-1, 0, 1])
def test_a_log_about_the_size_limit_is_refused_past_it_as_built(over: int) -> None:
    """A log one byte under, at, and one byte past MongoDB's 16 MiB: the same verdict as built."""
    log = ActivityLog(
        company_sso_id="c",
        customer_id="p",
        category="deal",
        action="update",
        actor=Actor("system", "Qontak System"),
        changes=(FieldChange("note", "Note", None, ""),),
        timestamp=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        external_id="crm:1",
    )
    room = MAX_DOCUMENT_BYTES - ID_BYTES - log_bytes(log)
    big = attrs.evolve(log, changes=(FieldChange("note", "Note", None, "x" * (room + over)),))
    assert (
        log_refusal(big)
        == refusal_as_built(big)
        == ("" if over <= 0 else too_large(MAX_DOCUMENT_BYTES + over))
    )
