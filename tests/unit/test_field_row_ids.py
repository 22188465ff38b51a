"""Ids as real tables hold them: strict numbers from text, and opaque (UUID) user ids end to end."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, CrmUser, Migrated
from crm_audit_transform.lookup import LookupCache, LookupPorts, LookupRequest, fetch_lookups
from crm_audit_transform.numerals import is_int_text, parse_int
from crm_audit_transform.testing import InMemoryContactDirectory, InMemorySsoDirectory, InMemoryUserDirectory
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


class TestNumerals:
    @pytest.mark.parametrize(("text", "value"), [("42", 42), ("-3", -3), ("0", 0), ("9" * 19, int("9" * 19))])
    def test_plain_decimal_integers_are_read(self, text: str, value: int) -> None:
        """ASCII digits with an optional minus sign are the integer they spell."""
        assert parse_int(text) == value
        assert is_int_text(text)

    @pytest.mark.parametrize(
        "text",
        ["1_0_0_1", "\u0661\u0662\u0663", "\uff11", " 1", "1 ", "+1", "", "-", "1.0", "9" * 20, "0x1F"],
    )
    def test_anything_else_is_refused(self, text: str) -> None:
        """Underscores, other scripts' digits, spaces, signs, decimals and overlong text are not ids."""
        with pytest.raises(ValueError, match="not a plain decimal integer"):
            parse_int(text)
        assert not is_int_text(text)


class TestOpaqueUserIds:
    def rows(self) -> list[AuditRow]:
        return [
            AuditRow(
                "acme",
                audit_id,
                "Crm::Person",
                7,
                "update",
                "---\nname:\n- a\n- b\n",
                T0,
                user_id=user_id,
                user_type="User",
            )
            for audit_id, user_id in ((1, UUID), (2, 5), (3, "gone"))
        ]

    def test_uuid_and_integer_users_resolve_alike(self) -> None:
        """A UUID user with an SSO id is that user, as an integer one is; an unknown string is deleted."""
        transformer = Transformer(load_default_config())
        prepared = transformer.prepare(self.rows())
        users = InMemoryUserDirectory(
            {"acme": [CrmUser(UUID, "u@example.test", "Uma"), CrmUser(5, "i@example.test", "Ira")]}
        )
        ctx = fetch_lookups(
            transformer.plan(prepared),
            company_sso_id="co",
            tenant="acme",
            ports=LookupPorts(
                users,
                InMemorySsoDirectory({"u@example.test": "sso-u", "i@example.test": "sso-i"}),
                InMemoryContactDirectory([Contact("c7", "co", 7, dt.datetime(2030, 1, 1, tzinfo=dt.UTC))]),
            ),
            cache=LookupCache(),
        )
        outcomes = transformer.transform(prepared, ctx, company_sso_id="co").outcomes
        actors = [(o.log.actor.kind, o.log.actor.sso_id) for o in outcomes if isinstance(o, Migrated)]
        assert actors == [("user", "sso-u"), ("user", "sso-i"), ("deleted_user", None)]
        assert users.calls[0] == ("acme", (5, UUID, "gone"))

    def test_a_request_orders_mixed_ids(self) -> None:
        """Integer ids come first, then string ids, each in order, without repeats."""
        assert LookupRequest(user_ids=["b", 3, "a", 1, 3]).user_ids == (1, 3, "a", "b")

    def test_an_empty_string_user_id_is_an_invalid_row(self) -> None:
        """An empty user id names no one: the row fails as invalid rather than as a system change."""
        row = AuditRow("acme", 9, "Crm::Person", 7, "update", "---\n{}\n", T0, user_id="", user_type="User")
        prepared = Transformer(load_default_config()).prepare([row])
        assert prepared[0].problem is not None
        assert prepared[0].problem.reason == "invalid_audit_row"
