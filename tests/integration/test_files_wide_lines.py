"""Lines of too many values, in every file reader: read in a few times their size.

Decoded whole, a value of ``[],`` costs about 100 bytes: a 24 MB contacts line held 828 MiB and a
verified ``--out`` line 807 MiB. The peaks are counted by tracemalloc (bytes, not time); on the old
code each of these failed by a wide margin (a peak of ~30 x the line).
"""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crm_audit_adapters.files import (
    FileFormatError,
    JsonlActivityLogSink,
    JsonlContactDirectory,
    lines,
    read_audit_rows,
    read_contacts,
    read_users,
)
from crm_audit_adapters.files.lines import MAX_MEMBER_VALUES
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_transform.domain import ActivityLog, Actor, CrmUser, FieldChange
from crm_audit_transform.loading import JsonbText

WIDE = "[" + "[]," * (3 * MAX_MEMBER_VALUES) + "[]]"
"""900 KB of 300,001 values: decoded, about 30 MB."""
ALMOST = "[" + "[]," * (MAX_MEMBER_VALUES - 10) + "[]]"
"""Fewer values than ``MAX_MEMBER_VALUES``: a member decoded on its own."""


def peak_of(call: Callable[[], object]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def contact(number: int, person: int, **more: str) -> str:
    extra = "".join(f', "{key}": {value}' for key, value in more.items())
    return (
        f'{{"_id": "c{number}", "company_sso_id": "co", "crm_data": {{"id": {person}}}, '
        f'"created_at": "2020-01-0{number}T00:00:00Z"{extra}}}'
    )


class TestContacts:
    def test_a_wide_contact_line_is_read_for_its_members_in_a_few_times_its_size(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "contacts.jsonl"
        path.write_text(contact(1, 7, fields=WIDE) + "\n" + contact(2, 8) + "\n")
        found, peak = peak_of(lambda: read_contacts(path))
        assert [(c.id, c.crm_person_id) for c in found] == [("c1", 7), ("c2", 8)]
        assert peak < 6 * len(WIDE)  # decoded whole: ~35 x

    def test_the_file_backed_directory_orders_a_wide_contacts_id_alike(self, tmp_path: Path) -> None:
        """Two contacts of one person: the index reads both ``_id`` s, the wide one's included."""
        path = tmp_path / "contacts.jsonl"
        path.write_text(contact(2, 7, fields=WIDE) + "\n" + contact(1, 7) + "\n")
        directory, peak = peak_of(lambda: JsonlContactDirectory(path))
        assert directory.contacts_by_crm_ids("co", [7])[7].id == "c1"
        assert peak < 6 * len(WIDE)

    def test_a_crm_data_of_too_many_values_is_refused_naming_its_line(self, tmp_path: Path) -> None:
        path = tmp_path / "contacts.jsonl"
        path.write_text(
            contact(1, 7) + "\n" + contact(2, 8).replace('{"id": 8}', '{"id": 8, "x": ' + WIDE + "}")
        )
        with pytest.raises(FileFormatError, match=r"line 2: its .*crm_data.* hold more than 100,000 values"):
            read_contacts(path)

    def test_a_wide_line_that_is_not_an_object_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "contacts.jsonl"
        path.write_text(contact(1, 7, fields=WIDE)[:-1] + "\n")
        with pytest.raises(FileFormatError, match=r"line 1: not .*JSON"):
            read_contacts(path)


def test_a_line_of_many_strings_is_counted_in_a_few_times_its_size(tmp_path: Path) -> None:
    """Its values are counted before it is read (``lines.json_values``): cutting its strings out at
    once held ~60 times the line."""
    strings = "[" + '"",' * (3 * MAX_MEMBER_VALUES) + '""]'
    path = tmp_path / "users.jsonl"
    path.write_text(f'{{"tenant": "acme", "id": 1, "email": "a@x", "x": {strings}}}\n')
    users, peak = peak_of(lambda: read_users(path))
    assert users == {1: CrmUser(1, "a@x", None, None)}
    assert peak < 8 * len(strings)


class TestManyMembers:
    """Members each of fewer values than ``MAX_MEMBER_VALUES`` add up: past it in all, the rest are
    kept as their text. Decoded one by one, 12 of them held ~1.2 GB for a 3.6 MB line."""

    MEMBERS = ", ".join(f'"x{i}": {ALMOST}' for i in range(6))
    DECODED = 12 << 20
    """What the values decoded in all hold at most: ``MAX_MEMBER_VALUES`` of about 100 bytes."""

    def test_an_audit_line_of_many_members_holds_a_few_times_its_size(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(
            '{"tenant": "acme", "id": 1, "auditable_type": "Crm::Person", "auditable_id": 7, '
            '"action": "update", "audited_changes": {"name": ["a", "b"]}, '
            f'"created_at": "2020-01-01T00:00:00Z", {self.MEMBERS}}}\n'
        )
        rows, peak = peak_of(lambda: list(read_audit_rows(path)))
        assert [(row.id, row.audited_changes) for row in rows] == [(1, {"name": ["a", "b"]})]
        assert peak < 4 * path.stat().st_size + self.DECODED  # each decoded: ~65 MB

    def test_a_users_line_of_many_members_holds_a_few_times_its_size(self, tmp_path: Path) -> None:
        path = tmp_path / "users.jsonl"
        path.write_text(f'{{"tenant": "acme", "id": 1, "email": "a@x", {self.MEMBERS}}}\n')
        users, peak = peak_of(lambda: read_users(path))
        assert users == {1: CrmUser(1, "a@x", None, None)}
        assert peak < 4 * path.stat().st_size + self.DECODED

    def test_the_members_past_the_limit_are_kept_as_text(self) -> None:
        found = lines.shallow_object('{"a": ' + ALMOST + ', "b": [1, 2], "c": ' + ALMOST + "}")
        assert isinstance(found["a"], list)
        assert found["b"] == [1, 2]
        assert found["c"] == JsonbText(ALMOST)


class TestVerifiedOutput:
    LINE = (
        '{"company_sso_id":"co","customer_id":"c1","category":"crm","action":"update","actor":null,'
        '"attributes":ATTRIBUTES,"timestamp":{"$date":"2020-01-01T00:00:00Z"},'
        '"external_id":"crm:acme:audit:ID","source_tag":"crm_migration","metadata":{"crm_person_id":1}}'
    )

    def line(self, audit_id: int, attributes: str = '{"a":1}') -> str:
        return self.LINE.replace("ATTRIBUTES", attributes).replace("ID", str(audit_id))

    def test_a_wide_stored_line_is_read_in_a_few_times_its_size_its_member_as_written(
        self, tmp_path: Path
    ) -> None:
        """Held (< 1 MiB) or read on in blocks and then whole: either way never decoded whole."""
        wide = WIDE
        wider = "[" + wide[1:-1] + "," + wide[1:-1] + "]"  # past 1 MiB: a long line
        path = tmp_path / "out.jsonl"
        path.write_text("\n".join([self.line(1), self.line(2, wide), self.line(3, wider)]) + "\n")

        def read() -> list[Any]:
            reader = JsonlMigratedLogReader(path)
            ids = ["crm:acme:audit:1", "crm:acme:audit:2", "crm:acme:audit:3"]
            docs = [stored.parsed() for stored in reader.migrated_logs("co", ids)]
            return [(d.external_id, d.crm_person_id, d.content["attributes"]) for d in docs if d is not None]

        found, peak = peak_of(read)
        assert found == [
            ("crm:acme:audit:1", 1, b'{"a":1}'),
            ("crm:acme:audit:2", 1, wide.encode()),
            ("crm:acme:audit:3", 1, wider.encode()),
        ]
        assert peak < 8 * len(wider)  # decoded whole: ~35 x

    def test_a_wide_member_in_an_earlier_releases_layout_is_the_same_content(self, tmp_path: Path) -> None:
        """A log of more values than a line's member is decoded with (the loader's ``max_nodes``
        raised), stored as an earlier release wrote it (``json.dumps``: spaced, ``\\u`` escapes,
        ``1e-07``): its member is kept as its text, compared as the sink writes it today, so verify
        finds no drift. Compared as written, the two texts differed."""
        items: list[Any] = [1.5e16, 1e-7, -2.5, "é ☃", "a\x7fb\n", {"k": [0.1, "x"]}, *range(150_000)]
        log = ActivityLog(
            company_sso_id="co",
            customer_id="c1",
            category="deal",
            action="update",
            actor=Actor("system", "System"),
            changes=(FieldChange("tags", "Tags", None, items),),
            timestamp=dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
            external_id="crm:acme:audit:1",
            metadata={"crm_audit_id": 1, "crm_tenant": "acme"},
        )
        out = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([log])
        out.write_text(json.dumps(json.loads(out.read_text())) + "\n")  # the spaced layout
        reader = JsonlMigratedLogReader(out)
        (stored,) = reader.migrated_logs("co", [log.external_id])
        expected = reader.content_of(log)
        doc = stored.parsed(expected)
        assert doc is not None
        assert isinstance(json.loads(out.read_text())["attributes"], list)
        assert doc.content == expected
        assert doc.content["attributes"] == expected["attributes"]
        edited = json.loads(out.read_text())
        edited["attributes"][0]["to"][6] = 7  # an item changed: drift all the same
        out.write_text(json.dumps(edited) + "\n")
        (stored,) = JsonlMigratedLogReader(out).migrated_logs("co", [log.external_id])
        changed = stored.parsed(expected)
        assert changed is not None
        assert changed.content["attributes"] != expected["attributes"]


def test_an_output_line_of_many_values_in_another_layout_is_indexed_in_a_few_times_its_size(
    tmp_path: Path,
) -> None:
    """A line not in the sink's layout is parsed to be indexed (and by the sink, opening the file):
    decoded whole, ~35 x its size."""
    from crm_audit_adapters.files.log_index import LogIndex

    path = tmp_path / "out.jsonl"
    path.write_text(f'{{"attributes": {WIDE}, "external_id": "crm:acme:audit:1", "company_sso_id": "co"}}\n')

    def index() -> list[tuple[int, str]]:
        with path.open("rb") as stream:
            return LogIndex.of_stream(stream, path).places("co", ["crm:acme:audit:1"])

    found, peak = peak_of(index)
    assert found == [(0, "crm:acme:audit:1")]
    assert peak < 6 * len(WIDE)
