"""Secret columns (password digests, reset and API tokens, OTP secrets) are redacted by default."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import pytest
import yaml

from crm_audit_transform.config import load_config, load_default_config
from crm_audit_transform.config.model import SECRET_COLUMNS
from crm_audit_transform.domain import AuditRow, Contact, Migrated
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
SECRET = "$2a$12$Kx9vQ7zRsecretDigest"
MINIMAL = "types:\n  Crm::Person:\n    category: contact\n"


def migrated_changes(transformer: Transformer, action: str, changes: str) -> list[tuple[str, object, object]]:
    row = AuditRow(
        tenant="acme",
        id=10,
        auditable_type="Crm::Person",
        auditable_id=7,
        action=action,
        audited_changes=changes,
        created_at=T0,
    )
    ctx = LookupContext(contacts={7: Contact("c7", "co", 7, LATER)})
    (outcome,) = transformer.transform(transformer.prepare([row]), ctx, company_sso_id="co").outcomes
    assert isinstance(outcome, Migrated), outcome
    return [(c.field, c.from_, c.to) for c in outcome.log.changes]


class TestSecretColumnsByDefault:
    @pytest.mark.parametrize(
        "column",
        [
            "encrypted_password",
            "password_digest",
            "reset_password_token",
            "otp_secret",
            "remember_digest",
            "salt",
            "otp_secret_key",
            "direct_otp",
            "secret",
            "client_secret",
            "session_token",
        ],
    )
    def test_the_shipped_mapping_redacts_a_secret_column_of_every_action(self, column: str) -> None:
        """create, update and destroy of a Devise or has_secure_password column show the marker, never
        the value."""
        transformer = Transformer(load_default_config())
        created = migrated_changes(transformer, "create", f"---\n{column}: '{SECRET}'\nfirst_name: Budi\n")
        updated = migrated_changes(transformer, "update", f"---\n{column}:\n- \n- '{SECRET}'\n")
        destroyed = migrated_changes(transformer, "destroy", f"---\n{column}: '{SECRET}'\n")
        assert created == [(column, None, "[REDACTED]"), ("first_name", None, "Budi")]
        assert updated == [(column, None, "[REDACTED]")]  # "was set" stays visible
        assert destroyed == [(column, "[REDACTED]", None)]

    def test_a_mapping_without_redacted_columns_gets_the_deny_list(self) -> None:
        """A team's own mapping that does not name ``columns.redacted`` redacts the secret columns too."""
        config = load_config(MINIMAL)
        assert config.columns.redacted == SECRET_COLUMNS
        assert migrated_changes(Transformer(config), "create", f"---\napi_key: '{SECRET}'\n") == [
            ("api_key", None, "[REDACTED]")
        ]

    def test_an_explicit_empty_list_redacts_nothing(self) -> None:
        """``redacted: []`` is a choice the mapping can still make: the value migrates as written."""
        config = load_config(MINIMAL + "columns:\n  redacted: []\n")
        assert config.columns.redacted == ()
        assert migrated_changes(Transformer(config), "create", f"---\napi_key: '{SECRET}'\n") == [
            ("api_key", None, SECRET)
        ]

    def test_names_are_exact_not_patterns(self) -> None:
        """A column that only looks like a secret (a digest setting, a page token) keeps its value."""
        changes = "---\nemail_digest:\n- false\n- true\npage_token:\n- p1\n- p2\n"
        assert migrated_changes(Transformer(load_default_config()), "update", changes) == [
            ("email_digest", False, True),
            ("page_token", "p1", "p2"),
        ]

    def test_the_shipped_file_lists_the_same_columns_as_the_code_default(self) -> None:
        """default_mapping.yaml spells out ``SECRET_COLUMNS``: a file copied from it redacts as the
        default does."""
        text = (resources.files("crm_audit_transform") / "data" / "default_mapping.yaml").read_text("utf-8")
        assert tuple(yaml.safe_load(text)["columns"]["redacted"]) == SECRET_COLUMNS
        assert load_default_config().columns.redacted == SECRET_COLUMNS
