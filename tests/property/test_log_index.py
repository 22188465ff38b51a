"""The JSONL log index finds every line's keys as parsing the line would, in any layout and read size."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections import defaultdict

import pytest
from bson import json_util
from bson.errors import InvalidId
from bson.json_util import RELAXED_JSON_OPTIONS
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_audit_adapters.files.errors import FileFormatError
from crm_audit_adapters.files.log_index import LogIndex
from crm_audit_adapters.mongo.extended_json import relaxed_json_bytes
from crm_audit_transform.domain import SOURCE_TAG, ActivityLog, Actor, FieldChange

_LOG = json.loads(
    relaxed_json_bytes(
        ActivityLog(
            company_sso_id="acme-co",
            customer_id="000000000000000000000001",
            category="deal",
            action="link",
            actor=Actor("user", "ana@acme.example", "00000000-0000-4000-8000-000000000005"),
            changes=(FieldChange("stage", "Stage", float("nan"), "won"),),
            timestamp=dt.datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=dt.UTC),
            external_id="crm:acme:audit:1",
            metadata={"crm_audit_id": 1, "linked_entity_id": 77},
        )
    )
)
_COMPANIES = ("acme-co", "acme-co.eu", "globex", 'q"uote', "back\\slash", "ünï")
_EXTERNAL_IDS = (
    "crm:acme:audit:{n}",
    "crm:globex:audit:{n}",
    "crm:acme:audit:0",
    "crm:acme:audit:00{n}",
    "crm:acme:audit:-{n}",
    "crm:acme:audit:99999999999999999999",
    "crm:acme:audit:{n}x",
    "crm:acme:audit:",
    "other:{n}",
    "crm:a:audit:b:audit:{n}",
    "",
)
_NON_STRINGS = (5, None, 2.5, True, [1, "a"], {"k": 1}, {"$numberLong": "7"}, {"$oid": "not hex"})
"""``external_id`` values that are no string: a line's own, a ``$``-operator, a malformed one."""
_TAGS = (SOURCE_TAG, SOURCE_TAG, "live_feed", "crm\\u005fmigration", "crm_migration\\u0020")
_LOOK_ALIKES = (
    {"external_id": "crm:acme:audit:7", "source_tag": SOURCE_TAG},
    {"external_id": "crm:acme:audit:7", "source_tag": SOURCE_TAG, "metadata": {}},
    {"external_id": "crm:acme:audit:7", "source_tag": SOURCE_TAG, "metadata": {"crm_audit_id": 7}},
)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One line of an activity-log file: the sink's layout mostly, then every other shape seen."""
    doc = dict(_LOG)
    doc["company_sso_id"] = draw(st.sampled_from(_COMPANIES[:1] * 5 + _COMPANIES))
    number = draw(st.integers(min_value=1, max_value=10**6))
    doc["external_id"] = draw(st.sampled_from(_EXTERNAL_IDS[:1] * 10 + _EXTERNAL_IDS)).format(n=number)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        doc["external_id"] = draw(st.sampled_from(_NON_STRINGS))
    tag = draw(st.sampled_from(_TAGS))
    doc["source_tag"] = "@TAG@"
    shape = draw(st.sampled_from(("compact", "compact", "compact", "spaced", "reordered", "native")))
    if shape == "native":
        doc.pop("external_id")
    # A nested look-alike of the keys in a value: before the real ones (a changed value), after
    # them (metadata), or in a line without them (a native log), shaped like the sink's tail or not.
    look_alike = draw(st.sampled_from(_LOOK_ALIKES))
    where = draw(st.sampled_from(("none", "none", "attributes", "metadata")))
    if where == "attributes":
        doc["attributes"] = [{"field": "x", "to": look_alike}]
    elif where == "metadata":
        doc["metadata"] = {**doc["metadata"], "copy": look_alike}
    if shape == "reordered":
        doc = {"external_id": doc.pop("external_id"), **doc}
    separators = (",", ":") if shape != "spaced" else (", ", ": ")
    text = json.dumps(doc, separators=separators, ensure_ascii=draw(st.booleans()))
    text = text.replace('"@TAG@"', f'"{tag}"')
    end = draw(st.sampled_from(("\n", "\n", "\r\n", "\n\n")))
    return (text + end).encode()


def reference(data: bytes) -> dict[str, tuple[list[tuple[int, str]], list[str]]]:
    """Per company: (offset, external_id) of every keyed line, and its crm_migration external ids."""
    found: dict[str, tuple[list[tuple[int, str]], list[str]]] = defaultdict(lambda: ([], []))
    offset = 0
    for raw in io.BytesIO(data):
        if raw.strip():
            doc = json.loads(raw)
            company, external_id = doc.get("company_sso_id"), doc.get("external_id")
            if isinstance(company, str) and isinstance(external_id, str):
                found[company][0].append((offset, external_id))
                if doc.get("source_tag") == SOURCE_TAG:
                    found[company][1].append(external_id)
        offset += len(raw)
    return found


def non_strings(data: bytes) -> dict[str, list[str]]:
    """Per company, in file order: the relaxed Extended JSON ``bson.json_util`` gives the value each
    ``crm_migration`` line's ``external_id`` that is no string reads back to (its JSON text when
    none): what MongoDB's reader streams for the same document."""
    found: dict[str, list[str]] = defaultdict(list)
    for raw in io.BytesIO(data):
        doc = json.loads(raw) if raw.strip() else {}
        company, external_id = doc.get("company_sso_id"), doc.get("external_id", "")
        if (
            isinstance(company, str)
            and not isinstance(external_id, str)
            and doc.get("source_tag") == SOURCE_TAG
        ):
            text = json.dumps(external_id)
            with contextlib.suppress(InvalidId):  # no ObjectId: named by its JSON text
                text = json_util.dumps(json_util.loads(text), json_options=RELAXED_JSON_OPTIONS)
            found[company].append(text)
    return found


class TestLogIndex:
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(lines(), max_size=25),
        st.integers(min_value=1, max_value=4096),
        st.booleans(),
    )
    def test_every_line_is_found_where_parsing_it_says(
        self, file_lines: list[bytes], chunk_bytes: int, torn: bool
    ) -> None:
        """Any read size, any layout, escapes, look-alike keys and odd ids: the parse's keys; an
        ``external_id`` that is no string, as MongoDB's reader names the same value."""
        data = b"".join(file_lines)
        if torn and data.endswith(b"\n"):
            data = data.rstrip(b"\r\n")  # a last line without its newline
        index = LogIndex.of_stream(io.BytesIO(data), "logs.jsonl", chunk_bytes)
        expected = reference(data)
        for company in _COMPANIES:
            places, ours = expected.get(company, ([], []))
            wanted = {external_id for _, external_id in places} | {"crm:acme:audit:424242"}
            assert index.places(company, sorted(wanted)) == sorted(places)
            assert sorted(index.external_ids(company)) == sorted(ours)
            assert list(index.non_string_external_ids(company)) == non_strings(data).get(company, [])

    @pytest.mark.parametrize("tag", _TAGS[1:])
    @pytest.mark.parametrize("template", _EXTERNAL_IDS)
    def test_a_line_after_one_of_its_account_is_read_as_parsing_it_says(
        self, template: str, tag: str
    ) -> None:
        """The lines matched as bytes against the line before's keys: each odd id and tag."""
        first = dict(_LOG, external_id="crm:acme:audit:1")
        second = dict(_LOG, external_id=template.format(n=2), source_tag="@TAG@")
        text = json.dumps(second, separators=(",", ":")).replace('"@TAG@"', f'"{tag}"')
        data = json.dumps(first, separators=(",", ":")).encode() + b"\n" + text.encode() + b"\n"
        for chunk_bytes in (5, 1 << 20):
            index = LogIndex.of_stream(io.BytesIO(data), "logs.jsonl", chunk_bytes)
            places, ours = reference(data)["acme-co"]
            assert index.places("acme-co", [e for _, e in places]) == places
            assert sorted(index.external_ids("acme-co")) == sorted(ours)

    def test_a_page_of_ids_is_found_however_it_is_asked(self) -> None:
        """The same ids asked in another order, twice, or mixed with others give the same lines."""
        logs = b"".join(
            json.dumps({**_LOG, "external_id": f"crm:acme:audit:{n}"}, separators=(",", ":")).encode() + b"\n"
            for n in (5, 3, 9, 3)
        )
        index = LogIndex.of_stream(io.BytesIO(logs), "logs.jsonl", 64)
        ids = ["crm:acme:audit:3", "crm:acme:audit:9", "crm:acme:audit:3", "crm:acme:audit:4", "x"]
        company = _LOG["company_sso_id"]
        places = index.places(company, ids)
        assert [external_id for _, external_id in places] == [
            "crm:acme:audit:3",
            "crm:acme:audit:9",
            "crm:acme:audit:3",
        ]
        assert places == sorted(places)
        assert index.places(company, list(reversed(ids))) == places

    def test_a_line_that_is_not_a_json_object_names_its_line(self) -> None:
        """A broken line is a FileFormatError with its 1-based number, wherever the reads cut it."""
        good = json.dumps(_LOG, separators=(",", ":")).encode() + b"\n"
        for chunk_bytes in (7, 1 << 20):
            with pytest.raises(FileFormatError, match=r"logs\.jsonl, line 3"):
                LogIndex.of_stream(io.BytesIO(good + b"\n" + b"[1, 2]\n" + good), "logs.jsonl", chunk_bytes)


class TestLookAlikeKeys:
    @pytest.mark.parametrize("look_alike", _LOOK_ALIKES)
    @pytest.mark.parametrize("chunk_bytes", [5, 1 << 20])
    def test_a_nested_external_id_is_never_read_as_the_lines_own(
        self, look_alike: dict[str, object], chunk_bytes: int
    ) -> None:
        """A native log holding a look-alike in a value, and a log holding one in its metadata: the
        index keeps the top-level key only (none, and ``crm:acme:audit:2``), whether or not the
        line follows one of its account (read as bytes) or starts the file (read the long way)."""
        first = dict(_LOG, external_id="crm:acme:audit:1")
        native = {k: v for k, v in _LOG.items() if k != "external_id"}
        native["attributes"] = [{"field": "x", "to": look_alike}]
        second = dict(_LOG, external_id="crm:acme:audit:2", metadata={"copy": look_alike})
        for docs in ([first, native, second], [native, second], [second, native]):
            data = b"".join(json.dumps(doc, separators=(",", ":")).encode() + b"\n" for doc in docs)
            index = LogIndex.of_stream(io.BytesIO(data), "logs.jsonl", chunk_bytes)
            ids = ["crm:acme:audit:1", "crm:acme:audit:2", "crm:acme:audit:7"]
            assert index.places("acme-co", ids) == reference(data)["acme-co"][0]
            assert "crm:acme:audit:7" not in set(index.external_ids("acme-co"))
