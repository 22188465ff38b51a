"""POST /verify gives each request a lease owner of its own: two repairs of one account exclude each other."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crm_audit_transform.errors import JobNotFound
from support.served_app import served_client

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}


class Recording:
    """An ``HttpService`` whose ``verify`` records the owner it was given, then finds no job (404)."""

    def __init__(self) -> None:
        self.owners: list[object] = []

    def verify(self, *_: Any, **kwargs: Any) -> Any:
        self.owners.append(kwargs.get("owner", "the service's default"))
        raise JobNotFound("no job")


@pytest.fixture
def served() -> Iterator[tuple[Recording, httpx.Client]]:
    service = Recording()
    with served_client(service, secret=b"verify-owner") as http:
        yield service, http


def test_each_verify_request_holds_the_lease_under_an_owner_of_its_own(
    served: tuple[Recording, httpx.Client],
) -> None:
    """Two repairs of one account get different owners, neither the service's shared default ("verify"):
    with one owner for all, a second repair took the first's lease as its own instead of meeting it."""
    service, http = served
    for _ in range(2):
        answer = http.post(
            "/private/activity_logs/crm_migration/verify",
            json={"company_sso_id": "company-a", "repair": True},
            headers=AUTH,
        )
        assert answer.status_code == 404
    first, second = service.owners
    assert first != second
    assert all(isinstance(o, str) and o.startswith("verify:http:") for o in service.owners)
