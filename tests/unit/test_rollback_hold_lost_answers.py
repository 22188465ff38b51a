"""``RollbackHoldLost`` (a rollback whose hold was taken over before it ended the job) as the CLI and
the HTTP surface say it: refused (exit 4, 409 ``LEASE_HELD``), who ends the job, never the holder's
token in the HTTP answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest
from starlette.requests import Request
from starlette.responses import Response

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.http.errors import on_domain_error
from crm_audit_transform.errors import RollbackHoldLost

_MESSAGE = "company c's rollback lost its hold on job j1 after deleting 2 logs; held by rollback:f00d"


def http_answer(error: Exception) -> Response:
    """The HTTP surface's answer to ``error``, its handler run to its end."""
    return asyncio.run(on_domain_error(cast(Request, None), error))


@pytest.mark.parametrize(
    ("taken", "then"),
    [(True, "another rollback holds it now and ends it"), (False, "roll back again to end it")],
)
def test_the_http_answer_says_who_ends_the_job_without_the_holder(taken: bool, then: str) -> None:
    """409 ``LEASE_HELD``, saying who ends the job, and never the holding rollback's token."""
    response = http_answer(RollbackHoldLost(_MESSAGE, taken=taken))
    answer: Any = json.loads(bytes(response.body))
    assert response.status_code == 409
    assert answer["error"]["code"] == "LEASE_HELD"
    assert answer["error"]["message"].endswith(then)
    assert "f00d" not in answer["error"]["message"]


def test_the_cli_refuses_with_the_whole_message() -> None:
    """Exit 4 (refused), ``LEASE_HELD`` and the whole message on one line."""
    error = RollbackHoldLost(_MESSAGE, taken=False)
    assert exit_codes.exit_code_for(error) == exit_codes.REFUSED
    assert exit_codes.one_line(error) == f"LEASE_HELD: {_MESSAGE}"
