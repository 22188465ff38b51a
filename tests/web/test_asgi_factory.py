"""The ASGI factory builds the app from the runner's settings and refuses to start without its secrets."""

from __future__ import annotations

import logging

import httpx
import mongomock
import pytest

from crm_audit_adapters.bootstrap import build_runtime
from crm_audit_adapters.http import BasicAuthCredentials, SignedSessionResolver, create_app
from crm_audit_adapters.http.asgi import app
from crm_audit_adapters.mongo.indexes import apply_migration
from crm_audit_adapters.settings import Settings
from crm_audit_transform.errors import ConfigError
from support.live_server import LiveServer

PASSWORD = "ops-password-16ch"
SESSION_SECRET = "a-session-secret-of-32-characters"


class TestAsgiFactory:
    def test_refuses_to_start_without_the_http_secrets(self) -> None:
        """No BasicAuth password or session secret is a ConfigError naming both, not a default."""
        with pytest.raises(ConfigError) as caught:
            app({"CRM_AUDIT_MONGO_URI": "mongomock://"})
        assert {path for path, _ in caught.value.problems} == {
            "CRM_AUDIT_HTTP_PASSWORD",
            "CRM_AUDIT_SESSION_SECRET",
        }

    def test_serves_from_settings_in_the_environment(self) -> None:
        """Settings and secrets from the environment make a serving app whose BasicAuth uses that password."""
        env = {
            "CRM_AUDIT_MONGO_URI": "mongomock://",
            "CRM_AUDIT_HTTP_USER": "ops",
            "CRM_AUDIT_HTTP_PASSWORD": PASSWORD,
            "CRM_AUDIT_SESSION_SECRET": SESSION_SECRET,
            "CRM_AUDIT_ENABLED_COMPANIES": "*",
        }
        with LiveServer(app(env)) as live, httpx.Client(base_url=live.url) as client:
            assert client.get("/openapi.json").status_code == 200
            denied = client.get("/private/activity_logs/crm_migration/status", params={"company_sso_id": "c"})
            assert denied.status_code == 401
            allowed = client.get(
                "/private/activity_logs/crm_migration/status",
                params={"company_sso_id": "c"},
                auth=("ops", PASSWORD),
            )
            assert allowed.json() == {"company_sso_id": "c", "status": "not_started"}


class TestLoaderSettings:
    def test_the_loader_depth_setting_bounds_request_bodies(self) -> None:
        """CRM_AUDIT_LOADER_MAX_DEPTH=3 refuses a body nested 5 deep with a 400, before parsing it."""
        env = {
            "CRM_AUDIT_MONGO_URI": "mongomock://",
            "CRM_AUDIT_HTTP_PASSWORD": PASSWORD,
            "CRM_AUDIT_SESSION_SECRET": SESSION_SECRET,
            "CRM_AUDIT_ENABLED_COMPANIES": "*",
            "CRM_AUDIT_LOADER_MAX_DEPTH": "3",
        }
        path = "/private/activity_logs/crm_migration/rollback"
        with (
            LiveServer(app(env)) as live,
            httpx.Client(
                base_url=live.url, auth=("crm-audit", PASSWORD), headers={"Content-Type": "application/json"}
            ) as client,
        ):
            deep = client.post(path, content=b'{"company_sso_id": "c", "x": [[[[1]]]]}')
            assert deep.status_code == 400
            assert "deeper than 3" in deep.text
            shallow = client.post(path, content=b'{"company_sso_id": "c", "x": [1]}')
            assert "deeper than" not in shallow.text

    @pytest.mark.postgres
    def test_a_refused_database_login_is_a_500_whose_cause_is_logged_without_secrets(
        self, crm_dsn: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A DSN naming a database that does not exist answers 500 ``CONNECTION_REJECTED`` (no retry
        mends it: before, a 503 "retry later"), and the server log says why (the database's name)
        without the DSN's password."""
        client = mongomock.MongoClient(tz_aware=True)
        apply_migration(client["cdp"], "up")
        settings = Settings(
            database_url=f"{crm_dsn} dbname=no_such_db password=Kx9vQ7zR",
            enabled_companies="*",
            tenants={"c": "acme"},
        )
        with (
            build_runtime(settings, mongo_client=client) as runtime,
            caplog.at_level(logging.WARNING, logger="crm_audit_adapters.http"),
            LiveServer(
                create_app(
                    runtime.service,
                    basic_auth=BasicAuthCredentials("ops", "pw"),
                    sessions=SignedSessionResolver(secret=b"k"),
                )
            ) as live,
            httpx.Client(base_url=live.url, timeout=30) as http,
        ):
            answer = http.post(
                "/private/activity_logs/crm_migration/trigger",
                json={"company_sso_id": "c", "tenant": "acme"},
                auth=("ops", "pw"),
            )
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "CONNECTION_REJECTED"
        assert "Kx9v" not in answer.text
        assert "no_such_db" not in answer.text
        assert "CONNECTION_REJECTED" in caplog.text
        assert "no_such_db" in caplog.text
        assert "Kx9v" not in caplog.text
        assert "Q7zR" not in caplog.text
