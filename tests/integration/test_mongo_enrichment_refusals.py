"""MongoEnrichmentStore when MongoDB refuses an update: counted for the one log, or a halt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from pymongo.errors import WriteError

from crm_audit_adapters.mongo.enrichment import MongoEnrichmentStore, encode_doc_id
from crm_audit_adapters.retrying import RetryPolicy
from crm_audit_transform.enrichment import EnrichmentPlan, Patch, Target
from crm_audit_transform.errors import ConnectionRejected, StoreUnavailable
from crm_audit_transform.testing.enrichment import activity_log_document

COMPANY = "sso-acme"
CUSTOMER = str(ObjectId("65f000000000000000000001"))
T0 = dt.datetime(2024, 3, 1, 10, 0, 0, tzinfo=dt.UTC)
NO_WAIT = RetryPolicy(attempts=2, base_delay_s=0.0, max_delay_s=0.0)


class RefusingKey:
    """``collection`` whose ``update_one`` raises MongoDB's write error ``code`` for any ``$set`` of
    ``refused_path``, as a validator (121) or a unique index (11000) on a real server would."""

    def __init__(self, collection: Any, refused_path: str, code: int, code_name: str) -> None:
        self._collection = collection
        self._path = refused_path
        self._code, self._code_name = code, code_name
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def update_one(self, query: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any) -> Any:
        if self._path in update.get("$set", {}):
            self.refused += 1
            message = "Document failed validation"
            details = {"index": 0, "code": self._code, "codeName": self._code_name, "errmsg": message}
            raise WriteError(message, self._code, details)
        return self._collection.update_one(query, update, **kwargs)


def live_log(db: Database[Any]) -> Any:
    doc = activity_log_document(
        company_sso_id=COMPANY,
        customer_id=CUSTOMER,
        category="deal",
        action="link",
        timestamp=T0,
        metadata={"linked_entity_id": 7},
    )
    return db.activity_logs.insert_one(doc).inserted_id


def patch_of(doc_id: Any, **sets: Any) -> EnrichmentPlan:
    target = Target(encode_doc_id(doc_id), COMPANY, CUSTOMER, "deal", "link")
    return EnrichmentPlan(patches=(Patch(target, sets),))


def metadata(db: Database[Any], doc_id: Any) -> dict[str, Any]:
    doc = db.activity_logs.find_one({"_id": doc_id})
    assert doc is not None
    return dict(doc.get("metadata") or {})


class TestRefusedForTheLog:
    @pytest.mark.parametrize(("code", "name"), [(121, "DocumentValidationFailure"), (11000, "DuplicateKey")])
    def test_a_key_the_server_refuses_for_this_log_is_counted_by_its_code(
        self, mongo_db: Database[Any], code: int, name: str
    ) -> None:
        """A validator's or a unique index's refusal is ``keys_refused`` by its name, never "left
        alone"; the patch's other key is still set."""
        doc_id = live_log(mongo_db)
        logs = RefusingKey(mongo_db.activity_logs, "metadata.linked_entity_name", code, name)
        applied = MongoEnrichmentStore(logs, retry=NO_WAIT).apply(
            patch_of(doc_id, crm_person_id=42, linked_entity_name="Big renewal")
        )
        assert logs.refused == 2  # the whole patch, then the name alone
        assert dict(applied.keys_refused) == {name: 1}
        assert (applied.patched, applied.keys_set, applied.keys_left_alone, applied.keys_too_large) == (
            1,
            1,
            0,
            0,
        )
        assert metadata(mongo_db, doc_id) == {"linked_entity_id": 7, "crm_person_id": 42}

    def test_refusals_add_up_across_patches(self, mongo_db: Database[Any]) -> None:
        """Two logs refused: the apply's tally counts both under the one name."""
        first, second = live_log(mongo_db), live_log(mongo_db)
        logs = RefusingKey(mongo_db.activity_logs, "metadata.crm_person_id", 121, "DocumentValidationFailure")
        plan = EnrichmentPlan(
            patches=patch_of(first, crm_person_id=42).patches + patch_of(second, crm_person_id=43).patches
        )
        applied = MongoEnrichmentStore(logs, retry=NO_WAIT).apply(plan)
        assert dict(applied.keys_refused) == {"DocumentValidationFailure": 2}
        assert applied.keys_refused_total + applied.keys_set + applied.keys_left_alone == 2


class TestRefusedForEveryLog:
    def test_not_authorized_halts_the_pass_as_a_rejected_connection(self, mongo_db: Database[Any]) -> None:
        """Code 13 on an update says the user may not write: ``ConnectionRejected``, nothing counted."""
        doc_id = live_log(mongo_db)
        logs = RefusingKey(mongo_db.activity_logs, "metadata.crm_person_id", 13, "Unauthorized")
        with pytest.raises(ConnectionRejected, match="not authorized"):
            MongoEnrichmentStore(logs, retry=NO_WAIT).apply(patch_of(doc_id, crm_person_id=42))
        assert logs.refused == 1
        assert metadata(mongo_db, doc_id) == {"linked_entity_id": 7}

    def test_an_unknown_write_error_halts_the_pass_naming_its_code(self, mongo_db: Database[Any]) -> None:
        """A code not known to concern one log (2 ``BadValue``) is ``StoreUnavailable`` at once."""
        doc_id = live_log(mongo_db)
        logs = RefusingKey(mongo_db.activity_logs, "metadata.crm_person_id", 2, "BadValue")
        with pytest.raises(StoreUnavailable, match="BadValue"):
            MongoEnrichmentStore(logs, retry=NO_WAIT).apply(patch_of(doc_id, crm_person_id=42))
        assert logs.refused == 1  # not retried
