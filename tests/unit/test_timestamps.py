"""One conversion to aware UTC: the instant is kept; a naive value is refused, or taken as UTC when said."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_audit_transform.timestamps import as_utc

JAKARTA = dt.timezone(dt.timedelta(hours=7))


class NoOffset(dt.tzinfo):
    """A tzinfo that knows no offset: the datetime is naive all the same."""

    def utcoffset(self, value: dt.datetime | None) -> dt.timedelta | None:
        return None


class TestAsUtc:
    def test_an_aware_value_keeps_its_instant_in_utc(self) -> None:
        """An offset value becomes the same instant with tzinfo UTC."""
        local = dt.datetime(2024, 3, 1, 7, 30, tzinfo=JAKARTA)
        converted = as_utc(local)
        assert converted == local
        assert converted.tzinfo is dt.UTC
        assert converted.hour == 0

    def test_a_utc_value_comes_back_as_is(self) -> None:
        """A value already in UTC is returned without building another."""
        value = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
        assert as_utc(value) is value

    @pytest.mark.parametrize("value", [dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 1, tzinfo=NoOffset())])
    def test_a_naive_value_is_refused_by_default_and_utc_when_said(self, value: dt.datetime) -> None:
        """The domain refuses naive values; a source whose naive values are UTC passes naive="utc"."""
        with pytest.raises(ValueError, match="naive"):
            as_utc(value)
        assert as_utc(value, naive="utc") == dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

    def test_out_of_range_once_in_utc_is_an_overflow(self) -> None:
        """0001-01-01T00:00+14:00 lies before year 1 in UTC: OverflowError, for callers to report."""
        with pytest.raises(OverflowError):
            as_utc(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))))
