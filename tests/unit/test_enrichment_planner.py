"""The pure planner: target resolution, the collision guard, and which keys a patch may carry."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from crm_audit_transform import reasons
from crm_audit_transform.domain import EntityRef
from crm_audit_transform.enrichment import (
    DEFAULT_MATCH_WINDOW,
    DELETED_REFERENCE,
    EnrichmentPlan,
    EnrichmentSkip,
    MatchKey,
    Patch,
    StoredLog,
    Target,
)
from crm_audit_transform.enrichment.model import tally_of
from crm_audit_transform.enrichment.planner import (
    match_key_of,
    plan_patches,
    referents_wanted,
    resolve_targets,
)
from crm_audit_transform.enrichment_tally import EnrichmentTally

T0 = dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.UTC)


def stored(
    doc_id: str, *, external_id: str = "", action: str = "link", offset: float = 0, **meta: object
) -> StoredLog:
    return StoredLog(
        doc_id=doc_id,
        company_sso_id="sso-a",
        customer_id="c1",
        category="deal",
        action=action,
        timestamp=T0 + dt.timedelta(seconds=offset),
        external_id=external_id,
        metadata=meta,  # type: ignore[arg-type]
    )


class TestResolveTargets:
    def test_own_log_wins_over_live_feed_candidates(self) -> None:
        """A source whose external_id the store holds is matched to that log, never by key."""
        source = stored("s", external_id="crm:a:audit:1", linked_entity_id=7)
        own = {("sso-a", "crm:a:audit:1"): source}
        key = match_key_of(source)
        assert key is not None
        resolution = resolve_targets([source], own=own, candidates={key: (stored("x", linked_entity_id=7),)})
        assert [c.target.doc_id for c in resolution.claims] == ["s"]

    def test_the_store_answer_is_rechecked_against_the_key(self) -> None:
        """A candidate outside the window that a lax store returned is not counted."""
        source = stored("s", linked_entity_id=7)
        key = match_key_of(source)
        assert key is not None
        far = stored("far", offset=60, linked_entity_id=7)
        resolution = resolve_targets([source], own={}, candidates={key: (source, far)})
        assert [c.target.doc_id for c in resolution.claims] == ["s"]

    def test_a_source_without_a_linked_entity_id_has_no_candidate(self) -> None:
        """With no entity id there is no key to match on: ``enrich_no_candidate``."""
        resolution = resolve_targets([stored("s", crm_person_id=1)], own={}, candidates={})
        assert [s.reason for s in resolution.skipped] == [reasons.ENRICH_NO_CANDIDATE]

    def test_a_repeated_source_counts_once(self) -> None:
        """The same log handed twice is one source, not two claims on one target."""
        source = stored("s", external_id="e", linked_entity_id=7)
        resolution = resolve_targets([source, source], own={("sso-a", "e"): source}, candidates={})
        assert (len(resolution.claims), resolution.skipped) == (1, ())

    def test_the_window_is_inclusive_and_configurable(self) -> None:
        """A log exactly one window away matches; with a narrower window it does not."""
        key = MatchKey("sso-a", "c1", "deal", "link", 7, T0)
        edge = stored("edge", offset=DEFAULT_MATCH_WINDOW.total_seconds(), linked_entity_id=7)
        assert key.matches(edge, DEFAULT_MATCH_WINDOW)
        assert not key.matches(edge, dt.timedelta(seconds=1))

    def test_a_log_with_an_external_id_is_never_a_live_feed_candidate(self) -> None:
        """The key only ever points at logs without external_id."""
        key = MatchKey("sso-a", "c1", "deal", "link", 7, T0)
        assert not key.matches(stored("ours", external_id="e", linked_entity_id=7), DEFAULT_MATCH_WINDOW)


class TestPlanPatches:
    def test_only_missing_keys_are_planned(self) -> None:
        """Keys the target has — whatever their value, None included — stay out of the patch."""
        target = stored(
            "t", external_id="e", crm_person_id=None, linked_entity_type="Crm::Deal", linked_entity_id=7
        )
        resolution = resolve_targets([target], own={("sso-a", "e"): target}, candidates={})
        plan = plan_patches(
            resolution, persons={}, entities={("Crm::Deal", 7): EntityRef("Crm::Deal", 7, "D")}
        )
        assert [dict(p.sets) for p in plan.patches] == [{"linked_entity_name": "D"}]

    def test_the_crm_is_asked_only_for_typed_referents(self) -> None:
        """Names are looked up per entity type; a referent without a type is not looked up."""
        typed = stored("a", external_id="a", linked_entity_type="Crm::Deal", linked_entity_id=7)
        untyped = stored("b", external_id="b", linked_entity_id=8)
        own = {("sso-a", "a"): typed, ("sso-a", "b"): untyped}
        assert referents_wanted(resolve_targets([typed, untyped], own=own, candidates={})) == {
            "Crm::Deal": frozenset({7})
        }

    def test_a_referent_the_crm_did_not_return_is_deleted(self) -> None:
        """No answer for an id means its row is gone: ``[Deleted reference]``."""
        target = stored("t", external_id="e", linked_entity_type="Crm::Task", linked_entity_id=3)
        resolution = resolve_targets([target], own={("sso-a", "e"): target}, candidates={})
        plan = plan_patches(resolution, persons={}, entities={})
        assert plan.patches[0].sets == {"linked_entity_name": DELETED_REFERENCE}


class TestPlanValues:
    @pytest.mark.parametrize(
        "key", ["category", "action", "timestamp", "customer_id", "company_sso_id", "note"]
    )
    def test_a_patch_refuses_any_key_but_the_enrichment_keys(self, key: str) -> None:
        """Category, action, timestamp and every other field are out of a patch's reach."""
        with pytest.raises(ValueError, match="enrichment keys only"):
            Patch(Target("d", "sso-a", "c1", "deal", "link"), {key: "x"})

    def test_a_patch_sets_something(self) -> None:
        """An empty patch is refused rather than applied as a no-op update."""
        with pytest.raises(ValueError, match="at least one key"):
            Patch(Target("d", "sso-a", "c1", "deal", "link"), {})

    def test_a_target_is_an_association_log(self) -> None:
        """A non-association log cannot even be named as a target."""
        with pytest.raises(ValueError, match="only association logs"):
            Target("d", "sso-a", "c1", "deal", "updated")

    def test_the_plan_prints_as_json_and_text(self) -> None:
        """``to_json`` is JSON-serialisable and ``describe`` names every key and skip reason."""
        plan = EnrichmentPlan(
            patches=(
                Patch(Target("d1", "sso-a", "c1", "deal", "link"), {"linked_entity_name": "Ünïcode"}, "src"),
            ),
            skipped=(EnrichmentSkip("crm:a:audit:2", reasons.ENRICH_AMBIGUOUS, "2 live-feed logs match"),),
            complete=3,
        )
        data = json.loads(json.dumps(plan.to_json()))
        assert data["patches"][0]["set"] == {"metadata.linked_entity_name": "Ünïcode"}
        assert data["patches"][0]["target"]["external_id"] is None
        text = plan.describe()
        assert "set metadata.linked_entity_name" in text
        assert "enrich_ambiguous" in text

    def test_reports_add_up(self) -> None:
        """Two reports sum field by field, skip reasons merged."""
        plan = EnrichmentPlan(skipped=(EnrichmentSkip("a", reasons.ENRICH_AMBIGUOUS),), complete=1)
        one = tally_of(plan, EnrichmentTally(patched=1, keys_set=2))
        total = one + one
        assert (total.logs, total.skipped, total.keys_set) == (4, {reasons.ENRICH_AMBIGUOUS: 2}, 4)

    def test_refused_keys_add_up_by_name_and_reach_the_plans_tally(self) -> None:
        """An apply's ``keys_refused`` is kept by ``tally_of`` and summed by name like skip reasons."""
        plan = EnrichmentPlan(complete=1)
        one = tally_of(plan, EnrichmentTally(keys_refused={"DocumentValidationFailure": 1}))
        total = one + tally_of(plan, EnrichmentTally(keys_refused={"DuplicateKey": 2}))
        assert dict(total.keys_refused) == {"DocumentValidationFailure": 1, "DuplicateKey": 2}
        assert total.keys_refused_total == 3
