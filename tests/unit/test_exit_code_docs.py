"""docs/runner.md's table of error codes is exit_codes.CODES, row for row, and holds every error's code."""

from __future__ import annotations

import re
from pathlib import Path

from crm_audit_adapters.cli import exit_codes
from support.error_classes import error_codes

RUNNER_DOC = Path(__file__).resolve().parents[2] / "docs" / "runner.md"


def _documented() -> dict[str, int]:
    """Each CODE of docs/runner.md's tables with its exit code."""
    documented: dict[str, int] = {}
    for line in RUNNER_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and cells[1].isdigit():
            for code in re.findall(r"`([A-Za-z_]+)`", cells[0]):
                documented[code] = int(cells[1])
    return documented


def test_the_documented_table_equals_the_codes_in_code() -> None:
    """Every CODE documented with its exit code is in CODES with that exit code, and none is missing."""
    assert _documented() == exit_codes.CODES


def test_every_error_code_is_in_the_table_and_its_doc() -> None:
    """Each code an error class defines (the walk of ``support.error_classes``, the adapters' too) has
    its exit code in ``CODES`` and its row in docs/runner.md: ``BROKER_UNAVAILABLE`` had neither."""
    codes = error_codes()
    assert {"BROKER_UNAVAILABLE", "OUTPUT_LOCKED", "RESTORE_REFUSED", "INVALID_SEED"} <= codes
    assert sorted(codes - set(exit_codes.CODES)) == []
    assert sorted(codes - set(_documented())) == []
