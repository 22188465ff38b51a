"""A wrong-typed value fails its row with a bounded detail, never the whole value.

A SQL_ASCII database hands a text column over as ``bytes`` (a ``comment`` may hold up to 64 MiB);
the detail said "comment must be a string or null, got b'...'" with every byte of it. It shows the
first ``NAME_SHOWN`` characters and the value's size now (``rules.verdict.shown_name``'s cutting).
A non-text value had its whole ``repr`` built before the cut (24 MB of text for a 64 MiB list); it is
built from what is shown now (``rules.verdict.shown_value``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import tracemalloc
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.rules.verdict import NAME_SHOWN, shown_value
from crm_audit_transform.transformer import Transformer

CHANGES = "---\nfirst_name:\n- A\n- B\n"
TRANSFORMER = Transformer(load_default_config())


def problem(**columns: Any) -> str:
    base = AuditRow("acme", 9, "Crm::Person", 7, "update", CHANGES, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    (prepared,) = TRANSFORMER.prepare([attrs.evolve(base, **columns)])
    assert prepared.problem is not None
    assert prepared.problem.reason == "invalid_audit_row"
    return prepared.problem.detail


@pytest.mark.parametrize(
    ("column", "value", "size"),
    [
        ("comment", b"x" * 5_000_000, "5000000 bytes"),
        ("tenant", b"t" * 10_000, "10000 bytes"),
        ("version", "9" * 10_000, "10000 characters"),
        ("user_id", [1] * 10_000, "10000 items"),
        ("associated_id", {str(i): [i] for i in range(10_000)}, "10000 items"),
    ],
)
def test_a_large_wrong_typed_value_is_cut_with_its_size(column: str, value: object, size: str) -> None:
    detail = problem(**{column: value})
    assert detail.startswith(f"{column} must be ")
    assert detail.endswith(f"… ({size})")
    assert len(detail) < NAME_SHOWN + 120


def test_a_small_wrong_typed_value_is_shown_whole() -> None:
    assert problem(comment=b"abc") == "comment must be a string or null, got b'abc'"


def test_a_64_mib_list_is_shown_without_building_its_repr() -> None:
    """A list of 8,388,608 items (64 MiB of pointers) is shown from its first items: the old
    ``repr`` built 25 MB of text first (this fails on it), the bounded one a few hundred bytes."""
    huge = [0] * (64 * 1024 * 1024 // 8)
    tracemalloc.start()
    try:
        detail = problem(version=huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert detail == "version must be an integer or null, got [0, 0, 0, 0, 0, 0, ...]… (8388608 items)"
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10**2000, "<int of 6644 bits>…"),
        (decimal.Decimal("1" * 5000), "<Decimal of 5000 digits>…"),
        (bytearray(b"b" * 1000), "bytearray(b'bbbb"),
        ([[[[["deep"]]]]], "[[[[...]]]]… (1 items)"),
        ({"k": "v" * 1000}, "{'k': 'vvvv"),
        (frozenset(range(100)), "frozenset({0, 1, 2, 3, 4, 5, ...})… (100 items)"),
        (memoryview(b"m" * 1000), "<memoryview of 1000 bytes>… (1000 bytes)"),
    ],
    ids=["int", "decimal", "bytearray", "deep", "long-item", "frozenset", "memoryview"],
)
def test_other_large_values_are_shown_by_their_start_and_size(value: object, shown: str) -> None:
    """Ints of thousands of digits (``str`` refuses past 4,300), long decimals, bytes, deep or long
    containers and types of their own: bounded, starting as said."""
    detail = shown_value(value)
    assert detail.startswith(shown)
    assert len(detail) <= NAME_SHOWN + 40


small_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=6,
)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(small_values)
def test_a_value_within_the_bounds_is_shown_as_its_repr(value: object) -> None:
    """Within 6 items a level, 3 levels and ``NAME_SHOWN`` characters, the detail is ``repr`` itself."""
    if depth(value) <= 3 and len(repr(value)) <= NAME_SHOWN:
        assert shown_value(value) == repr(value)
    else:
        assert len(shown_value(value)) <= NAME_SHOWN + 40
