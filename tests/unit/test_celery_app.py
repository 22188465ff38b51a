"""The Celery app's configuration: delivery guarantees, the visibility timeout, ids-only JSON messages."""

from __future__ import annotations

import pytest

from crm_audit_adapters.celery import ENRICH_ACCOUNT, MIGRATE_ACCOUNT, QUEUE, VERIFY_ACCOUNT, make_app
from crm_audit_adapters.settings import Settings, load_settings
from crm_audit_transform.errors import ConfigError, LeaseHeld, Unavailable

BROKER = "redis://:broker-secret@redis.internal:6379/0"


class TestCeleryApp:
    def test_every_task_is_acknowledged_late_and_rejected_when_its_worker_is_lost(self) -> None:
        """acks_late, reject_on_worker_lost and a prefetch of one message hold for every migration task."""
        app = make_app(Settings(broker_url=BROKER))
        assert app.conf.task_acks_late is True
        assert app.conf.task_reject_on_worker_lost is True
        assert app.conf.worker_prefetch_multiplier == 1
        for name in (MIGRATE_ACCOUNT, ENRICH_ACCOUNT, VERIFY_ACCOUNT):
            task = app.tasks[name]
            assert (task.acks_late, task.reject_on_worker_lost) == (True, True)

    def test_retries_back_off_and_only_for_infrastructure(self) -> None:
        """Only Unavailable is retried automatically, with exponential backoff and a retry limit."""
        task = make_app(Settings(broker_url=BROKER)).tasks[MIGRATE_ACCOUNT]
        assert task.autoretry_for == (Unavailable,)
        assert not issubclass(LeaseHeld, Unavailable)  # a held lease is retried explicitly, after the lease
        assert task.retry_backoff is True
        assert task.max_retries == 12

    def test_the_visibility_timeout_comes_from_the_settings(self) -> None:
        """CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT reaches Redis's transport options."""
        settings = load_settings(
            environ={"CRM_AUDIT_BROKER_URL": BROKER, "CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT": "7200"}
        )
        app = make_app(settings)
        assert app.conf.broker_transport_options["visibility_timeout"] == 7200.0
        assert app.conf.task_default_queue == QUEUE

    def test_messages_are_json_only(self) -> None:
        """Tasks are sent and accepted as JSON: a message can carry ids, never pickled objects."""
        app = make_app(Settings(broker_url=BROKER))
        assert (app.conf.task_serializer, list(app.conf.accept_content)) == ("json", ["json"])

    def test_no_broker_is_a_configuration_error(self) -> None:
        """Without CRM_AUDIT_BROKER_URL the app is refused with the setting's name."""
        with pytest.raises(ConfigError, match="broker_url"):
            make_app(Settings())

    def test_config_shows_the_broker_settings_without_the_password(self) -> None:
        """describe() lists the broker URL redacted and the visibility timeout (default 3,600 s)."""
        shown = Settings(broker_url=BROKER).describe()
        assert shown["broker_url"] == "redis://:***@redis.internal:6379/0"
        assert shown["broker_visibility_timeout"] == 3600.0
        assert "broker-secret" not in repr(shown) + repr(Settings(broker_url=BROKER))
