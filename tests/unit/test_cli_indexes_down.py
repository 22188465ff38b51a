"""``indexes down`` asks before it drops migration 035's indexes, as ``rollback`` asks before it deletes.

It dropped them at once: the unique index exactly-once rests on gone, and every write path refused
until ``indexes up``, on one mistyped word. Without a terminal to ask it needs ``--yes``.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from crm_audit_adapters.cli import cli, exit_codes
from support.cli_cdp import CliOverCdp

ENV = {
    "CRM_AUDIT_SETTINGS": "",
    "CRM_AUDIT_MONGO_URI": "mongodb://unused.invalid",
    "CRM_AUDIT_DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
    "CRM_AUDIT_ENABLED_COMPANIES": "*",
}


class Cdp(CliOverCdp):
    """One mongomock CDP with migration 035 applied; ``indexes`` runs the command over it."""

    def __init__(self) -> None:
        super().__init__(ENV)
        assert self.indexes("up").exit_code == 0

    def indexes(self, *args: str, answer: str | None = None) -> Result:
        return self.run("indexes", *args, answer=answer)

    def present(self) -> set[str]:
        result = self.indexes("status", "--json")
        return {index["state"] for index in json.loads(result.stdout)["indexes"]}


@pytest.fixture
def cdp() -> Cdp:
    return Cdp()


@pytest.mark.usefixtures("terminal")
class TestAtATerminal:
    @pytest.mark.parametrize("answer", ["n\n", "\n", ""], ids=["no", "the default", "no answer"])
    def test_anything_but_yes_changes_nothing(self, cdp: Cdp, answer: str) -> None:
        result = cdp.indexes("down", answer=answer)
        assert result.exit_code == exit_codes.DECLINED, result.output
        assert "Drop migration 035's indexes?" in result.stderr
        assert "error: DECLINED:" in result.stderr
        assert "nothing was changed" in result.stderr
        assert cdp.present() == {"present"}

    def test_yes_drops_them(self, cdp: Cdp) -> None:
        result = cdp.indexes("down", answer="y\n")
        assert result.exit_code == 0, result.output
        assert "version: none" in result.stdout
        assert cdp.present() == {"missing"}

    def test_a_declined_json_run_prints_its_error_document(self, cdp: Cdp) -> None:
        result = cdp.indexes("down", "--json", answer="n\n")
        error = json.loads(result.stdout)["error"]
        assert (result.exit_code, error["code"]) == (exit_codes.DECLINED, "DECLINED")


class TestWithoutATerminal:
    def test_it_is_refused_without_yes_even_with_an_answer_piped_in(self, cdp: Cdp) -> None:
        """``yes | crm-audit-migrate indexes down`` is no operator's answer: nothing is asked or dropped."""
        result = cdp.indexes("down", answer="y\n")
        assert result.exit_code == exit_codes.DECLINED, result.output
        assert "give --yes" in result.stderr
        assert "Drop migration" not in result.stderr
        assert cdp.present() == {"present"}

    def test_yes_drops_them_without_asking(self, cdp: Cdp) -> None:
        result = cdp.indexes("down", "--yes")
        assert result.exit_code == 0, result.output
        assert "Drop migration" not in result.stderr
        assert cdp.present() == {"missing"}

    @pytest.mark.parametrize("direction", ["up", "status"])
    def test_up_and_status_never_ask(self, cdp: Cdp, direction: str) -> None:
        result = cdp.indexes(direction)
        assert result.exit_code == 0, result.output
        assert "Drop migration" not in result.stderr


@pytest.mark.usefixtures("terminal")
class TestSettingsFirst:
    @pytest.mark.parametrize(
        ("variable", "value"),
        [("CRM_AUDIT_MONGO_URI", None), ("CRM_AUDIT_MONGO_URI", "mysql://x"), ("CRM_AUDIT_PAGE_SIZE", "x")],
        ids=["mongo-uri-unset", "mongo-uri-refused", "another-setting-refused"],
    )
    def test_a_misconfigured_down_fails_before_it_asks(self, variable: str, value: str | None) -> None:
        """CONFIG_INVALID (exit 3) at once, the question never asked: it asked first, and only the
        operator's "y" met the missing ``mongo_uri``."""
        env: dict[str, str | None] = {**ENV, variable: value}  # None: not in the environment
        result = CliRunner().invoke(cli, ["indexes", "down"], env=env, input="y\n")
        assert result.exit_code == exit_codes.CONFIG, result.output
        assert "error: CONFIG_INVALID:" in result.stderr
        assert "Drop migration" not in result.stderr
