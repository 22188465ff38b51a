"""How a line spells a float: orjson's shortest round-trip digits, as docs/files.md and
``mongo.extended_json`` say (they said ``1e16``; the orjson installed prints ``1e+16``), the same
bytes from the pure path and the compiled line, and the same double read back by ``json_util``."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS

from crm_audit_adapters.mongo.extended_json import pure_relaxed_json_bytes, relaxed_json_line_bytes
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange

SPELLED = {1e16: b"1e+16", 1e-7: b"1e-7", 1e-5: b"0.00001", 1e22: b"1e+22", 0.1: b"0.1", 1.5: b"1.5"}
"""What the docs give as the orjson installed prints them (``json`` writes 1e-07 and 1e-05)."""


def log_of(value: float) -> ActivityLog:
    return ActivityLog(
        company_sso_id="company-a", customer_id="c-1", category="deal", action="update",
        actor=Actor("user", "Ann", "sso-1"), changes=(FieldChange("amount", "Amount", None, value),),
        timestamp=dt.datetime(2024, 1, 2, tzinfo=dt.UTC), external_id="crm:t:audit:1", metadata={},
    )  # fmt: skip


@pytest.mark.parametrize(("value", "spelled"), SPELLED.items(), ids=[s.decode() for s in SPELLED.values()])
def test_a_float_is_spelled_as_the_docs_say_by_both_paths_and_reads_back_the_same(
    value: float, spelled: bytes
) -> None:
    assert orjson.dumps(value) == spelled
    line = relaxed_json_line_bytes(log_of(value))
    assert line == pure_relaxed_json_bytes(log_of(value)) + b"\n"
    assert b'"to":' + spelled + b"}" in line
    doc = json_util.loads(line, json_options=RELAXED_JSON_OPTIONS)
    read = doc["attributes"][0]["to"]
    assert (type(read), read) == (float, value)
