"""``dry-run`` on a small export holding the odd rows real tables have: one outcome line per row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from crm_audit_adapters.cli import cli

TENANT = "acme"
COMPANY = "company-acme"
UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
DEEP = {"notes": ["x"]}
DEEP_TEXT = '{"notes": [' + "[" * 1_200 + "]" * 1_200 + "]}"
UPDATE = "---\nfirst_name:\n- A\n- B\n"
COMBINED = "\nThis audit is the result of multiple audits being combined."


def audit(audit_id: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tenant": TENANT,
        "id": audit_id,
        "auditable_type": "Crm::Person",
        "auditable_id": 7,
        "action": "update",
        "audited_changes": UPDATE,
        "created_at": "2020-01-01T00:00:00Z",
    }
    record.update(fields)
    return record


def write_inputs(tmp_path: Path, audits: list[str]) -> list[str]:
    (tmp_path / "audits.jsonl").write_text("\n".join(audits) + "\n", encoding="utf-8")
    users = [
        {"tenant": TENANT, "id": UUID, "email": "uma@example.test", "full_name": "Uma"},
        {"tenant": TENANT, "id": 5, "email": "ira@example.test", "full_name": "Ira"},
    ]
    (tmp_path / "users.jsonl").write_text("\n".join(json.dumps(u) for u in users) + "\n", encoding="utf-8")
    contact = {
        "_id": "c7",
        "company_sso_id": COMPANY,
        "crm_data": {"id": 7},
        "created_at": "2030-01-01T00:00:00Z",
    }
    (tmp_path / "contacts.jsonl").write_text(json.dumps(contact) + "\n", encoding="utf-8")
    sso = [
        {"email": "uma@example.test", "sso_id": "sso-uma"},
        {"email": "ira@example.test", "sso_id": "sso-ira"},
    ]
    (tmp_path / "sso.jsonl").write_text("\n".join(json.dumps(s) for s in sso) + "\n", encoding="utf-8")
    return [
        "dry-run",
        "--company-sso-id",
        COMPANY,
        "--tenant",
        TENANT,
        *(f"--{name}={tmp_path / f'{name}.jsonl'}" for name in ("audits", "users", "contacts")),
        f"--sso-directory={tmp_path / 'sso.jsonl'}",
        f"--out={tmp_path / 'logs.jsonl'}",
        f"--report={tmp_path / 'report.json'}",
        f"--outcomes={tmp_path / 'outcomes.jsonl'}",
    ]


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env={"CRM_AUDIT_SETTINGS": ""})
    return result.exit_code, result.output


def outcomes(tmp_path: Path) -> dict[Any, dict[str, Any]]:
    lines = (tmp_path / "outcomes.jsonl").read_text(encoding="utf-8").splitlines()
    return {(r["audit_id"], r["outcome"], r["reason"]): r for r in map(json.loads, lines)}


class TestDryRunFieldCases:
    def test_every_odd_row_gets_its_own_outcome_line_and_count(self, tmp_path: Path) -> None:
        """Combined, redacted, binary, UUID-user, NULL-time, id<=0, repeated and deep rows: one line each."""
        deep = json.dumps(audit(9)).replace('"---\\nfirst_name:\\n- A\\n- B\\n"', DEEP_TEXT)
        rows = [
            json.dumps(audit(-2)),
            json.dumps(audit(0, user_id=UUID, user_type="User")),
            json.dumps(
                audit(1, audited_changes="---\nfirst_name:\n- A\n- B\nemail: a@x.test\n", comment=COMBINED)
            ),
            json.dumps(audit(2, audited_changes='---\nfirst_name:\n- A\n- B\npassword: "[REDACTED]"\n')),
            json.dumps(audit(3, audited_changes="---\navatar: !binary |-\n  /9j/4A==\n", action="create")),
            json.dumps(audit(4, created_at=None)),
            json.dumps(audit(5, user_id=5, user_type="User")),
            json.dumps(audit(5, audited_changes="---\nfirst_name:\n- X\n- Y\n")),
            deep,
        ]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        would_halt = report.pop("would_halt")
        assert report == {
            "processed": 9,
            "migrated": 6,
            "skipped": {},
            "failed": {"duplicate_audit_id": 1, "malformed_audited_changes": 1, "missing_created_at": 1},
            "actors_degraded": 0,
        }
        # The run's halt rule sees the rows it processed (the repeat was set aside by the file reader).
        assert would_halt["audit_id"] == 9
        assert would_halt["reason"].startswith("failure rate 25.00% (2 of 8 rows")
        found = outcomes(tmp_path)
        assert len((tmp_path / "outcomes.jsonl").read_text().splitlines()) == 9
        for audit_id in (-2, 0, 1, 2, 3, 5):
            line = found[(audit_id, "migrated", None)]
            assert line["detail"] == f"crm:{TENANT}:audit:{audit_id}"
            assert line["tenant"] == TENANT
        assert found[(4, "failed", "missing_created_at")]["detail"] == "created_at is NULL"
        assert "repeats audit id 5" in found[(5, "failed", "duplicate_audit_id")]["detail"]
        assert found[(9, "failed", "malformed_audited_changes")]["detail"].startswith("limit_exceeded")

    def test_the_logs_carry_the_right_values(self, tmp_path: Path) -> None:
        """The written documents hold the UUID user's SSO id, the set-to, the redaction and the $binary."""
        rows = [
            json.dumps(audit(0, user_id=UUID, user_type="User")),
            json.dumps(
                audit(1, audited_changes="---\nfirst_name:\n- A\n- B\nemail: a@x.test\n", comment=COMBINED)
            ),
            json.dumps(audit(2, audited_changes='---\nfirst_name:\n- A\n- B\npassword: "[REDACTED]"\n')),
            json.dumps(audit(3, audited_changes="---\navatar: !binary |-\n  /9j/4A==\n", action="create")),
        ]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        docs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
        by_id = {doc["metadata"]["crm_audit_id"]: doc for doc in docs}
        assert by_id[0]["actor"] == {"type": "user", "name": "Uma", "id": "sso-uma"}
        assert by_id[1]["metadata"]["combined"] is True
        assert by_id[1]["attributes"][1] == {
            "field": "email",
            "label": "Email",
            "from": None,
            "to": "a@x.test",
        }
        assert by_id[2]["attributes"][1]["from"] == by_id[2]["attributes"][1]["to"] == "[REDACTED]"
        assert by_id[3]["attributes"][0]["to"] == {"$binary": {"base64": "/9j/4A==", "subType": "00"}}

    def test_loader_limits_are_dry_run_options(self, tmp_path: Path) -> None:
        """--loader-max-bytes lowers the payload limit: a row over it fails as limit_exceeded."""
        args = write_inputs(tmp_path, [json.dumps(audit(1))])
        code, output = run([*args, "--loader-max-bytes", "10"])
        assert code == 0, output
        [line] = outcomes(tmp_path).values()
        assert (line["outcome"], line["reason"]) == ("failed", "malformed_audited_changes")
        assert line["detail"].startswith("limit_exceeded")
        code, output = run([*args, "--loader-max-bytes", "0"])
        assert code == 2

    def test_a_line_with_a_readable_id_but_a_lenient_one_elsewhere_fails_as_its_row(
        self, tmp_path: Path
    ) -> None:
        """A row whose auditable_id is not a strict integer is its own invalid_audit_row, counted."""
        rows = [json.dumps(audit(1)), json.dumps(audit(2, auditable_id="1_0"))]
        code, output = run(write_inputs(tmp_path, rows))
        assert code == 0, output
        report = json.loads((tmp_path / "report.json").read_text())
        assert (report["processed"], report["failed"]) == (2, {"invalid_audit_row": 1})
        assert (2, "failed", "invalid_audit_row") in outcomes(tmp_path)
