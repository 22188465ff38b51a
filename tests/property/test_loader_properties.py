"""Properties of the loader: Psych-style dumps load back exactly, any input fails only with typed
errors, and both YAML parsers agree.

Ruby-like values are dumped the way Psych 4 dumps them: the same event choices as Psych's
``YAMLTree`` (tags, styles, implicit flags, a shared TimeZone anchor) fed to libyaml's emitter,
which is the emitter Psych itself drives.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

from crm_audit_transform.errors import AuditedChangesError
from crm_audit_transform.loading import available_backends, load_audited_changes
from crm_audit_transform.loading._psych_scalars import Unreadable, big_decimal, read_big_decimal, tokenize
from crm_audit_transform.loading._ruby_keys import ruby_big_decimal_to_s, ruby_float_to_s
from support.truth import RubyKey, canonical, named

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DUMPER = yaml.CDumper if "libyaml" in available_backends() else yaml.Dumper


class Sym:
    def __init__(self, name: str) -> None:
        self.name = name


class RubyTime:
    """A Time (``offset`` minutes east of UTC, or None for a UTC time) or, with ``zone``, a TimeWithZone."""

    def __init__(self, instant: dt.datetime, offset: int | None, zone: str | None = None) -> None:
        self.instant, self.offset, self.zone = instant, offset, zone


class Zone:
    def __init__(self, name: str) -> None:
        self.name = name


class RubyHash:
    def __init__(self, pairs: list[tuple[Any, Any]], indifferent: bool = False) -> None:
        self.pairs, self.indifferent = pairs, indifferent


LOOKALIKES = ["yes", "No", "on", "~", "null", "0x1F", "012", "1_000", "1,000", "190:20:30", "1:2:3:4", "<<"]
LOOKALIKES += [
    ".nan",
    "-.inf",
    "2020-01-01",
    "2020-01-01 10:00:00",
    "12:30:45",
    ":sym",
    "1.5",
    "1e5",
    "y",
    "",
]
_TEXTS = st.sampled_from(LOOKALIKES) | st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
)
_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_ZONES = st.sampled_from(["Asia/Jakarta", "Asia/Tokyo", "UTC", "America/Sao_Paulo"])
_INSTANTS = st.datetimes(dt.datetime(1600, 1, 1), dt.datetime(9990, 1, 1)).map(
    lambda t: t.replace(tzinfo=dt.UTC)
)
_OFFSETS = st.none() | st.integers(-48, 56).map(lambda q: q * 15).filter(lambda m: not -60 < m < 0)
_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: abs(d.adjusted()) < 40) | (
    st.sampled_from([decimal.Decimal(x) for x in ("NaN", "Infinity", "-Infinity", "-0.0")])
)


# Composite wrappers keep strategy reprs short (hypothesis warns on huge ones; warnings are errors).
# Each draws from a strategy built once here: a strategy built inside a draw (``_NAMES.map(Sym)``,
# ``st.recursive(...)``) is validated again, and its regex compiled again, on every draw, which cost
# more than the tests' own work.
@st.composite
def texts(draw: st.DrawFn) -> str:
    """Any text, often a string Psych must quote to keep it a string."""
    return draw(_TEXTS)


@st.composite
def times(draw: st.DrawFn) -> RubyTime:
    """A UTC or offset Time (never -00:MM, which Ruby itself misreads), or a TimeWithZone."""
    instant = draw(_INSTANTS)
    if draw(st.booleans()):
        return RubyTime(instant, 0, draw(_ZONES))
    return RubyTime(instant, draw(_OFFSETS))


_SYMBOLS = _NAMES.map(Sym)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    texts(),
    _SYMBOLS,
    st.dates(dt.date(1583, 1, 1)),
    times(),
    _DECIMALS,
    _ZONES.map(Zone),
)
_KEYS = st.one_of(texts(), _SYMBOLS, st.integers(), st.none(), st.booleans())


@st.composite
def scalars(draw: st.DrawFn) -> Any:
    """A Ruby scalar of a class Rails' YAML allowlist permits."""
    return draw(_SCALARS)


@st.composite
def keys(draw: st.DrawFn) -> Any:
    """A hash key as the corpus has them: String, Symbol, Integer, nil or boolean."""
    return draw(_KEYS)


def _identity(key: Any) -> Any:
    return ("sym", key.name) if isinstance(key, Sym) else (type(key).__name__, key)


def _first_identity(pair: tuple[Any, Any]) -> Any:
    return _identity(pair[0])


def _hashes(values: st.SearchStrategy[Any]) -> st.SearchStrategy[RubyHash]:
    pairs = st.lists(st.tuples(keys(), values), max_size=5, unique_by=lambda pair: _identity(pair[0]))
    return st.builds(RubyHash, pairs, st.booleans())


_VALUES = st.recursive(scalars(), lambda inner: st.lists(inner, max_size=4) | _hashes(inner), max_leaves=15)
_COLUMNS = st.lists(st.tuples(texts(), _VALUES), max_size=8, unique_by=lambda pair: pair[0])


@st.composite
def documents(draw: st.DrawFn) -> RubyHash:
    """A top-level audited_changes hash: String column names to Ruby-like values."""
    return RubyHash(draw(_COLUMNS))


def expected(value: Any, indifferent: bool = False) -> Any:
    """The value-model value Ruby would hand over for a Ruby-like value."""
    if isinstance(value, Sym | Zone):
        return value.name
    if isinstance(value, RubyTime):
        return value.instant
    if isinstance(value, list):
        return [expected(item, indifferent) for item in value]
    if not isinstance(value, RubyHash):
        return value
    if not (indifferent or value.indifferent):
        return named([(_ruby_key(key), expected(item)) for key, item in value.pairs])
    merged: dict[Any, list[Any]] = {}  # HashWithIndifferentAccess: :a becomes "a", a later equal key wins
    for key, item in value.pairs:
        key = key.name if isinstance(key, Sym) else key
        merged.setdefault(_identity(key), [key, None])[1] = expected(item, True)
    return named([(_ruby_key(key), item) for key, item in merged.values()])


def _ruby_key(key: Any) -> Any:
    if isinstance(key, Sym):
        return RubyKey(key.name, f":{key.name}")
    if isinstance(key, str):
        return key
    text = "" if key is None else str(key).lower() if isinstance(key, bool) else str(key)
    return RubyKey(text, "nil" if key is None else text)


def psych_dump(document: RubyHash) -> str:
    events: list[Event] = [StreamStartEvent(), DocumentStartEvent(explicit=True)]
    _emit(document, events, {})
    events += [DocumentEndEvent(explicit=False), StreamEndEvent()]
    return str(yaml.emit(events, Dumper=DUMPER, allow_unicode=True))


def _plain(text: str) -> ScalarEvent:
    return ScalarEvent(None, None, (True, False), text)


def _emit(value: Any, out: list[Event], zone_anchors: dict[str, str]) -> None:
    if value is None:
        out.append(_plain(""))
    elif isinstance(value, bool | int) or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        out.append(_plain(str(value).lower() if isinstance(value, bool) else str(value)))
    elif isinstance(value, float):
        out.append(
            _plain(
                {"NaN": ".nan", "Infinity": ".inf", "-Infinity": "-.inf"}.get(s := ruby_float_to_s(value), s)
            )
        )
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Sym):
        out.append(
            _plain(f":{value.name}") if value.name else ScalarEvent(None, "!ruby/sym", (False, False), "")
        )
    elif isinstance(value, decimal.Decimal):
        out.append(
            ScalarEvent(None, "!ruby/object:BigDecimal", (False, False), f"18:{ruby_big_decimal_to_s(value)}")
        )
    elif isinstance(value, Zone):
        _emit_zone(value.name, out, zone_anchors)
    elif isinstance(value, RubyTime) and value.zone is None:
        out.append(_plain(_format_time(value.instant, value.offset)))
    elif isinstance(value, RubyTime):
        out.append(MappingStartEvent(None, "!ruby/object:ActiveSupport::TimeWithZone", False))
        out += [_plain("utc"), _plain(_format_time(value.instant, None)), _plain("zone")]
        _emit_zone(value.zone, out, zone_anchors)
        out += [_plain("time"), _plain(_format_time(value.instant, value.offset).replace(" +00:00", " Z"))]
        out.append(MappingEndEvent())
    elif isinstance(value, list):
        out.append(SequenceStartEvent(None, None, True))
        for item in value:
            _emit(item, out, zone_anchors)
        out.append(SequenceEndEvent())
    else:
        tag = "!ruby/hash:ActiveSupport::HashWithIndifferentAccess" if value.indifferent else None
        out.append(MappingStartEvent(None, tag, tag is None))
        for key, item in value.pairs:
            _emit(key, out, zone_anchors)
            _emit(item, out, zone_anchors)
        out.append(MappingEndEvent())


def _emit_zone(name: str, out: list[Event], zone_anchors: dict[str, str]) -> None:
    if name in zone_anchors:  # Psych aliases the one cached TimeZone object of a name
        out.append(AliasEvent(zone_anchors[name]))
        return
    zone_anchors[name] = anchor = str(len(zone_anchors) + 1)
    out += [MappingStartEvent(anchor, "!ruby/object:ActiveSupport::TimeZone", False), _plain("name")]
    out += [_plain(name), MappingEndEvent()]


def _format_time(instant: dt.datetime, offset: int | None) -> str:
    """Psych's ``format_time``: UTC as ``... Z``, else the wall time and ``%:z``."""
    wall = instant + dt.timedelta(minutes=offset or 0)
    stamp = f"{wall:%Y-%m-%d %H:%M:%S}.{wall.microsecond:06d}{instant.microsecond % 7:03d}"
    if offset is None:
        return f"{stamp} Z"
    sign = "-" if offset < 0 else "+"
    return f"{stamp} {sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


def _string(text: str) -> ScalarEvent:
    """Psych's ``visit_String`` style choice; libyaml may still quote where plain is impossible."""
    style = None
    if re.search(r"\n(?!\n?\Z)", text):
        style = "|"
    elif text == "<<":
        return ScalarEvent(None, "tag:yaml.org,2002:str", (False, False), text, style="'")
    elif text in ("y", "Y", "n", "N") or re.match(r"[^\w][^\"]*\Z", text):
        style = '"'
    elif not _tokenizes_to_itself(text) or re.match(r"0[0-7]*[89]", text):
        style = "'"
    return ScalarEvent(None, None, (True, True), text, style=style)


def _tokenizes_to_itself(text: str) -> bool:
    try:
        return tokenize(text, 4300) == text
    except (Unreadable, AuditedChangesError):
        return False


class TestPsychRoundTrip:
    @settings(SETTINGS, max_examples=60)
    @given(documents())
    def test_psych_style_dumps_load_back_to_the_same_values(self, document: RubyHash) -> None:
        """What Psych writes for Ruby values loads back to their value-model values, on both parsers."""
        text = psych_dump(document)
        want = canonical(expected(document))
        for backend in available_backends():
            assert canonical(load_audited_changes(text, backend=backend)) == want, text

    @SETTINGS
    @given(st.data())
    def test_the_key_rule_never_loses_an_entry(self, data: st.DataObject) -> None:
        """However Ruby keys collide once made strings, every entry of a hash survives."""
        pairs = data.draw(st.lists(st.tuples(keys(), st.integers()), max_size=12, unique_by=_first_identity))
        loaded = load_audited_changes(psych_dump(RubyHash([("v", RubyHash(pairs))])))
        assert sorted(loaded["v"].values()) == sorted(value for _, value in pairs)


YAMLISH = st.lists(
    st.sampled_from(list("-: \n\t[]{}!&*?|>'\",#%@`~.09afnotyZ_+=<\\/\r\x85\u2028\ufeffé\x07"))
    | st.sampled_from(["!ruby/object:BigDecimal ", "!ruby/sym ", "!binary ", "&a ", "*a", "<<: ", "!!float "])
    | st.sampled_from(
        ["!ruby/object:ActiveSupport::TimeWithZone\n utc: ", "2020-01-01 ", "12:30:45", "\n  "]
    ),
    max_size=40,
).map("".join)


class TestAnyInput:
    @SETTINGS
    @given(
        st.one_of(
            YAMLISH.map(lambda tail: "---" + tail), st.text(), st.binary(), st.binary().map(b"---".__add__)
        )
    )
    def test_any_text_or_bytes_fails_only_with_a_typed_error(self, payload: str | bytes) -> None:
        """Nothing but an ``AuditedChangesError`` ever escapes, on either parser."""
        for backend in available_backends():
            try:
                loaded = load_audited_changes(payload, backend=backend)
            except AuditedChangesError:
                continue
            assert type(loaded) is dict
            assert all(type(key) is str for key in loaded)

    @SETTINGS
    @given(
        st.dictionaries(
            st.text(),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                max_leaves=20,
            ),
        )
    )
    def test_decoded_jsonb_loads_to_an_equal_copy(self, decoded: dict[str, Any]) -> None:
        """A decoded jsonb mapping is already the value model: it loads to an equal, separate copy."""
        loaded = load_audited_changes(decoded)
        assert canonical(loaded) == canonical(decoded)
        assert loaded is not decoded


BIG_DECIMAL_TEXTS = st.one_of(
    st.decimals(allow_nan=True).map(
        lambda value: f"{len(value.as_tuple().digits) * 9}:{ruby_big_decimal_to_s(value)}"
    ),
    st.from_regex(r"\A[0-9]{0,3}:-?0\.[0-9]{1,8}(e-?[0-9]{1,4})?\Z"),
    st.from_regex(r"\A[0-9_ ]{0,3}:[-+ ]?[0-9_.]{0,6}([eEdD][-+]?[0-9]{1,3})?[ \n]?\Z"),
)


class TestBigDecimalShortcut:
    @SETTINGS
    @given(BIG_DECIMAL_TEXTS)
    def test_the_dumped_form_shortcut_agrees_with_the_general_rule(self, text: str) -> None:
        """``big_decimal`` gives exactly what the general reading gives (value, sign, exponent), or
        fails alike."""
        try:
            expected = read_big_decimal(text)
        except Unreadable:
            with pytest.raises(Unreadable):
                big_decimal(text)
            return
        got = big_decimal(text)
        assert str(got) == str(expected)
        assert got.as_tuple() == expected.as_tuple()
