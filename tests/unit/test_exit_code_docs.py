"""docs/runner.md's table of error codes is exit_codes.CODES, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from crm_audit_adapters.cli import exit_codes

RUNNER_DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"


def test_the_documented_table_equals_the_codes_in_code() -> None:
    """Every CODE documented with its exit code is in CODES with that exit code, and none is missing."""
    documented: dict[str, int] = {}
    for line in RUNNER_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[1].isdigit():
            for code in re.findall(r"`([A-Za-z_]+)`", cells[0]):
                documented[code] = int(cells[1])
    assert documented == exit_codes.CODES
