"""The golden testing kit: corpus tenants from package data, a paged transform, readable snapshots."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import attrs
import pytest

from crm_audit_transform import reasons
from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange, Migrated, Skipped
from crm_audit_transform.lookup import LookupPorts, fetch_lookups
from crm_audit_transform.tally import Tally
from crm_audit_transform.testing.golden import (
    CorpusTenant,
    corpus_tenant,
    corpus_tenants,
    log_snapshot,
    outcome_snapshot,
    snapshot_of,
    transform_corpus,
)
from crm_audit_transform.transformer import PageResult, Transformer

SMALL = "acme_jsonb"  # the smallest tenant keeps page-by-page runs quick


class TestCorpusTenants:
    def test_lists_the_five_corpus_tenants_sorted(self) -> None:
        """Three text-column tenants and two jsonb ones, in sorted order."""
        assert corpus_tenants() == ("acme", "acme_jsonb", "globex", "globex_jsonb", "nusantara_retail")

    def test_a_tenant_holds_its_own_rows_in_id_order(self) -> None:
        """Rows of one tenant only, ascending ids, UTC times; jsonb rows carry decoded objects."""
        text, jsonb = corpus_tenant("globex"), corpus_tenant(SMALL)
        assert len(text.rows) == 843
        assert {r.tenant for r in text.rows} == {"globex"}
        assert [r.id for r in text.rows] == sorted(r.id for r in text.rows)
        assert all(r.created_at.utcoffset() == dt.timedelta(0) for r in text.rows)
        assert all(isinstance(r.audited_changes, str) for r in text.rows)
        assert all(isinstance(r.audited_changes, dict) for r in jsonb.rows)

    def test_lookup_data_belongs_to_the_tenants_company(self) -> None:
        """Contacts are the tenant's company's only; users are the tenant's CRM users."""
        acme = corpus_tenant("acme")
        assert acme.company_sso_id == "company-acme"
        assert acme.contacts
        assert {c.company_sso_id for c in acme.contacts} == {"company-acme"}
        assert len(acme.users) == 7
        assert {u.id for u in acme.users}.isdisjoint({3})  # the hard-deleted user has no row

    def test_an_unknown_tenant_is_refused_with_the_known_names(self) -> None:
        """A typo gives a ValueError naming the tenants that exist, not an empty corpus."""
        with pytest.raises(ValueError, match="no corpus tenant 'acmee'; known: acme, acme_jsonb"):
            corpus_tenant("acmee")

    def test_a_corpus_tenant_is_a_frozen_value(self) -> None:
        """A CorpusTenant cannot be changed after it is read, so tests may share one."""
        data = corpus_tenant(SMALL)
        assert isinstance(data, CorpusTenant)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            data.rows = ()  # type: ignore[misc]

    def test_directories_are_fresh_ports_over_the_tenants_data(self) -> None:
        """Each call builds new in-memory ports (empty call logs) answering from the tenant's data."""
        acme = corpus_tenant("acme")
        first, second = acme.contact_directory(), acme.contact_directory()
        assert first is not second
        person = acme.contacts[0].crm_person_id
        assert first.contacts_by_crm_ids("company-acme", [person]) == {person: acme.contacts[0]}
        assert second.calls == []
        user = acme.users[0]
        assert acme.user_directory().users_by_ids("acme", [user.id]) == {user.id: user}


class TestTransformCorpus:
    def test_one_outcome_per_row_in_row_order(self) -> None:
        """Every corpus row, in scope or not, gets exactly one outcome, in order, counted once."""
        data = corpus_tenant("nusantara_retail")
        result = transform_corpus(load_default_config(), data)
        assert [o.audit_id for o in result.outcomes] == [r.id for r in data.rows]
        assert result.tally == Tally.of(result.outcomes, fallthrough=result.tally.fallthrough)
        assert len(result.fell_through) == len(data.rows)

    def test_pages_change_nothing_in_the_result(self) -> None:
        """Page sizes of 1, 7 and one page for all give the same outcomes, tally and fallthroughs."""
        config = load_default_config()
        data = corpus_tenant(SMALL)
        results = [transform_corpus(config, data, page_size=size) for size in (1, 7, len(data.rows))]
        assert results[0] == results[1] == results[2]
        assert results[0].tally.fallthrough > 0

    def test_equals_one_page_transformed_by_hand(self) -> None:
        """The kit's result is the Transformer's own over the tenant's rows and lookups."""
        config, data = load_default_config(), corpus_tenant(SMALL)
        transformer = Transformer(config)
        prepared = transformer.prepare(data.rows)
        ctx = fetch_lookups(
            transformer.plan(prepared),
            company_sso_id=data.company_sso_id,
            tenant=data.name,
            ports=LookupPorts(data.user_directory(), data.sso_directory(), data.contact_directory()),
        )
        expected = transformer.transform(prepared, ctx, company_sso_id=data.company_sso_id)
        assert transform_corpus(config, SMALL) == expected

    def test_a_custom_config_shows_in_the_result(self) -> None:
        """Dropping a type from the mapping turns its rows into unmapped_action_type skips."""
        config = load_default_config()
        narrowed = attrs.evolve(config, types={"Crm::Person": config.types["Crm::Person"]})
        result = transform_corpus(narrowed, SMALL)
        data = corpus_tenant(SMALL)
        others = {r.id for r in data.rows if r.auditable_type != "Crm::Person"}
        assert others
        unmapped = {
            o.audit_id
            for o in result.outcomes
            if isinstance(o, Skipped) and o.reason == reasons.UNMAPPED_ACTION_TYPE
        }
        assert unmapped == others

    def test_a_page_size_below_one_is_refused(self) -> None:
        """page_size 0 would loop forever or drop rows: it is a ValueError."""
        with pytest.raises(ValueError, match="page_size must be at least 1"):
            transform_corpus(load_default_config(), SMALL, page_size=0)

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            (lambda: transform_corpus(load_default_config(), None), "tenant must be a corpus tenant's name"),
            (
                lambda: transform_corpus(load_default_config(), SMALL, page_size=True),
                "page_size must be an int",
            ),
            (
                lambda: transform_corpus(load_default_config(), SMALL, page_size=2.5),
                "page_size must be an int",
            ),
            (lambda: snapshot_of(None), "snapshot_of.result. must be a PageResult, got NoneType"),
            (lambda: snapshot_of({"tally": {}}), "must be a PageResult, got dict"),
            (lambda: outcome_snapshot("skipped"), "must be a Migrated, Skipped or Failed, got str"),
            (lambda: log_snapshot(None), "log_snapshot.log. must be an ActivityLog, got NoneType"),
        ],
    )
    def test_a_wrong_type_is_a_type_error_naming_what_is_expected(self, call: Any, message: str) -> None:
        """A snapshot test's mistake (a tenant left None, a result not yet transformed) was an
        AttributeError from inside, a bare AssertionError for outcome_snapshot, and ``page_size=True``
        ran with pages of one row: now each is a TypeError saying what the call takes."""
        with pytest.raises(TypeError, match=message):
            call()


LOG = ActivityLog(
    company_sso_id="company-acme",
    customer_id="contact-1",
    category="contact",
    action="update",
    actor=Actor("user", "Agus", "sso-1"),
    changes=(
        FieldChange("amount", "Amount", decimal.Decimal("12.50"), float("nan")),
        FieldChange("notes", "Notes", None, "x" * 100),
        FieldChange("prefs", "Prefs", {1: dt.date(2020, 2, 29)}, ["a", True]),
    ),
    timestamp=dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
    external_id="crm:acme:audit:9",
    metadata={"crm_audit_id": 9, "crm_tenant": "acme", "crm_person_id": 1, "request_uuid": "u-9"},
)


class TestSnapshots:
    def test_outcome_snapshot_marks_what_json_lacks(self) -> None:
        """Decimal, NaN, dates and non-string keys become markers; long text is shortened."""
        summary = outcome_snapshot(Migrated(9, LOG))
        assert summary["changes"] == {
            "amount": [{"$decimal": "12.50"}, {"$float": "nan"}],
            "notes": [None, f"{'x' * 80}… (100 chars)"],
            "prefs": [{"$hash": [[1, {"$date": "2020-02-29"}]]}, ["a", True]],
        }

    @pytest.mark.parametrize(
        ("data", "marked"),
        [
            (decimal.Decimal("12.50"), {"$decimal": "12.50"}),
            (b"\x01", {"$bytes": "01"}),
            (dt.date(2020, 2, 29), {"$date": "2020-02-29"}),
            (float("inf"), {"$float": "inf"}),
            ({1: 2}, {"$hash": [[1, 2]]}),
        ],
    )
    def test_a_dict_shaped_like_a_marker_is_told_apart_from_the_marked_value(
        self, data: object, marked: dict[str, Any]
    ) -> None:
        """A changed value that is a plain dict spelt as a marker (``{"$decimal": "12.50"}``, as a
        jsonb column may hold) is wrapped in ``$literal``, so its snapshot differs from the typed
        value's; a ``$literal`` dict of the data is wrapped too, and a dict of several keys is left as
        it is. Before, both encoded to the same marker and a snapshot could not tell them apart: this
        test fails there."""
        log = attrs.evolve(
            LOG,
            changes=(FieldChange("price", "Price", data, marked),),
            metadata={**LOG.metadata, "shape": marked},
        )
        full = log_snapshot(log)
        assert full["changes"][0]["from"] == marked
        assert full["changes"][0]["to"] == {"$literal": marked}
        assert full["changes"][0]["from"] != full["changes"][0]["to"]
        assert full["metadata"]["shape"] == {"$literal": marked}
        summary = outcome_snapshot(Migrated(9, log))
        assert summary["changes"]["price"] == [marked, {"$literal": marked}]
        assert json.loads(json.dumps(full)) == full

    def test_a_literal_of_the_data_and_dicts_of_several_keys(self) -> None:
        """``{"$literal": x}`` in the data is wrapped once more; ``$`` keys among others are kept."""
        log = attrs.evolve(
            LOG,
            changes=(
                FieldChange("a", "A", {"$literal": {"k": 1}}, [{"$time": "t"}]),
                FieldChange("b", "B", {"$decimal": "1", "x": 2}, {"k": {"$float": "nan"}}),
            ),
        )
        a, b = log_snapshot(log)["changes"]
        assert (a["from"], a["to"]) == ({"$literal": {"$literal": {"k": 1}}}, [{"$literal": {"$time": "t"}}])
        assert (b["from"], b["to"]) == ({"$decimal": "1", "x": 2}, {"k": {"$literal": {"$float": "nan"}}})

    def test_outcome_snapshot_leaves_out_copies_of_the_row(self) -> None:
        """Audit id, tenant and request uuid are the row's own: only other metadata is kept."""
        summary = outcome_snapshot(Migrated(9, LOG))
        assert summary["metadata"] == {"crm_person_id": 1}
        assert summary["actor"] == "user: Agus (sso-1)"
        assert summary["log"] == "contact/update"

    def test_a_skip_shows_its_reason_and_detail(self) -> None:
        """A skipped row is summarised by id, kind with reason, and detail."""
        assert outcome_snapshot(Skipped(4, "contact_not_found", "person 4")) == {
            "id": 4,
            "outcome": "skipped: contact_not_found",
            "detail": "person 4",
        }

    def test_snapshot_of_is_plain_json(self) -> None:
        """A whole result survives a JSON round trip unchanged, so syrupy's JSON extension can store it."""
        result = PageResult((Migrated(9, LOG), Skipped(4, "contact_not_found", "")), Tally(2, 1, {"x": 1}))
        snapshot = snapshot_of(result)
        assert json.loads(json.dumps(snapshot)) == snapshot
        assert snapshot["tally"] == {
            "processed": 2,
            "migrated": 1,
            "skipped": {"x": 1},
            "failed": {},
            "fallthrough": 0,
        }
        assert [row["id"] for row in snapshot["rows"]] == [9, 4]

    def test_log_snapshot_keeps_every_field(self) -> None:
        """The full log form has labels, timestamp, external id, source tag and all metadata."""
        full = log_snapshot(LOG)
        assert full["timestamp"] == "2024-01-02T03:04:05.678901+00:00"
        assert full["external_id"] == "crm:acme:audit:9"
        assert full["source_tag"] == "crm_migration"
        assert full["changes"][0] == {
            "field": "amount",
            "label": "Amount",
            "from": {"$decimal": "12.50"},
            "to": {"$float": "nan"},
        }
        assert full["metadata"]["request_uuid"] == "u-9"
