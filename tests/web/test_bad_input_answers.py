"""The runner's ``BAD_INPUT`` errors over HTTP: an audits source the service cannot read as it is is
422 ``BAD_INPUT``, never the caller's 400, and the answer holds none of the server's file or row."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import crm_audit_adapters.files.audit_order  # noqa: F401 - its FileFormatError subclass, listed below
from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_transform.errors import CrmAuditError, JobNotFound, SourceChanged
from support.served_app import served_client

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
BODY = {"company_sso_id": "company-a"}
SECRET_PATH = "/srv/crm-export/s3cr3t-dir/audits.jsonl"
SECRET_ROW = 'member "comment": "password=hunter2" is not text'


class Raising:
    """An ``HttpService`` whose ``trigger`` and ``verify`` raise ``error`` (as a file source would)."""

    def __init__(self) -> None:
        self.error: Exception = JobNotFound("none")

    def trigger(self, *_: Any, **__: Any) -> Any:
        raise self.error

    def verify(self, *_: Any, **__: Any) -> Any:
        raise self.error


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Raising, httpx.Client]]:
    service = Raising()
    with served_client(service, secret=b"bad-input") as http:
        yield service, http


def _bad_input_classes() -> list[type[CrmAuditError]]:
    """Every error class the runner reports ``BAD_INPUT`` (``exit_codes.error_code``), among the core's
    errors and the files adapter's: found, not listed, so that one added later is checked too."""
    found: list[type[CrmAuditError]] = []
    pending: list[type[CrmAuditError]] = [CrmAuditError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        probe = cls.__new__(cls)
        Exception.__init__(probe, "probe")
        if exit_codes.error_code(probe) == "BAD_INPUT":
            found.append(cls)
    return sorted(found, key=lambda c: c.__qualname__)


def _instance(cls: type[CrmAuditError]) -> CrmAuditError:
    """An error of ``cls`` whose message names a file of the server and quotes a row of it."""
    if issubclass(cls, SourceChanged):
        return cls(7, 3, 1)
    if issubclass(cls, FileFormatError):
        error = cls.__new__(cls)
        FileFormatError.__init__(error, SECRET_PATH, 12, SECRET_ROW, audit_id=7)
        return error
    error = cls.__new__(cls)
    Exception.__init__(error, f"{SECRET_PATH}, line 12: {SECRET_ROW}")
    return error


def test_the_bad_input_errors_are_found() -> None:
    """The search below finds the two kinds the runner documents (docs/runner.md, exit 7)."""
    names = {cls.__name__ for cls in _bad_input_classes()}
    assert {"SourceChanged", "FileFormatError", "AuditOrderError"} <= names


@pytest.mark.parametrize("path", ["trigger", "verify"])
@pytest.mark.parametrize("cls", _bad_input_classes(), ids=lambda c: c.__name__)
def test_a_bad_input_error_is_422_bad_input_without_the_servers_file(
    served: tuple[Raising, httpx.Client],
    cls: type[CrmAuditError],
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each is 422 ``BAD_INPUT``, as the runner's exit 7 (before: 400 ``BAD_REQUEST`` with the
    error's first line, the server's file path and the row's text in it); the server log names it."""
    service, http = served
    service.error = _instance(cls)
    with caplog.at_level(logging.WARNING, logger="crm_audit_adapters.http"):
        answer = http.post(f"/private/activity_logs/crm_migration/{path}", json=BODY, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "BAD_INPUT"
    assert SECRET_PATH not in answer.text
    assert "hunter2" not in answer.text
    if cls is SourceChanged:  # ids and counts alone, and what to do
        assert answer.json()["error"]["message"] == str(service.error)
        assert "fresh job" in answer.text
    else:
        assert any(SECRET_PATH in record.getMessage() for record in caplog.records)
