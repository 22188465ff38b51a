"""Differential fuzz of the YAML backends: the compiled builder, libyaml and the pure-Python parser.

Every backend must give the same value, or an error of the same typed class, for any text: the
documents Psych writes for Ruby values (``test_loader_properties.psych_dump``), those documents
edited at random places (a character inserted, dropped, replaced or repeated), and YAML-like noise.
Ruby's Psych (libyaml) is the reference: where the backends disagree, the one that does not read
the text as libyaml does is wrong (tests/fixtures holds real rows with what Ruby read back).

The suite runs a fixed, bounded set of examples (``derandomize=True``, no example database), so a
landing never meets a new example; the long randomized run is ``benchmarks/soak_yaml_backends.py``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_loader_properties import YAMLISH, RubyHash, documents, psych_dump

from crm_audit_transform.errors import AuditedChangesError, LimitExceeded, MalformedYaml
from crm_audit_transform.loading import available_backends, load_audited_changes
from support.truth import canonical

BACKENDS = available_backends()

DIFFERENTIAL = settings(
    derandomize=True,
    database=None,
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
"""The suite's examples: the same ones on every run, 80 a property (a few seconds each)."""

PIECES = [
    *"-: \n\t[]{}!&*?|>'\",#%@`~.09afnotyZ_+=<\\/\r\x85\u2028\ufeffé\x07",
    "!ruby/object:BigDecimal ",
    "!ruby/sym ",
    "!binary ",
    "&a ",
    "*a",
    "<<: ",
    "!!float ",
    "  ",
    "\n  ",
    "\n- ",
    "? ",
    "...\n",
    "--- ",
]
"""What an edit puts in: YAML's indicators, breaks and blanks, Psych's tags, anchors and aliases."""

SCALAR_FORMS = st.lists(
    st.sampled_from([*"0123456789-:. Z+e_xobTtrufalsnyNYO~,", "inf", "nan", ".5", "2019-01-04 ", "05:44:28"]),
    max_size=20,
).map("".join)
"""Plain scalars near the forms the compiled builder reads without ``tokenize`` (times, dates,
numbers, nil/true/false words, symbols) and their near misses."""
SCALAR_PLACES = st.sampled_from(
    [
        "---\nv: {}\n",
        "---\n- {}\n",
        "--- {{v: {}}}\n",
        "---\n{}: 1\n",
        "---\nv: :{}\n",
        "---\nv: !ruby/object:BigDecimal {}\n",
        "---\nv: !!float {}\n",
        "---\nv: !ruby/sym {}\n",
    ]
)


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    """Texts of Psych's ``TIME`` form, with fields and offsets in and out of Ruby's ranges, any
    number of fraction digits, and years no ``datetime`` holds."""
    year = draw(st.integers(-9999, 9999))
    fields = [draw(st.integers(0, 13)), draw(st.integers(0, 32))]
    clock = [draw(st.integers(0, 25)), draw(st.integers(0, 60)), draw(st.integers(0, 61))]
    fraction = draw(st.none() | st.from_regex(r"[0-9]{0,30}", fullmatch=True))
    zone = draw(st.sampled_from(["", " Z", "Z", " +07:00", "-00:30", " -0530", " +25", "+5", " -23:59"]))
    return (
        f"{'-' if year < 0 else ''}{abs(year):04}-{fields[0]:02}-{fields[1]:02}"
        f"{draw(st.sampled_from([' ', 'T', 't']))}{clock[0]:02}:{clock[1]:02}:{clock[2]:02}"
        f"{'' if fraction is None else '.' + fraction}{zone}"
    )


EDITS = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.sampled_from(["insert", "drop", "replace", "repeat"]),
        st.sampled_from(PIECES),
    ),
    min_size=1,
    max_size=6,
)


def edited(text: str, edits: list[tuple[int, str, str]]) -> str:
    """``text`` with each edit applied at its place (taken modulo the text's length)."""
    for place, kind, piece in edits:
        at = place % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "drop":
            text = text[:at] + text[at + 1 :]
        elif kind == "replace":
            text = text[:at] + piece + text[at + 1 :]
        else:
            text = text[:at] + text[at : at + 8] + text[at:]
    return text


def outcome(text: str, backend: str) -> tuple[str, Any]:
    """A comparable result: ``("value", the canonical value)`` or ``(the error's class, None)``.

    Bad input must end in a typed error (``AuditedChangesError``), so any other exception fails
    here, even one every backend raises alike."""
    try:
        return "value", canonical(load_audited_changes(text, backend=backend))  # type: ignore[arg-type]
    except AuditedChangesError as exc:
        return type(exc).__name__, None


def assert_backends_agree(text: str) -> None:
    outcomes = {backend: outcome(text, backend) for backend in BACKENDS}
    first = outcomes[BACKENDS[0]]
    assert all(found == first for found in outcomes.values()), (text, outcomes)


class TestBackendsAgree:
    def test_there_is_more_than_one_backend_to_compare(self) -> None:
        """PyYAML's pure parser is always there; libyaml (and the compiled builder over it) where built."""
        assert "python" in BACKENDS
        assert len(BACKENDS) >= 2

    @DIFFERENTIAL
    @given(documents())
    def test_psych_documents(self, document: RubyHash) -> None:
        """What Psych writes for a Ruby value loads to one value on every backend."""
        assert_backends_agree(psych_dump(document))

    @DIFFERENTIAL
    @given(documents(), EDITS)
    @example(RubyHash([("a", 1)]), [(4, "insert", "\ufeff")])  # a BOM mid-stream (d8c1f0f)
    @example(RubyHash([("a", [1])]), [(8, "insert", "\t")])  # a tab in indentation
    @example(RubyHash([("a", 1)]), [(5, "replace", "<<: ")])  # a merge key in Psych's place of a key
    def test_edited_psych_documents(self, document: RubyHash, edits: list[tuple[int, str, str]]) -> None:
        """A Psych document edited at random places: one value, or one typed error class, everywhere."""
        assert_backends_agree(edited(psych_dump(document), edits))

    @DIFFERENTIAL
    @given(SCALAR_FORMS, SCALAR_PLACES)
    def test_plain_scalar_forms(self, scalar: str, place: str) -> None:
        """A value, a key, a symbol or a tagged scalar near the compiled builder's shortcuts reads
        alike on every backend (the shortcuts' listed edges: test_compiled_loader.SHORTCUT_EDGES)."""
        assert_backends_agree(place.format(scalar))

    @DIFFERENTIAL
    @given(YAMLISH.map(lambda tail: "---" + tail))
    def test_yaml_like_noise(self, text: str) -> None:
        """Broken, tagged, aliased or odd texts: one value, or one typed error class, everywhere."""
        assert_backends_agree(text)

    @DIFFERENTIAL
    @given(time_texts())
    @example("2024-01-02 03:04:05")
    @example("2019-12-29 17:42:38.4896614941 Z")
    def test_a_float_tagged_time_is_the_plain_times_epoch_on_every_backend(self, text: str) -> None:
        """``!!float`` on a time text reads alike everywhere and is ``Time#to_f`` of the Time the
        plain text is: its epoch seconds within the microsecond the ``datetime`` keeps; where Ruby keeps
        the plain text as a String, Float() of it fails."""
        tagged = f"---\nv: !!float {text}\n"
        assert_backends_agree(tagged)
        try:
            plain = load_audited_changes(f"---\nv: {text}\n")["v"]
        except LimitExceeded:
            return  # a year or instant no datetime holds: the unit tests pin those floats
        if isinstance(plain, str):
            with pytest.raises(MalformedYaml):
                load_audited_changes(tagged)
            return
        assert isinstance(plain, dt.datetime)
        seconds = load_audited_changes(tagged)["v"]
        assert type(seconds) is float
        assert abs(seconds - plain.timestamp()) <= 1e-6 + math.ulp(seconds)
