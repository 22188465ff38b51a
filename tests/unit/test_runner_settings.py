"""The runner's edges: feature flags, settings (file + env, secrets redacted), exit codes, progress."""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pytest

from crm_audit_adapters.cli import exit_codes
from crm_audit_adapters.cli.progress import ProgressLine
from crm_audit_adapters.files import FileFormatError
from crm_audit_adapters.flags import ConfiguredFeatureFlags
from crm_audit_adapters.redaction import scrub
from crm_audit_adapters.settings import load_settings, load_tenants, redact
from crm_audit_transform.errors import (
    AlreadyCompleted,
    ConfigError,
    ContactsNotMigrated,
    DirectoryRefused,
    FlagDisabled,
    IndexesMissing,
    JobAlreadyRunning,
    JobNotFound,
    LeaseHeld,
    ResumeOrFresh,
    SourceUnavailable,
    StoreUnavailable,
    TenantMismatch,
    TenantUnbound,
)
from crm_audit_transform.jobs import IN_PROGRESS, MigrationJob
from crm_audit_transform.loading import LoaderLimits
from crm_audit_transform.tally import Tally
from support.blocking import in_a_thread

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TestFeatureFlags:
    @pytest.mark.parametrize(
        ("value", "company", "enabled"),
        [
            ("a,b", "a", True),
            ("a, b", "b", True),
            ("a,b", "c", False),
            ("*", "anyone", True),
            ("", "a", False),
        ],
    )
    def test_parses_the_enabled_companies(self, value: str, company: str, enabled: bool) -> None:
        """A comma list enables those accounts, '*' every account, nothing none."""
        assert ConfiguredFeatureFlags.parse(value).is_enabled(company) is enabled

    def test_reads_the_environment_variable(self) -> None:
        """CRM_AUDIT_ENABLED_COMPANIES switches accounts on; unset means off."""
        assert ConfiguredFeatureFlags.from_env({"CRM_AUDIT_ENABLED_COMPANIES": "x"}).is_enabled("x")
        assert not ConfiguredFeatureFlags.from_env({}).is_enabled("x")


class TestSettings:
    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        """A value in the environment wins over the same key in the TOML file."""
        path = tmp_path / "settings.toml"
        path.write_text('mongo_database = "file-db"\npage_size = 100\nenabled_companies = ["a", "b"]\n')
        settings = load_settings(path, {"CRM_AUDIT_MONGO_DATABASE": "env-db"})
        assert settings.mongo_database == "env-db"
        assert settings.run.page_size == 100
        assert settings.enabled_companies == "a,b"

    def test_usman_table_and_environment_build_the_client_config(self, tmp_path: Path) -> None:
        """[usman] in the file and CRM_AUDIT_USMAN_* in the environment make one UsmanConfig."""
        path = tmp_path / "settings.toml"
        path.write_text('[usman]\nbase_url = "http://usman.test"\nread_timeout = 9\n')
        settings = load_settings(path, {"CRM_AUDIT_USMAN_TOKEN": "tok-123"})
        assert settings.usman is not None
        assert (settings.usman.base_url, settings.usman.read_timeout, settings.usman.token) == (
            "http://usman.test",
            9.0,
            "tok-123",
        )

    def test_every_problem_is_reported_at_once(self, tmp_path: Path) -> None:
        """Bad types and unknown keys come back together in one ConfigError."""
        path = tmp_path / "settings.toml"
        path.write_text('page_size = "many"\ncolour = "blue"\n')
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {"CRM_AUDIT_HALT_THRESHOLD": "high"})
        assert {p for p, _ in raised.value.problems} == {
            f"settings file {path}: page_size",
            f"settings file {path}: colour",
            "environment variable CRM_AUDIT_HALT_THRESHOLD",
        }

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("CRM_AUDIT_PAGE_SIZE", "0", "must be in [1, 10000], got 0"),
            ("CRM_AUDIT_PAGE_SIZE", "1.5", "expected an integer"),
            ("CRM_AUDIT_HALT_THRESHOLD", "0", "must be in (0, 1], got 0"),
            ("CRM_AUDIT_HALT_THRESHOLD", "nan", "expected a number"),
            ("CRM_AUDIT_COVERAGE_THRESHOLD", "1.5", "must be in [0, 1], got 1.5"),
            ("CRM_AUDIT_LEASE_SECONDS", "-1", "must be in [1, 86400], got -1"),
            ("CRM_AUDIT_MONGO_DATABASE", "cdp.prod", "must be 1-63 bytes"),
            ("CRM_AUDIT_MONGO_URI", "mongo://cdp", "must start with mongodb://"),
            ("CRM_AUDIT_MONGO_URI", "mongodb://u:p@ss@cdp", "pymongo cannot parse this URI"),
            ("CRM_AUDIT_DATABASE_URL", "host=crm password='open", "not a PostgreSQL connection string"),
            ("CRM_AUDIT_DATABASE_URL", "host=crm colour=blue", "libpq cannot parse"),
            ("CRM_AUDIT_DATABASE_URL", "postgresql://ro:p@Kx9v@crm/crm", "unescaped '@'"),
            ("CRM_AUDIT_MAPPING_CONFIG", "/nonexistent/mapping.yaml", "no such mapping file"),
            ("CRM_AUDIT_USMAN_READ_TIMEOUT", "0", "out of range"),
            ("CRM_AUDIT_PAGE_SIZE", "5000000000000000000000", "got 5000000000000000000000"),
            ("CRM_AUDIT_PAGE_SIZE", "5e21", "expected an integer, got 5e21"),
            ("CRM_AUDIT_HALT_SAMPLE", "5000000", "must be in [1, 1000000], got 5000000"),
            ("CRM_AUDIT_HALT_THRESHOLD", "5e21", "must be in (0, 1], got 5e21"),
            ("CRM_AUDIT_BROKER_VISIBILITY_TIMEOUT", "1e9", "must be in (0, 604800], got 1e9"),
            # A session's times are whole seconds: 0.5 was cut to 0 without a word.
            ("CRM_AUDIT_SESSION_MAX_AGE", "0.5", "must be a whole number of seconds, got 0.5"),
            ("CRM_AUDIT_SESSION_MAX_AGE", "3600.25", "must be a whole number of seconds, got 3600.25"),
            ("CRM_AUDIT_SESSION_MAX_AGE", "0", "must be in [1, 2678400], got 0"),
        ],
    )
    def test_every_setting_is_range_checked_at_load(self, name: str, value: str, message: str) -> None:
        """An out-of-range or unparseable value is refused at load, naming its environment variable."""
        env = {name: value, "CRM_AUDIT_USMAN_BASE_URL": "http://usman.test"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, env)
        assert raised.value.problems[0][0] == f"environment variable {name}"
        assert message in raised.value.problems[0][1]
        assert "invalid configuration in the runner's settings" in str(raised.value)

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("page_size = 5000000000000000000000", "must be in [1, 10000], got 5000000000000000000000"),
            ("page_size = 5e21", "expected an integer, got 5e21"),
            ("halt_threshold = 5e21", "must be in (0, 1], got 5e21"),
            ("halt_sample = 1e-7", "expected an integer, got 1e-7"),
            ("lease_seconds = 1e400", "must be a finite number, got inf"),
            ("page_size = 1" + "0" * 4000, "got an integer of 4001 digits"),
        ],
    )
    def test_a_number_out_of_range_is_shown_as_written_not_rounded(
        self, tmp_path: Path, line: str, message: str
    ) -> None:
        """A settings file's number is quoted in full (its digits, or the shortest float), never ``5e+21``."""
        path = tmp_path / "crm.toml"
        path.write_text(line + "\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        ((_, problem),) = raised.value.problems
        assert problem == message or problem.endswith(message), problem
        assert "e+" not in problem

    def test_an_integer_past_pythons_text_limit_is_a_config_error(self, tmp_path: Path) -> None:
        """A 5,001-digit TOML integer cannot even be read: CONFIG_INVALID naming the file, not INTERNAL."""
        path = tmp_path / "crm.toml"
        path.write_text("page_size = 1" + "0" * 5000 + "\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        ((where, problem),) = raised.value.problems
        assert where == f"settings file {path}"
        assert problem.startswith("cannot read a value: ")

    def test_a_mapping_config_that_is_a_directory_says_so(self, tmp_path: Path) -> None:
        """A directory is not "no such mapping file": the message says it is a directory."""
        with pytest.raises(ConfigError) as raised:
            load_settings(None, {"CRM_AUDIT_MAPPING_CONFIG": str(tmp_path)})
        ((_, problem),) = raised.value.problems
        assert problem == f"is a directory, not a mapping file: {tmp_path}"

    def test_problems_never_quote_a_secret(self) -> None:
        """A malformed DSN is refused without echoing any piece of it."""
        with pytest.raises(ConfigError) as raised:
            load_settings(None, {"CRM_AUDIT_DATABASE_URL": "host=crm password=Kx9v Q7zRtail"})
        assert "Q7zR" not in str(raised.value)
        assert "Kx9v" not in str(raised.value)

    def test_a_secret_in_the_usman_path_is_scrubbed_from_what_names_the_endpoint(self) -> None:
        """USMAN's messages name the URL it posts to, ``base_url`` + ``path``: a key in the path's query
        (``?api_key=…``) was printed as it is in DIRECTORY_REFUSED, where one in ``base_url`` was hidden."""
        settings = load_settings(
            None,
            {
                "CRM_AUDIT_USMAN_BASE_URL": "https://usman.internal/",
                "CRM_AUDIT_USMAN_PATH": "/api/v1/users/sso-ids?api_key=Kq7PathKey",
            },
        )
        line = "USMAN at https://usman.internal/api/v1/users/sso-ids?api_key=Kq7PathKey refused the request"
        assert "Kq7PathKey" not in scrub(line, settings.secrets())

    def test_config_shows_the_usman_path_with_its_query_hidden(self) -> None:
        """Where the lookup and its token go is ``base_url`` + ``path``; ``config`` showed the base URL
        only, so a path sending them elsewhere could not be seen. The path's query may hold a key."""
        settings = load_settings(
            None,
            {
                "CRM_AUDIT_USMAN_BASE_URL": "https://usman.internal",
                "CRM_AUDIT_USMAN_PATH": "/v2/sso-ids?api_key=Kq7PathKey",
            },
        )
        described = settings.describe()
        assert described["usman_path"] == "/v2/sso-ids?***"
        assert "Kq7PathKey" not in str(described)
        assert load_settings(None, {}).describe()["usman_path"] is None

    def test_misspelled_variables_get_a_did_you_mean_warning(self) -> None:
        """CRM_AUDIT_PAGESIZE is not silently ignored: the warning names CRM_AUDIT_PAGE_SIZE."""
        settings = load_settings(None, {"CRM_AUDIT_PAGESIZE": "5", "CRM_AUDIT_UNRELATED_THING": "x"})
        assert settings.warnings == (
            "environment variable CRM_AUDIT_PAGESIZE is not a setting; did you mean CRM_AUDIT_PAGE_SIZE?",
        )

    def test_the_did_you_mean_hint_survives_another_invalid_setting(self) -> None:
        """With CRM_AUDIT_PAGESIZE misspelled and another value invalid, the error carries both."""
        environ = {"CRM_AUDIT_PAGESIZE": "5", "CRM_AUDIT_HALT_THRESHOLD": "lots"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, environ)
        problems = dict(raised.value.problems)
        assert problems["environment variable CRM_AUDIT_PAGESIZE"] == (
            "is not a setting; did you mean CRM_AUDIT_PAGE_SIZE?"
        )
        assert "environment variable CRM_AUDIT_HALT_THRESHOLD" in problems

    def test_a_misspelled_file_key_is_named_with_a_suggestion(self, tmp_path: Path) -> None:
        """An unknown key in the settings file suggests the key it is closest to."""
        path = tmp_path / "settings.toml"
        path.write_text("page_sise = 10\n[usman]\nbase_url = 'http://u'\nread_timout = 3\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert dict(raised.value.problems) == {
            f"settings file {path}: page_sise": "unknown setting; did you mean page_size?",
            f"settings file {path}: usman.read_timout": "unknown setting; did you mean read_timeout?",
        }

    @pytest.mark.parametrize("key", ["token", "base_url", "path", "auth_header", "auth_scheme"])
    @pytest.mark.parametrize("value", ["5", "5.5", "true", '["tok"]'])
    def test_a_usman_text_setting_given_as_another_toml_type_is_refused(
        self, tmp_path: Path, key: str, value: str
    ) -> None:
        """``[usman] token = 5`` is not turned into the text "5": each text key must be a TOML string."""
        path = tmp_path / "settings.toml"
        base = "" if key == "base_url" else "base_url = 'http://usman.test'\n"
        path.write_text(f"[usman]\n{base}{key} = {value}\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert raised.value.problems == ((f"settings file {path}: usman.{key}", "expected a string"),)

    def test_a_usman_token_of_the_wrong_type_is_refused_even_without_a_base_url(self, tmp_path: Path) -> None:
        """The file is wrong whether or not USMAN is configured: a missing URL does not hide it."""
        path = tmp_path / "settings.toml"
        path.write_text("[usman]\ntoken = 5\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert raised.value.problems == ((f"settings file {path}: usman.token", "expected a string"),)

    def test_usman_numbers_are_toml_numbers(self, tmp_path: Path) -> None:
        """Timeouts and counts take a TOML number (the environment's text is read as one)."""
        path = tmp_path / "settings.toml"
        path.write_text("[usman]\nbase_url = 'http://u'\ntoken = '5'\nmax_attempts = 2\nread_timeout = 2.5")
        usman = load_settings(path, {"CRM_AUDIT_USMAN_CONNECT_TIMEOUT": "1.5"}).usman
        assert usman is not None
        assert (usman.token, usman.max_attempts, usman.read_timeout, usman.connect_timeout) == (
            "5",
            2,
            2.5,
            1.5,
        )

    @pytest.mark.parametrize(
        ("key", "toml", "message"),
        [
            ("token", '"Kx9v\\r\\nX-Evil: 1"', "token must be printable ASCII"),
            ("token", "'Kx9v\u00e9'", "token must be printable ASCII"),
            ("auth_scheme", '"Bearer\\n"', "auth_scheme must be printable ASCII"),
            ("auth_header", "'X Api Key'", "auth_header must be an HTTP header name"),
            ("connect_timeout", "1e400", "connect_timeout must be a finite number"),
            ("read_timeout", "inf", "read_timeout must be a finite number"),
            ("backoff_base", "'1e400'", "expected a number"),
            ("backoff_max", "inf", "backoff_max must be a finite number"),
        ],
    )
    def test_a_usman_setting_that_can_never_work_is_refused_at_load(
        self, tmp_path: Path, key: str, toml: str, message: str
    ) -> None:
        """A token no header can carry, a header name with a space, an infinite timeout: refused."""
        path = tmp_path / "settings.toml"
        path.write_text(f"[usman]\nbase_url = 'http://usman.test'\n{key} = {toml}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        [(source, problem)] = raised.value.problems
        assert (source, problem[: len(message)]) == (f"settings file {path}: usman.{key}", message)
        assert "Kx9v" not in str(raised.value)

    def test_a_usman_token_from_the_environment_with_a_newline_is_refused(self) -> None:
        """CRM_AUDIT_USMAN_TOKEN holding CR/LF is refused by name, without quoting it."""
        env = {"CRM_AUDIT_USMAN_BASE_URL": "http://usman.test", "CRM_AUDIT_USMAN_TOKEN": "Kx9v\r\n"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, env)
        assert raised.value.problems[0][0] == "environment variable CRM_AUDIT_USMAN_TOKEN"
        assert "Kx9v" not in str(raised.value)

    def test_a_settings_file_that_is_not_utf8_is_a_config_error(self, tmp_path: Path) -> None:
        """A Latin-1 settings file is a ConfigError naming the file and the byte, not an internal error."""
        path = tmp_path / "settings.toml"
        path.write_bytes(b"mongo_database = 'caf\xe9'\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert raised.value.problems == ((f"settings file {path}", "not UTF-8 (byte 21)"),)

    def test_an_environment_value_with_undecodable_bytes_is_a_config_error(self) -> None:
        """A DSN whose bytes are not UTF-8 (lone surrogates in os.environ) is refused without echoing it."""
        dsn = "postgresql://ro:Kx9v\udce9@crm/crm"
        with pytest.raises(ConfigError) as raised:
            load_settings(None, {"CRM_AUDIT_DATABASE_URL": dsn})
        assert raised.value.problems == (
            ("environment variable CRM_AUDIT_DATABASE_URL", "holds bytes that are not UTF-8"),
        )
        assert "Kx9v" not in str(raised.value)

    def test_a_settings_file_past_one_mib_is_refused_without_reading_it_all(self, tmp_path: Path) -> None:
        """2 MiB of valid TOML is CONFIG_INVALID naming the file: only the first MiB and one byte
        are read."""
        path = tmp_path / "settings.toml"
        path.write_text("# padding\n" * 200_000 + "page_size = 7\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert raised.value.problems == (
            (f"settings file {path}", "larger than 1048576 bytes: not a settings file"),
        )
        assert exit_codes.exit_code_for(raised.value) == exit_codes.CONFIG

    @pytest.mark.parametrize("kind", ["device", "fifo"])
    def test_a_device_or_a_fifo_is_refused_before_it_is_opened(self, tmp_path: Path, kind: str) -> None:
        """/dev/zero never ends, and a FIFO with no writer blocked open() for ever (every command
        hung): both are CONFIG_INVALID naming the file, at once."""
        path = Path("/dev/zero")
        if kind == "fifo":
            path = tmp_path / "settings.toml"
            os.mkfifo(path)
        elif not path.exists():
            pytest.skip("no /dev/zero here")
        raised = in_a_thread(lambda: load_settings(path, {}))
        assert isinstance(raised, ConfigError)
        why = "not a regular file (a device, a FIFO or a socket): a settings file is TOML on disk"
        assert raised.problems == ((f"settings file {path}", why),)
        assert exit_codes.exit_code_for(raised) == exit_codes.CONFIG

    @pytest.mark.parametrize(
        "text",
        [
            "page_size = " + "[" * 5000 + "]" * 5000 + "\n",
            "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
            "[tenants]\nacme = " + "[" * 5000 + "]" * 5000 + "\n",
        ],
        ids=["array", "inline-table", "tenants"],
    )
    def test_a_value_nested_too_deep_to_read_is_a_config_error(self, tmp_path: Path, text: str) -> None:
        """A small file whose value nests thousands of levels is CONFIG_INVALID naming the file, for
        every reader of it (the runner's settings and the dry run's bindings), not INTERNAL."""
        path = tmp_path / "settings.toml"
        path.write_text(text)
        for read in (load_settings, load_tenants):
            with pytest.raises(ConfigError) as raised:
                read(path, {})
            assert raised.value.problems == ((f"settings file {path}", "nests values too deep to read"),)
            assert exit_codes.exit_code_for(raised.value) == exit_codes.CONFIG

    def test_a_missing_or_broken_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A settings file that is absent or not TOML is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="no such configuration file"):
            load_settings(tmp_path / "nope.toml", {})
        (tmp_path / "bad.toml").write_text("= = =")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_settings(tmp_path / "bad.toml", {})

    def test_repr_never_shows_a_secret(self) -> None:
        """DSN and Mongo passwords, the USMAN token and the HTTP secrets are redacted in repr and describe."""
        env = {
            "CRM_AUDIT_DATABASE_URL": "postgresql://ro:pg-pass@crm:5432/crm",
            "CRM_AUDIT_MONGO_URI": "mongodb://cdp:mongo-pass@m1,m2/cdp?replicaSet=rs",
            "CRM_AUDIT_USMAN_BASE_URL": "https://usman.test",
            "CRM_AUDIT_USMAN_TOKEN": "usman-token",
            "CRM_AUDIT_HTTP_PASSWORD": "http-pass-of-16-chars",
            "CRM_AUDIT_SESSION_SECRET": "session-key-of-at-least-32-characters",
        }
        settings = load_settings(None, env)
        assert (settings.http_password, settings.session_secret) == (
            "http-pass-of-16-chars",
            "session-key-of-at-least-32-characters",
        )
        shown = repr(settings) + repr(settings.describe())
        for secret in ("pg-pass", "mongo-pass", "usman-token", "http-pass", "session-key"):
            assert secret not in shown
        assert "postgresql://ro:***@crm:5432/crm" in shown

    @pytest.mark.parametrize(
        "name",
        [
            "CRM_AUDIT_PAGE_SIZE",
            "CRM_AUDIT_HALT_SAMPLE",
            "CRM_AUDIT_HALT_THRESHOLD",
            "CRM_AUDIT_LEASE_SECONDS",
            "CRM_AUDIT_LOADER_MAX_DEPTH",
            "CRM_AUDIT_USMAN_MAX_ATTEMPTS",
            "CRM_AUDIT_USMAN_READ_TIMEOUT",
        ],
    )
    @pytest.mark.parametrize("text", ["1_0", "\u0661\u0660", " 10", "+10", "10 ", "nan", "inf"])
    def test_every_number_is_read_by_the_one_strict_reader(self, name: str, text: str) -> None:
        """The top-level and [usman] numbers took int()'s and float()'s lenient text (1_000, Arabic-Indic
        digits, spaces, +), while [loader] refused it: every numeric setting now refuses it alike."""
        env = {name: text, "CRM_AUDIT_USMAN_BASE_URL": "https://usman.test"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, env)
        assert [source for source, _ in raised.value.problems] == [f"environment variable {name}"]

    @pytest.mark.parametrize(
        ("name", "text", "field", "value"),
        [
            ("CRM_AUDIT_PAGE_SIZE", "1000", "page_size", 1000),
            ("CRM_AUDIT_HALT_THRESHOLD", "0.25", "halt_threshold", 0.25),
            ("CRM_AUDIT_HALT_THRESHOLD", "1e-1", "halt_threshold", 0.1),
            ("CRM_AUDIT_HALT_THRESHOLD", ".5", "halt_threshold", 0.5),
            ("CRM_AUDIT_HALT_THRESHOLD", "1", "halt_threshold", 1.0),
        ],
    )
    def test_plain_numbers_are_read(self, name: str, text: str, field: str, value: float) -> None:
        assert getattr(load_settings(None, {name: text}).run, field) == value

    def test_tenant_bindings_come_from_the_table_and_the_environment(self, tmp_path: Path) -> None:
        """`[tenants]` binds accounts; CRM_AUDIT_TENANTS adds or overrides pairs."""
        path = tmp_path / "s.toml"
        path.write_text('[tenants]\n"co-a" = "acme"\n"co-b" = "initech"\n')
        settings = load_settings(path, {"CRM_AUDIT_TENANTS": "co-b=globex, co-c=umbrella"})
        assert settings.tenants == {"co-a": "acme", "co-b": "globex", "co-c": "umbrella"}
        assert settings.describe()["tenants"] == settings.tenants

    @pytest.mark.parametrize(
        ("table", "env", "problem"),
        [
            ("", "co-a=acme,co-a=globex", "company co-a is named twice"),
        ],
    )
    def test_a_company_named_twice_in_the_variable_is_refused(
        self, tmp_path: Path, table: str, env: str, problem: str
    ) -> None:
        """A company given twice in CRM_AUDIT_TENANTS (the later pair silently won) is CONFIG_INVALID."""
        path = tmp_path / "s.toml"
        path.write_text(table)
        with pytest.raises(ConfigError, match=problem):
            load_settings(path, {"CRM_AUDIT_TENANTS": env})

    @pytest.mark.parametrize(
        ("table", "env", "where"),
        [
            ("", "co-a=acme,co-b=acme", "environment variable CRM_AUDIT_TENANTS"),
            ('[tenants]\n"co-a" = "acme"\n"co-b" = "acme"\n', "", "s.toml: tenants"),
            ('[tenants]\n"co-a" = "acme"\n', "co-b=acme", "CRM_AUDIT_TENANTS and settings file"),
        ],
    )
    def test_a_tenant_bound_to_several_companies_is_refused(
        self, tmp_path: Path, table: str, env: str, where: str
    ) -> None:
        """One tenant bound to two accounts (each could migrate its data) is CONFIG_INVALID, from the
        table, the variable or both; re-binding a company in the variable to the other's tenant too."""
        path = tmp_path / "s.toml"
        path.write_text(table)
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {"CRM_AUDIT_TENANTS": env})
        assert exit_codes.exit_code_for(raised.value) == exit_codes.CONFIG
        ((source, problem),) = raised.value.problems
        assert where in source
        assert problem.startswith("tenant acme is bound to 2 companies (co-a, co-b)")

    def test_a_company_moved_to_another_tenant_frees_its_old_one(self, tmp_path: Path) -> None:
        """The variable overrides the table's pair: only the final bindings are checked."""
        path = tmp_path / "s.toml"
        path.write_text('[tenants]\n"co-a" = "acme"\n')
        settings = load_settings(path, {"CRM_AUDIT_TENANTS": "co-a=globex,co-b=acme"})
        assert settings.tenants == {"co-a": "globex", "co-b": "acme"}

    def test_a_malformed_tenant_binding_is_a_configuration_error(self) -> None:
        """A pair without `=` is reported with the variable's name."""
        with pytest.raises(ConfigError, match="CRM_AUDIT_TENANTS"):
            load_settings(None, {"CRM_AUDIT_TENANTS": "co-a"})

    @pytest.mark.parametrize(
        ("dsn", "shown"),
        [
            ("host=crm user=ro password=s3cret dbname=crm", "host=crm user=ro password=*** dbname=crm"),
            ("postgresql://ro@crm/crm", "postgresql://ro@crm/crm"),
            ("mongodb://u:p%40ss@h/db", "mongodb://u:***@h/db"),
        ],
    )
    def test_redacts_both_dsn_spellings(self, dsn: str, shown: str) -> None:
        """URL and key=value DSNs lose their password and nothing else."""
        assert redact(dsn) == shown


HUGE = "5000000000000000000000"

NUMERIC_VARIABLES = [
    *(
        f"CRM_AUDIT_{key.upper()}"
        for key in (
            "coverage_threshold",
            "page_size",
            "page_bytes",
            "halt_threshold",
            "degraded_threshold",
            "halt_sample",
            "lease_seconds",
            "broker_visibility_timeout",
            "session_max_age",
        )
    ),
    *(
        f"CRM_AUDIT_USMAN_{key}"
        for key in (
            "CONNECT_TIMEOUT",
            "READ_TIMEOUT",
            "MAX_EMAILS",
            "MAX_ATTEMPTS",
            "BACKOFF_BASE",
            "BACKOFF_MAX",
            "MAX_CONNECTIONS",
            "CALL_TIMEOUT",
        )
    ),
    *(f"CRM_AUDIT_LOADER_{key}" for key in ("MAX_BYTES", "MAX_NODES", "MAX_DEPTH", "MAX_INT_DIGITS")),
]


class TestUpperBounds:
    @pytest.mark.parametrize("name", NUMERIC_VARIABLES)
    @pytest.mark.parametrize("value", [HUGE, "5e21"])
    def test_every_numeric_setting_refuses_an_absurd_number_as_written(self, name: str, value: str) -> None:
        """5e21 or a 22-digit integer is refused for every number the runner reads, naming the variable
        and quoting the value as given."""
        env = {name: value, "CRM_AUDIT_USMAN_BASE_URL": "http://usman.test"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, env)
        [(source, problem)] = raised.value.problems
        assert name in source
        assert problem.endswith(f"got {value}"), problem

    def test_the_numeric_variables_listed_here_are_all_the_numeric_settings(self) -> None:
        """A new numeric setting is added to the list above, so it gets its bound checked too."""
        from crm_audit_adapters import settings
        from crm_audit_adapters.settings import keys

        numeric = {
            f"CRM_AUDIT_{key.upper()}" for key, (kind, _) in keys.SCALAR_KEYS.items() if kind is not str
        }
        usman = {f"CRM_AUDIT_USMAN_{key}" for key in keys.USMAN_KEYS.values()} - {
            f"CRM_AUDIT_USMAN_{keys.USMAN_KEYS[key]}" for key in keys.USMAN_TEXT_KEYS
        }
        loader = {f"CRM_AUDIT_LOADER_{name.upper()}" for name in settings.LOADER_LIMITS}
        assert numeric | usman | loader == set(NUMERIC_VARIABLES)

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("CRM_AUDIT_USMAN_READ_TIMEOUT", "5e21", "read_timeout must be at most 600, got 5e21"),
            ("CRM_AUDIT_USMAN_CONNECT_TIMEOUT", "600.5", "connect_timeout must be at most 600, got 600.5"),
            ("CRM_AUDIT_USMAN_MAX_EMAILS", HUGE, f"max_emails_per_request must be at most 10000, got {HUGE}"),
            ("CRM_AUDIT_USMAN_MAX_ATTEMPTS", "101", "max_attempts must be at most 100, got 101"),
            ("CRM_AUDIT_USMAN_MAX_CONNECTIONS", "1001", "max_connections must be at most 1000, got 1001"),
            ("CRM_AUDIT_LOADER_MAX_BYTES", "5000000000", "must be at most 1073741824, got 5000000000"),
            ("CRM_AUDIT_LOADER_MAX_NODES", "10000001", "must be at most 10000000, got 10000001"),
            ("CRM_AUDIT_LOADER_MAX_DEPTH", "1001", "must be at most 1000, got 1001"),
            ("CRM_AUDIT_LOADER_MAX_INT_DIGITS", "100001", "must be at most 100000, got 100001"),
        ],
    )
    def test_the_bound_is_named(self, name: str, value: str, message: str) -> None:
        """The problem says the largest value taken, then the value as given."""
        env = {name: value, "CRM_AUDIT_USMAN_BASE_URL": "http://usman.test"}
        with pytest.raises(ConfigError) as raised:
            load_settings(None, env)
        [(_, problem)] = raised.value.problems
        assert problem == message

    def test_each_bound_itself_is_taken(self) -> None:
        """The largest value of each USMAN and loader setting loads."""
        env = {
            "CRM_AUDIT_USMAN_BASE_URL": "http://usman.test",
            "CRM_AUDIT_USMAN_CONNECT_TIMEOUT": "600",
            "CRM_AUDIT_USMAN_READ_TIMEOUT": "600",
            "CRM_AUDIT_USMAN_MAX_EMAILS": "10000",
            "CRM_AUDIT_USMAN_MAX_ATTEMPTS": "100",
            "CRM_AUDIT_USMAN_BACKOFF_BASE": "600",
            "CRM_AUDIT_USMAN_BACKOFF_MAX": "600",
            "CRM_AUDIT_USMAN_MAX_CONNECTIONS": "1000",
            "CRM_AUDIT_LOADER_MAX_BYTES": str(1 << 30),
            "CRM_AUDIT_LOADER_MAX_NODES": "10000000",
            "CRM_AUDIT_LOADER_MAX_DEPTH": "1000",
            "CRM_AUDIT_LOADER_MAX_INT_DIGITS": "100000",
        }
        settings = load_settings(None, env)
        assert settings.usman is not None
        assert (settings.usman.read_timeout, settings.usman.max_emails_per_request) == (600.0, 10_000)
        assert settings.loader == LoaderLimits(
            max_bytes=1 << 30, max_nodes=10_000_000, max_depth=1000, max_int_digits=100_000
        )

    def test_a_settings_file_number_is_quoted_as_written(self, tmp_path: Path) -> None:
        """A TOML float in ``[usman]`` or an integer in ``[loader]`` is quoted as TOML read it."""
        path = tmp_path / "crm.toml"
        path.write_text("[usman]\nbase_url = 'http://u'\nread_timeout = 5e21\n[loader]\nmax_depth = 5000\n")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert sorted(raised.value.problems) == [
            (f"settings file {path}: loader.max_depth", "must be at most 1000, got 5000"),
            (f"settings file {path}: usman.read_timeout", "read_timeout must be at most 600, got 5e21"),
        ]

    def test_the_loader_limits_refuse_past_their_maxima(self) -> None:
        """``LoaderLimits`` itself (library users, the HTTP surface) refuses a limit past its maximum."""
        for name, maximum in LoaderLimits.MAXIMA.items():
            LoaderLimits(**{name: maximum})
            with pytest.raises(ValueError, match=name):
                LoaderLimits(**{name: maximum + 1})


class TestExitCodes:
    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (ConfigError([("x", "y")]), exit_codes.CONFIG),
            (FlagDisabled("off"), exit_codes.REFUSED),
            (ContactsNotMigrated("low"), exit_codes.REFUSED),
            (JobAlreadyRunning("busy"), exit_codes.REFUSED),
            (AlreadyCompleted("done"), exit_codes.REFUSED),
            (JobNotFound("none"), exit_codes.REFUSED),
            (LeaseHeld("held"), exit_codes.REFUSED),
            (TenantMismatch("globex"), exit_codes.REFUSED),
            (TenantUnbound("unbound"), exit_codes.REFUSED),
            (ResumeOrFresh("choose"), exit_codes.REFUSED),
            (IndexesMissing(["activity_logs.uniq_company_external_id"]), exit_codes.CONFIG),
            (DirectoryRefused("401", status_code=401), exit_codes.CONFIG),
            (SourceUnavailable("pg down"), exit_codes.UNAVAILABLE),
            (StoreUnavailable("mongo down"), exit_codes.UNAVAILABLE),
            (FileFormatError("f.jsonl", 3, "bad"), exit_codes.BAD_INPUT),
            (RuntimeError("bug"), exit_codes.INTERNAL),
        ],
    )
    def test_each_error_kind_has_its_documented_code(self, error: Exception, code: int) -> None:
        """Ops scripts can branch on the exit code of every failure kind."""
        assert exit_codes.exit_code_for(error) == code

    def test_messages_are_one_line_with_the_guard_code(self) -> None:
        """A guard's code leads its message; multi-line messages are folded onto one line."""
        assert exit_codes.one_line(FlagDisabled("not enabled")) == "FLAG_DISABLED: not enabled"
        assert "\n" not in exit_codes.one_line(ConfigError([("a", "b"), ("c", "d")]))


class TestProgressLine:
    def job(self, last: int, processed: int) -> MigrationJob:
        return MigrationJob(
            "j", "co", "acme", IN_PROGRESS, T0, T0, T0, 1, 1000, last, Tally(processed=processed)
        )

    def test_shows_percent_rows_rate_and_eta_from_the_id_range(self) -> None:
        """After 10 s and 250 of 1000 ids, 200 rows: 20 rows/s and 30 s left for the other 750 ids."""
        clock = iter([0.0, 10.0])
        line = ProgressLine(self.job(0, 0), io.StringIO(), monotonic=lambda: next(clock))
        text = line.render(self.job(250, 200))
        assert "25.00%" in text
        assert "200 rows" in text
        assert "20 rows/s" in text
        assert "ETA 0:00:30" in text

    def test_writes_a_line_at_most_every_interval_when_not_a_terminal(self) -> None:
        """Logs get one line per interval, not one per batch."""
        times = iter([0.0, 1.0, 2.0, 7.0])
        out = io.StringIO()
        line = ProgressLine(self.job(0, 0), out, interval=5.0, monotonic=lambda: next(times))
        for last in (10, 20, 30):
            line.update(self.job(last, last))
        assert len(out.getvalue().splitlines()) == 2


class TestSessionMaxAge:
    def test_a_whole_number_of_seconds_is_taken_written_either_way(self, tmp_path: Path) -> None:
        """``3600`` and ``3600.0`` (TOML or the environment) are the same hour; only a fraction is refused."""
        path = tmp_path / "crm.toml"
        path.write_text("session_max_age = 3600.0\n", encoding="utf-8")
        assert load_settings(path, {}).session_max_age == 3600
        assert load_settings(None, {"CRM_AUDIT_SESSION_MAX_AGE": "7200"}).session_max_age == 7200
        path.write_text("session_max_age = 3600.5\n", encoding="utf-8")
        with pytest.raises(ConfigError) as raised:
            load_settings(path, {})
        assert list(raised.value.problems) == [
            (f"settings file {path}: session_max_age", "must be a whole number of seconds, got 3600.5")
        ]
