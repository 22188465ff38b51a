"""``rollback`` asks as ``indexes down`` does: at a terminal only (``--yes`` otherwise), after its
settings and its server are checked.

An answer piped into stdin (``yes | crm-audit-migrate rollback``) deleted every migrated log of the
account; and a rollback without ``mongo_uri`` asked first and failed only once the operator said yes.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from crm_audit_adapters.cli import cli, exit_codes
from support.cli_cdp import CliOverCdp

COMPANY = "company-acme"
ENV = {"CRM_AUDIT_SETTINGS": "", "CRM_AUDIT_MONGO_URI": "mongodb://unused.invalid"}


class Cdp(CliOverCdp):
    """One mongomock CDP holding one migrated log and one native log of the account."""

    def __init__(self) -> None:
        super().__init__(ENV)
        logs = self.client["cdp"]["activity_logs"]
        logs.insert_one({"company_sso_id": COMPANY, "source_tag": "crm_migration", "external_id": "crm:a:1"})
        logs.insert_one({"company_sso_id": COMPANY, "category": "native"})

    def rollback(self, *args: str, answer: str | None = None) -> Result:
        return self.run("rollback", "--company-sso-id", COMPANY, *args, answer=answer)

    def migrated(self) -> int:
        return int(self.client["cdp"]["activity_logs"].count_documents({"source_tag": "crm_migration"}))


@pytest.fixture
def cdp() -> Cdp:
    return Cdp()


class TestWithoutATerminal:
    @pytest.mark.parametrize("answer", ["y\n", "yes\n", "", None], ids=["y", "yes", "eof", "nothing"])
    def test_it_is_refused_without_yes_even_with_an_answer_piped_in(
        self, cdp: Cdp, answer: str | None
    ) -> None:
        """``yes | crm-audit-migrate rollback`` is no operator's answer: DECLINED (exit 9), nothing
        asked, nothing deleted; the message says to give --yes."""
        result = cdp.rollback(answer=answer)
        assert result.exit_code == exit_codes.DECLINED, result.output
        assert "stdin is not a terminal: give --yes" in result.stderr
        assert "Delete every" not in result.stderr
        assert cdp.migrated() == 1

    def test_a_json_refusal_prints_its_error_document(self, cdp: Cdp) -> None:
        result = cdp.rollback("--json", answer="y\n")
        error = json.loads(result.stdout)["error"]
        assert (result.exit_code, error["code"]) == (exit_codes.DECLINED, "DECLINED")
        assert cdp.migrated() == 1

    def test_yes_deletes_without_asking(self, cdp: Cdp) -> None:
        result = cdp.rollback("--yes")
        assert result.exit_code == 0, result.output
        assert "Delete every" not in result.stderr
        assert cdp.migrated() == 0
        assert cdp.client["cdp"]["activity_logs"].count_documents({}) == 1  # the native log stays


@pytest.mark.usefixtures("terminal")
class TestAtATerminal:
    @pytest.mark.parametrize("answer", ["n\n", "\n", ""], ids=["no", "the default", "no answer"])
    def test_anything_but_yes_deletes_nothing(self, cdp: Cdp, answer: str) -> None:
        result = cdp.rollback(answer=answer)
        assert result.exit_code == exit_codes.DECLINED, result.output
        assert "Delete every migrated activity log of company company-acme?" in result.stderr
        assert "nothing was deleted" in result.stderr
        assert cdp.migrated() == 1

    def test_yes_deletes(self, cdp: Cdp) -> None:
        result = cdp.rollback(answer="y\n")
        assert result.exit_code == 0, result.output
        assert "deleted 1 migrated log(s)" in result.stdout
        assert cdp.migrated() == 0

    @pytest.mark.parametrize(
        ("variable", "value"),
        [("CRM_AUDIT_MONGO_URI", None), ("CRM_AUDIT_MONGO_URI", "mysql://x"), ("CRM_AUDIT_PAGE_SIZE", "x")],
        ids=["mongo-uri-unset", "mongo-uri-refused", "another-setting-refused"],
    )
    def test_a_misconfigured_rollback_fails_before_it_asks(self, variable: str, value: str | None) -> None:
        """CONFIG_INVALID (exit 3) at once, the question never asked: it asked first, and only the
        operator's "y" met the missing ``mongo_uri``."""
        env: dict[str, str | None] = {**ENV, variable: value}  # None: not in the environment
        result = CliRunner().invoke(cli, ["rollback", "--company-sso-id", COMPANY], env=env, input="y\n")
        assert result.exit_code == exit_codes.CONFIG, result.output
        assert "error: CONFIG_INVALID:" in result.stderr
        assert "Delete every" not in result.stderr
