"""A long JSONL line whose kept member or member name is itself long fares as the same line held whole.

An audits line past ``max_record_bytes`` is read on in blocks for its ``tenant`` and ``id`` (each
kept up to ``long_lines.MEMBER_BYTES``); a lookup line past ``MAX_LINE_BYTES`` for its reader's
members. A kept member past that bound stopped the read at once, the rest of the line unread, where
the line held whole is read (an id padded with blanks), passed over (another tenant's) or stops the
read (an id that is no integer). A member name past 4 KiB that is not UTF-8 was passed over, where
the line held whole fails its row or stops the read (the name may be any column, the tenant's too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest
from test_files_audit_source import EPOCH, all_pages, fate_of
from test_files_audits import TEXT_AUDITS, corpus_lines, write_lines

from crm_audit_adapters.files import CheckedRows, FileAuditSource, FileFormatError
from crm_audit_adapters.files.long_lines import MEMBER_BYTES, skim_long_line

PAST: Final = MEMBER_BYTES + 4_096
"""The bytes of a member too long to keep."""
HELD: Final = 4 * MEMBER_BYTES
"""A ``max_record_bytes`` every line here fits: each is held whole."""
SKIMMED: Final = 4_096
"""A ``max_record_bytes`` every long line here passes: each is read on in blocks."""
NAME: Final = b'"n\xe4me' + b"m" * 5_000 + b'"'
"""A member name past 4 KiB that is not UTF-8 (Latin-1)."""


def good(audit_id: int) -> str:
    return json.dumps({**corpus_lines(TEXT_AUDITS)[0], "id": audit_id})


FAILED = ("read", [[1, 3]], [(2, "invalid_audit_row")])
PASSED_OVER = ("read", [[1, 3]], [])
STOPPED = ("stopped", 2, None)


class TestAuditsLineWithALongKeptMember:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ('{"tenant": "acme", "id": 2' + " " * PAST + ', "comment": "x"}', FAILED),
            ('{"tenant": "acme", "id":' + " \t" * PAST + '2, "c": 1}', FAILED),
            ('{"tenant": "globex"' + " " * PAST + ', "id": 2}', PASSED_OVER),
            ('{"tenant": "' + "g" * PAST + '", "id": 2}', PASSED_OVER),
            ('{"id": [' + "1," * (PAST // 2) + '1], "tenant": "globex"}', PASSED_OVER),
            ('{"tenant": [' + "1," * (PAST // 2) + '1], "id": 2}', STOPPED),
            ('{"tenant": "acme", "id": "' + "2" * PAST + '"}', STOPPED),
            ('{"tenant": "acme", "id": ' + "2" * PAST + "}", STOPPED),
            ('{"id": 2, "tenant": ' + "2" * PAST + "}", STOPPED),
        ],
        ids=[
            "id-then-blanks",
            "blanks-then-id",
            "another-tenant-then-blanks",
            "long-tenant",
            "another-tenants-long-id",
            "tenant-not-a-string",
            "id-a-long-string",
            "id-past-bigint",
            "tenant-a-long-number",
        ],
    )
    def test_it_fares_as_the_line_held_whole(
        self, tmp_path: Path, line: str, expected: tuple[object, ...]
    ) -> None:
        """Its row fails, it is passed over as another tenant's, or the read stops, as when held whole;
        the lines after it are read (the read stopped at the long member, mid-line)."""
        path = write_lines(tmp_path / "audits.jsonl", good(1), line, good(3))
        assert fate_of(path, HELD) == expected
        assert fate_of(path, SKIMMED) == expected

    def test_the_stop_names_the_long_member(self, tmp_path: Path) -> None:
        """A line that cannot be counted for a kept member too long says which one, never its value."""
        path = write_lines(
            tmp_path / "audits.jsonl", good(1), '{"tenant": "acme", "id": "' + "7" * PAST + '"}'
        )
        with (
            FileAuditSource(path, "acme", checked=CheckedRows(path), max_record_bytes=SKIMMED) as source,
            pytest.raises(
                FileFormatError, match=f"line 2: .*its id is longer than {MEMBER_BYTES} bytes"
            ) as stop,
        ):
            all_pages(source, "acme", EPOCH, 10)
        assert "777" not in str(stop.value)


class TestLongNameNotUtf8:
    @pytest.mark.parametrize(
        ("members", "expected"),
        [
            (b'"tenant": "acme", "id": 2', FAILED),
            (b'"tenant": "globex", "id": 2', PASSED_OVER),
            (b'"id": 2', STOPPED),
        ],
        ids=["ours", "another-tenants", "no-tenant"],
    )
    def test_an_audits_line_fares_as_the_line_held_whole(
        self, tmp_path: Path, members: bytes, expected: tuple[object, ...]
    ) -> None:
        """The name may be any column: the row fails, another tenant's line is passed over, and a line
        naming no tenant stops the read (the long line's row failed, its tenant taken as given)."""
        line = b"{" + members + b", " + NAME + b': 1, "comment": "' + b"x" * 5_000 + b'"}'
        path = write_lines(tmp_path / "audits.jsonl", good(1), line, good(3))
        assert fate_of(path, HELD) == expected
        assert fate_of(path, SKIMMED) == expected

    @pytest.mark.parametrize("names", [1, 2])
    def test_each_such_name_is_counted_once(self, names: int) -> None:
        """Two such names are two, one written twice is one, as ``json.loads`` reads them."""
        repeated = b", ".join([NAME + b": 1"] * 2) if names == 1 else NAME + b": 1, " + NAME[:-1] + b'x": 2'
        line = b'{"id": 2, ' + repeated + b"}\n"
        blocks = [line[i : i + 1_000] for i in range(0, len(line), 1_000)]
        pieces = iter(blocks[1:])
        short = skim_long_line("a.jsonl", 1, blocks[0], lambda _: next(pieces, b""), {"id"}, 0)
        decoded = json.loads(short.decode("utf-8", "surrogateescape"))
        assert decoded.pop("id") == 2
        assert len(decoded) == names
        assert all(value is None for value in decoded.values())

    def test_a_users_line_is_refused_as_when_held_whole(self, tmp_path: Path) -> None:
        """A lookup line that is not UTF-8 is refused: the long name made it pass over, as UTF-8."""
        line = b'{"tenant": "acme", "id": 2, ' + NAME + b': 1, "email": "b@x"}'
        path = write_lines(tmp_path / "users.jsonl", line)
        short = skim_long_line(path, 1, line + b"\n", lambda _: b"", {"tenant", "id", "email"}, 0)
        with pytest.raises(UnicodeDecodeError):
            short.decode()


class TestLookupLineWithBlanks:
    def test_blanks_around_a_kept_member_do_not_make_it_too_long(self) -> None:
        """A users line's email followed by a MiB of blanks is read as the line held whole reads it
        (it was refused as an email past 1 MiB), blanks inside a string kept as written."""
        line = b'{"id": 2, "email":  "b @x"' + b" \t\r" * (PAST // 3) + b', "x": 1}\n'
        blocks = [line[i : i + 65_536] for i in range(0, len(line), 65_536)]
        pieces = iter(blocks[1:])
        short = skim_long_line("u.jsonl", 1, blocks[0], lambda _: next(pieces, b""), {"id", "email"}, 0)
        assert json.loads(short) == {"id": 2, "email": "b @x"}
        assert len(short) < 100
