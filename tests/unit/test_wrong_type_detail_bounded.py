"""A wrong-typed value fails its row with a bounded detail, never the whole value.

A SQL_ASCII database hands a text column over as ``bytes`` (a ``comment`` may hold up to 64 MiB);
the detail said "comment must be a string or null, got b'...'" with every byte of it. It shows the
first ``NAME_SHOWN`` characters and the value's size now (``rules.verdict.shown_name``'s cutting).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow
from crm_audit_transform.rules.verdict import NAME_SHOWN
from crm_audit_transform.transformer import Transformer

CHANGES = "---\nfirst_name:\n- A\n- B\n"


def problem(**columns: Any) -> str:
    base = AuditRow("acme", 9, "Crm::Person", 7, "update", CHANGES, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    (prepared,) = Transformer(load_default_config()).prepare([attrs.evolve(base, **columns)])
    assert prepared.problem is not None
    assert prepared.problem.reason == "invalid_audit_row"
    return prepared.problem.detail


@pytest.mark.parametrize(
    ("column", "value", "size"),
    [
        ("comment", b"x" * 5_000_000, "5000000 bytes"),
        ("tenant", b"t" * 10_000, "10000 bytes"),
        ("version", "9" * 10_000, "10000 characters"),
        ("user_id", [1] * 10_000, "30000 characters"),
    ],
)
def test_a_large_wrong_typed_value_is_cut_with_its_size(column: str, value: object, size: str) -> None:
    detail = problem(**{column: value})
    assert detail.startswith(f"{column} must be ")
    assert detail.endswith(f"… ({size})")
    assert len(detail) < NAME_SHOWN + 120


def test_a_small_wrong_typed_value_is_shown_whole() -> None:
    assert problem(comment=b"abc") == "comment must be a string or null, got b'abc'"
