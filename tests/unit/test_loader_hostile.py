"""Hostile ``audited_changes`` values fail fast with a typed error, on every parser."""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest

from crm_audit_transform.errors import (
    AuditedChangesError,
    BadEncoding,
    LimitExceeded,
    MalformedYaml,
    UnsupportedTag,
)
from crm_audit_transform.loading import (
    JsonbText,
    LoaderLimits,
    available_backends,
    check_json_depth,
    load_audited_changes,
)
from crm_audit_transform.loading import _ruby_objects as ro

BILLION_LAUGHS = "---\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)

HOSTILE: list[tuple[str, str | bytes, type[AuditedChangesError]]] = [
    ("billion laughs", BILLION_LAUGHS, LimitExceeded),
    ("10,000-deep flow sequence", "---\n" + "[" * 10_000 + "]" * 10_000, LimitExceeded),
    ("10,000-deep flow mapping", "---\n" + "{a: " * 10_000 + "1" + "}" * 10_000, LimitExceeded),
    ("10,000-deep block sequence", "---\nv:\n" + "- " * 10_000 + "x\n", LimitExceeded),
    ("50 MB payload", "---\nnotes: " + "x" * 50_000_000, LimitExceeded),
    ("50 MB payload as bytes", b"---\nnotes: " + b"x" * 50_000_000, LimitExceeded),
    ("invalid UTF-8", b"---\nname: \xff\xfe\n", BadEncoding),
    ("NUL byte", "---\nname: a\x00b\n", BadEncoding),
    ("lone surrogate", "---\nname: \udcff\n", BadEncoding),
    ("forbidden control character", "---\nname: a\x07b\n", BadEncoding),
    ("duplicate key", "---\nname: a\nname: b\n", MalformedYaml),
    ("duplicate symbol key", "---\nv:\n  :a: 1\n  :a: 2\n", MalformedYaml),
    ("merge key", "---\nbase: &b {x: 1}\nv:\n  <<: *b\n  y: 2\n", UnsupportedTag),
    ("inline merge key", "---\nv:\n  <<: {x: 1}\n", UnsupportedTag),
    ("recursive alias", "---\nv: &a [1, *a]\n", LimitExceeded),
    ("undefined alias", "---\nv: *nowhere\n", MalformedYaml),
    ("code execution tag", "--- !!python/object/apply:os.system ['true']\n", UnsupportedTag),
    ("Ruby gadget", "---\nv: !ruby/object:Gem::Requirement\n  requirements: []\n", UnsupportedTag),
    ("huge integer", "---\nv: " + "9" * 5_000 + "\n", LimitExceeded),
    ("collection as a key", "---\n? [a, b]\n: 1\n", MalformedYaml),
    ("unclosed flow", "---\nv: [1, 2\n", MalformedYaml),
    ("year zero", "---\nv: 0000-01-01 00:00:00 Z\n", LimitExceeded),
    # Found by a differential fuzz: the pure scanner raised an untyped exception on these.
    ("\\U escape past chr's range", '---\na: "\\U0a001F389"\n', MalformedYaml),
    ("\\U escape past a C long", '---\na: "\\Ua0001F466"\n', MalformedYaml),
    # Psych's patterns, greedy, went back over a run once for each of its characters: each of these
    # took hours (16,000 characters: 3 to 9 s, growing with the square of the length).
    (
        "DateTime of 64 Ki digits",
        "---\na: !ruby/object:DateTime 2020-01-01 " + "1" * 65_536 + "\n",
        MalformedYaml,
    ),
    (
        "BigDecimal of 64 Ki blanks",
        '---\na: !ruby/object:BigDecimal "18:' + " " * 65_536 + 'x"\n',
        MalformedYaml,
    ),
    ("!!float of 64 Ki blanks", '---\na: !!float "' + " " * 65_536 + 'x"\n', MalformedYaml),
]


@pytest.mark.parametrize("backend", available_backends())
class TestHostileInput:
    @pytest.mark.parametrize(("name", "payload", "error"), HOSTILE, ids=[name for name, _, _ in HOSTILE])
    def test_hostile_input_raises_its_typed_error(
        self, backend: str, name: str, payload: str | bytes, error: type[AuditedChangesError]
    ) -> None:
        """Each hostile payload ends in its own ``AuditedChangesError`` subclass, nothing else."""
        with pytest.raises(error):
            load_audited_changes(payload, backend=backend)

    def test_an_unknown_backend_is_still_the_callers_value_error(self, backend: str) -> None:
        """The boundary that types the row's errors leaves a caller's wrong backend name a ValueError."""
        with pytest.raises(ValueError, match="unknown YAML backend") as raised:
            load_audited_changes('---\na: "\\U0a001F389"\n', backend="nope")  # type: ignore[arg-type]
        assert not isinstance(raised.value, AuditedChangesError)

    @pytest.mark.parametrize(
        "payload",
        [
            "---\nname: \udcff\n",
            "---\nname: caf\u00e9 \ud800\n",
            "---\nname: \udcff\x00\n",  # the surrogate is told before the NUL
            "name: \udcff\n",  # and before the missing "---"
            "---\nname: \u00e9\n" + "x\udcff" * 300_000,  # long enough that its bytes are counted
        ],
    )
    def test_a_lone_surrogate_is_told_as_such(self, backend: str, payload: str) -> None:
        """A text no UTF-8 holds is ``BadEncoding`` naming it, whichever check would have come next."""
        with pytest.raises(BadEncoding, match="text that cannot be UTF-8"):
            load_audited_changes(payload, LoaderLimits(max_bytes=1 << 20), backend=backend)

    @pytest.mark.parametrize(
        ("payload", "line", "column"),
        [
            ('---\na: "\\ud800"\n', 2, 7),
            ('---\na: "\\ud83d\\ude00"\n', 2, 7),  # a pair: libyaml refuses each half
            ('---\n"\\udc00": 1\n', 2, 4),  # a column's name
            ('---\na: ["x y \\" \\udfff"]\n', 2, 15),  # after a blank and an escaped quote
            ('---\na: "x\\\n  \\udfff"\n', 3, 5),  # after an escaped line break
            ('---\na: "\\U00110000"\n', 2, 7),  # past U+10FFFF
        ],
    )
    def test_an_escaped_surrogate_is_malformed_as_libyaml_reads_it(
        self, backend: str, payload: str, line: int, column: int
    ) -> None:
        """libyaml (so Psych) refuses a double-quoted escape of a surrogate or of a code past
        U+10FFFF. The pure parser loaded ``"\\ud800"`` as a lone surrogate, text no UTF-8 or BSON
        holds, and met a ``ValueError`` past U+10FFFF: now every backend refuses it at the same place."""
        with pytest.raises(MalformedYaml, match="found invalid Unicode character escape code") as caught:
            load_audited_changes(payload, backend=backend)
        assert (caught.value.line, caught.value.column) == (line, column)

    def test_billion_laughs_stays_within_bounded_memory(self, backend: str) -> None:
        """A 1 KB alias bomb is refused before its expansion is allocated (peak well under 20 MB)."""
        assert len(BILLION_LAUGHS) < 1024
        tracemalloc.start()
        try:
            with pytest.raises(LimitExceeded):
                load_audited_changes(BILLION_LAUGHS, backend=backend)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20_000_000

    def test_malformed_yaml_reports_where_the_parser_gave_up(self, backend: str) -> None:
        """A syntax error carries the 1-based line and column of the problem."""
        with pytest.raises(MalformedYaml) as caught:
            load_audited_changes("---\nname: ok\nbad: [1, 2\n", backend=backend)
        assert caught.value.line == 4
        assert caught.value.column is not None


class TestLimits:
    def test_aliases_within_the_node_limit_are_expanded_as_copies(self) -> None:
        """Real rows share anchors; each alias loads as its own copy, so the result is a tree."""
        loaded = load_audited_changes("---\na: &x [1, {b: 2}]\nc: *x\n")
        assert loaded == {"a": [1, {"b": 2}], "c": [1, {"b": 2}]}
        assert loaded["a"] is not loaded["c"]
        assert loaded["a"][1] is not loaded["c"][1]

    def test_each_limit_is_configurable(self) -> None:
        """Tighter limits refuse what the defaults accept: bytes, nodes (aliases counted), depth."""
        text = "---\na: &x [1, 2, 3]\nb: *x\nc: [[[1]]]\n"
        assert load_audited_changes(text)["b"] == [1, 2, 3]
        for limits in (LoaderLimits(max_bytes=20), LoaderLimits(max_nodes=10), LoaderLimits(max_depth=3)):
            with pytest.raises(LimitExceeded):
                load_audited_changes(text, limits)

    def test_limits_must_be_positive_integers(self) -> None:
        """A zero or negative limit is a configuration mistake, refused at construction."""
        with pytest.raises(ValueError, match="max_depth"):
            LoaderLimits(max_depth=0)


LONG = 1 << 20


@pytest.mark.parametrize("backend", [backend for backend in available_backends() if backend != "python"])
@pytest.mark.parametrize(
    "scalar",
    [
        "1" * LONG + "x",  # plain: Psych's integer pattern, then a String
        "1_1" * LONG + ".5x",
        "!!float '" + "1_1" * LONG + ".5x'",
        "!ruby/object:BigDecimal '18:" + "1_1" * LONG + "x'",
    ],
    ids=["digits", "separated digits", "!!float", "BigDecimal"],
)
def test_a_long_number_like_scalar_is_read_in_about_its_own_size(backend: str, scalar: str) -> None:
    """Psych's number patterns keep no state per digit or separator: a scalar of 4 MiB of digits
    that ends as a String peaked at 970 MiB (a 32 MiB one, within the default ``max_bytes``, would
    have needed about 8 GiB). The patterns are the builder's, the same behind every parser (the
    pure parser is left out: it alone takes about a minute over these under tracemalloc)."""
    text = f"---\na: {scalar}\n"
    tracemalloc.start()
    try:
        with contextlib.suppress(AuditedChangesError):
            load_audited_changes(text, backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * len(text)


@pytest.mark.parametrize("backend", available_backends())
def test_a_long_tag_is_named_in_its_error_without_the_rest_of_its_text(backend: str) -> None:
    """A tag comes from the row, so a long one can carry a value: the message (which reaches logs
    and ``--outcomes``) shows its first 100 characters and its length; ``tag`` keeps it whole."""
    tag = "tag:x," + "s3cr3t-" * 2000
    with pytest.raises(UnsupportedTag) as refused:
        load_audited_changes(f"---\npassword: !<{tag}> x\n", backend=backend)
    assert refused.value.tag == tag
    message = str(refused.value)
    assert message.count("s3cr3t") <= 15
    assert f"({len(tag)} characters)" in message
    assert len(message) < 250


@pytest.mark.parametrize("backend", available_backends())
def test_nested_hashes_with_indifferent_access_are_each_converted_once(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A HashWithIndifferentAccess inside another is one already (Ruby's
    ``nested_under_indifferent_access`` returns it as it is): its tree is not walked again for each
    level above it. Before, 90 such levels over 100,000 nodes took 17 s to load."""
    hwia = "!ruby/hash:ActiveSupport::HashWithIndifferentAccess"
    depth, width = 60, 500
    lines = ["---", f"a: {hwia}"]
    lines += [f"{'  ' * (level + 1)}:k{level}: {hwia}" for level in range(depth)]
    lines.append(f"{'  ' * (depth + 1)}:leaf: [{', '.join(['{x: 1}'] * width)}]")
    text = "\n".join(lines) + "\n"
    converted = []
    convert = ro.RubyKeys._indifferent_node

    def counted(self: ro.RubyKeys, value: object) -> object:
        converted.append(value)
        return convert(self, value)

    monkeypatch.setattr(ro.RubyKeys, "_indifferent_node", counted)
    loaded = load_audited_changes(text, backend=backend)
    assert len(converted) <= depth + width + 2  # each hash once, not ~depth x width (30,500 before)
    value = loaded["a"]
    for level in range(depth):
        value = value[f"k{level}"]
    assert value == {"leaf": [{"x": 1}] * width}


def test_jsonb_text_of_too_many_values_is_refused_before_it_is_decoded() -> None:
    """jsonb text holding more values than ``max_nodes`` is ``LimitExceeded`` counted from its text,
    before ``json.loads`` builds them: decoded, a value of ``[],`` costs about 60 bytes (a 30 MiB one
    held 730 MiB before the node limit refused it). Strings are not counted."""
    text = '{"a": [' + "[]," * 200_000 + "[]]}"
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match="nodes") as refused:
            load_audited_changes(JsonbText(text))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.actual == 200_003
    assert peak < 4 * len(text)  # decoded: about 20 x
    assert load_audited_changes(JsonbText('{"a": "' + "[]," * 200_000 + '"}'))["a"].startswith("[],")


@pytest.mark.parametrize(
    "items",
    ['"",' * 700_000, '"" ,' * 200_000, '"' + '\\"' * 1_000_000 + '",'],
    ids=["strings", "spaced-strings", "one-long-string"],
)
def test_jsonb_text_is_checked_a_piece_at_a_time(items: str) -> None:
    """The depth and node checks before decoding read jsonb text ~16 KiB at a time
    (``json_scan.bare_pieces``): a piece's worth held, whatever the text's size, where cutting the
    strings out of the whole text at once held 6.4 times a 2.1 MB text of ``"",`` and 17.5 times one
    of ``"" ,`` (sre's list of the pieces it joins)."""
    text = '{"a": [' + items + '""]}'
    tracemalloc.start()
    try:
        check_json_depth(text, 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
