"""The ``POST`` routes take JSON from servers, never a request another site's page makes a browser send.

A browser sends a cached BasicAuth login with every request to the app's origin, whoever's page
makes it. Without a CORS preflight (which the app never grants), such a page can send a body only
as ``text/plain``, a form's types or with no type: ``<form enctype="text/plain">`` posts
``{"company_sso_id": "…", "x": "=…"}``, which parses as JSON. Every such body is refused (415), and a
request the browser marks as another site's (``Sec-Fetch-Site``) is refused before its login is
read (403); the service is never called, and no answer quotes the body.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.http.openapi import openapi_document
from crm_audit_transform.errors import JobNotFound
from support.live_server import LiveServer

HTTP_DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"
AUTH = "Basic " + base64.b64encode(b"ops:pw").decode()
MARK = "planted-by-another-site"
"""Text of every refused body: no answer may quote it."""
FORM_BODY = f'{{"company_sso_id": "company-a", "{MARK}": "=x"}}'.encode()
"""What ``<form enctype="text/plain">`` with a field ``{"company_sso_id": …, "planted…": "`` and value
``x"}`` sends: JSON to the parser."""
POSTS = [
    "/private/activity_logs/migrate",
    "/private/activity_logs/crm_migration/trigger",
    "/private/activity_logs/crm_migration/cancel",
    "/private/activity_logs/crm_migration/rollback",
    "/private/activity_logs/crm_migration/verify",
]


class Recording:
    """An ``HttpService`` that notes each call and answers 404 ``JOB_NOT_FOUND``: a request that got
    past the checks reaches it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            self.calls.append(name)
            raise JobNotFound("no job")

        return call


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Recording, httpx.Client, str]]:
    service = Recording()
    app = create_app(
        service,
        basic_auth=BasicAuthCredentials("ops", "pw"),
        sessions=SignedSessionResolver(secret=b"cross-site"),
    )
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        yield service, http, live.url


@pytest.fixture
def service(served: tuple[Recording, httpx.Client, str]) -> Recording:
    served[0].calls.clear()
    return served[0]


@pytest.fixture
def http(served: tuple[Recording, httpx.Client, str]) -> httpx.Client:
    return served[1]


def body_for(path: str) -> bytes:
    return b'{"records": []}' if path.endswith("/migrate") else b'{"company_sso_id": "company-a"}'


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    "content_type",
    [
        None,  # fetch() of a Blob without a type, navigator.sendBeacon
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-seq",
    ],
)
def test_a_body_not_sent_as_json_is_415_and_reaches_no_service(
    service: Recording, http: httpx.Client, path: str, content_type: str | None
) -> None:
    """Fails on the old code: each body was read as JSON whatever its type (404 from the service
    here: trigger, cancel, rollback, verify ran with the browser's login)."""
    headers = {"Authorization": AUTH} | ({"Content-Type": content_type} if content_type else {})
    answer = http.post(path, content=FORM_BODY, headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json() == {
        "error": {
            "code": "UNSUPPORTED_MEDIA_TYPE",
            "message": "the body must be sent with Content-Type: application/json",
        }
    }
    assert service.calls == []


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_json_body_reaches_the_service(
    service: Recording, http: httpx.Client, path: str, content_type: str
) -> None:
    """The media type's case and parameters do not matter (RFC 9110 §8.3.1)."""
    headers = {"Authorization": AUTH, "Content-Type": content_type}
    answer = http.post(path, content=body_for(path), headers=headers)
    assert answer.status_code == 404, answer.text
    assert service.calls


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_a_browser_request_from_another_site_is_403_before_its_login_is_read(
    service: Recording, http: httpx.Client, path: str, site: str
) -> None:
    """Refused with or without credentials, and without a BasicAuth challenge (a 401's would ask the
    operator for a login on another site's behalf). Fails on the old code (404: served)."""
    for auth in ({"Authorization": AUTH}, {}):
        headers = {"Content-Type": "application/json", "Sec-Fetch-Site": site} | auth
        answer = http.post(path, content=body_for(path), headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "CROSS_SITE_REQUEST"
        assert "www-authenticate" not in answer.headers
    assert service.calls == []


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_the_apps_own_pages_and_the_users_own_actions_are_served(
    service: Recording, http: httpx.Client, site: str
) -> None:
    """``same-origin``: a page of the app's origin (an ops page mounted beside it); ``none``: the user's
    own action. A server sends no ``Sec-Fetch-Site`` at all (every other test here)."""
    headers = {"Authorization": AUTH, "Content-Type": "application/json", "Sec-Fetch-Site": site}
    answer = http.post(POSTS[1], content=body_for(POSTS[1]), headers=headers)
    assert answer.status_code == 404, answer.text
    assert service.calls == ["trigger"]


def test_credentials_are_checked_before_the_body_type(service: Recording, http: httpx.Client) -> None:
    """No login: 401 with its challenge, whatever the body, as before."""
    answer = http.post(POSTS[1], content=FORM_BODY, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert service.calls == []


def test_the_status_route_takes_no_body_and_is_not_refused(service: Recording, http: httpx.Client) -> None:
    answer = http.get(
        "/private/activity_logs/crm_migration/status",
        params={"company_sso_id": "company-a"},
        headers={"Authorization": AUTH},
    )
    assert answer.status_code == 404, answer.text
    assert service.calls == ["status"]


def test_the_document_lists_403_and_415_for_every_route_that_takes_a_body() -> None:
    paths: Any = openapi_document()["paths"]
    for path in POSTS:
        assert {"403", "415"} <= set(paths[path]["post"]["responses"]), path


def documented_calls() -> list[str]:
    """The curl commands of docs/http.md's block after "call it with a JSON body": the ``--json`` one,
    and the older curl's form its comment gives, each as one line."""
    text = HTTP_DOC.read_text(encoding="utf-8")
    found = re.search(r"call it with a JSON body.*?```bash\n(.*?)```", text, re.S)
    assert found is not None, "docs/http.md lost its curl example"
    command = found.group(1).split("\n#")[0].replace("\\\n", " ")
    older = re.search(r"# an older curl: (.*)", found.group(1))
    assert older is not None
    return [command, command.replace('--json \'{"company_sso_id": "9b2f…"}\'', older.group(1))]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on PATH")
def test_the_documented_curl_calls_are_served_and_a_bare_dash_d_is_415(
    service: Recording, served: tuple[Recording, httpx.Client, str]
) -> None:
    """Both documented forms reach the service (404: the account has no job); ``curl -d`` alone sends
    a form's type, refused. A curl older than 7.82 has no ``--json``: that form is then not run."""
    url = served[2]
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = (int(part) for part in version.split()[1].split(".")[:2])
    calls = documented_calls()
    if (major, minor) < (7, 82):
        calls = calls[1:]
    env = {**os.environ, "CRM_AUDIT_HTTP_PASSWORD": "pw"}
    for command in calls:
        served_at = command.replace("http://127.0.0.1:8080", url)
        assert served_at != command
        done = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", f"{served_at} -s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["error"]["code"] == "JOB_NOT_FOUND", command
    bare = calls[-1].replace("-H 'Content-Type: application/json' ", "").replace("http://127.0.0.1:8080", url)
    refused = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", f"{bare} -s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(refused.stdout)["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert service.calls == ["trigger"] * len(calls)
