"""The scale benchmark's synthetic CRM generator (benchmarks/generate.py), without a server."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (
    "id", "auditable_id", "auditable_type", "associated_id", "associated_type", "user_id", "user_type",
    "username", "action", "audited_changes", "version", "comment", "remote_address", "request_uuid",
    "created_at",
)  # fmt: skip
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = _load_generator()


def _fields(line: str) -> dict[str, str | None]:
    """Decode one COPY text line back into column values (``\\N`` is NULL)."""
    assert line.endswith("\n")
    values = line[:-1].split("\t")
    assert len(values) == len(COLUMNS)
    decoded = [None if v == "\\N" else re.sub(r"\\(.)", lambda m: _UNESCAPE[m.group(1)], v) for v in values]
    return dict(zip(COLUMNS, decoded, strict=True))


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    with (generate.CORPUS / "audits.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def templates() -> dict[str, list[Any]]:
    return generate.load_templates()


class TestCompileTemplate:
    def test_block_zero_replays_every_corpus_row_byte_for_byte(self, corpus: list[dict[str, Any]]) -> None:
        """Unshifted, a compiled row renders the corpus row's columns exactly, changes and comment too."""
        for row in corpus:
            template = generate.compile_template(row)
            uuid_tail = (row["request_uuid"] or "")[24:]
            line = template.fmt.format(
                row["id"], "T", uuid_tail, *template.entity_bases, *template.user_bases
            )
            fields = _fields(line)
            for column in COLUMNS[:-1]:
                expected = row[column]
                assert fields[column] == (None if expected is None else str(expected)), (row["id"], column)

    def test_linked_entity_ids_inside_changes_become_slots(self) -> None:
        """Person ids in changes (scalar or update list) and in comment JSON shift; status ids do not."""
        row = {
            "tenant": "acme", "id": 7, "auditable_id": 3, "auditable_type": "Crm::Deal",
            "associated_id": 4, "associated_type": "Crm::Person", "user_id": 2, "user_type": "User",
            "username": None, "action": "update",
            "audited_changes": "---\ncrm_stage_id:\n- 1\n- 10\ncrm_person_id:\n-\n- 26\n",
            "version": 2, "comment": '{"crm_person_id": "26", "source": "api"}', "remote_address": None,
            "request_uuid": "1c3a4572-2c72-4e7f-9f4b-0123456789ab", "created_at": "2019-01-01T00:00:00Z",
        }  # fmt: skip
        template = generate.compile_template(row)
        fields = _fields(
            template.fmt.format(
                9, "T", "000000000005",
                *[b + 5000 for b in template.entity_bases], *[b + 300 for b in template.user_bases],
            )
        )  # fmt: skip
        assert fields["auditable_id"] == "5003"
        assert fields["associated_id"] == "5004"
        assert fields["user_id"] == "302"
        assert fields["audited_changes"] == "---\ncrm_stage_id:\n- 1\n- 10\ncrm_person_id:\n-\n- 5026\n"
        assert fields["comment"] == '{"crm_person_id": "5026", "source": "api"}'
        assert fields["request_uuid"] == "1c3a4572-2c72-4e7f-9f4b-000000000005"


class TestAuditLines:
    def test_ids_are_consecutive_and_created_at_increases(self, templates: dict[str, list[Any]]) -> None:
        """Synthetic ids run 1..n and created_at grows with the id, as the keyset cursor expects."""
        rows = [_fields(line) for line in generate.audit_lines(templates, 3000)]
        assert [int(r["id"] or 0) for r in rows] == list(range(1, 3001))
        stamps = [r["created_at"] for r in rows]
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)

    def test_later_blocks_shift_entities_of_the_same_history(self, templates: dict[str, list[Any]]) -> None:
        """Block 3 replays tenant acme's history with every entity id moved by 3 strides."""
        total = sum(len(t) for t in templates.values())
        rows = [_fields(line) for line in generate.audit_lines(templates, total + 5)]
        first, replay = rows[0], rows[total]
        assert replay["audited_changes"] == first["audited_changes"]
        assert (
            int(replay["auditable_id"] or 0) == int(first["auditable_id"] or 0) + 3 * generate.ENTITY_STRIDE
        )
        assert replay["action"] == first["action"]

    def test_the_mix_of_types_and_actions_is_the_corpus_mix(
        self, templates: dict[str, list[Any]], corpus: list[dict[str, Any]]
    ) -> None:
        """One full cycle of blocks holds exactly the corpus's (auditable_type, action) counts."""
        rows = [_fields(line) for line in generate.audit_lines(templates, len(corpus))]
        produced = sorted((r["auditable_type"], r["action"]) for r in rows)
        assert produced == sorted((r["auditable_type"], r["action"]) for r in corpus)

    def test_timestamps_span_the_history_at_any_size(self) -> None:
        """Row n of n is stamped at the end of the simulated span, even for millions of rows."""
        for rows in (1, 1_000_000, 5_000_000):
            assert generate._timestamp(rows, rows) == generate.START + generate.SPAN


class TestSideData:
    def test_contacts_cover_most_synthetic_people_but_not_all(self, templates: dict[str, list[Any]]) -> None:
        """Over one cycle of blocks some persons have no contact and some synced mid-history."""
        cycle = sum(len(t) for t in templates.values())
        contacts = list(generate.contact_records(templates, cycle))
        ids = [c["crm_data"]["id"] for c in contacts]
        assert len(ids) == len(set(ids))
        assert len({c["created_at"] for c in contacts}) > 1
        with (generate.CORPUS / "entities.jsonl").open(encoding="utf-8") as lines:
            people = sum(1 for line in lines if json.loads(line)["type"] == "Crm::Person")
        assert 0.9 * people < len(contacts) < people

    def test_sso_directory_leaves_some_users_unknown(self) -> None:
        """USMAN knows most synthetic users by email, not all (their actors degrade)."""
        users = list(generate.user_records(100_000, ["acme", "globex", "nusantara_retail"]))
        sso = list(generate.sso_records(users))
        assert len({u["id"] for u in users}) == len(users)
        assert 0 < len(sso) < len(users)
        assert {s["email"] for s in sso} <= {u["email"] for u in users}
