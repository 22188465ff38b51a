"""A member kept as its text (``JsonbText``) is compared as the sink writes it today
(``files.verification.canonical_json``): the same for an earlier release's ``json.dumps`` layout and
for orjson's, whatever the pieces it is read in, and different where the values differ."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import verification
from crm_audit_adapters.files.verification import canonical_json

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(value=VALUES, piece=st.integers(1, 12))
def test_either_layout_reads_as_the_sinks_in_pieces_of_any_size(value: Any, piece: int) -> None:
    compact = orjson.dumps(value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verification, "_CANONICAL_BYTES", piece)
        assert canonical_json(json.dumps(value)) == compact
        assert canonical_json(json.dumps(value, indent=1)) == compact
        assert canonical_json(compact.decode()) == compact


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(value=VALUES, other=VALUES)
def test_different_values_read_differently(value: Any, other: Any) -> None:
    if orjson.dumps(value) != orjson.dumps(other):
        assert canonical_json(json.dumps(value)) != canonical_json(json.dumps(other))


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(['"', '"a"', "\\", '\\"', "[", "]", ",", " ", "1", "1.5e+3", "é", "x"]), max_size=40
    ),
    piece=st.integers(1, 12),
)
def test_text_that_is_not_json_reads_alike_in_pieces_of_any_size(parts: list[str], piece: int) -> None:
    text = "".join(parts)
    whole = canonical_json(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verification, "_CANONICAL_BYTES", piece)
        assert canonical_json(text) == whole
