"""Lookup lines past ``MAX_LINE_BYTES``: read for the members their reader reads, never held whole.

A users, contacts or SSO line longer than 64 MiB stopped the whole dry run. Its reader now reads it
on in blocks and keeps only its own members (``long_lines``): a long member it does not read (an
export's extra column, a contact's other fields) is passed over and the record is the one the whole
line makes; a long member it reads, or a line that is not one JSON object, still stops the read,
naming the line and the member.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files import (
    FileFormatError,
    JsonlContactDirectory,
    read_contacts,
    read_sso_directory,
    read_users,
)
from crm_audit_adapters.files.lines import MAX_LINE_BYTES
from crm_audit_adapters.files.long_lines import MEMBER_BYTES, skim_long_line
from crm_audit_transform.domain import CrmUser

LONG = '"' + ("é" * 500 + 'x\\"q\\" {[,: \\u00e9') * (MAX_LINE_BYTES // 1000) + '"'
"""A JSON string longer than a line may be, with escapes, quotes and brackets inside."""


def write(path: Path, *lines: str) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
    return path


class TestLongLookupLines:
    def test_a_users_long_extra_column_is_passed_over_and_a_long_name_stops_the_read(
        self, tmp_path: Path
    ) -> None:
        path = write(
            tmp_path / "users.jsonl",
            '{"tenant": "acme", "id": 1, "email": "a@x", "full_name": "A", "deleted_at": null}',
            '{"tenant": "acme", "id": 2, "settings": ' + LONG + ', "email": "b@x", "full_name": "B"}',
            '{"tenant": "acme", "id": 3, "email": "c@x", "full_name": "C", "deleted_at": null}',
        )
        assert path.stat().st_size > MAX_LINE_BYTES
        assert read_users(path, "acme") == {
            1: CrmUser(1, "a@x", "A", None),
            2: CrmUser(2, "b@x", "B", None),
            3: CrmUser(3, "c@x", "C", None),
        }
        named = write(tmp_path / "named.jsonl", '{"tenant": "acme", "id": 2, "full_name": ' + LONG + "}")
        with pytest.raises(FileFormatError, match=f"line 1: .*its full_name longer than {MEMBER_BYTES}"):
            read_users(named, "acme")

    def test_a_contacts_long_other_fields_are_passed_over_by_both_readers(self, tmp_path: Path) -> None:
        """The directory indexes past the long line and reads it again by seeking to it."""
        oid = "65a1b2c3d4e5f60718293a4b"
        path = write(
            tmp_path / "contacts.jsonl",
            '{"_id": "c1", "company_sso_id": "co", "crm_data": {"id": 1}, "created_at": "2024-01-01"}',
            '{"_id": {"$oid": "' + oid + '"}, "notes": ' + LONG + ', "company_sso_id": "co", '
            '"crm_data": {"id": 2}, "created_at": {"$date": "2024-01-02T00:00:00Z"}}',
            '{"_id": "c3", "company_sso_id": "co", "crm_data": {"id": 3}, "created_at": "2024-01-03"}',
        )
        contacts = read_contacts(path)
        assert [(contact.id, contact.crm_person_id) for contact in contacts] == [
            ("c1", 1),
            (oid, 2),
            ("c3", 3),
        ]
        found = JsonlContactDirectory(path).contacts_by_crm_ids("co", [1, 2, 3])
        assert sorted(found.values(), key=lambda contact: contact.crm_person_id) == contacts

    def test_an_sso_line_whose_email_is_too_long_stops_the_read(self, tmp_path: Path) -> None:
        path = write(
            tmp_path / "sso.jsonl",
            '{"email": "a@x", "sso_id": "s-a", "photo": ' + LONG + "}",
            '{"email": "b@x", "sso_id": "s-b"}',
        )
        assert read_sso_directory(path) == {"a@x": "s-a", "b@x": "s-b"}
        bad = write(tmp_path / "bad.jsonl", '{"sso_id": "s-a", "email": ' + LONG + "}")
        with pytest.raises(FileFormatError, match=r"line 1: .*its email longer than"):
            read_sso_directory(bad)


def chunked(first: bytes, rest: list[bytes]) -> Callable[[int], bytes]:
    pieces: Iterator[bytes] = iter(rest)
    return lambda _size: next(pieces, b"")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text('a"\\\n{}[],: é\u2028'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text('a"b\\{', max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(["id", "email", 'a"b', "x", "é", ""])


class TestSkimmedLine:
    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(
        members=st.lists(st.tuples(KEYS, JSON), max_size=6),
        keep=st.frozensets(KEYS),
        ascii_only=st.booleans(),
        compact=st.booleans(),
        cuts=st.lists(st.integers(0, 400), max_size=8),
    )
    def test_the_short_line_reads_as_the_whole_line_does_for_the_kept_members(
        self,
        members: list[tuple[str, object]],
        keep: frozenset[str],
        ascii_only: bool,
        compact: bool,
        cuts: list[int],
    ) -> None:
        """Fed in blocks cut anywhere, the short line's object is the whole line's, less the members
        not kept: repeated keys included (the last one counts, as json.loads reads them)."""
        separators = (",", ":") if compact else (", ", ": ")
        parts = [
            json.dumps(key, ensure_ascii=ascii_only)
            + separators[1]
            + json.dumps(value, ensure_ascii=ascii_only, separators=separators)
            for key, value in members
        ]
        line = ("{" + separators[0].join(parts) + "}\n").encode()
        bounds = sorted({min(cut, len(line)) for cut in cuts} | {len(line)})
        blocks = [line[start:end] for start, end in zip([0, *bounds], bounds, strict=False) if end > start]
        short = skim_long_line("f.jsonl", 1, blocks[0], chunked(blocks[0], blocks[1:]), keep, 0)
        whole = json.loads(line)
        assert json.loads(short) == {key: value for key, value in whole.items() if key in keep}

    @pytest.mark.parametrize(
        "line",
        [
            b"[1, 2]\n",
            b'{"a": 1,}\n',
            b'{"a" 1}\n',
            b'{"a": 1} x\n',
            b'{"a": "open\n',
            b'{"a": 1]}\n',
            b"\n",
            b'{"a": 1, "b": [1, 2}}\n',  # a member passed over whose brackets do not match
            b'{"a": 1, "b": {"c": ]}\n',
        ],
    )
    def test_a_line_that_is_not_one_object_is_refused(self, line: bytes) -> None:
        with pytest.raises(
            FileFormatError, match=r"line 7: line longer than 0 bytes, and not one JSON object"
        ):
            skim_long_line("f.jsonl", 7, line, chunked(line, []), {"a"}, 0)

    @pytest.mark.parametrize(
        ("first", "block"),
        [(b"\0" * 64, b"\0" * 64), (b'{"a": "' + b"x" * 64, b"x" * 64)],
        ids=["not-an-object", "kept-member-too-long"],
    )
    def test_an_endless_line_is_refused_once_it_cannot_be_read(self, first: bytes, block: bytes) -> None:
        """/dev/zero as an input is one line that never ends: the scan knew at its first byte that
        it is not one object, yet read on for ever waiting for its newline. It stops reading as soon
        as the line is refused: not one object, or a kept member past MEMBER_BYTES."""
        calls = 0
        blocks_past_the_member = MEMBER_BYTES // len(block) + 8

        def endless(_: int) -> bytes:
            nonlocal calls
            calls += 1
            assert calls <= blocks_past_the_member, "read on past the point the line was refused"
            return block

        with pytest.raises(FileFormatError, match="line 3: line longer than 0 bytes"):
            skim_long_line("f.jsonl", 3, first, endless, {"a"}, 0)
