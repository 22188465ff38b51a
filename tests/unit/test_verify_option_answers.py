"""verify's ``sample`` and ``seed`` under one rule (``verification.check_draw``) as each surface says it:
the HTTP route's 400 with the service's code, the runner's usage error (exit 2) before anything runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from click.testing import CliRunner
from starlette.requests import Request

from crm_audit_adapters.cli import cli, exit_codes
from crm_audit_adapters.http.errors import on_domain_error
from crm_audit_transform.errors import VerifyOptionInvalid
from crm_audit_transform.usecases.verify import DEFAULT_KEEP
from crm_audit_transform.verification import SAMPLE_MAX, SEED_MAX, SEED_MIN


class _Request:
    method = "POST"

    class url:  # the shape the handler's log line reads
        path = "/private/activity_logs/crm_migration/verify"


@pytest.mark.parametrize(("option", "code"), [("sample", "INVALID_SAMPLE"), ("seed", "INVALID_SEED")])
def test_the_services_refusal_is_the_callers_400(option: str, code: str) -> None:
    """``VerifyOptionInvalid`` is the route's 400 with its code and message, as the route's own check
    answered it before; an unknown library error would be a 500."""
    error = VerifyOptionInvalid(option, f"{option} must be an integer")
    response = asyncio.run(on_domain_error(cast(Request, _Request()), error))
    answer: Any = json.loads(bytes(response.body))
    assert response.status_code == 400
    assert answer["error"] == {"code": code, "message": f"{option} must be an integer"}


@pytest.mark.parametrize(
    "given",
    [
        ("--sample", str(SAMPLE_MAX + 1)),
        ("--seed", str(SEED_MAX + 1)),
        ("--seed", str(SEED_MIN - 1)),
    ],
)
def test_the_runner_refuses_what_the_route_refuses(given: tuple[str, str]) -> None:
    """``verify --sample`` took any count and ``--seed`` any integer, which the route refuses: the same
    bounds now, a usage error (exit 2) before a setting is read. Fails on the old code: the command
    went on to its settings (CONFIG_INVALID, exit 3)."""
    env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "", "CRM_AUDIT_DATABASE_URL": ""}
    result = CliRunner().invoke(cli, ["verify", "--company-sso-id", "c", *given], env=env)
    assert result.exit_code == exit_codes.USAGE, result.output
    assert f"Invalid value for '{given[0]}'" in result.stderr


def test_the_runner_takes_the_bounds_themselves() -> None:
    """The extremes pass the options (the command then stops at its settings, exit 3)."""
    env = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "", "CRM_AUDIT_DATABASE_URL": ""}
    args = ["verify", "--company-sso-id", "c", "--sample", str(SAMPLE_MAX), "--seed", str(SEED_MIN)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == exit_codes.CONFIG, result.output


def test_verify_help_says_how_many_ids_json_keeps() -> None:
    """``--json`` keeps the report's first 10,000 ids a kind, not every id, as its help once read."""
    result = CliRunner().invoke(cli, ["verify", "--help"], terminal_width=400)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert f"the first {DEFAULT_KEEP:,} ids of each kind and missing ranges" in help_text
    assert "every id kept" not in help_text
