"""File inputs with the odd rows real exports hold: deep jsonb, UUID user ids, lenient ids."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from crm_audit_adapters.files import AUDIT_COLUMNS, FileFormatError, read_audit_rows, read_users
from crm_audit_adapters.files.directories import parse_contact_line
from crm_audit_adapters.files.lines import MAX_MEMBER_VALUES
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import Failed
from crm_audit_transform.loading import JsonbText
from crm_audit_transform.transformer import Transformer

UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
DEEP = '{"notes": [' + "[" * 1_200 + "]" * 1_200 + "]}"


def line(**fields: Any) -> str:
    record: dict[str, Any] = {
        "tenant": "acme",
        "id": 1,
        "auditable_type": "Crm::Person",
        "auditable_id": 7,
        "action": "update",
        "audited_changes": {"name": ["a", "b"]},
        "created_at": "2020-01-01T00:00:00Z",
    }
    record.update(fields)
    return json.dumps(record)


def csv_file(path: Path, **fields: str) -> Path:
    values = dict.fromkeys(AUDIT_COLUMNS, "")
    values.update(
        id="1", auditable_type="Crm::Person", auditable_id="7", action="update", created_at="2020-01-01"
    )
    values["audited_changes"] = '"---\nname:\n- a\n- b\n"'
    values.update(fields)
    path.write_text(",".join(AUDIT_COLUMNS) + "\n" + ",".join(values[c] for c in AUDIT_COLUMNS) + "\n")
    return path


class TestWideJsonl:
    """A line's member of more values than ``MAX_MEMBER_VALUES`` is kept as its text, never decoded:
    decoded, a value of ``[],`` costs about 60 bytes (a 24 MB line held 830 MiB). On the old code
    each of these peaked at about 20 x the line."""

    WIDE = "[" + "[]," * MAX_MEMBER_VALUES + "[]]"

    def read(self, path: Path) -> tuple[list[Any], int]:
        tracemalloc.start()
        try:
            rows = list(read_audit_rows(path))
            return rows, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def test_a_wide_jsonb_changes_is_read_as_its_text_and_fails_its_row_alone(self, tmp_path: Path) -> None:
        wide = line(id=2).replace('{"name": ["a", "b"]}', '{"notes": ' + self.WIDE + "}")
        path = tmp_path / "a.jsonl"
        path.write_text("\n".join([line(id=1), wide, line(id=3)]) + "\n")
        rows, peak = self.read(path)
        assert [row.id for row in rows] == [1, 2, 3]
        assert isinstance(rows[1].audited_changes, JsonbText)
        assert peak < 8 * len(wide)  # the line, its text and their copies with strings cut
        prepared = Transformer(load_default_config()).prepare(rows)
        assert [p.problem is None for p in prepared] == [True, False, True]
        problem = prepared[1].problem
        assert isinstance(problem, Failed)
        assert problem.detail == "limit_exceeded: nodes exceeds the limit of 100000 (saw 100003)"

    def test_a_wide_value_in_another_column_is_of_a_wrong_type(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        wide = json.dumps(json.loads(self.WIDE))  # as the line holds it: "[[], [], …]"
        path.write_text(line(username=json.loads(wide)) + "\n")
        problems: list[FileFormatError] = []
        tracemalloc.start()
        try:
            assert list(read_audit_rows(path, on_error=problems.append)) == []
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * path.stat().st_size
        (problem,) = problems
        assert str(problem).endswith(
            f"username is not a string: an array of {len(wide)} characters of JSON, not decoded"
        )

    def test_a_wide_csv_jsonb_field_is_kept_as_its_text(self, tmp_path: Path) -> None:
        """A CSV record's jsonb ``audited_changes`` of too many values is not decoded either."""
        wide = '{"notes": ' + self.WIDE + "}"
        path = csv_file(tmp_path / "a.csv", audited_changes='"' + wide.replace('"', '""') + '"')
        tracemalloc.start()
        try:
            (row,) = read_audit_rows(path, "acme", jsonb_changes=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert row.audited_changes == JsonbText(wide)
        assert peak < 8 * len(wide)

    def test_a_wide_string_is_one_value(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text(line(username=self.WIDE) + "\n")
        (row,) = read_audit_rows(path)
        assert row.username == self.WIDE


class TestDeepJsonb:
    def test_a_jsonl_line_nested_past_recursion_is_its_rows_failure(self, tmp_path: Path) -> None:
        """The deep row is read (its changes as JsonbText) and fails alone; the next line still reads."""
        deep = line(id=2).replace('{"name": ["a", "b"]}', DEEP)
        path = tmp_path / "a.jsonl"
        path.write_text("\n".join([line(id=1), deep, line(id=3)]) + "\n")
        rows = list(read_audit_rows(path))
        assert [row.id for row in rows] == [1, 2, 3]
        assert isinstance(rows[1].audited_changes, JsonbText)
        prepared = Transformer(load_default_config()).prepare(rows)
        assert [p.problem is None for p in prepared] == [True, False, True]
        problem = prepared[1].problem
        assert isinstance(problem, Failed)
        assert problem.detail.startswith("limit_exceeded")

    def test_a_csv_jsonb_field_nested_past_recursion_is_kept_as_text(self, tmp_path: Path) -> None:
        """A psql CSV of a jsonb column hands the deep value on as JsonbText."""
        path = csv_file(tmp_path / "a.csv", audited_changes='"' + DEEP.replace('"', '""') + '"')
        [row] = read_audit_rows(path, "acme", jsonb_changes=True)
        assert isinstance(row.audited_changes, JsonbText)


class TestIds:
    def test_a_uuid_user_id_is_read_as_a_string(self, tmp_path: Path) -> None:
        """JSONL and CSV user ids may be UUIDs; CSV digits stay an integer."""
        (tmp_path / "a.jsonl").write_text(line(user_id=UUID, user_type="User") + "\n")
        assert [row.user_id for row in read_audit_rows(tmp_path / "a.jsonl")] == [UUID]
        assert [
            row.user_id for row in read_audit_rows(csv_file(tmp_path / "u.csv", user_id=UUID), "acme")
        ] == [UUID]
        assert [
            row.user_id for row in read_audit_rows(csv_file(tmp_path / "i.csv", user_id="42"), "acme")
        ] == [42]

    def test_users_files_may_hold_uuid_ids(self, tmp_path: Path) -> None:
        """A users line whose id is a UUID is that user."""
        path = tmp_path / "users.jsonl"
        path.write_text(json.dumps({"tenant": "acme", "id": UUID, "email": "a@example.test"}) + "\n")
        assert list(read_users(path, "acme")) == [UUID]

    @pytest.mark.parametrize(
        "text", ["1_0_0_1", "\u0661\u0662", " 12", "+12", "12.0", "99999999999999999999"]
    )
    def test_csv_ids_are_parsed_strictly(self, tmp_path: Path, text: str) -> None:
        """Underscores, other scripts' digits, spaces, signs and overlong ids are not audit ids."""
        with pytest.raises(FileFormatError, match="id is not an integer"):
            list(read_audit_rows(csv_file(tmp_path / "a.csv", id=text), "acme"))

    def test_contact_person_ids_are_parsed_strictly(self) -> None:
        """A contact whose crm_data.id is in Arabic-Indic digits names no person: an error on its line."""
        raw = json.dumps(
            {
                "_id": "c1",
                "company_sso_id": "co",
                "crm_data": {"id": "\u0661\u0662"},
                "created_at": "2020-01-01",
            }
        )
        with pytest.raises(FileFormatError, match=r"crm_data\.id"):
            parse_contact_line("contacts.jsonl", 1, raw.encode())
