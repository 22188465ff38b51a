"""The nodes of jsonb text are counted from its brackets and commas before ``json.loads`` builds them
(``_jsonb._check_depth``, in the pass that checks its depth): the same count as ``from_json``'s, one
for the whole and one for each item."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_transform.loading import _jsonb

SETTINGS = settings(max_examples=300, derandomize=True, database=None, deadline=None)

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=30,
)


def nodes(value: Any) -> int:
    """``from_json``'s count: one for the whole, and one for each item of every array and object."""
    count, todo = 1, [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            count += len(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            todo.extend(item)
    return count


@SETTINGS
@given(value=_JSON, indent=st.sampled_from([None, 1]), separators=st.sampled_from([None, (",", ":")]))
def test_the_count_before_parsing_is_the_count_after(value: Any, indent: int | None, separators: Any) -> None:
    text = json.dumps(value, indent=indent, separators=separators)
    assert _jsonb._check_depth(text, 1000) == nodes(json.loads(text))
