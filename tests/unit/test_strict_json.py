"""``strict_json``: the dry run's side files are valid UTF-8 JSON every reader takes, and a text that
held bytes that are not UTF-8 comes back exactly (RFC 8259 §8.2: an unpaired surrogate, written as
its ``\\udXXX`` escape, is not interoperable)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_audit_adapters.strict_json import NOT_UTF8, dumps, has_surrogate, restore

NAME = os.fsdecode(b"/tmp/caf\xe9.jsonl")  # a file name that is not UTF-8, as Python reads it


def _no_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return not has_surrogate(value)
    if isinstance(value, dict):
        return all(_no_surrogate(k) and _no_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_surrogate(item) for item in value)
    return True


class TestDumps:
    def test_a_record_without_a_surrogate_is_written_as_json_dumps_writes_it(self) -> None:
        record = {"audit_id": 1, "tenant": "café", "detail": ["x", {"y": "😀"}]}
        assert dumps(record) == json.dumps(record, ensure_ascii=False)
        assert dumps(record, indent=2, ensure_ascii=True) == json.dumps(record, indent=2)

    @pytest.mark.parametrize("ensure_ascii", [False, True])
    def test_a_name_that_is_not_utf8_is_shown_as_fffd_with_its_bytes_beside(self, ensure_ascii: bool) -> None:
        record = {"audit_id": 7, "detail": f"{NAME}, line 3: bad", "more": [{"file": NAME}]}
        text = dumps(record, ensure_ascii=ensure_ascii)
        text.encode("utf-8")  # strict: a lone surrogate would not encode
        assert "\\ud" not in text
        read = json.loads(text)
        assert _no_surrogate(read)
        assert read["detail"] == "/tmp/caf\ufffd.jsonl, line 3: bad"
        assert read["more"] == [{"file": "/tmp/caf\ufffd.jsonl"}]
        assert read[NOT_UTF8] == {
            "/detail": base64.b64encode(b"/tmp/caf\xe9.jsonl, line 3: bad").decode(),
            "/more/0/file": base64.b64encode(b"/tmp/caf\xe9.jsonl").decode(),
        }
        assert restore(read) == record

    def test_a_surrogate_no_byte_made_is_written_as_its_escape_in_the_bytes(self) -> None:
        read = json.loads(dumps({"detail": "a\ud800b"}))
        assert read["detail"] == "a\ufffdb"
        assert base64.b64decode(read[NOT_UTF8]["/detail"]) == b"a\\ud800b"

    def test_pointers_escape_slash_and_tilde(self) -> None:
        record = {"a/b~c": NAME}
        read = json.loads(dumps(record))
        assert list(read[NOT_UTF8]) == ["/a~1b~0c"]
        assert restore(read) == record

    def test_a_record_that_has_the_member_already_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not_utf8"):
            dumps({NOT_UTF8: 1, "detail": NAME})

    @given(st.lists(st.binary(max_size=12), min_size=1, max_size=4))
    def test_every_text_made_of_bytes_comes_back_exactly(self, chunks: list[bytes]) -> None:
        record = {"texts": [chunk.decode("utf-8", "surrogateescape") for chunk in chunks], "n": 1}
        text = dumps(record)
        text.encode("utf-8")
        read = json.loads(text)
        assert _no_surrogate(read)
        assert restore(read) == record


class TestRestore:
    def test_a_record_without_the_member_is_as_it_is(self) -> None:
        assert restore({"a": 1}) == {"a": 1}

    @pytest.mark.parametrize(
        "found",
        [[], {"/a": 1}, {"a": "eA=="}, {"/none": "eA=="}, {"/n": "eA=="}, {"/a": "not base64!"}],
    )
    def test_a_member_that_names_no_text_is_refused(self, found: object) -> None:
        with pytest.raises(ValueError, match="not_utf8"):
            restore({"a": "x", "n": 1, NOT_UTF8: found})
