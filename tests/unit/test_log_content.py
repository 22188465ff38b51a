"""A reader's encoded content: one lazy mapping for the JSONL and the MongoDB readers."""

from __future__ import annotations

import pytest

from crm_audit_adapters.files.verification import LineContent
from crm_audit_adapters.log_content import encoded_fields
from crm_audit_adapters.mongo.verification import BsonContent


class TestEncodedFields:
    def test_metadata_keys_are_fields_of_their_own_and_the_skipped_name_is_left_out(self) -> None:
        """``metadata.<key>`` per key, every value encoded, ``skip`` absent."""
        doc = {"_id": 1, "action": "update", "metadata": {"crm_tenant": "acme", "n": 2}}
        assert encoded_fields(doc, repr, skip="_id") == {
            "action": "'update'",
            "metadata.crm_tenant": "'acme'",
            "metadata.n": "2",
        }

    def test_a_metadata_that_is_no_mapping_is_one_field(self) -> None:
        """A stored ``metadata`` of another type is compared whole."""
        assert encoded_fields({"metadata": [1]}, repr) == {"metadata": "[1]"}


class TestEncodedContent:
    def test_byte_equal_lines_are_equal_without_being_read(self) -> None:
        """Two byte-equal lines compare equal at once: a line holding no object is never parsed."""
        assert LineContent(b"[1]\n") == LineContent(b"[1]")
        with pytest.raises(TypeError, match="not a JSON object"):
            dict(LineContent(b"[1]"))

    def test_lines_of_other_layouts_compare_as_mappings(self) -> None:
        """Other bytes, the same fields: equal, through the mappings built on first use."""
        spaced, compact = LineContent(b'{"a": 1}'), LineContent(b'{"a":1}')
        assert spaced == compact
        assert dict(spaced) == {"a": b"1"}

    def test_bson_contents_with_one_body_are_equal_whatever_their_documents(self) -> None:
        """The body decides when both have one; without one, the documents' fields do."""
        assert BsonContent({"a": 1}, b"same") == BsonContent({"a": 2}, b"same")
        assert BsonContent({"a": 1}) != BsonContent({"a": 2})
        assert BsonContent({"_id": 7, "a": 1}) == BsonContent({"a": 1}, b"other")

    def test_contents_are_unhashable_mappings(self) -> None:
        """As a dict, a content has no hash."""
        with pytest.raises(TypeError):
            hash(LineContent(b"{}"))
