"""The compiled loader (Cython over libyaml's events) against the pure path: same value or same error.

The compiled builder declines what it does not take and the pure path then answers, so these tests
also pin that it really takes the rows audited writes (a builder that declined everything would
be identical too, and useless).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_loader_properties import SETTINGS, YAMLISH, documents, psych_dump

from crm_audit_transform.loading import LoaderLimits, available_backends, load_audited_changes
from support.truth import canonical

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "audited-5.8.0"
COMPILED = "compiled" in available_backends()
needs_compiled = pytest.mark.skipif(not COMPILED, reason="the compiled loader was not built here")


def corpus_texts() -> list[str]:
    texts = []
    for path in (CORPUS / "audits.jsonl", CORPUS / "jsonb" / "audits.jsonl"):
        with path.open(encoding="utf-8") as lines:
            texts += [row["audited_changes"] for row in map(json.loads, lines)]
    return [text for text in texts if isinstance(text, str)]


def outcome(load: Callable[[], Any]) -> tuple[str, Any]:
    """A comparable result: the canonical value, or the error's type and message."""
    try:
        return "value", canonical(load())
    except Exception as exc:
        return type(exc).__name__, str(exc)


def agree(text: str | bytes, limits: LoaderLimits | None = None) -> None:
    """Compiled == libyaml exactly; == the pure-Python parser in value and error type (its parser
    words some syntax errors differently from libyaml's, as before the compiled path existed)."""
    compiled = outcome(lambda: load_audited_changes(text, limits, backend="compiled"))
    assert compiled == outcome(lambda: load_audited_changes(text, limits, backend="libyaml")), text
    python = outcome(lambda: load_audited_changes(text, limits, backend="python"))
    if python[0] == "value" or compiled[0] != "value":
        # Where the two parsers themselves disagree (a BOM mid-stream, odd tabs: text Psych never
        # writes; docs/value-model.md), the compiled path follows libyaml, asserted above.
        assert compiled[0] == python[0], text
        if compiled[0] == "value":
            assert compiled == python, text


@needs_compiled
class TestSameAsThePurePath:
    def test_every_corpus_row_loads_identically(self) -> None:
        """Each audited_changes text of the corpus gives the same value on the compiled path."""
        for text in corpus_texts():
            agree(text)

    def test_the_compiled_builder_takes_every_corpus_row(self) -> None:
        """No corpus row is handed back to the pure path: the speed-up covers what audited writes."""
        from crm_audit_transform.loading import _cbuild

        declined = [t for t in corpus_texts() if _cbuild.build_text(t, LoaderLimits()) is _cbuild.DECLINED]
        assert declined == []

    @settings(SETTINGS, max_examples=60)
    @given(documents())
    def test_psych_style_documents_load_identically(self, document: Any) -> None:
        """Fuzz: whatever Psych writes for Ruby values loads to the same value on every path."""
        agree(psych_dump(document))

    @settings(SETTINGS, max_examples=100)
    @given(YAMLISH.map(lambda tail: "---" + tail))
    @example("---\n<<: \n[")  # once a merge-key refusal on the pure path (its parser read on)
    @example("--- !:!ruby/object:BigDecimal ")  # once a tag-handle error on the pure path
    @example("--- [?-?!ruby/object:ActiveSupport::TimeWithZone\n utc: ")  # once a flow error there
    def test_yaml_like_noise_gives_the_same_value_or_error(self, text: str) -> None:
        """Fuzz: broken, tagged, aliased or odd texts give the same value or the same typed error."""
        agree(text)

    @pytest.mark.parametrize(
        "limits", [LoaderLimits(max_nodes=5), LoaderLimits(max_depth=2), LoaderLimits(max_int_digits=3)]
    )
    def test_limits_give_the_same_error(self, limits: LoaderLimits) -> None:
        """A limit met on the compiled path is reported exactly as on the pure path."""
        for text in corpus_texts()[::40]:
            agree(text, limits)


WORDS = "null Null NULL nUlL yes Yes YES on On ON oN true True tRUE no No NO off Off false FALSE"
NEAR_WORDS = "y n t f o nul nulls yess onn offf fals won Open lost x Z"
SHORTCUT_EDGES = [
    # words of at most 5 letters, each case of nil/true/false and their near misses
    *WORDS.split(" "),
    *NEAR_WORDS.split(" "),
    "",
    "~",
    # times as Psych writes them, and every field just past its range
    "2019-01-04 05:44:28.125496000 Z",
    "2019-01-04 05:44:28.1 Z",
    "2019-01-04 05:44:28.1234567 Z",
    "2019-01-04 05:44:28 Z",
    "2019-01-04 05:44:28. Z",
    "2019-01-04 05:44:28.12a Z",
    "2019-01-04 05:44:28.125Z",
    "2019-01-04 05:44:28.125 +07:00",
    "2019-01-04T05:44:28.125 Z",
    "2019-01-04 24:00:00 Z",
    "2019-01-04 23:59:60 Z",
    "2019-01-04 23:60:00 Z",
    "2019-02-29 10:00:00 Z",
    "2020-02-29 10:00:00 Z",
    "1900-02-29 10:00:00 Z",
    "2000-02-29 10:00:00 Z",
    "2019-04-31 10:00:00 Z",
    "2019-13-01 10:00:00 Z",
    "2019-00-01 10:00:00 Z",
    "0000-01-01 00:00:00 Z",
    "1582-10-10 00:00:00 Z",
    "1583-01-01 00:00:00 Z",
    "9999-12-31 23:59:59.999999 Z",
    # dates, Julian and skipped days included
    "2019-01-04",
    "2019-02-29",
    "2020-02-29",
    "1583-01-01",
    "1582-10-15",
    "1582-10-10",
    "1500-02-29",
    "2019-1-4",
    "2019-01-00",
    "0000-01-01",
    # symbols
    ":name",
    ":_x",
    ":a_b9",
    ":9a",
    ":a-b",
    ':"quoted"',
    "::a",
    ":",
    # floats and negative integers, and their near misses
    "1.5",
    "-1.5",
    "0.5",
    "00.5",
    "-00.5",
    "1.",
    "-.5",
    ".5",
    "1.5e+10",
    "1.5E-3",
    "-1.5e+999",
    "1.5e10",
    "1.5e+",
    "1.5e+1a",
    "1..5",
    "1.5.5",
    "-3",
    "-0",
    "-03",
    "-123456789012345678",
    "-1234567890123456789",
    "--3",
    "-",
    "-a",
    "1_000.5",
    "1,000.5",
    "-1:30",
    "1.5:2",
    # non-ASCII starts, and short words with something other than letters
    *["王伟", "Åaöa", "é_x", "𝒳", "A1B", "a.b", "y_s", "n1", "o-n", "ab_cd", "x9", "no.", "on!", "off1"],
]


@needs_compiled
@pytest.mark.parametrize("scalar", SHORTCUT_EDGES)
def test_the_compiled_shortcuts_read_each_form_as_tokenize_does(scalar: str) -> None:
    """Each plain form the compiled builder reads without tokenize, and its edges, loads as on every path."""
    agree(f"---\nvalue: {scalar}\n{scalar or 'k'}: 1\nlist:\n- {scalar}\n")


NUMBERISH = st.from_regex(r"-?[0-9]{0,20}(\.[0-9]{0,4})?([eE][-+]?[0-9]{0,4})?", fullmatch=True)
NON_ASCII_START = st.tuples(st.characters(min_codepoint=128), st.text(max_size=6)).map("".join)
SHORT_WORDS = st.from_regex(r"[A-Za-z][A-Za-z0-9._!-]{0,4}", fullmatch=True)


@needs_compiled
@settings(SETTINGS, max_examples=150)
@given(NUMBERISH | NON_ASCII_START | SHORT_WORDS)
def test_numbers_and_words_read_as_tokenize_does(scalar: str) -> None:
    """Fuzz around the float, negative-integer, non-ASCII and short-word shortcuts: every path agrees."""
    agree(f"---\nvalue: {scalar}\nlist:\n- {scalar}\n")


LIBYAML_READINGS = [
    # An open simple key at its mapping's column on the last line: stale at the stream's end.
    ("---\n<<: \n[", "MalformedYaml"),
    ("---\na: 1\nb", "MalformedYaml"),
    # A handle is ``!word!`` with nothing between; else the whole text is a local tag.
    ("--- !:!b 1", "UnsupportedTag"),
    ("--- !a!b 1", "MalformedYaml"),  # an undefined handle
    ("--- !!str\t1", "NotAMapping"),  # a tab ends a tag
    ("--- !a,b 1", "MalformedYaml"),  # "," belongs to verbatim tags only
    ("--- [!a,b]", "UnsupportedTag"),  # ... and ends a tag in a flow collection
    ("--- !<tag:x,y> 1", "UnsupportedTag"),
    # Plain scalars in flow collections: "?" does not end them, ":" before ",?[]{}" is an error.
    ("--- [a?b]", "NotAMapping"),
    ("--- [-?a: 1]", "NotAMapping"),
    ("--- [a:,b]", "MalformedYaml"),
    ("--- {a:[b]}", "MalformedYaml"),
    ("--- {a: [b]}", "value"),
    # A tab after a block scalar's indicators is a blank.
    ("--- |\t", "NotAMapping"),
    ("---\na: >-\t# c\n  x\n", "value"),
    # A directive other than %YAML or %TAG is malformed, after the document too.
    ("---\n%-", "MalformedYaml"),
    ("---\na: 1\n%x", "MalformedYaml"),
]


@pytest.mark.parametrize(("text", "kind"), LIBYAML_READINGS)
def test_the_pure_parser_reads_what_libyaml_reads(text: str, kind: str) -> None:
    """Where PyYAML's own scanner reads a text otherwise than libyaml (Psych's parser), every path
    gives libyaml's outcome: a value or the same typed error."""
    for backend in available_backends():
        assert outcome(lambda: load_audited_changes(text, backend=backend))[0] == kind, backend  # noqa: B023


class TestWithoutTheExtension:
    def test_the_pure_path_serves_when_the_extension_cannot_be_imported(self) -> None:
        """With the compiled module unavailable (no compiler), the package loads the corpus the same."""
        code = (
            "import sys, json\n"
            "sys.modules['crm_audit_transform.loading._cbuild'] = None\n"
            "from crm_audit_transform.loading import available_backends, load_audited_changes\n"
            "assert 'compiled' not in available_backends(), available_backends()\n"
            "out = []\n"
            "with open(sys.argv[1], encoding='utf-8') as lines:\n"
            "    texts = [json.loads(line)['audited_changes'] for line in lines]\n"
            "for text in texts:\n"
            "    try:\n"
            "        out.append(repr(load_audited_changes(text)))\n"
            "    except Exception as exc:\n"
            "        out.append(type(exc).__name__)\n"
            "print(json.dumps(out))\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run(
            [sys.executable, "-c", code, str(CORPUS / "audits.jsonl")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=env,
        )
        here = []
        with (CORPUS / "audits.jsonl").open(encoding="utf-8") as lines:
            texts = [json.loads(line)["audited_changes"] for line in lines]
        for text in texts:
            try:
                here.append(repr(load_audited_changes(text)))
            except Exception as exc:
                here.append(type(exc).__name__)
        assert json.loads(done.stdout) == here

    def test_the_extension_is_built_where_the_build_requires_it(self) -> None:
        """CI sets CRM_AUDIT_REQUIRE_COMPILED=1 so a silently skipped build cannot pass as pure."""
        if os.environ.get("CRM_AUDIT_REQUIRE_COMPILED") == "1":
            assert COMPILED
        else:
            assert available_backends()[-1] == "python"
