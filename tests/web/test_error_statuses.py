"""Every error code has its HTTP status (``http.errors.STATUSES``), and every library error is
answered with its code's status: a code the map lacked was a 500 (``RESTORE_REFUSED`` was)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.http import errors as http_errors
from crm_audit_adapters.http.errors import STATUSES
from crm_audit_transform.errors import CrmAuditError, JobNotFound, RestoreRefused, VerifyOptionInvalid
from support.error_classes import error_classes, error_codes
from support.served_app import served_client

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
SECRET = "s3cr3t-in-the-message"


def _instance(cls: type[CrmAuditError]) -> CrmAuditError:
    """An error of ``cls`` whose message holds ``SECRET``, built without its ``__init__``'s arguments."""
    error = cls.__new__(cls)
    Exception.__init__(error, f"message with {SECRET}")
    if issubclass(cls, VerifyOptionInvalid):
        error.code = "INVALID_SEED"  # type: ignore[attr-defined]  # set by its __init__
    if issubclass(cls, RestoreRefused):
        error.external_id = "crm:acme:audit:7"  # type: ignore[attr-defined]
    for name in ("taken", "by_rollback"):  # RollbackHoldLost, LeaseHeld
        setattr(error, name, False)
    return error


def _codes() -> set[str]:
    """The runner's table's codes and the code of every error class."""
    return set(exit_codes.CODES) | error_codes()


class Raising:
    """An ``HttpService`` whose ``status`` raises ``error``."""

    def __init__(self) -> None:
        self.error: Exception = JobNotFound("none")

    def status(self, *_: Any, **__: Any) -> Any:
        raise self.error


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Raising, httpx.Client]]:
    service = Raising()
    with served_client(service, secret=b"statuses") as http:
        yield service, http


def test_every_code_has_a_status() -> None:
    """The map is total over the runner's table and the error classes' codes (the adapters' too)."""
    codes = _codes()
    assert {"RESTORE_REFUSED", "BROKER_UNAVAILABLE", "OUTPUT_LOCKED", "HALTED"} <= codes
    assert sorted(codes - set(STATUSES)) == []
    assert all(status in {200, 400, 403, 404, 409, 422, 500, 503} for status in STATUSES.values())


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__qualname__)
def test_every_error_is_answered_with_its_codes_status(
    served: tuple[Raising, httpx.Client], cls: type[CrmAuditError]
) -> None:
    """Raised by the service, each error is answered with an error status, that of the code it is
    answered with (``DEPENDENCY_UNAVAILABLE`` for every outage, ``MAPPING_CHANGED``, else its own)."""
    service, http = served
    service.error = _instance(cls)
    answer = http.get(
        "/private/activity_logs/crm_migration/status", params={"company_sso_id": "c"}, headers=AUTH
    )
    code = answer.json()["error"]["code"]
    assert code in STATUSES, code
    assert answer.status_code == STATUSES[code] >= 400, (code, answer.text)


def test_a_restore_refused_is_422_naming_the_log(served: tuple[Raising, httpx.Client]) -> None:
    """``RESTORE_REFUSED``: 422 with its code, naming the log and not the store's words (was a 500)."""
    service, http = served
    service.error = RestoreRefused("crm:acme:audit:7", f"code 17419: {SECRET}")
    answer = http.get(
        "/private/activity_logs/crm_migration/status", params={"company_sso_id": "c"}, headers=AUTH
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "RESTORE_REFUSED"
    assert "crm:acme:audit:7" in answer.text
    assert SECRET not in answer.text


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__qualname__)
def test_every_status_is_read_from_the_one_table(
    monkeypatch: pytest.MonkeyPatch, cls: type[CrmAuditError]
) -> None:
    """With every code's status changed in ``STATUSES`` (to 418), each error is answered with 418:
    no branch of the handler keeps a status of its own beside the table (they were literal numbers)."""
    monkeypatch.setattr(http_errors, "STATUSES", dict.fromkeys(STATUSES, 418))
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""})
    answer = asyncio.run(http_errors.on_domain_error(request, _instance(cls)))
    assert answer.status_code == 418, cls
