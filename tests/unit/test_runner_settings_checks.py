"""Settings refused at load: URLs no driver could use, and TOML values of the wrong type.

A URL that passes load must not end as ``INTERNAL`` (or as an outage) in the command that uses it,
and a TOML value is taken with the type TOML gave it: the text ``"7"`` is not the integer 7.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_audit_adapters.settings import load_settings
from crm_audit_transform.errors import ConfigError

SECRET = "Hunter2pw"


def problem_for(environ: dict[str, str]) -> tuple[str, str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ)
    assert SECRET not in str(raised.value)
    ((where, problem),) = raised.value.problems
    return where, problem


def problem_for_file(path: Path, environ: dict[str, str]) -> tuple[str, str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ)
    assert SECRET not in str(raised.value)
    ((where, problem),) = raised.value.problems
    return where, problem


class TestBrokerUrls:
    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("foo://x", "kombu has no transport 'foo'"),
            ("http://127.0.0.1:1/", "kombu has no transport 'http'"),
            (f"redis://:{SECRET}@127.0.0.1:1/abc", "the Redis database (the path) must be a number"),
            (f"redis://:{SECRET}@127.0.0.1:99999/0", "the port must be a number from 1 to 65535"),
            (f"redis://:{SECRET}@127.0.0.1:notaport/0", "the port must be a number from 1 to 65535"),
            (f"redis://:{SECRET}@127.0.0.1:0/0", "the port must be a number from 1 to 65535"),
            (f"sentinel://:{SECRET}@h1:26379;bogus://h2", "kombu has no transport 'bogus'"),
            (f"sentinel://:{SECRET}@h1:26379;h2:26379", "each URL"),
            ("redis://[::1/0", "not a URL"),
            ("p.q://x", "kombu has no transport"),
            (f"redis://127.0.0.1:1/0?password={SECRET}", "the query parameter 'password' repeats"),
            (f"redis://:{SECRET}@h:1/0;redis://h:2/0?virtual_host=1", "the query parameter 'virtual_host'"),
            (f"redis://:{SECRET}@h:1/0?{SECRET}=1", "a query parameter kombu does not take"),
        ],
    )
    def test_a_broker_url_no_transport_can_use_is_refused_at_load(self, url: str, message: str) -> None:
        """A scheme kombu has no transport for, a bad port or a Redis database that is not a number:
        CONFIG_INVALID naming the variable, never the password."""
        where, problem = problem_for({"CRM_AUDIT_BROKER_URL": url})
        assert where == "environment variable CRM_AUDIT_BROKER_URL"
        assert message in problem, problem

    @pytest.mark.parametrize(
        "url",
        [
            "memory://",
            "redis://redis:6379/0",
            f"rediss://:{SECRET}@redis.internal:6380/3",
            "redis://localhost",
            f"sentinel://:{SECRET}@h1:26379;sentinel://:{SECRET}@h2:26379",
            "amqp://guest:guest@rabbit:5672//",
            "redis+socket:///run/redis/redis.sock?virtual_host=0",
            f"rediss://:{SECRET}@redis.internal:6380/3?ssl_cert_reqs=required",
        ],
    )
    def test_a_usable_broker_url_is_accepted(self, url: str) -> None:
        """The URLs of docs/scale-out.md and their kin load as given."""
        assert load_settings(None, {"CRM_AUDIT_BROKER_URL": url}).broker_url == url

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("bogus://x", "Celery has no result backend 'bogus'"),
            ("http://h/", "Celery has no result backend 'http'"),
            (f"redis://:{SECRET}@h:65536/1", "the port must be a number from 1 to 65535"),
            (f"redis://:{SECRET}@h:6379/one", "the Redis database (the path) must be a number"),
        ],
    )
    def test_a_result_backend_celery_cannot_use_is_refused_at_load(self, url: str, message: str) -> None:
        """A result backend Celery has no class for would fail only once a job row exists: refused at load."""
        where, problem = problem_for({"CRM_AUDIT_RESULT_BACKEND": url})
        assert where == "environment variable CRM_AUDIT_RESULT_BACKEND"
        assert message in problem, problem

    def test_a_usable_result_backend_is_accepted(self) -> None:
        """A Redis result backend loads as given."""
        url = "redis://redis:6379/1"
        assert load_settings(None, {"CRM_AUDIT_RESULT_BACKEND": url}).result_backend == url


class TestDatabaseAndUsmanUrls:
    @pytest.mark.parametrize(
        "dsn",
        [
            f"postgresql://u:{SECRET}@127.0.0.1:notaport/crm",
            f"postgresql://u:{SECRET}@127.0.0.1:99999/crm",
            f"postgresql://u:{SECRET}@h1:5432,h2:0/crm",
            f"host=crm port=abc password={SECRET}",
        ],
    )
    def test_a_dsn_with_a_bad_port_is_refused_at_load(self, dsn: str) -> None:
        """libpq reads the port only when it connects (then retried as an outage): refused at load."""
        where, problem = problem_for({"CRM_AUDIT_DATABASE_URL": dsn})
        assert where == "environment variable CRM_AUDIT_DATABASE_URL"
        assert "the port must be a number from 1 to 65535" in problem

    def test_a_multi_host_dsn_with_good_ports_is_accepted(self) -> None:
        """Several hosts, one with the default port, load as given."""
        dsn = "postgresql://ro@h1:5432,h2/crm"
        assert load_settings(None, {"CRM_AUDIT_DATABASE_URL": dsn}).database_url == dsn

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://[::1", "not a URL"),
            ("http://usman:99999", "the port must be a number from 1 to 65535"),
            ("http://usman:0", "the port must be a number from 1 to 65535"),
            ("http://usman:port", "not a URL"),
            ("http:///path", "no host"),
        ],
    )
    def test_a_usman_url_no_request_can_reach_is_refused_at_load(self, url: str, message: str) -> None:
        """An unparseable USMAN URL or a port out of range is CONFIG_INVALID, not degraded actors later."""
        where, problem = problem_for({"CRM_AUDIT_USMAN_BASE_URL": url})
        assert where == "environment variable CRM_AUDIT_USMAN_BASE_URL"
        assert message in problem, problem

    @pytest.mark.parametrize(
        ("url", "extra", "message"),
        [
            (f"http://usman:{SECRET}@usman.internal", {}, "Basic auth in place of the token"),
            (f"https://{SECRET}@usman.internal/api", {}, "Basic auth in place of the token"),
            (
                f"http://:{SECRET}@usman.internal",
                {"CRM_AUDIT_USMAN_AUTH_HEADER": "authorization"},
                "Basic auth in place of the token",
            ),
            (f"http://usman.internal/api?api_key={SECRET}", {}, "must not hold a query or fragment"),
            (f"http://usman.internal?api_key={SECRET}", {}, "must not hold a query or fragment"),
            ("http://usman.internal/api?", {}, "must not hold a query or fragment"),
            (f"http://usman.internal/api#{SECRET}", {}, "must not hold a query or fragment"),
        ],
    )
    def test_a_usman_url_that_would_ask_elsewhere_is_refused_at_load(
        self, url: str, extra: dict[str, str], message: str
    ) -> None:
        """User info beside a token in ``Authorization`` (httpx sends it there as Basic auth in the
        token's place: USMAN answers 401), or a query or fragment (the path is appended after it): a
        configuration error at load that never quotes the URL. Before, both loaded and every lookup was
        refused (DIRECTORY_REFUSED, HTTP 401 or 404) or asked the wrong path: this test fails there."""
        environ = {"CRM_AUDIT_USMAN_BASE_URL": url, "CRM_AUDIT_USMAN_TOKEN": "t0ken", **extra}
        where, problem = problem_for(environ)
        assert where == "environment variable CRM_AUDIT_USMAN_BASE_URL"
        assert message in problem, problem

    @pytest.mark.parametrize(
        "path",
        [
            f"http://collector.example/steal?api_key={SECRET}",
            "https://usman.internal.evil.example/api/v1/users/sso-ids",
            "//collector.example/api/v1/users/sso-ids",
            "api/v1/users/sso-ids",
            "",
        ],
    )
    def test_a_usman_path_that_names_another_host_is_refused_at_load(self, path: str, tmp_path: Path) -> None:
        """httpx sends a request whose path is an absolute URL to that URL: the lookup, and the token
        in its header, went to another host than the base URL (over http:// beside an https:// base
        URL), which ``config`` shows and the load checks. Now CONFIG_INVALID naming the path's source,
        never quoting it (its query may hold a key). Before, it loaded and the token left: this test
        fails there."""
        environ = {
            "CRM_AUDIT_USMAN_BASE_URL": "https://usman.internal",
            "CRM_AUDIT_USMAN_TOKEN": "t0ken",
            "CRM_AUDIT_USMAN_PATH": path,
        }
        where, problem = problem_for(environ)
        assert where == "environment variable CRM_AUDIT_USMAN_PATH"
        assert "must be a path on base_url starting with one /" in problem, problem
        assert SECRET not in problem
        settings_file = tmp_path / "crm.toml"
        settings_file.write_text(
            f'[usman]\nbase_url = "https://usman.internal"\npath = "{path}"\n', encoding="utf-8"
        )
        assert problem_for_file(settings_file, {})[0] == f"settings file {settings_file}: usman.path"

    def test_a_usman_path_on_the_base_url_is_taken(self) -> None:
        """A path with a query (a key USMAN asks for there) loads as written."""
        environ = {
            "CRM_AUDIT_USMAN_BASE_URL": "https://usman.internal",
            "CRM_AUDIT_USMAN_PATH": "/v2/sso?k=1",
        }
        settings = load_settings(None, environ)
        assert settings.usman is not None
        assert settings.usman.path == "/v2/sso?k=1"

    def test_user_info_beside_a_token_in_another_header_is_taken(self, tmp_path: Path) -> None:
        """The token in ``X-Api-Key``, or no token: the user info is sent as Basic auth as it is (a
        proxy before USMAN may ask for it), so it loads; ``config`` shows it hidden."""
        url = f"http://usman:{SECRET}@usman.internal"
        for extra in ({"CRM_AUDIT_USMAN_AUTH_HEADER": "X-Api-Key", "CRM_AUDIT_USMAN_TOKEN": "t"}, {}):
            settings = load_settings(None, {"CRM_AUDIT_USMAN_BASE_URL": url, **extra})
            assert settings.usman is not None
            assert settings.usman.base_url == url
            assert SECRET not in repr(settings.usman)
            assert SECRET not in str(settings.describe())
        path = tmp_path / "crm.toml"
        path.write_text(f'[usman]\nbase_url = "{url}"\n', encoding="utf-8")
        where_problem = problem_for_file(path, {"CRM_AUDIT_USMAN_TOKEN": "t"})
        assert where_problem[0] == f"settings file {path}: usman.base_url"


class TestStrictTomlTypes:
    @pytest.mark.parametrize(
        ("line", "where", "message"),
        [
            ('page_size = "7"', "page_size", "expected an integer"),
            ("page_size = 500.0", "page_size", "expected an integer"),
            ('halt_threshold = "0.5"', "halt_threshold", "expected a number"),
            ("lease_seconds = true", "lease_seconds", "expected a number"),
            ('enabled_companies = ["a", 5]', "enabled_companies", "expected a string or a list of strings"),
            ("lease_seconds = 1e-9", "lease_seconds", "must be in [1, 86400]"),
            ('[usman]\nbase_url = "http://u"\nmax_attempts = "3"', "usman.max_attempts", "expected a number"),
            ('[loader]\nmax_depth = "7"', "loader.max_depth", "expected a positive integer"),
        ],
    )
    def test_a_toml_value_of_the_wrong_type_is_refused(
        self, tmp_path: Path, line: str, where: str, message: str
    ) -> None:
        """TOML has types: text where a number belongs (or a number in a list of ids) is refused, not cast."""
        path = tmp_path / "crm.toml"
        path.write_text(line + "\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        ((source, problem),) = raised.value.problems
        assert source == f"settings file {path}: {where}"
        assert message in problem, problem

    def test_the_environment_still_gives_numbers_as_text(self) -> None:
        """An environment variable is always text: CRM_AUDIT_PAGE_SIZE=7 is the integer 7."""
        environ = {
            "CRM_AUDIT_PAGE_SIZE": "7",
            "CRM_AUDIT_LOADER_MAX_DEPTH": "9",
            "CRM_AUDIT_LEASE_SECONDS": "1",
        }
        settings = load_settings(None, environ)
        assert (settings.run.page_size, settings.loader.max_depth, settings.run.lease_seconds) == (7, 9, 1.0)

    def test_a_toml_number_of_the_right_type_is_taken(self, tmp_path: Path) -> None:
        """An integer for a number setting, and a list of strings for the enabled accounts, load."""
        path = tmp_path / "crm.toml"
        path.write_text('halt_threshold = 1\nlease_seconds = 30\nenabled_companies = ["a", "b"]\n')
        settings = load_settings(path, {})
        assert (settings.run.halt_threshold, settings.run.lease_seconds) == (1.0, 30.0)
        assert settings.enabled_companies == "a,b"


class TestProblemsNameTheirSource:
    def test_a_loader_limit_in_the_file_names_the_file(self, tmp_path: Path) -> None:
        """``[loader] max_depth = 0`` is reported as the settings file's key, like every other key."""
        path = tmp_path / "crm.toml"
        path.write_text("[loader]\nmax_depth = 0\nmax_nodez = 1\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert {where for where, _ in raised.value.problems} == {
            f"settings file {path}: loader.max_depth",
            f"settings file {path}: loader.max_nodez",
        }

    def test_a_loader_limit_in_the_environment_names_the_variable(self) -> None:
        """``CRM_AUDIT_LOADER_MAX_DEPTH=0`` is reported as that environment variable."""
        where, _ = problem_for({"CRM_AUDIT_LOADER_MAX_DEPTH": "0"})
        assert where == "environment variable CRM_AUDIT_LOADER_MAX_DEPTH"

    def test_a_loader_key_that_is_not_a_table_names_the_file(self, tmp_path: Path) -> None:
        """``loader = 5`` names the file too."""
        path = tmp_path / "crm.toml"
        path.write_text("loader = 5\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert [where for where, _ in raised.value.problems] == [f"settings file {path}: loader"]


class TestDescribe:
    def test_config_shows_every_host_of_a_failover_broker_url_and_no_password(self) -> None:
        """``config`` of ``sentinel://:a@h1;sentinel://:b@h2`` lists both hosts, both passwords masked."""
        url = f"sentinel://:{SECRET}@h1:26379;sentinel://:{SECRET}x@h2:26379"
        shown = load_settings(None, {"CRM_AUDIT_BROKER_URL": url}).describe()["broker_url"]
        assert shown == "sentinel://:***@h1:26379;sentinel://:***@h2:26379"


class TestHttpSecrets:
    @pytest.mark.parametrize(
        ("name", "value", "minimum"),
        [
            ("CRM_AUDIT_SESSION_SECRET", "Q", 32),
            ("CRM_AUDIT_SESSION_SECRET", "Q7" * 15 + "Q", 32),
            ("CRM_AUDIT_HTTP_PASSWORD", "Q", 16),
            ("CRM_AUDIT_HTTP_PASSWORD", "Q7" * 7 + "Q", 16),
        ],
    )
    def test_a_short_secret_is_refused_at_load_without_quoting_it(
        self, name: str, value: str, minimum: int
    ) -> None:
        """A session secret brute-forced from one tenant's token forges any company's: too short a
        secret (or HTTP password) is CONFIG_INVALID naming the variable and the rule, never the value."""
        where, problem = problem_for({name: value})
        assert where == f"environment variable {name}"
        assert problem.startswith(f"must be at least {minimum} characters")
        assert value not in problem

    def test_secrets_of_the_minimum_length_load(self) -> None:
        """``secrets.token_urlsafe(32)`` (43 characters) and a 16-character password are taken."""
        settings = load_settings(
            None, {"CRM_AUDIT_SESSION_SECRET": "s" * 32, "CRM_AUDIT_HTTP_PASSWORD": "p" * 16}
        )
        assert (settings.session_secret, settings.http_password) == ("s" * 32, "p" * 16)


class TestOverriddenFileValues:
    def test_a_wrong_file_value_is_refused_even_while_a_variable_overrides_it(self, tmp_path: Path) -> None:
        """Every value is checked when read: a list for database_url in the file is CONFIG_INVALID though
        CRM_AUDIT_DATABASE_URL wins (unset the variable and it would be in force), never quoting it."""
        path = tmp_path / "crm.toml"
        path.write_text(
            f'database_url = ["postgresql://u:{SECRET}@h/db"]\npage_size = "7"\n', encoding="utf-8"
        )
        environ = {"CRM_AUDIT_DATABASE_URL": "postgresql://ro@crm/crm", "CRM_AUDIT_PAGE_SIZE": "50"}
        with pytest.raises(ConfigError) as raised:
            load_settings(path, environ)
        assert SECRET not in str(raised.value)
        assert [where for where, _ in raised.value.problems] == [
            f"settings file {path}: database_url",
            f"settings file {path}: page_size",
        ]

    def test_the_variable_still_wins_over_a_right_file_value(self, tmp_path: Path) -> None:
        """Both right: the environment's value is the one in force."""
        path = tmp_path / "crm.toml"
        path.write_text("page_size = 70\n", encoding="utf-8")
        assert load_settings(path, {"CRM_AUDIT_PAGE_SIZE": "50"}).run.page_size == 50
        assert load_settings(path, {}).run.page_size == 70
