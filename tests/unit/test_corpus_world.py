"""The one builder of the synthetic CDP keeps the promises of its table for both of its worlds."""

from __future__ import annotations

import pytest
from bson import ObjectId

from support.corpus_world import ACCOUNT, KIT, Rules, contact_docs, corpus, sso_docs

TENANTS = ("acme", "globex", "nusantara_retail")


class TestCorpusWorlds:
    @pytest.mark.parametrize(("rules", "missing_every"), [(KIT, 7), (ACCOUNT, 15)], ids=["kit", "account"])
    def test_every_person_has_a_contact_but_the_ones_the_rules_leave_out(
        self, rules: Rules, missing_every: int
    ) -> None:
        """Each world gives a contact to exactly the people its rule keeps, in person-id order."""
        for tenant in TENANTS:
            people = sorted(rules.people(corpus(), tenant))
            docs = contact_docs(rules, tenant)
            assert [d["crm_data"]["id"] for d in docs] == [p for p in people if p % missing_every]
            assert {d["company_sso_id"] for d in docs} == {rules.company_sso_id(tenant)}

    def test_the_account_world_is_what_mongodb_and_the_suites_gate_accept(self) -> None:
        """ACCOUNT contacts have ObjectId ids and cover at least the suite's 90% coverage gate."""
        for tenant in TENANTS:
            docs = contact_docs(ACCOUNT, tenant)
            assert all(ObjectId.is_valid(d["_id"]) for d in docs)
            assert len(docs) / len(ACCOUNT.people(corpus(), tenant)) >= 0.9

    def test_the_account_world_leaves_user_7_and_deleted_users_unknown_to_usman(self) -> None:
        """SSO ids exist for live users with an email, except user 7."""
        known = {d["email"] for d in sso_docs(ACCOUNT, "acme")}
        for user in corpus().users:
            if user["tenant"] == "acme" and user["email"]:
                expected = user["deleted_at"] is None and user["id"] != 7
                assert (user["email"] in known) == expected, user
