"""The in-memory stores size a document exactly as ``bson.encode`` of the MongoDB adapter's form."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import bson
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.mongo.bson_values import encode_mapping
from crm_audit_adapters.mongo.document_limits import ID_BYTES, MAX_DOCUMENT_BYTES
from crm_audit_transform.testing import _bson_size

edge_decimals = st.sampled_from(
    [
        *("-0", "0E-6176", "1E+6111", "1E-6177", "1E+6112", "-NaN", "NaN", "sNaN", "NaN123", "-Infinity"),
        *("1234567890123456789012345678901234", "12345678901234567890123456789012345", "0.000", "1E+3"),
    ]
).map(Decimal)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**60]),
    st.floats(),
    st.text(),
    st.decimals(),
    edge_decimals,
    st.dates(),
    st.datetimes(
        min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
    ),
    st.binary(max_size=8),
)
keys = st.text(alphabet=st.sampled_from(["a", ".", "$", "%", "\x00", "é", "2"]), max_size=5) | st.text()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=50)  # each example walks a recursive value twice; 50 cover the kinds
@given(st.dictionaries(keys, values, max_size=6))
def test_a_documents_size_is_its_bson_size(document: dict[str, Any]) -> None:
    """Every value of the value model, any key, at any depth: the size ``bson.encode`` gives."""
    assert _bson_size.document_bytes(document) == len(bson.encode(encode_mapping(document)))


def test_the_limits_are_the_adapters() -> None:
    """The core's copy of MongoDB's limit and of the ``_id`` element's size are the adapter's."""
    assert (_bson_size.MAX_DOCUMENT_BYTES, _bson_size.ID_BYTES) == (MAX_DOCUMENT_BYTES, ID_BYTES)
