"""The compiled line writer (``mongo/_cline.pyx``) against the pure path: the same bytes or the same error.

The writer hands a log it does not take to the pure path, so these tests also pin that it really
writes the logs a run makes itself (a writer that handed every log back would be identical too,
and useless), and that the pure path alone still answers where the extension was not built.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import subprocess
import sys
from collections import OrderedDict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_relaxed_json_lines import edge_decimals, edge_floats, keys, logs, metadata_keys

from crm_audit_adapters.files.sink import sink_line
from crm_audit_adapters.mongo import extended_json
from crm_audit_adapters.mongo.extended_json import pure_relaxed_json_bytes
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange

try:
    from crm_audit_adapters.mongo import _cline
except ImportError:
    _cline = None  # type: ignore[assignment]

UTC = dt.UTC
needs_compiled = pytest.mark.skipif(_cline is None, reason="the compiled line writer was not built here")

UTC_TIMES = st.datetimes(min_value=dt.datetime(1960, 1, 1), max_value=dt.datetime(9999, 12, 30)).map(
    lambda value: value.replace(tzinfo=dt.UTC)
)
TEXT = st.text() | st.text(
    alphabet=st.sampled_from(['"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "😀"])
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**40]),
    st.floats(),
    edge_floats,
    TEXT,
    st.decimals(),
    edge_decimals,
    st.dates(),
    UTC_TIMES,
    st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=2)))),
    st.binary(max_size=4),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(keys | TEXT, children, max_size=4)
    ),
    max_leaves=12,
)
RUN_LOGS = st.builds(
    ActivityLog,
    company_sso_id=TEXT,
    customer_id=st.text(max_size=8),
    category=st.sampled_from(["deal", "contact"]),
    action=st.sampled_from(["update", "create", "destroy"]),
    actor=st.builds(Actor, st.sampled_from(["user", "system"]), TEXT, st.none() | st.text(max_size=4)),
    changes=st.lists(st.builds(FieldChange, keys, TEXT, VALUES, VALUES), max_size=5).map(tuple),
    timestamp=UTC_TIMES,
    external_id=st.text(max_size=12),
    source_tag=st.just("crm_migration"),
    metadata=st.dictionaries(keys | metadata_keys | TEXT, VALUES, max_size=5),
)
"""Logs as a run makes them (aware UTC timestamps and datetimes), with every kind of value in them."""


def outcome(write: Any, log: ActivityLog) -> tuple[str, Any]:
    try:
        return "bytes", write(log)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def plain_log(**changes: Any) -> ActivityLog:
    return ActivityLog(
        company_sso_id="bench-company", customer_id="crm:t:person:7", category="deal", action="update",
        actor=Actor("user", "Zoë \"Z\" Quinn", "sso-1"),
        changes=tuple(FieldChange(k, k.title(), None, v) for k, v in changes.items()),
        timestamp=dt.datetime(2024, 2, 29, 23, 59, 58, 7_000, tzinfo=dt.UTC), external_id="crm:t:audit:1",
        metadata={"crm_audit_id": 1, "request_uuid": "r-1", "odd.key": {"$x": 1}},
    )  # fmt: skip


class _Text(str):
    pass


class _Kind(enum.Enum):
    A = "a"


@needs_compiled
class TestCompiledLine:
    @given(RUN_LOGS | logs)
    @example(plain_log(text='line\nbreak\t"quoted"\\ \x01\x1f\x7f é 😀 \u2028'))
    @example(plain_log(lone="\ud800"))
    @example(plain_log(nan=float("nan"), inf=float("-inf"), big=2**64, small=-(2**63) - 1, flt=1e16))
    @example(plain_log(deep=nested(45), deeper=nested(99)))
    @example(plain_log(deep=nested(97)))
    @example(plain_log(keys={1: "a", "1": "b"}))
    @example(plain_log(sub=_Text("x"), inner=[_Text("y")], od=OrderedDict(a=1), enum=[_Kind.A]))
    def test_the_same_bytes_or_the_same_error_as_the_pure_path(self, log: ActivityLog) -> None:
        compiled = outcome(lambda entry: _cline.relaxed_json_bytes(entry), log)
        assert compiled == outcome(pure_relaxed_json_bytes, log)
        if compiled[0] == "bytes":
            assert _cline.relaxed_json_bytes(log, True) == compiled[1] + b"\n"

    @given(RUN_LOGS)
    def test_what_it_writes_itself_is_the_pure_paths_line(self, log: ActivityLog) -> None:
        written = _cline.written_here(log)
        if written is not None:
            assert written == pure_relaxed_json_bytes(log)

    @pytest.mark.parametrize(
        "changes",
        [
            {},
            {"name": "Zoë", "count": 3, "flag": True, "gone": None, "neg": -(2**63)},
            {"text": "tab\there \"q\" back\\slash \x00 \u2028 😀"},
            {"amount": Decimal("1234.50"), "ratio": 0.25, "day": dt.date(2024, 1, 2)},
            {"hash": {"a": [1, {"b.c": "d", "$e": None}], "f": ()}},
            {"when": dt.datetime(2019, 1, 1, tzinfo=UTC)},
            {"ms": dt.datetime(2019, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC)},
            {"odd": dt.datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC)},
            {"edge": dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)},
            {"huge": 10**30, "old": dt.datetime(1969, 12, 31, tzinfo=UTC), "raw": b"\xff\x00"},
        ],
    )  # fmt: skip
    def test_it_writes_a_runs_logs_itself(self, changes: dict[str, Any]) -> None:
        """The values a run's logs hold are written here, not handed back."""
        log = plain_log(**changes)
        assert _cline.written_here(log) == pure_relaxed_json_bytes(log)

    @pytest.mark.parametrize(
        "changes",
        [{"lone": "\ud800"}, {"keys": {1: "a"}}, {"deep": nested(45)}, {"sub": [_Text("y")]}],
    )
    def test_what_it_does_not_take_goes_to_the_pure_path(self, changes: dict[str, Any]) -> None:
        log = plain_log(**changes)
        assert _cline.written_here(log) is None
        assert outcome(_cline.relaxed_json_bytes, log) == outcome(pure_relaxed_json_bytes, log)

    def test_the_sink_writes_the_compiled_line(self) -> None:
        assert extended_json.COMPILED_LINE
        log = plain_log(text="x", amount=Decimal("1.5"))
        assert sink_line(log) == ("", pure_relaxed_json_bytes(log) + b"\n")
        assert sink_line(plain_log(lone="\ud800"))[0].startswith("cannot encode the document: ")


class TestPurePath:
    def test_without_the_extension_the_pure_path_writes_the_line(self) -> None:
        """With ``_cline`` unimportable (not built), the module runs on the pure path, to the same bytes."""
        script = (
            "import sys; sys.modules['crm_audit_adapters.mongo._cline'] = None\n"
            "from crm_audit_adapters.mongo import extended_json as e\n"
            "from crm_audit_adapters.files.sink import sink_line\n"
            "import datetime as dt, json\n"
            "from decimal import Decimal\n"
            "from crm_audit_transform.domain import ActivityLog, Actor, FieldChange\n"
            "log = ActivityLog('c', 'p', 'deal', 'update', Actor('user', 'Zoë', None),"
            " (FieldChange('a', 'A', Decimal('1.5'), {'b.c': [1, 'x']}),),"
            " dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC), 'x:1', metadata={'crm_audit_id': 1})\n"
            "print(json.dumps([e.COMPILED_LINE, sink_line(log)[1].decode()]))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
        )
        compiled, line = __import__("json").loads(done.stdout)
        assert compiled is False
        log = ActivityLog(
            "c", "p", "deal", "update", Actor("user", "Zoë", None),
            (FieldChange("a", "A", Decimal("1.5"), {"b.c": [1, "x"]}),),
            dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC), "x:1", metadata={"crm_audit_id": 1},
        )  # fmt: skip
        assert line == pure_relaxed_json_bytes(log).decode() + "\n"
        assert line.startswith('{"company_sso_id":"c","customer_id":"p"')
        assert '"timestamp":{"$date":"2024-01-02T03:04:05.006Z"}' in line

    def test_the_extension_is_built_where_the_build_requires_it(self) -> None:
        """CI sets CRM_AUDIT_REQUIRE_COMPILED=1 so a silently skipped build cannot pass as pure."""
        if os.environ.get("CRM_AUDIT_REQUIRE_COMPILED") == "1":
            assert extended_json.COMPILED_LINE
        else:
            assert (_cline is not None) == extended_json.COMPILED_LINE
