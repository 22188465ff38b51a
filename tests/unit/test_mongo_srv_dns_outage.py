"""A ``mongodb+srv://`` URI whose DNS lookup no server answers is an outage (exit 6), not configuration.

pymongo raises every failed lookup of the URI's SRV and TXT records as ``ConfigurationError``: a DNS
server down for a moment made a right URI CONFIG_INVALID (exit 3), which no run or Celery task retries.
"""

from __future__ import annotations

from typing import Any

import dns.resolver
import pytest
from pymongo.errors import ConfigurationError

from crm_audit_adapters.bootstrap.mongo_client import mongo_client_for
from crm_audit_adapters.mongo.retry import call_with_retry, dns_outage, refused_configuration
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.errors import ConfigError, StoreUnavailable

PASSWORD = "Zq4-srv-secret"
URI = f"mongodb+srv://ops:{PASSWORD}@cluster0.example.com/cdp?serverSelectionTimeoutMS=1000"
FAST = RetryPolicy(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


# dnspython's exceptions have untyped constructors.
def _no_answer() -> Exception:
    """No DNS server answered in time."""
    return dns.resolver.LifetimeTimeout(timeout=1.0, errors=[])  # type: ignore[no-untyped-call]


def _servfail() -> Exception:
    """Every DNS server failed the query."""
    return dns.resolver.NoNameservers()  # type: ignore[no-untyped-call]


def _nxdomain() -> Exception:
    """The name does not exist."""
    return dns.resolver.NXDOMAIN()  # type: ignore[no-untyped-call]


def _lookups_fail(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[str]:
    """Every DNS lookup raises ``error``; the names looked up are listed."""
    asked: list[str] = []

    def resolve(name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(name)
        raise error

    monkeypatch.setattr(dns.resolver, "resolve", resolve)
    return asked


class TestTheClient:
    @pytest.mark.parametrize("error", [_no_answer(), _servfail()], ids=["timeout", "servfail"])
    def test_no_dns_server_answering_is_store_unavailable(
        self, monkeypatch: pytest.MonkeyPatch, error: Exception
    ) -> None:
        asked = _lookups_fail(monkeypatch, error)
        with pytest.raises(StoreUnavailable) as unavailable:
            mongo_client_for(URI)
        assert asked == ["_mongodb._tcp.cluster0.example.com"]
        assert unavailable.value.code == "STORE_UNAVAILABLE"
        assert "mongodb+srv://" in str(unavailable.value)
        assert PASSWORD not in str(unavailable.value)

    def test_a_name_the_dns_says_does_not_exist_stays_configuration(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _lookups_fail(monkeypatch, _nxdomain())
        with pytest.raises(ConfigError) as refused:
            mongo_client_for(URI)
        assert refused.value.code == "CONFIG_INVALID"
        assert PASSWORD not in str(refused.value)


def _wrapped(cause: Exception) -> ConfigurationError:
    """pymongo's ``srv_resolver``: ``raise ConfigurationError(str(exc)) from exc``."""
    try:
        raise ConfigurationError(str(cause)) from cause
    except ConfigurationError as exc:
        return exc


class TestAtConnection:
    """pymongo looks the records up as it connects where it does not connect at once (connect=False)."""

    def test_only_a_lookup_without_answer_is_an_outage(self) -> None:
        assert dns_outage(_wrapped(_no_answer()))
        assert dns_outage(_wrapped(_servfail()))
        assert not dns_outage(_wrapped(_nxdomain()))
        assert not dns_outage(ConfigurationError("Only one TXT record is supported"))
        assert not dns_outage(_no_answer())  # dnspython's own, not pymongo's

    def test_an_operation_meeting_it_is_store_unavailable_not_config_invalid(self) -> None:
        outage = _wrapped(_no_answer())
        assert refused_configuration(outage) is None

        def operation(attempt: int) -> Any:
            raise outage

        with pytest.raises(StoreUnavailable):
            call_with_retry(operation, FAST, "count logs")
        assert type(refused_configuration(_wrapped(_nxdomain()))) is ConfigError
