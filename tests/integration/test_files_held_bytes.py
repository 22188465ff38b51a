"""What reading a line or a record holds: a line past the cap costs the same small memory whatever
its length, and a line measured before it is held reads exactly as one held at once.

Lines and CSV records are held whole only once they are known to fit their cap (64 MiB by
default); finding that out used to hold up to the cap, twice while ``readline`` joined its pieces.
The peaks are counted by tracemalloc (bytes allocated, not time).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import FileFormatError
from crm_audit_adapters.files.lines import numbered_lines
from crm_audit_adapters.files.psql_csv import LongRecord, csv_records

MIB = 1 << 20
CAP = 8 * MIB
PEAK = 6 * MIB
"""Less than the cap: holding a line to find out it is too long held the cap (8 MiB) here, twice
that (16 MiB) while ``readline`` joined its pieces. Measuring it holds its first MiB and a block of
one MiB (each twice while it is joined), and a head of one MiB: about 4-5 MiB, whatever its length."""


def peak_bytes(read: Callable[[], object]) -> int:
    """The most bytes held at once (above what was held before) while ``read()`` ran."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started:
            tracemalloc.stop()
    return peak - before


def write_long(path: Path, start: bytes, length: int, end: bytes, after: bytes) -> Path:
    """``start``, then ``length`` bytes of ``y``, then ``end`` and ``after``, written in blocks."""
    with path.open("wb") as out:
        out.write(start)
        block = b"y" * MIB
        for left in range(length, 0, -MIB):
            out.write(block[:left])
        out.write(end + after)
    return path


def drain(lines: Iterator[tuple[int, bytes]]) -> list[int]:
    return [number for number, _ in lines]


class TestALongLineHoldsLittle:
    @pytest.mark.parametrize("length", [CAP + 1, 3 * CAP])
    def test_a_jsonl_line_past_the_cap_is_passed_over_holding_little(
        self, tmp_path: Path, length: int
    ) -> None:
        """Passed over (on_long), skimmed for its members (keep) or refused: each holds less than the cap,
        for a line just past the cap as for one three times it, and the lines after it follow."""
        path = write_long(
            tmp_path / "a.jsonl", b'{"id": 1, "long": "', length, b'", "tenant": "t"}\n', b'{"id": 2}\n'
        )
        heads: list[bytes] = []
        passed = peak_bytes(
            lambda: heads.extend([*drain(numbered_lines(path, CAP, on_long=lambda n, h: None))])
        )
        assert heads == [2]
        skimmed: list[tuple[int, bytes]] = []
        kept = peak_bytes(lambda: skimmed.extend(numbered_lines(path, CAP, keep={"tenant"})))
        assert skimmed == [(1, b'{"tenant":"t"}\n'), (2, b'{"id": 2}\n')]

        def refuse() -> None:
            with pytest.raises(FileFormatError, match=f"line 1: line longer than {CAP} bytes"):
                drain(numbered_lines(path, CAP))

        refused = peak_bytes(refuse)
        assert max(passed, kept, refused) < PEAK, (passed, kept, refused)

    @pytest.mark.parametrize("length", [CAP + 1, 3 * CAP])
    def test_a_csv_record_past_the_cap_is_passed_over_holding_little(
        self, tmp_path: Path, length: int
    ) -> None:
        """A quoted field past the cap, over two lines: on_long gets the record's head and
        form, or the read stops, each holding less than the cap; the record after it follows."""
        path = write_long(tmp_path / "a.csv", b'id,x\n1,"a\nb', length, b'"\n', b"2,z\n")
        long: list[tuple[int, LongRecord]] = []
        records: list[tuple[int, bytes]] = []
        passed = peak_bytes(
            lambda: records.extend(csv_records(path, CAP, on_long=lambda n, r: long.append((n, r))))
        )
        assert records == [(1, b"id,x"), (4, b"2,z")]
        assert [(number, record.fields, record.well_formed) for number, record in long] == [(2, 2, True)]

        def refuse() -> None:
            with pytest.raises(FileFormatError, match=f"line 2: record longer than {CAP} bytes"):
                list(csv_records(path, CAP))

        refused = peak_bytes(refuse)
        assert max(passed, refused) < PEAK, (passed, refused)

    def test_a_line_that_fits_is_read_whole_after_it_was_measured(self, tmp_path: Path) -> None:
        """A line past the bytes held at once but within the cap is the whole line, as before."""
        path = write_long(tmp_path / "a.jsonl", b'{"long": "', 3 * MIB, b'"}\n', b'{"id": 2}\n')
        long = b"y" * (3 * MIB)
        assert list(numbered_lines(path, CAP)) == [(1, b'{"long": "' + long + b'"}\n'), (2, b'{"id": 2}\n')]
        csv = write_long(tmp_path / "a.csv", b'id,x\n1,"a\r\n', 3 * MIB, b'"\r\n', b"2,z\n")
        assert list(csv_records(csv, CAP)) == [(1, b"id,x"), (2, b'1,"a\r\n' + long + b'"'), (4, b"2,z")]


LINE = st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")) | st.sampled_from(
    [b'{"a": 1, "b": "xyz"}', b'{"b": "' + b"q" * 30 + b'", "a": [1, {"c": 2}]}', b"", b"   "]
)
FIELD = st.text(st.sampled_from('ab,"\n\r'), max_size=12).map(
    lambda text: '"' + text.replace('"', '""') + '"'
)
CELL = st.one_of(
    FIELD, st.text(st.sampled_from("ab\r"), max_size=6), st.text(st.sampled_from('ab,"\r'), max_size=6)
)


def outcome(read: Callable[[], list[object]]) -> list[object]:
    """What a read gives, its error's message last when it stops."""
    found: list[object] = []
    try:
        found.extend(read())
    except FileFormatError as error:
        found.append(str(error))
    return found


class TestMeasuredReadsAsHeld:
    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(
        lines=st.lists(LINE, min_size=1, max_size=5),
        cap=st.integers(1, 48),
        hold=st.integers(0, 48),
        last_line_end=st.booleans(),
        mode=st.sampled_from(["refuse", "on_long", "keep", "keep_on_long"]),
    )
    def test_jsonl_lines_come_as_they_come_held_at_once(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        lines: list[bytes],
        cap: int,
        hold: int,
        last_line_end: bool,
        mode: str,
    ) -> None:
        """Whatever is held before a line is measured, its lines, on_long's calls and any error are
        those of a read that holds up to the cap at once (hold_bytes = cap: the read before)."""
        path = tmp_path_factory.mktemp("lines") / "a.jsonl"
        text = b"".join(line + b"\n" for line in lines)
        path.write_bytes(text if last_line_end else text[:-1])

        def read(hold_bytes: int) -> list[object]:
            calls: list[object] = []
            on_long = (lambda n, h: calls.append((n, h))) if mode.endswith("on_long") else None
            keep = {"a", "b"} if mode.startswith("keep") else None
            got = outcome(
                lambda: list(numbered_lines(path, cap, on_long=on_long, keep=keep, hold_bytes=hold_bytes))
            )
            return [*got, calls]

        assert read(hold) == read(cap)

    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(
        records=st.lists(st.lists(CELL, min_size=1, max_size=5), min_size=1, max_size=4),
        cap=st.integers(2, 40),
        hold=st.integers(0, 40),
        last_line_end=st.booleans(),
        on_long=st.booleans(),
    )
    def test_csv_records_come_as_they_come_held_at_once(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        records: list[list[str]],
        cap: int,
        hold: int,
        last_line_end: bool,
        on_long: bool,
    ) -> None:
        """Whatever is held before a record is measured, its records, on_long's calls and any error
        are those of a read that holds up to the cap at once."""
        path = tmp_path_factory.mktemp("csv") / "a.csv"
        text = "".join(",".join(fields) + "\n" for fields in records)
        path.write_bytes((text if last_line_end else text[:-1]).encode())

        def read(hold_bytes: int) -> list[object]:
            calls: list[object] = []
            take = (lambda n, r: calls.append((n, r))) if on_long else None
            got = outcome(lambda: list(csv_records(path, cap, on_long=take, hold_bytes=hold_bytes)))
            return [*got, calls]

        assert read(hold) == read(cap)
