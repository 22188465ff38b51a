"""docs/http.md's recipe for a demo-page session, run as written, gives a cookie the app accepts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from crm_audit_adapters.http.asgi import app
from support.live_server import LiveServer

HTTP_DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"
SECRET = "demo-session-secret-of-32-characters"
ACCOUNT = "9b2f…"
"""The account the recipe names, as written."""


def recipe() -> str:
    """The bash block that follows "A session for the demo page." in docs/http.md."""
    text = HTTP_DOC.read_text(encoding="utf-8")
    found = re.search(r"\*\*A session for the demo page\.\*\*.*?```bash\n(.*?)```", text, re.S)
    assert found is not None, "docs/http.md lost its demo-session recipe"
    return found.group(1)


def test_the_documented_recipe_signs_a_session_the_demo_page_accepts() -> None:
    """The recipe's token as the crm_session cookie reads its account's status only; edited, it is 401."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    signed = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", recipe()],
        env={**os.environ, "PATH": path, "CRM_AUDIT_SESSION_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    token = signed.stdout.strip()
    env = {
        "CRM_AUDIT_MONGO_URI": "mongomock://",
        "CRM_AUDIT_HTTP_PASSWORD": "demo-password-16ch",
        "CRM_AUDIT_SESSION_SECRET": SECRET,
        "CRM_AUDIT_ENABLED_COMPANIES": "*",
    }
    with LiveServer(app(env)) as live, httpx.Client(base_url=live.url) as client:
        assert client.get("/demo/contact").status_code == 200
        client.cookies.set("crm_session", token)
        status = client.get("/iag/v1/crm_migration/status", params={"company_sso_id": ACCOUNT})
        assert status.status_code == 200, status.text
        assert status.json() == {"status": "not_started"}
        other = client.get("/iag/v1/crm_migration/status", params={"company_sso_id": "another"})
        assert other.status_code == 403  # the session names ACCOUNT and no other
        client.cookies.set("crm_session", token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
        assert client.get("/iag/v1/crm_migration/status").status_code == 401
