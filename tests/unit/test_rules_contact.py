"""ContactResolver, SyncWatermark and the Transformer's guards against rows it cannot trust."""

from __future__ import annotations

import datetime as dt
import tracemalloc

import pytest

from crm_audit_transform.config import load_default_config
from crm_audit_transform.domain import AuditRow, Contact, Failed, Skipped
from crm_audit_transform.lookup import LookupContext
from crm_audit_transform.rules import Rejection
from crm_audit_transform.rules.contact import MAX_COMMENT_VALUES, CommentTooLarge, ContactResolver
from crm_audit_transform.rules.watermark import SyncWatermark
from crm_audit_transform.transformer import Transformer

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
RESOLVER = ContactResolver(load_default_config())


def audit(**fields: object) -> AuditRow:
    values: dict[str, object] = {
        "tenant": "acme",
        "id": 1,
        "auditable_type": "Crm::Ticket",
        "auditable_id": 2,
        "action": "update",
        "audited_changes": {},
        "created_at": T0,
    }
    values.update(fields)
    return AuditRow(**values)  # type: ignore[arg-type]


class TestContactCandidates:
    @pytest.mark.parametrize(
        ("comment", "expected"),
        [
            ('{"crm_person_id": 4}', (4, 6)),
            ('{"source": "web", "crm_person_id": "4"}', (4, 6)),
            ('{"crm_person_id": null}', (6,)),
            ("[1, 2]", (6,)),
            ("{not json", (6,)),
            ("Called, no answer", (6,)),
        ],
    )
    def test_comment_json_comes_first_in_either_spelling(
        self, comment: str, expected: tuple[int, ...]
    ) -> None:
        """An int or digit-string person id in a JSON-object comment precedes the row's own ids."""
        row = audit(comment=comment, associated_type="Crm::Person", associated_id=6)
        assert RESOLVER.candidates(row, {}) == expected

    def test_a_comment_of_many_json_values_is_measured_before_it_is_parsed(self) -> None:
        """A JSON comment parsed costs about 60 bytes a value of one or two characters: one of more
        values than the loader lets ``audited_changes`` build is ``CommentTooLarge``, and is never
        parsed (a 30 MiB one of ``[],`` held 730 MiB). Its person id is in it, so the row's own ids
        are not tried instead. Strings are not values: a long text in one stays a comment."""
        many = '{"crm_person_id": 4, "x": [' + "[]," * MAX_COMMENT_VALUES + "[]]}"
        row = audit(comment=many, associated_type="Crm::Person", associated_id=6)
        tracemalloc.start()
        try:
            with pytest.raises(CommentTooLarge, match="more than 100,000 values"):
                RESOLVER.candidates(row, {})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(many)  # parsed: about 20 x
        text = '{"crm_person_id": 4, "note": "' + "[]," * MAX_COMMENT_VALUES + '"}'
        assert RESOLVER.candidates(audit(comment=text), {}) == (4,)
        few = '{"crm_person_id": 4, "x": [' + "[]," * (MAX_COMMENT_VALUES - 10) + "[]]}"
        assert RESOLVER.candidates(audit(comment=few), {}) == (4,)

    def test_a_comment_of_many_strings_is_measured_in_about_its_size(self) -> None:
        """Its values are counted a piece at a time (``json_scan.json_values``): cutting its strings
        out of the whole comment at once held ~18 times one of ``"" ,`` (sre's list of pieces)."""
        many = '{"crm_person_id": 4, "x": [' + '"" ,' * MAX_COMMENT_VALUES + '""]}'
        row = audit(comment=many, associated_type="Crm::Person", associated_id=6)
        tracemalloc.start()
        try:
            with pytest.raises(CommentTooLarge, match=r"\(100,004\)"):
                RESOLVER.candidates(row, {})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * len(many)

    def test_a_comment_of_escaped_quotes_is_measured_in_one_pass(self) -> None:
        """A string that never closes is cut out in one pass: the string pattern went back to each
        quote inside it (``\\"`` after ``\\"``) and scanned the rest again, hours for 2 MiB. The
        text is no JSON: a comment, the row's own ids tried."""
        unclosed = '{"' + '\\"' * (1 << 20)
        row = audit(comment=unclosed, associated_type="Crm::Person", associated_id=6)
        assert RESOLVER.candidates(row, {}) == (6,)

    def test_free_text_that_starts_with_a_brace_stays_a_comment_however_long(self) -> None:
        """Text that JSON refuses at its first characters (a brace, then no member or end) is free
        text, as a short one is, whatever its commas: never ``CommentTooLarge``."""
        text = "{auto-import} person ids: " + "1," * (MAX_COMMENT_VALUES * 3 // 2)
        row = audit(comment=text, associated_type="Crm::Person", associated_id=6)
        assert RESOLVER.candidates(row, {}) == (6,)

    def test_update_takes_the_new_person_else_the_old(self) -> None:
        """A reassignment lands on the new person; an unassignment on the person it left."""
        assert RESOLVER.candidates(audit(), {"crm_person_id": [3, 5]}) == (5,)
        assert RESOLVER.candidates(audit(), {"crm_person_id": [3, None]}) == (3,)

    def test_first_candidate_with_a_contact_of_the_company_wins(self) -> None:
        """A candidate without a contact, or with another company's, is passed over."""
        ctx = LookupContext(contacts={4: Contact("c4", "other", 4, T0), 6: Contact("c6", "co", 6, T0)})
        assert RESOLVER.resolve((9, 4, 6), ctx, "co") == (6, Contact("c6", "co", 6, T0))
        rejected = RESOLVER.resolve((9,), ctx, "co")
        assert isinstance(rejected, Rejection)
        assert rejected.reason == "contact_not_found"


class TestSyncWatermark:
    @pytest.mark.parametrize(
        ("offset", "skipped"), [(-1, False), (0, True), (1, True)], ids=["below", "equal", "above"]
    )
    def test_audits_at_or_after_the_contacts_sync_are_left_to_the_live_feed(
        self, offset: int, skipped: bool
    ) -> None:
        """created_at one second below the watermark migrates; equal or above skips post_sync_live_feed."""
        contact = Contact("c", "co", 1, T0)
        verdict = SyncWatermark().check(audit(created_at=T0 + dt.timedelta(seconds=offset)), contact)
        assert (verdict is not None) == skipped
        if verdict is not None:
            assert verdict.reason == "post_sync_live_feed"


class TestTransformerGuards:
    def test_row_of_another_tenant_than_the_lookups_fails(self) -> None:
        """Users of one tenant are never matched against another tenant's row."""
        transformer = Transformer(load_default_config())
        prepared = transformer.prepare([audit(tenant="globex")])
        result = transformer.transform(prepared, LookupContext(tenant="acme"), company_sso_id="co")
        (outcome,) = result.outcomes
        assert isinstance(outcome, Failed)
        assert outcome.reason == "invalid_audit_row"

    def test_a_comment_too_large_to_parse_fails_its_row_alone(self) -> None:
        """The row whose comment is ``CommentTooLarge`` fails ``invalid_audit_row`` saying so; the next
        row still runs."""
        many = '{"crm_person_id": 4, "x": [' + "0," * MAX_COMMENT_VALUES + "0]}"
        transformer = Transformer(load_default_config())
        result = transformer.transform(
            transformer.prepare([audit(comment=many), audit(id=2, auditable_type="Crm::Note")]),
            LookupContext(),
            company_sso_id="co",
        )
        first, second = result.outcomes
        assert isinstance(first, Failed)
        assert (first.reason, first.detail) == (
            "invalid_audit_row",
            "comment is a JSON object of more than 100,000 values (100,004): not parsed for its person id",
        )
        assert isinstance(second, Skipped)

    @pytest.mark.parametrize("field", ["id", "auditable_id", "user_id", "comment", "action"])
    def test_wrongly_typed_fields_fail_the_row_not_the_page(self, field: str) -> None:
        """A field of the wrong type makes that row fail invalid_audit_row; the next row still runs."""
        bad = audit()
        object.__setattr__(bad, field, 1.5)
        transformer = Transformer(load_default_config())
        result = transformer.transform(
            transformer.prepare([bad, audit(id=2, auditable_type="Crm::Note")]),
            LookupContext(),
            company_sso_id="co",
        )
        first, second = result.outcomes
        assert isinstance(first, Failed)
        assert first.reason == "invalid_audit_row"
        assert field in first.detail
        assert isinstance(second, Skipped)
