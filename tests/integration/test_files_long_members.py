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

from crm_audit_adapters.files import (
    CheckedRows,
    FileAuditSource,
    FileFormatError,
    read_entities,
    read_sso_directory,
    read_users,
)
from crm_audit_adapters.files.long_lines import MEMBER_BYTES, MembersTooLong, skim_long_line
from crm_audit_transform.domain import CrmUser, EntityRef

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


def skim(line: bytes, keep: set[str], block: int) -> bytes:
    """``skim_long_line`` of ``line`` fed in blocks of ``block`` bytes."""
    blocks = [line[i : i + block] for i in range(0, len(line), block)]
    pieces = iter(blocks[1:])
    return skim_long_line("f.jsonl", 1, blocks[0], lambda _: next(pieces, b""), keep, 0)


LONG_NAME = '"' + "n" * PAST + '"'
"""A string member too long to keep: no tenant, company, email or name of a lookup line is one."""


class TestLookupLineOfAnotherTenant:
    @pytest.mark.parametrize(
        ("member", "wanted"),
        [("full_name", "tenant"), ("email", "tenant"), ("id", "tenant"), ("tenant", None)],
    )
    def test_a_users_line_is_passed_over_and_only_this_tenants_stops_the_read(
        self, tmp_path: Path, member: str, wanted: str | None
    ) -> None:
        """Another tenant's line whose kept member is too long stopped this tenant's read (the skim
        refused it before its tenant was read); it is passed over, as when held whole. A string tenant
        too long to keep is no tenant given. This tenant's line, or any when none is given, stops the
        read naming the line and the member, never its value."""
        record = {"tenant": "globex", "id": 7, "email": "g@x", "full_name": "G", member: "@"}
        long_line = json.dumps(record).replace('"@"', LONG_NAME)
        path = write_lines(
            tmp_path / "users.jsonl",
            '{"tenant": "acme", "id": 1, "email": "a@x", "full_name": "A"}',
            long_line,
            '{"tenant": "acme", "id": 2, "email": "b@x", "full_name": "B"}',
        )
        users = read_users(path, "acme", max_line_bytes=4_096)
        assert users == {1: CrmUser(1, "a@x", "A", None), 2: CrmUser(2, "b@x", "B", None)}
        for tenant in ("globex", None) if member != "tenant" else (None,):
            with pytest.raises(MembersTooLong, match=f"line 2: .*its {member} longer than {MEMBER_BYTES}"):
                read_users(path, tenant, max_line_bytes=4_096)

    def test_an_entities_line_is_passed_over_alike(self, tmp_path: Path) -> None:
        path = write_lines(
            tmp_path / "entities.jsonl",
            '{"tenant": "globex", "type": "Crm::Deal", "id": 1, "name": ' + LONG_NAME + "}",
            '{"tenant": "acme", "type": "Crm::Deal", "id": 1, "name": "Deal"}',
        )
        assert read_entities(path, "acme", max_line_bytes=4_096) == {
            ("Crm::Deal", 1): EntityRef("Crm::Deal", 1, "Deal", True)
        }
        with pytest.raises(MembersTooLong, match=r"line 1: .*its name longer than"):
            read_entities(path, "globex", max_line_bytes=4_096)

    def test_an_sso_line_of_another_company_is_passed_over(self, tmp_path: Path) -> None:
        path = write_lines(
            tmp_path / "sso.jsonl",
            '{"company_sso_id": "co-b", "sso_id": "s-b", "email": ' + LONG_NAME + "}",
            '{"company_sso_id": ' + LONG_NAME + ', "sso_id": "s-c", "email": "c@x"}',
            '{"company_sso_id": "co-a", "sso_id": "s-a", "email": "a@x"}',
        )
        assert read_sso_directory(path, "co-a", max_line_bytes=4_096) == {"a@x": "s-a"}
        with pytest.raises(MembersTooLong, match=r"line 1: .*its email longer than") as stop:
            read_sso_directory(path, max_line_bytes=4_096)
        assert "nnn" not in str(stop.value)


class TestNestedBlanks:
    @staticmethod
    def line(inner: int) -> bytes:
        """A contacts line whose ``crm_data`` holds ``inner`` bytes of text, nested in blanks."""
        value = (
            b" " * 5_000
            + b'{"id" :  [ \t\t"'
            + b"x" * inner
            + b'"  \r\t , 1, 2,\t3 ]'
            + b" " * 70_000  # past a block: read inside the value's brackets at once
            + b"}"
            + b" " * 3_000
        )
        return b'{"crm_data":' + value + b', "x": 1}\n'

    @staticmethod
    def size(line: bytes) -> int:
        """What ``crm_data`` holds: its bytes written compactly."""
        crm_data = json.loads(line)["crm_data"]
        return len(json.dumps(crm_data, separators=(",", ":")).encode())

    @pytest.mark.parametrize("block", [1_000, 4_097, 65_536])
    def test_a_member_is_measured_by_what_it_holds_at_any_depth(self, block: int) -> None:
        """Blanks inside a kept member's brackets counted towards its 1 MiB, so a member of a few
        bytes nested in a MiB of blanks was refused; none count now, and the bound is exact: a member
        holding ``MEMBER_BYTES`` is kept, one byte more is too long, however the blocks fall."""
        inner = MEMBER_BYTES - self.size(self.line(0))
        fits, over = self.line(inner), self.line(inner + 1)
        assert (self.size(fits), self.size(over)) == (MEMBER_BYTES, MEMBER_BYTES + 1)
        short = skim(fits, {"crm_data"}, block)
        assert json.loads(short) == {"crm_data": json.loads(fits)["crm_data"]}
        assert len(short) < MEMBER_BYTES + 100  # its blanks, a MiB of them, not kept
        with pytest.raises(MembersTooLong, match="its crm_data longer than"):
            skim(over, {"crm_data"}, block)

    def test_a_few_bytes_in_a_mib_of_nested_blanks_are_kept(self) -> None:
        line = b'{"crm_data": {"id": [2,' + b" \t" * PAST + b"3]" + b"\r " * PAST + b'}, "x": 1}\n'
        assert skim(line, {"crm_data"}, 65_536) == b'{"crm_data":{"id": [2, 3] }}\n'


class TestLongMemberName:
    @pytest.mark.parametrize(
        "inside",
        [b"abc", b"\\u00e9", b"\\/", b"\\\\u", b"\\ud800", b"\\q", b"\\u12G4", b"\\u00", b"\x01", b"\t"],
    )
    @pytest.mark.parametrize("offset", [4_990, 4_997, 4_999])
    def test_a_name_past_4_kib_is_read_as_the_line_held_whole_reads_it(
        self, inside: bytes, offset: int
    ) -> None:
        """Its bytes were only checked for UTF-8: a name with an escape JSON has not, or a control
        character, was passed over where the line held whole is no JSON. It is now refused alike
        (``FileFormatError`` naming the line), wherever a block cuts the escape; a JSON name is
        passed over with its value, as no reader names it."""
        name = b'"' + b"k" * offset + inside + b"z" * 3_000 + b'"'
        line = b'{"id": 2, ' + name + b": [1], " + name + b': {"a": 1}}\n'
        try:
            json.loads(line)
        except ValueError:
            with pytest.raises(FileFormatError, match=r"line 1: .*not one JSON object"):
                skim(line, {"id"}, 1_000)
        else:
            assert json.loads(skim(line, {"id"}, 1_000)) == {"id": 2}

    def test_an_audits_line_with_a_malformed_long_name_stops_the_read_as_held(self, tmp_path: Path) -> None:
        """Held whole it is no JSON; read on in blocks it is no JSON object: the read stops at it."""
        line = '{"tenant": "acme", "id": 2, "' + "k" * 5_000 + '\\q": 1, "comment": "' + "x" * 5_000 + '"}'
        path = write_lines(tmp_path / "audits.jsonl", good(1), line, good(3))
        assert fate_of(path, HELD) == STOPPED
        assert fate_of(path, SKIMMED) == STOPPED
