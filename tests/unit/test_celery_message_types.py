"""A Celery message whose arguments have the wrong type fails its task at once with a typed error,
before the worker builds its runtime: nothing is read, nothing written, nothing retried."""

from __future__ import annotations

from typing import Any

import pytest

from crm_audit_adapters.bootstrap import Runtime
from crm_audit_adapters.celery import ENRICH_ACCOUNT, MIGRATE_ACCOUNT, MIGRATE_SHARD, VERIFY_ACCOUNT, make_app
from crm_audit_adapters.settings import Settings
from crm_audit_transform.errors import ConfigError, JobNotFound

NOT_AN_ACCOUNT = [7, None, ["company"], {"id": "company"}, "", True]


def app_without_runtime() -> Any:
    """An eager app whose runtime factory fails the test if a task ever gets that far."""

    def no_runtime() -> Runtime:
        raise AssertionError("the task built its runtime for a message it should have refused")

    app = make_app(Settings(broker_url="memory://"), runtime_factory=no_runtime)
    app.conf.task_eager_propagates = True
    return app


class TestCompanySsoId:
    @pytest.mark.parametrize("company", NOT_AN_ACCOUNT, ids=repr)
    @pytest.mark.parametrize(
        ("task", "extra"),
        [(MIGRATE_ACCOUNT, []), (MIGRATE_SHARD, [0]), (ENRICH_ACCOUNT, []), (VERIFY_ACCOUNT, [])],
    )
    def test_a_company_that_is_no_string_is_job_not_found_at_once(
        self, task: str, extra: list[object], company: object
    ) -> None:
        """A number, null, a list, an object, an empty string or true names no account: ``JobNotFound``
        (never retried), before the runtime is built. Before, the task reached the job store with it
        and ended in an untyped ``TypeError``."""
        app = app_without_runtime()
        with pytest.raises(JobNotFound, match="company_sso_id"):
            app.tasks[task].apply(args=[company, *extra], throw=True)


class TestVerifyOptions:
    @pytest.mark.parametrize(
        ("kwargs", "key"),
        [
            ({"repair": "false"}, "repair"),
            ({"repair": 1}, "repair"),
            ({"repair": None}, "repair"),
            ({"sample": "10"}, "sample"),
            ({"sample": -1}, "sample"),
            ({"sample": 2.5}, "sample"),
            ({"sample": True}, "sample"),
        ],
        ids=repr,
    )
    def test_a_wrong_typed_option_is_a_config_error_naming_it(
        self, kwargs: dict[str, object], key: str
    ) -> None:
        """``repair="false"`` was truthy and repaired; a ``sample`` of another type failed in the walk.
        Each is ``ConfigError`` naming the key, before the runtime is built."""
        app = app_without_runtime()
        with pytest.raises(ConfigError) as caught:
            app.tasks[VERIFY_ACCOUNT].apply(args=["company-a"], kwargs=kwargs, throw=True)
        assert [path for path, _ in caught.value.problems] == [key]
