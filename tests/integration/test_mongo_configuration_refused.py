"""A URI pymongo cannot connect with is configuration (exit 3), never an outage retried (exit 6)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, ConfigurationError
from pymongo.synchronous import auth as pymongo_auth

from crm_audit_adapters.bootstrap.mongo_client import mongo_client_for, wait_for_mongo
from crm_audit_adapters.mongo.retry import call_with_retry, oidc_token_refused, refused_configuration
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.errors import ConfigError, DependencyMissing, StoreUnavailable
from support.live_server import free_port

PASSWORD = "Kx9vQ7zR-mongo"
FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)
CLI = Path(sys.executable).with_name("crm-audit-migrate")


def _with(uri: str, options: str) -> str:
    return f"{uri}{'&' if '?' in uri else '/?'}{options}"


def _credentials(uri: str) -> str:
    return uri.replace("mongodb://", f"mongodb://ops:{PASSWORD}@", 1)


class TestTheFirstConnection:
    """Every command pings the server first (``wait_for_mongo``): pymongo raises its
    ``ConfigurationError`` there, at once. Before: ``StoreUnavailable``, "unreachable after 10 s"
    (it had waited no time), exit 6, which each run and Celery task retried."""

    def test_gssapi_without_kerberos_is_a_missing_dependency(
        self, wire_mongo_uri: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(pymongo_auth, "HAVE_KERBEROS", False)  # as where it is not installed
        uri = _with(wire_mongo_uri.replace("mongodb://", "mongodb://ops@", 1), "authMechanism=GSSAPI")
        client = mongo_client_for(uri)
        try:
            with pytest.raises(DependencyMissing) as missing:
                wait_for_mongo(client, uri, None)
        finally:
            client.close()
        assert missing.value.code == "DEPENDENCY_MISSING"
        assert "kerberos" in str(missing.value)

    def test_aws_without_its_package_is_a_missing_dependency_and_no_secret(
        self, wire_mongo_uri: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "pymongo_auth_aws", None)  # import fails, as uninstalled
        uri = _with(_credentials(wire_mongo_uri), "authMechanism=MONGODB-AWS")
        client = mongo_client_for(uri)
        try:
            with pytest.raises(DependencyMissing) as missing:
                wait_for_mongo(client, uri, None)
        finally:
            client.close()
        assert "pymongo[aws]" in str(missing.value)
        assert PASSWORD not in str(missing.value)


class TestAnOperation:
    """An operation meeting it (``call_with_retry``) is not tried again either."""

    def test_a_missing_package_is_raised_at_the_first_attempt(self) -> None:
        attempts: list[int] = []

        def operation(attempt: int) -> Any:
            attempts.append(attempt)
            raise ConfigurationError('The "kerberos" module must be installed to use GSSAPI authentication.')

        with pytest.raises(DependencyMissing):
            call_with_retry(operation, FAST, "count logs")
        assert attempts == [1]

    def test_another_configuration_error_is_config_invalid(self) -> None:
        old = "Server at db:27017 reports wire version 5, but this version of PyMongo requires at least 7"
        refused = refused_configuration(ConfigurationError(old))
        assert type(refused) is ConfigError
        assert "wire version 5" in str(refused)

    def test_a_secret_in_its_message_is_scrubbed(self) -> None:
        uri = f"mongodb://ops:{PASSWORD}@db:27017/?authMechanism=MONGODB-AWS"
        refused = refused_configuration(ConfigurationError(f"cannot use {uri}"), [uri])
        assert refused is not None
        assert PASSWORD not in str(refused)

    def test_a_network_error_is_still_retried_then_unavailable(self) -> None:
        attempts: list[int] = []

        def operation(attempt: int) -> Any:
            attempts.append(attempt)
            raise AutoReconnect("connection reset")

        with pytest.raises(StoreUnavailable):
            call_with_retry(operation, FAST, "count logs")
        assert attempts == [1, 2, 3]
        assert refused_configuration(AutoReconnect("connection reset")) is None


class TestOidcEnvironment:
    """``authMechanism=MONGODB-OIDC`` with an ``ENVIRONMENT`` the host is not in: pymongo's token fetch
    raises untranslated (a ``ValueError`` off Azure), which ended ``INTERNAL`` (exit 1)."""

    def test_azure_off_azure_is_config_invalid_exit_3(self, wire_mongo_uri: str, tmp_path: Path) -> None:
        """The runner, its own process: Azure's metadata endpoint reached through a proxy that
        refuses (``http_proxy`` on a closed port, as off Azure nothing answers there) is
        CONFIG_INVALID naming the mechanism, not INTERNAL."""
        uri = _with(
            wire_mongo_uri,
            "authMechanism=MONGODB-OIDC&authMechanismProperties=ENVIRONMENT:azure,TOKEN_RESOURCE:api://crm",
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "CRM_AUDIT_SETTINGS": "",
            "CRM_AUDIT_MONGO_URI": uri,
            "http_proxy": f"http://127.0.0.1:{free_port()}",
            "no_proxy": "",
        }
        done = subprocess.run(
            [str(CLI), "indexes", "status"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 3, done.stderr
        assert "error: CONFIG_INVALID: " in done.stderr
        assert (
            "MONGODB-OIDC could not get a token from its ENVIRONMENT (Failed to acquire IMDS access token)"
            in done.stderr
        )
        assert "Traceback" not in done.stderr

    def test_k8s_without_its_token_file_is_config_invalid(
        self, wire_mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The token file ``ENVIRONMENT:k8s`` reads is not there (``OSError``): ConfigError at the ping."""
        monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "absent-token"))
        uri = _with(wire_mongo_uri, "authMechanism=MONGODB-OIDC&authMechanismProperties=ENVIRONMENT:k8s")
        client = mongo_client_for(uri)
        try:
            with pytest.raises(ConfigError) as refused:
                wait_for_mongo(client, uri, None)
        finally:
            client.close()
        assert type(refused.value) is ConfigError
        assert "No such file or directory" in str(refused.value)
        assert refused.value.__cause__ is None  # the fetch's own message stays out of a traceback too

    def test_an_operation_meeting_it_is_config_invalid_at_once(self) -> None:
        """Met as a connection is opened again mid-run (a token expired): not retried, ConfigError."""
        attempts: list[int] = []

        def operation(attempt: int) -> Any:
            attempts.append(attempt)
            return _azure_response()

        with pytest.raises(ConfigError) as refused:
            call_with_retry(operation, FAST, "count logs")
        assert attempts == [1]
        assert "secret-token" not in str(refused.value)

    def test_another_error_of_those_types_is_left_alone(self) -> None:
        """A ``ValueError`` not raised by the token fetch is no configuration: it stays what it is."""
        assert oidc_token_refused(ValueError("a bug")) is None

        def operation(_attempt: int) -> Any:
            raise ValueError("a bug")

        with pytest.raises(ValueError, match="a bug"):
            call_with_retry(operation, FAST, "count logs")


def _azure_response() -> Any:
    """pymongo's Azure token fetch, answered by a local server with no token in its JSON (the
    endpoint's answer, which holds a token where it is one, is quoted in pymongo's message)."""
    from pymongo._azure_helpers import _get_azure_response

    class NoToken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"access_token": "", "refresh": "secret-token"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), NoToken) as server:
        threading.Thread(target=server.handle_request, daemon=True).start()
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{server.server_port}"})
        )
        previous = urllib.request._opener  # type: ignore[attr-defined]
        urllib.request.install_opener(opener)
        try:
            return _get_azure_response("api://crm", None, 5)
        finally:
            urllib.request.install_opener(previous)
