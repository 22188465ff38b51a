"""A text value its source did not hand over fails its row saying what happened, never the value.

``NotRead`` (a value past its column's limit, left on the server) failed its row as "comment must be
a string or null, got <not read…>", as if the source had sent a wrong type; it says now that the
value was not read, its size and the limit. ``UntranslatableText`` (a value holding a byte that is
no character in its database's encoding, 0x81 in WIN1252) is ``bad_encoding`` in ``audited_changes``
and ``invalid_audit_row`` naming the column and the byte sequence in any other text column.
"""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, NotRead
from crm_audit_transform.errors import BadEncoding
from crm_audit_transform.loading import UntranslatableText, load_audited_changes
from crm_audit_transform.transformer import Transformer

CHANGES = "---\nfirst_name:\n- A\n- B\n"
WIN1252 = UntranslatableText("WIN1252", 12, 3, b"\x81")


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


@pytest.mark.parametrize("column", ["comment", "remote_address", "auditable_type", "user_type"])
def test_an_untranslatable_value_names_its_column_and_byte_sequence(column: str) -> None:
    assert problem(row(**{column: WIN1252})) == (
        "invalid_audit_row",
        f"{column} is not text: character with byte sequence 0x81 in encoding WIN1252 has no"
        " equivalent in UTF-8 (at offset 3 of 12 bytes)",
    )


def test_an_untranslatable_audited_changes_is_bad_encoding() -> None:
    with pytest.raises(BadEncoding, match=r"^character with byte sequence 0x81 in encoding WIN1252"):
        load_audited_changes(WIN1252)
    assert problem(row(audited_changes=UntranslatableText("EUC_JP", 5, 1, b"\x8f\xa1"))) == (
        "malformed_audited_changes",
        "bad_encoding: character with byte sequence 0x8f 0xa1 in encoding EUC_JP has no equivalent in"
        " UTF-8 (at offset 1 of 5 bytes)",
    )
