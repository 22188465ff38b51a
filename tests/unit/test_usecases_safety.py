"""Write-path preconditions: migration 035's indexes in place, and the account's bound tenant."""

from __future__ import annotations

import pytest

from crm_audit_transform.errors import IndexesMissing, TenantMismatch, TenantUnbound
from crm_audit_transform.testing import InMemoryIndexState
from crm_audit_transform.usecases.safety import bound_tenant, require_indexes
from support.corpus_account import World

BINDINGS = {"company-acme": "acme"}


class TestBoundTenant:
    def test_a_bound_account_uses_its_tenant_when_none_is_given(self) -> None:
        """Without --tenant a bound account gets its bound schema."""
        assert bound_tenant("company-acme", None, BINDINGS) == "acme"

    def test_the_same_tenant_as_the_binding_is_accepted(self) -> None:
        """Naming the bound tenant explicitly is fine."""
        assert bound_tenant("company-acme", "acme", BINDINGS) == "acme"

    def test_another_tenant_than_the_binding_is_a_mismatch_even_with_the_override(self) -> None:
        """A binding always wins: another tenant is TENANT_MISMATCH (409), override or not."""
        with pytest.raises(TenantMismatch) as raised:
            bound_tenant("company-acme", "globex", BINDINGS, allow_unbound=True)
        assert (raised.value.code, raised.value.http_status) == ("TENANT_MISMATCH", 409)

    def test_an_unbound_account_is_refused_without_the_override(self) -> None:
        """No binding and no explicit override: TENANT_UNBOUND, whatever tenant was named."""
        with pytest.raises(TenantUnbound, match="CRM_AUDIT_TENANTS"):
            bound_tenant("company-globex", "globex", BINDINGS)

    @pytest.mark.parametrize("requested", [None, "globex"])
    def test_the_refusal_names_the_binding_and_no_override(self, requested: str | None) -> None:
        """Every surface shows this message (CLI, HTTP, a Celery task) and only the CLI has an override,
        which it names itself: the message says what is missing and where to bind it, never "unless
        explicitly allowed" (over HTTP nothing can allow it), and holds the tenant and nothing else."""
        with pytest.raises(TenantUnbound) as raised:
            bound_tenant("company-globex", requested, BINDINGS)
        message = str(raised.value)
        assert message.startswith("company company-globex has no tenant binding")
        assert message.endswith("add it to CRM_AUDIT_TENANTS (company_sso_id=schema)")
        assert "allow" not in message
        assert "--" not in message
        if requested is not None:
            assert "CRM tenant 'globex' is not used for it" in message

    def test_an_unbound_account_with_the_override_uses_the_tenant_given(self) -> None:
        """The explicit override accepts the named tenant for an unbound account."""
        assert bound_tenant("company-globex", "globex", BINDINGS, allow_unbound=True) == "globex"

    def test_a_tenant_bound_to_another_account_is_refused_even_with_the_override(self) -> None:
        """The override covers unbound tenants only: acme's schema never migrates into another account."""
        with pytest.raises(TenantMismatch, match="bound to company company-acme"):
            bound_tenant("company-other", "acme", BINDINGS, allow_unbound=True)

    def test_an_unbound_account_without_any_tenant_is_refused(self) -> None:
        """Nothing bound and nothing named: refused even with the override."""
        with pytest.raises(TenantUnbound):
            bound_tenant("company-globex", None, BINDINGS, allow_unbound=True)


class TestRequireIndexes:
    def test_missing_indexes_are_named_in_the_refusal(self) -> None:
        """INDEXES_MISSING (503) lists the absent indexes."""
        with pytest.raises(IndexesMissing, match=r"activity_logs\.uniq_company_external_id") as raised:
            require_indexes(InMemoryIndexState(["activity_logs.uniq_company_external_id"]))
        assert raised.value.http_status == 503

    def test_all_indexes_in_place_passes(self) -> None:
        """Nothing missing: no error."""
        require_indexes(InMemoryIndexState())

    def test_trigger_without_indexes_writes_no_job(self) -> None:
        """The trigger checks the indexes before any guard or write."""
        world = World()
        world.indexes = InMemoryIndexState(["activity_logs.uniq_company_external_id"])
        with pytest.raises(IndexesMissing):
            world.trigger()
        assert world.jobs.jobs == ()

    def test_run_without_indexes_writes_nothing_and_keeps_the_job(self) -> None:
        """A run refuses before taking the lease or writing a log when the indexes went away."""
        world = World()
        job = world.trigger()
        world.indexes = InMemoryIndexState(["activity_logs.uniq_company_external_id"])
        with pytest.raises(IndexesMissing):
            world.run()
        assert world.logs.count_migrated(world.company) == 0
        assert world.jobs.latest(world.company) == job
