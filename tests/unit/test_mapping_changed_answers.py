"""``MappingChanged`` (a job triggered under another mapping) as the HTTP surface says it: 409
``MAPPING_CHANGED`` naming the two marks, not 503 "a dependency is unavailable; retry later"."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.http.errors import on_domain_error
from crm_audit_transform.errors import MappingChanged


class _Request:
    method = "POST"

    class url:  # the shape the handler's log line reads
        path = "/private/activity_logs/crm_migration/verify"


def http_answer(error: Exception) -> Response:
    """The handler's answer, run to its end."""
    return asyncio.run(on_domain_error(cast(Request, _Request()), error))


def test_a_job_under_another_mapping_is_a_conflict_not_an_outage() -> None:
    error = MappingChanged("j1", "mapping-sha256:aa", "mapping-sha256:bb")
    response = http_answer(error)
    answer: Any = json.loads(bytes(response.body))
    assert response.status_code == 409
    assert answer["error"]["code"] == "MAPPING_CHANGED"
    assert "mapping-sha256:aa" in answer["error"]["message"]
    assert "retry later" not in answer["error"]["message"]
    assert exit_codes.exit_code_for(error) == exit_codes.CONFIG  # the CLI's exit 3, unchanged
