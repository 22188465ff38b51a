"""Plain scalars and Ruby tags read the way Psych 4 reads them (not the way PyYAML does)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pytest

from crm_audit_transform.errors import LimitExceeded, MalformedYaml, UnsupportedTag
from crm_audit_transform.loading import available_backends, load_audited_changes
from support.truth import canonical

UTC = dt.UTC


def value_of(text: str, backend: str = "auto") -> Any:
    return load_audited_changes(f"---\nv: {text}\n", backend=backend)["v"]


PLAIN = [
    ("yes", True),
    ("Yes", True),
    ("ON", True),
    ("true", True),
    ("no", False),
    ("Off", False),
    ("FALSE", False),
    ("y", "y"),
    ("N", "N"),
    ("~", None),
    ("null", None),
    ("NULL", None),
    ("", None),
    ("yes please", "yes please"),
    ("012", 10),
    ("0x1F", 31),
    ("-0b101", -5),
    ("09", "09"),
    ("1_000", 1000),
    ("1,000", 1000),
    ("1,", "1,"),
    ("1__000", "1__000"),
    ("0_x1F", "0_x1F"),
    ("62,,812", "62,,812"),
    ("25,000,", "25,000,"),
    ("1_", "1_"),
    ("0x1F,", 31),
    ("0_", 0),
    ("190:20:30", 685230),
    ("1:30", 5400),
    ("-1:30", -1800),
    ("190:20:30.5", 685230.5),
    ("1:2:3:4", "1:2:3:4"),
    ("12:30:45", 45045),
    ("1.5", 1.5),
    ("1.", 1.0),
    ("-0.0", -0.0),
    ("1.0e-07", 1e-07),
    ("1e5", "1e5"),
    (".nan", math.nan),
    (".Inf", math.inf),
    ("-.inf", -math.inf),
    ("+.inf", math.inf),
    ("+.INF", math.inf),
    ("+.nan", "+.nan"),
    ("+-.inf", "+-.inf"),
    ("!!float +.inf", math.inf),
    (".", "."),
    (":sym", "sym"),
    (':"two words"', "two words"),
    ("2006-06-25", dt.date(2006, 6, 25)),
    ("9999-12-31", dt.date(9999, 12, 31)),
    ("1900-01-01", dt.date(1900, 1, 1)),
    ("2020-02-30", "2020-02-30"),
    ("1582-10-10", "1582-10-10"),
    ("2019-12-29 17:42:38.489661494 Z", dt.datetime(2019, 12, 29, 17, 42, 38, 489661, tzinfo=UTC)),
    ("2020-01-01T10:00:00Z", dt.datetime(2020, 1, 1, 10, tzinfo=UTC)),
    ("2020-01-01 10:00:00 +07:00", dt.datetime(2020, 1, 1, 3, tzinfo=UTC)),
    ("2020-01-01 10:00:00 -00:30", dt.datetime(2020, 1, 1, 9, 30, tzinfo=UTC)),
    ("2020-01-01 10:00:00 +130", dt.datetime(2019, 12, 31, 21, tzinfo=UTC)),
    ("2020-01-01 10:00:00 +23:59", dt.datetime(2019, 12, 31, 10, 1, tzinfo=UTC)),
    ("2020-01-01 10:00:00 -23:59", dt.datetime(2020, 1, 2, 9, 59, tzinfo=UTC)),
    ("2020-01-01 10:00:00 +24:00", "2020-01-01 10:00:00 +24:00"),
    ("2020-01-01 10:00:00 -24", "2020-01-01 10:00:00 -24"),
    ("2020-01-01 10:00:00 +25", "2020-01-01 10:00:00 +25"),
    ("2020-01-01 10:00:00.5 +23:60", "2020-01-01 10:00:00.5 +23:60"),
    ("2020-01-01 10:00:00 +99", "2020-01-01 10:00:00 +99"),
    ("2020-01-01 10:00:00 +530", "2020-01-01 10:00:00 +530"),  # Psych reads 53 hours, 0 minutes
    # Time.new refuses the offset whatever the year (Ruby's Time holds year 0 and below): the String.
    ("0000-01-01 10:00:00 +25", "0000-01-01 10:00:00 +25"),
    ("0000-01-01 10:00:00 +24:00", "0000-01-01 10:00:00 +24:00"),
    ("-0001-01-01 10:00:00 -25", "-0001-01-01 10:00:00 -25"),
    ("0000-01-01 10:00:00 +99", "0000-01-01 10:00:00 +99"),
    ("0000-13-01 10:00:00", "0000-13-01 10:00:00"),
    # Year 0 written, year 1 in UTC: the instant is what must fit a datetime.
    ("0000-12-31 24:00:00", dt.datetime(1, 1, 1, tzinfo=UTC)),
    ("0000-12-31 23:00:00 -01:00", dt.datetime(1, 1, 1, tzinfo=UTC)),
    ("2020-01-01 10:00:00", dt.datetime(2020, 1, 1, 10, tzinfo=UTC)),
    ("2019-02-29 10:00:00", dt.datetime(2019, 3, 1, 10, tzinfo=UTC)),
    ("2020-01-01 24:00:00", dt.datetime(2020, 1, 2, tzinfo=UTC)),
    ("2020-13-01 10:00:00", "2020-13-01 10:00:00"),
    ("123456789012345678901234567890", 123456789012345678901234567890),
]


class TestTimeYears:
    @pytest.mark.parametrize(
        "text",
        [
            "0000-01-01 10:00:00 +07:00",
            "0000-01-01 10:00:00 Z",
            "-0001-12-31 10:00:00",
            "0001-01-01 00:00:00 +01:00",  # year 0 in UTC
            "9999-12-31 23:00:00 -01:00",  # year 10000 in UTC
        ],
    )
    def test_a_time_ruby_holds_outside_datetime_years_is_a_limit(self, text: str) -> None:
        """Ruby's Time reads any year; an instant whose UTC year is outside 1-9999 is the row's
        ``LimitExceeded`` on every backend, once the fields and the offset are ones Ruby accepts."""
        for backend in available_backends():
            with pytest.raises(LimitExceeded, match="year"):
                value_of(text, backend)


class TestPlainScalars:
    @pytest.mark.parametrize(("text", "expected"), PLAIN, ids=[repr(text) for text, _ in PLAIN])
    def test_plain_scalar_resolves_like_psych(self, text: str, expected: Any) -> None:
        """Each plain scalar gets the Ruby value Psych's ScalarScanner gives it, on every parser."""
        for backend in available_backends():
            assert canonical(value_of(text, backend)) == canonical(expected)

    def test_quoted_scalars_are_always_strings(self) -> None:
        """Quoting turns off resolution: ``'yes'`` and ``"012"`` stay strings."""
        assert load_audited_changes("---\na: 'yes'\nb: \"012\"\nc: '1:30'\n") == {
            "a": "yes",
            "b": "012",
            "c": "1:30",
        }

    def test_non_specific_tag_resolves_even_quoted_text(self) -> None:
        """``! ''`` (how Psych writes a nil hash key) is nil, as the ``!`` tag asks for resolution."""
        assert load_audited_changes("---\nv: ! ''\nw: ! 'yes'\n") == {"v": None, "w": True}

    def test_the_str_tag_keeps_text(self) -> None:
        """``!!str '<<'`` (how Psych writes the string ``<<``) is the string."""
        assert value_of("!!str '<<'") == "<<"


class TestRubyTags:
    def test_big_decimal_values_keep_sign_and_specials(self) -> None:
        """BigDecimal dumps load as exact Decimals, including -0, NaN and both infinities."""
        text = (
            "---\na: !ruby/object:BigDecimal 18:0.125e2\nb: !ruby/object:BigDecimal 9:-0.0\n"
            "c: !ruby/object:BigDecimal 9:NaN\nd: !ruby/object:BigDecimal 9:-Infinity\n"
            "e: !ruby/object:BigDecimal 27:0.12345678901234567890123456789e30\n"
        )
        loaded = load_audited_changes(text)
        assert canonical(loaded) == canonical(
            {
                "a": decimal.Decimal("12.5"),
                "b": decimal.Decimal("-0.0"),
                "c": decimal.Decimal("NaN"),
                "d": decimal.Decimal("-Infinity"),
                "e": decimal.Decimal("123456789012345678901234567890"),
            }
        )

    def test_time_with_zone_reads_utc_and_shares_its_zone(self) -> None:
        """TimeWithZone is its ``utc:`` instant; the aliased zone of a second one is fine."""
        text = (
            "---\na: !ruby/object:ActiveSupport::TimeWithZone\n  utc: 2019-03-08 10:20:13.608545000 Z\n"
            "  zone: &1 !ruby/object:ActiveSupport::TimeZone\n    name: Asia/Jakarta\n"
            "  time: 2019-03-08 17:20:13.608545000 Z\n"
            "b: !ruby/object:ActiveSupport::TimeWithZone\n  utc: 2020-01-01 00:00:00.000000000 Z\n"
            "  zone: *1\n  time: 2020-01-01 07:00:00.000000000 Z\nc: *1\n"
        )
        assert load_audited_changes(text) == {
            "a": dt.datetime(2019, 3, 8, 10, 20, 13, 608545, tzinfo=UTC),
            "b": dt.datetime(2020, 1, 1, tzinfo=UTC),
            "c": "Asia/Jakarta",
        }

    def test_date_time_tag_is_an_aware_utc_datetime(self) -> None:
        """``!ruby/object:DateTime`` with an offset becomes the same instant in UTC."""
        assert value_of("!ruby/object:DateTime 2020-08-05 11:53:34.589000000 +07:00") == dt.datetime(
            2020, 8, 5, 4, 53, 34, 589000, tzinfo=UTC
        )

    def test_date_time_tag_with_an_offset_ruby_refuses_is_malformed_in_any_year(self) -> None:
        """The DateTime branch calls ``parse_time`` without tokenize's rescue: Ruby raises on the
        offset before the year matters, so the row is ``MalformedYaml``, not ``LimitExceeded``."""
        for backend in available_backends():
            with pytest.raises(MalformedYaml):
                value_of("!ruby/object:DateTime 0000-01-01 10:00:00 +25", backend)
            with pytest.raises(LimitExceeded):
                value_of("!ruby/object:DateTime 0000-01-01 10:00:00 +07:00", backend)

    def test_indifferent_hash_turns_symbol_keys_into_strings_all_the_way_down(self) -> None:
        """HashWithIndifferentAccess stores ``:a`` as ``"a"``, in nested hashes too, like Ruby."""
        text = (
            "---\nv: !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n"
            "  :a: 1\n  b:\n    :c: 2\n  d:\n  - :e: 3\n"
        )
        assert load_audited_changes(text) == {"v": {"a": 1, "b": {"c": 2}, "d": [{"e": 3}]}}

    def test_symbols_binary_and_float_tags(self) -> None:
        """``!ruby/symbol``, ``!binary`` and ``!!float`` read as Psych reads them."""
        text = "---\na: !ruby/symbol foo\nb: !binary |-\n  aMOpbGxv\nc: !!float 1\nd: !ruby/sym ''\n"
        assert load_audited_changes(text) == {"a": "foo", "b": "héllo", "c": 1.0, "d": ""}

    def test_hash_keys_of_every_ruby_class_become_strings_without_collisions(self) -> None:
        """Symbol, Integer, nil, boolean and Float keys take ``to_s``; a clash takes ``inspect``."""
        text = "---\nv:\n  :a: 1\n  a: 2\n  1: 3\n  ! '': 4\n  '': 5\n  true: 6\n  1.5: 7\n"
        assert load_audited_changes(text) == {
            "v": {":a": 1, "a": 2, "1": 3, "nil": 4, "": 5, "true": 6, "1.5": 7}
        }

    @pytest.mark.parametrize(
        "tag",
        [
            "!ruby/object:Gem::Installer",
            "!ruby/object:OpenStruct",
            "!ruby/struct:Point",
            "!ruby/hash:ActiveSupport::OrderedOptions",
            "!!python/object/apply:os.system",
            "!ruby/object:Complex",
            "!ruby/regexp",
            "!foo",
            "!!set",
            "!!omap",
        ],
    )
    def test_tags_outside_the_allowlist_are_refused(self, tag: str) -> None:
        """A tag Rails' YAML allowlist does not permit is an UnsupportedTag, whatever node it is on."""
        for body in (f"{tag} x", f"{tag} {{a: 1}}", f"{tag} [1]"):
            with pytest.raises(UnsupportedTag):
                load_audited_changes(f"---\nv: {body}\n")

    def test_a_time_with_zone_without_utc_is_malformed(self) -> None:
        """Ruby cannot build a TimeWithZone without a Time under ``utc:``; neither do we."""
        with pytest.raises(MalformedYaml) as caught:
            load_audited_changes(
                "---\nv: !ruby/object:ActiveSupport::TimeWithZone\n  time: 2020-01-01 00:00:00 Z\n"
            )
        assert (caught.value.line, caught.value.column) == (2, 4)

    def test_a_time_with_zone_with_only_its_wall_clock_and_zone_is_malformed(self) -> None:
        """Ruby would read ``time:`` in ``zone:``'s rules; the loader reads no zone rules and refuses it."""
        with pytest.raises(MalformedYaml, match="without a Time under utc"):
            load_audited_changes(
                "---\nv: !ruby/object:ActiveSupport::TimeWithZone\n"
                "  zone: !ruby/object:ActiveSupport::TimeZone\n    name: Asia/Jakarta\n"
                "  time: 2020-01-01 07:00:00 Z\n"
            )

    def test_a_zone_name_is_not_looked_up(self) -> None:
        """A zone TZInfo does not know (Ruby raises) is its name, and a TimeWithZone in it is its ``utc:``."""
        zone = "!ruby/object:ActiveSupport::TimeZone\n    name: Nowhere/Land"
        loaded = load_audited_changes(
            f"---\nz: {zone.replace(chr(10) + '  ', chr(10))}\n"
            f"t: !ruby/object:ActiveSupport::TimeWithZone\n  utc: 2020-01-01 00:00:00 Z\n  zone: {zone}\n"
        )
        assert loaded == {"z": "Nowhere/Land", "t": dt.datetime(2020, 1, 1, tzinfo=UTC)}

    @pytest.mark.parametrize("exponent", ["19620603081739570345", "-19620603081739570345"])
    def test_a_big_decimal_whose_exponent_python_cannot_hold_is_a_typed_error(self, exponent: str) -> None:
        """An exponent past ``decimal.MAX_EMAX`` is the row's ``LimitExceeded`` on every backend, not
        ``decimal.InvalidOperation`` (the loader raises only ``AuditedChangesError``s for bad input)."""
        for backend in available_backends():
            with pytest.raises(LimitExceeded, match="BigDecimal's exponent"):
                load_audited_changes(f"---\na: !ruby/object:BigDecimal 18:0.1e{exponent}\n", backend=backend)

    def test_a_garbled_big_decimal_is_malformed(self) -> None:
        """``BigDecimal._load`` fails on text that is not a number, so the row is malformed."""
        with pytest.raises(MalformedYaml):
            load_audited_changes("---\nv: !ruby/object:BigDecimal 18:abc\n")


FLOAT_TAGGED_TIMES = [
    # 2024-01-02 is 19,724 days after 1970-01-01; 03:04:05 is 11,045 s.
    ("2024-01-02 03:04:05", 1_704_164_645.0),
    ("2024-01-02T03:04:05Z", 1_704_164_645.0),
    ("2024-01-02 03:04:05 +07:00", 1_704_164_645.0 - 7 * 3600),
    ("2024-01-02 03:04:05 -00:30", 1_704_164_645.0 - 1800),  # Psych's sign rule: +00:30
    # Time#to_f divides the count of nanoseconds as a double: 1704164645250000000 is no double (the
    # nearest is 128 ns below), so Ruby gives .2499998, not .25.
    ("2024-01-02 03:04:05.25 Z", 1_704_164_645.2499998),
    ("2024-01-02 03:04:05.5 Z", 1_704_164_645.5),
    # Time#to_f of a whole count of nanoseconds: the count as a double, over 1e9.
    ("2019-12-29 17:42:38.489661494 Z", float(1_577_641_358_489_661_494) / 1e9),
    # Past the nanosecond: Rational#to_f, its terms as doubles (10**10 over 2 and 5 reduced away).
    ("2019-12-29 17:42:38.4896614941 Z", float(15_776_413_584_896_614_941) / float(10**10)),
    ("2019-12-29 17:42:38.489661494000 Z", float(1_577_641_358_489_661_494) / 1e9),
    ("2019-02-29 10:00:00", 1_551_434_400.0),  # rolls over to March 1st, like Time.utc
    ("2020-01-01 24:00:00", 1_577_923_200.0),
    ("0000-01-01 00:00:00", -62_167_219_200.0),  # a year no datetime holds: Ruby's Time does
    ("-0001-12-31 23:59:59.5", -62_167_219_200.5),
    # Past the nanosecond, Time#to_f is Float(Rational): each term rounded to a double, then divided
    # (object.c rat2dbl_without_to_f). The seconds are 17041646451299722003322453832364057 / 10**25,
    # whose correctly rounded quotient (Python's Fraction) is 1704164645.1299722, one bit above Ruby's.
    ("2024-01-02 03:04:05.1299722003322453832364057 Z", 1_704_164_645.129972),
    ("2024-01-02 03:04:05.1299722003322453832364057 +00:00", 1_704_164_645.129972),
    # A denominator past the largest double is an infinity: a value near the epoch is 0.0.
    ("1970-01-01 00:00:00." + "0" * 320 + "1", 0.0),
]


class TestFloatTag:
    @pytest.mark.parametrize(("text", "expected"), FLOAT_TAGGED_TIMES, ids=[t for t, _ in FLOAT_TAGGED_TIMES])
    def test_a_time_tagged_float_is_its_epoch_seconds(self, text: str, expected: float) -> None:
        """``!!float`` on a time is ``Float(Time)``, ``Time#to_f``: seconds since the epoch, from the
        exact instant Ruby holds (every fraction digit), on every parser."""
        for backend in available_backends():
            found = value_of(f"!!float {text}", backend)
            assert type(found) is float
            assert found == expected

    @pytest.mark.parametrize(
        "text",
        [
            "2024-01-02",  # a Date: no to_f, TypeError
            ":sym",  # a Symbol: no to_f
            "~",  # nil: TypeError
            "true",
            "2020-01-01 10:00:00 +25",  # Time.new refuses the offset: Float() of the String
            "2020-13-01 10:00:00",
        ],
    )
    def test_what_ruby_cannot_make_a_float_of_is_malformed(self, text: str) -> None:
        """``Float()`` raises on a Date, Symbol, nil, boolean or a time text Ruby kept as a String."""
        for backend in available_backends():
            with pytest.raises(MalformedYaml, match="Float"):
                value_of(f"!!float {text}", backend)

    def test_a_quoted_tagged_time_is_read_alike(self) -> None:
        """Under a tag a quoted scalar is resolved too (Psych reads libyaml's quoted_implicit: false)."""
        assert value_of("!!float '2024-01-02 03:04:05'") == 1_704_164_645.0

    def test_a_fraction_past_the_digit_limit_is_a_limit(self) -> None:
        """The fraction's digits are an integer's (``Rational("0.…")``): ``max_int_digits`` bounds them;
        trailing zeros do not count. Within the limit, a fraction past 308 digits makes both terms
        of the Rational infinite as doubles, and Ruby's quotient NaN."""
        within = "2020-01-01 00:00:00." + "1" * 4300 + "0" * 5000
        for backend in available_backends():
            assert math.isnan(value_of(f"!!float {within}", backend))
        with pytest.raises(LimitExceeded):
            value_of("!!float 2020-01-01 00:00:00." + "1" * 4301)

    @pytest.mark.parametrize(
        "text", ["0000-01-01 10:00:00 +25", "0000-01-01 10:00:00 +24:00", "-0001-06-01 10:00:00 -25"]
    )
    def test_an_offset_ruby_refuses_is_malformed_in_any_year(self, text: str) -> None:
        """Time.new refuses the offset before any year matters: ``Float()`` of the String raises."""
        for backend in available_backends():
            with pytest.raises(MalformedYaml, match="Float"):
                value_of(f"!!float {text}", backend)

    def test_the_plain_time_keeps_its_microseconds(self) -> None:
        """Untagged, the same text is the ``datetime``, cut to microseconds as before."""
        assert value_of("2019-12-29 17:42:38.4896614941 Z") == dt.datetime(
            2019, 12, 29, 17, 42, 38, 489661, tzinfo=UTC
        )
