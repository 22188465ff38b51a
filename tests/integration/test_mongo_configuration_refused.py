"""A URI pymongo cannot connect with is configuration (exit 3), never an outage retried (exit 6)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, ConfigurationError
from pymongo.synchronous import auth as pymongo_auth

from crm_audit_adapters.bootstrap.mongo_client import mongo_client_for, wait_for_mongo
from crm_audit_adapters.mongo.retry import call_with_retry, refused_configuration
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.errors import ConfigError, DependencyMissing, StoreUnavailable

PASSWORD = "Kx9vQ7zR-mongo"
FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


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
