"""A text value its source did not hand over fails its row saying what happened, never the value.

``NotRead`` (a value past its column's limit, left on the server) failed its row as "comment must be
a string or null, got <not read…>", as if the source had sent a wrong type; it says now that the
value was not read, its size and the limit.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, NotRead
from crm_audit_transform.transformer import Transformer

CHANGES = "---\nfirst_name:\n- A\n- B\n"


def row(**columns: object) -> AuditRow:
    base = AuditRow("acme", 9, "Crm::Person", 7, "update", CHANGES, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    return attrs.evolve(base, **columns)


def problem(audit_row: AuditRow) -> tuple[str, str]:
    (prepared,) = Transformer(load_default_config()).prepare([audit_row])
    assert prepared.problem is not None
    return prepared.problem.reason, prepared.problem.detail


@pytest.mark.parametrize("column", ["comment", "username", "request_uuid", "action"])
def test_a_value_not_read_says_so_with_its_size_and_limit(column: str) -> None:
    """It said "comment must be a string or null, got <not read: …>" before."""
    assert problem(row(**{column: NotRead(column, 5000, 4096)})) == (
        "invalid_audit_row",
        f"{column} was not read: 5000 bytes, over its limit of 4096 bytes",
    )
