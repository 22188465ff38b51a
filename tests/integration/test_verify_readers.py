"""The MongoDB and JSONL MigratedLogReaders read back what a run wrote as its recomputed form, NaN too."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from bson import Decimal128, Int64, ObjectId, json_util
from bson.json_util import RELAXED_JSON_OPTIONS
from pymongo import MongoClient
from pymongo.database import Database

from crm_audit_adapters.files import JsonlActivityLogSink
from crm_audit_adapters.files.sink import sink_line
from crm_audit_adapters.files.verification import JsonlMigratedLogReader
from crm_audit_adapters.mongo import MongoActivityLogStore, apply_migration
from crm_audit_adapters.mongo import verification as mongo_verification
from crm_audit_adapters.mongo.verification import MongoMigratedLogReader
from crm_audit_transform.domain import ActivityLog, FieldChange
from crm_audit_transform.ports import MigratedLogReader
from crm_audit_transform.usecases import RunSettings, VerifySettings
from crm_audit_transform.usecases._verify_findings import foreign_tag, written_keys
from crm_audit_transform.usecases._verify_walk import NOT_A_STRING
from crm_audit_transform.usecases.verify import verify_account
from crm_audit_transform.verification import drifted_fields
from support.corpus_account import World, audit_rows


def corpus_logs() -> list[ActivityLog]:
    """The acme account's migrated logs, those holding a NaN first."""
    world = World("acme")
    world.trigger()
    world.run(settings=RunSettings(halt_threshold=1.0))
    logs = list(world.logs.logs)

    def has_nan(log: ActivityLog) -> bool:
        return any(isinstance(v, float) and math.isnan(v) for c in log.changes for v in (c.from_, c.to))

    return sorted(logs, key=lambda log: not has_nan(log))[:120]


class TestReadersAgree:
    @pytest.mark.wire_duplicate  # a whole-account run: see support/wire_sample.py
    def test_both_readers_read_back_the_recomputed_content(
        self, mongo_db: Database[Any], tmp_path: Path
    ) -> None:
        """Stored in MongoDB or in a dry run's file, every log's content equals its recomputed form."""
        logs = corpus_logs()
        company = logs[0].company_sso_id
        list(apply_migration(mongo_db, "up"))
        store = MongoActivityLogStore.in_database(mongo_db)
        for start in range(0, len(logs), 20):
            store.insert_batch(logs[start : start + 20])
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch(logs)
        mongo, files = MongoMigratedLogReader.in_database(mongo_db), JsonlMigratedLogReader(out)
        ids = [log.external_id for log in logs]
        from_mongo = {doc.external_id: doc for doc in mongo.migrated_logs(company, ids)}
        from_file = {doc.external_id: doc for doc in files.migrated_logs(company, ids)}
        assert len(from_mongo) == len(from_file) == len(logs)
        for log in logs:
            assert from_mongo[log.external_id].content == mongo.content_of(log)
            assert from_file[log.external_id].content == files.content_of(log)
            from_file_doc, from_mongo_doc = (
                from_file[log.external_id].parsed(),
                from_mongo[log.external_id].parsed(),
            )
            assert from_file_doc is not None
            assert from_mongo_doc is not None
            assert from_file_doc.timestamp == from_mongo_doc.timestamp
        assert sorted(mongo.migrated_external_ids(company)) == sorted(files.migrated_external_ids(company))

    def test_an_edited_value_changes_the_form(self, mongo_db: Database[Any]) -> None:
        """1 and 1.0 are different BSON values: the form tells them apart where == would not."""
        log = corpus_logs()[0]
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch([log])
        mongo_db.activity_logs.update_one(
            {"external_id": log.external_id}, {"$set": {"attributes": [{"to": 1}]}}
        )
        reader = MongoMigratedLogReader.in_database(mongo_db)
        (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        mongo_db.activity_logs.update_one(
            {"external_id": log.external_id}, {"$set": {"attributes": [{"to": 1.0}]}}
        )
        (edited,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        assert stored.content["attributes"] != edited.content["attributes"]
        assert stored.content["attributes"] != reader.content_of(log)["attributes"]


class TestSourceTagReadBack:
    @pytest.mark.parametrize(
        "update", [{"$set": {"source_tag": "live_feed"}}, {"$unset": {"source_tag": ""}}]
    )
    def test_a_changed_or_removed_source_tag_is_read_back_and_drifted(
        self, mongo_db: Database[Any], update: dict[str, Any]
    ) -> None:
        """The MongoDB reader finds the log by its external id whatever its tag, never takes it as the
        recomputed document, and parses the tag: verify's foreign_tag names it (rollback would skip it)."""
        log = corpus_logs()[0]
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch([log])
        mongo_db.activity_logs.update_one({"external_id": log.external_id}, update)
        reader = MongoMigratedLogReader.in_database(mongo_db)
        (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        expected = reader.content_of(log)
        assert not stored.same_as(expected)
        parsed = stored.parsed(expected)
        assert parsed is not None
        assert "source_tag" in foreign_tag(parsed)


class TestJsonlReaderLazyParse:
    def test_a_line_equal_to_the_recomputed_one_reads_as_its_parse_would(self, tmp_path: Path) -> None:
        """Built from the recomputed log (NaN, sub-millisecond times included) or parsed: the same doc."""
        logs = corpus_logs()
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch(logs)
        reader = JsonlMigratedLogReader(out)
        company = logs[0].company_sso_id
        stored = {
            copy.external_id: copy
            for copy in reader.migrated_logs(company, [log.external_id for log in logs])
        }
        assert any(log.timestamp.microsecond % 1000 for log in logs)  # the line holds milliseconds
        for log in logs:
            copy = stored[log.external_id]
            assert copy.parsed(reader.content_of(log)) == copy.parsed()

    def test_a_line_that_differs_is_parsed_not_taken_from_the_recomputed_log(self, tmp_path: Path) -> None:
        """An edited line reads back as stored: its seam fields are the stored ones, not the recomputed."""
        log = corpus_logs()[0]
        out = tmp_path / "logs.jsonl"
        moved = attrs.evolve(log, customer_id="someone-else", timestamp=log.timestamp - dt.timedelta(days=3))
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([moved])
        reader = JsonlMigratedLogReader(out)
        (copy,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        doc = copy.parsed(reader.content_of(log))
        assert doc is not None
        in_milliseconds = moved.timestamp - dt.timedelta(microseconds=moved.timestamp.microsecond % 1000)
        assert (doc.customer_id, doc.timestamp) == (moved.customer_id, in_milliseconds)


class TestMongoReaderRawDocuments:
    def test_a_stored_log_as_written_is_its_recomputed_document_and_an_enriched_one_is_decoded(
        self, wire_mongo_client: MongoClient[dict[str, Any]]
    ) -> None:
        """On a server the adapter's own document compares as bytes; an enriched one is decoded, no drift."""
        logs = corpus_logs()[:30]
        db = wire_mongo_client[f"verify_raw_{uuid.uuid4().hex[:12]}"]
        try:
            list(apply_migration(db, "up"))
            MongoActivityLogStore.in_database(db).insert_batch(logs[:20])
            MongoActivityLogStore.in_database(db).insert_batch(logs[20:])
            enriched = logs[0]
            db.activity_logs.update_one(
                {"external_id": enriched.external_id}, {"$set": {"metadata.linked_entity_name": "Acme Ltd"}}
            )
            reader = MongoMigratedLogReader.in_database(db)
            company = enriched.company_sso_id
            stored = {
                c.external_id: c for c in reader.migrated_logs(company, [log.external_id for log in logs])
            }
            same = {
                log.external_id for log in logs if stored[log.external_id].same_as(reader.content_of(log))
            }
            assert same == {log.external_id for log in logs[1:]}
            for log in logs:
                copy, expected = stored[log.external_id], reader.content_of(log)
                built, decoded = copy.parsed(expected), copy.parsed()
                assert built is not None
                assert decoded is not None
                # A name enrichment set (the run named none here) is no field of the run's: no drift.
                assert drifted_fields(expected, decoded.content, written_keys(False)) == []
                assert attrs.evolve(built, content={}) == attrs.evolve(decoded, content={})
        finally:
            wire_mongo_client.drop_database(db.name)


class TestJsonlReaderIndex:
    def test_lines_of_any_json_layout_are_indexed_like_the_sinks(self, tmp_path: Path) -> None:
        """A sink line is indexed from its key positions, a compact or reordered line by parsing it."""
        first, second, third = corpus_logs()[:3]
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([first])
        compact = json.loads(out.read_text().splitlines()[0].replace(first.external_id, second.external_id))
        reordered = {
            "external_id": third.external_id,
            **{k: v for k, v in compact.items() if k != "external_id"},
        }
        with out.open("a") as handle:
            handle.write(json.dumps(compact, separators=(",", ":")) + "\n")
            handle.write(json.dumps(reordered) + "\n")
        reader = JsonlMigratedLogReader(out)
        company = first.company_sso_id
        wanted = [first.external_id, second.external_id, third.external_id]
        assert sorted(reader.migrated_external_ids(company)) == sorted(wanted)
        assert sorted(doc.external_id for doc in reader.migrated_logs(company, wanted)) == sorted(wanted)


class TestBinaryValues:
    def test_a_bytes_value_reads_back_as_its_recomputed_form(
        self, mongo_db: Database[Any], tmp_path: Path
    ) -> None:
        """A !binary value (bytes → BSON Binary, or {"$binary"} in a line) compares equal to itself."""
        log = attrs.evolve(
            corpus_logs()[0], changes=(FieldChange("avatar", "Avatar", b"\xff\x00\xfe", b"\x89PNG\r\n"),)
        )
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch([log])
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([log])
        for reader in (MongoMigratedLogReader.in_database(mongo_db), JsonlMigratedLogReader(out)):
            (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
            assert stored.content == reader.content_of(log)
            edited = attrs.evolve(log, changes=(FieldChange("avatar", "Avatar", b"\xff\x00\xfe", b"other"),))
            assert stored.content["attributes"] != reader.content_of(edited)["attributes"]


class TestMongoStrayStream:
    def test_the_external_id_stream_crosses_chunks_without_loss_or_repeat(
        self, mongo_db: Database[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Keyset chunks over uniq_company_external_id's order yield every crm_migration log once."""
        monkeypatch.setattr(mongo_verification, "_ID_CHUNK", 3)
        logs = corpus_logs()[:8]
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch(logs)
        mongo_db.activity_logs.insert_one(
            {"company_sso_id": logs[0].company_sso_id, "source_tag": "live_feed"}
        )
        streamed = list(
            MongoMigratedLogReader.in_database(mongo_db).migrated_external_ids(logs[0].company_sso_id)
        )
        assert streamed == sorted(log.external_id for log in logs)

    def test_a_log_whose_external_id_is_not_a_string_is_streamed_for_the_stray_pass(
        self, mongo_db: Database[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """rollback deletes a crm_migration log whatever its external_id's type, so verify sees it
        too: apart from the string ids, each other one as its relaxed Extended JSON, across chunks."""
        monkeypatch.setattr(mongo_verification, "_ID_CHUNK", 2)
        logs = corpus_logs()[:3]
        company = logs[0].company_sso_id
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch(logs)
        for other in (7, None, 2.5):
            mongo_db.activity_logs.insert_one(
                {"company_sso_id": company, "source_tag": "crm_migration", "external_id": other}
            )
        mongo_db.activity_logs.insert_one({"company_sso_id": company, "source_tag": "crm_migration"})
        mongo_db.activity_logs.insert_one(
            {"company_sso_id": company, "source_tag": "live_feed", "external_id": 8}
        )
        reader = MongoMigratedLogReader.in_database(mongo_db)
        assert list(reader.migrated_external_ids(company)) == sorted(log.external_id for log in logs)
        assert list(reader.non_string_external_ids(company)) == ["7", "null", "2.5"]


class TestLineContent:
    def test_a_line_that_differs_outside_the_owned_fields_is_the_same_content(self, tmp_path: Path) -> None:
        """Enrichment keys in metadata (a name where the run names none) and an earlier release's
        spaced layout are not drift; NaN is NaN."""
        log = corpus_logs()[0]  # holds a NaN
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([log])
        line = json.loads(out.read_text())
        line["metadata"] = {**line["metadata"], "linked_entity_name": "Acme Ltd"}
        out.write_text(json.dumps(line) + "\n")  # json.dumps: the spaced layout of earlier releases
        reader = JsonlMigratedLogReader(out)
        (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        expected = reader.content_of(log)
        assert drifted_fields(expected, stored.content, written_keys(False)) == []
        assert {k: v for k, v in stored.content.items() if k != "metadata.linked_entity_name"} == dict(
            expected
        )

    def test_a_rewritten_run_metadata_key_is_different_content(self, tmp_path: Path) -> None:
        """A dry run's file too: crm_tenant rewritten in a line is not the recomputed content (the file
        verify compared only the six fields before), while an enrichment key is."""
        log = corpus_logs()[0]
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([log])
        line = json.loads(out.read_text())
        line["metadata"] = {**line["metadata"], "crm_tenant": "globex"}
        out.write_text(json.dumps(line) + "\n")
        reader = JsonlMigratedLogReader(out)
        (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        expected = reader.content_of(log)
        assert stored.content["metadata.crm_tenant"] != expected["metadata.crm_tenant"]
        assert {k for k in expected if stored.content[k] != expected[k]} == {"metadata.crm_tenant"}
        assert drifted_fields(expected, stored.content) == ["metadata.crm_tenant"]

    def test_an_edited_owned_field_is_different_content_even_in_the_same_layout(self, tmp_path: Path) -> None:
        """Lines that differ in an owned field differ as content, field by field."""
        log = corpus_logs()[0]
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch([attrs.evolve(log, category="other")])
        reader = JsonlMigratedLogReader(out)
        (stored,) = reader.migrated_logs(log.company_sso_id, [log.external_id])
        expected = reader.content_of(log)
        assert stored.content != expected
        assert [k for k in expected if expected[k] != stored.content.get(k)] == ["category"]


class TestLogsNoStoreHolds:
    def test_a_log_past_16_mib_is_a_value_error_of_both_readers_as_its_writers_fail_it(
        self, mongo_db: Database[Any], tmp_path: Path
    ) -> None:
        """A log of a 17 MiB text (the loader takes up to 32 MiB): each writer fails it write_error, and
        each reader's content_of says so (ValueError), so verify counts it failed, not missing."""
        big = "x" * (17 * 1024 * 1024)
        log = attrs.evolve(corpus_logs()[0], changes=(FieldChange("notes", "Notes", None, big),))
        list(apply_migration(mongo_db, "up"))
        written = MongoActivityLogStore.in_database(mongo_db).insert_batch([log])
        with JsonlActivityLogSink(tmp_path / "logs.jsonl", fsync="never") as sink:
            sunk = sink.insert_batch([log])
        assert [(r.status, r.reason) for r in (*written, *sunk)] == [("failed", "write_error")] * 2
        for reader in (
            MongoMigratedLogReader.in_database(mongo_db),
            JsonlMigratedLogReader(tmp_path / "logs.jsonl"),
        ):
            with pytest.raises(ValueError, match="exceeds MongoDB's 16777216-byte limit"):
                reader.content_of(log)


class TestStrayStreamsAgree:
    @pytest.mark.wire_duplicate  # the MongoDB stream on the wire: test_verify_stray_mongo.py
    def test_both_readers_stream_and_report_the_same_strays(
        self, mongo_db: Database[Any], tmp_path: Path
    ) -> None:
        """The same logs in MongoDB and in a dry run's file give the same stray stream
        (``ports.TaggedExternalIds``) and the same strays: a log of another (or no) ``source_tag``
        under an id of ours that names no audit, besides ours naming none and another tenant's.
        Before, the file reader had no tagged stream: verify of a dry run's file passed over the
        logs of another tag that MongoDB's reader reports."""
        world = World("acme", rows=[row for row in audit_rows("acme") if row.id <= 40])
        world.trigger()
        world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
        logs = list(world.logs.logs)
        template = logs[0]
        strays = [
            attrs.evolve(template, external_id="crm:acme:audit:99999999", source_tag="other_tool"),
            attrs.evolve(template, external_id="crm:acme:audit:99999998", source_tag=""),
            attrs.evolve(template, external_id="crm:acme:audit:88888888"),
            attrs.evolve(template, external_id="crm:other:audit:5"),
        ]
        theirs = [  # another tool's own ids, of its tag: not ours to report
            attrs.evolve(template, external_id="hubspot:12", source_tag="other_tool"),
            attrs.evolve(template, external_id="crm:acme:audit:026", source_tag="other_tool"),
        ]
        stored = [*logs, *strays, *theirs]
        list(apply_migration(mongo_db, "up"))
        store = MongoActivityLogStore.in_database(mongo_db)
        for start in range(0, len(stored), 20):
            store.insert_batch(stored[start : start + 20])
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch(stored)
        mongo, files = MongoMigratedLogReader.in_database(mongo_db), JsonlMigratedLogReader(out)
        prefix = "crm:acme:audit:"
        streamed = sorted(files.tagged_external_ids(world.company, prefix))
        assert streamed == sorted(mongo.tagged_external_ids(world.company, prefix))
        assert ("crm:acme:audit:99999998", "") in streamed
        assert ("crm:acme:audit:026", "other_tool") in streamed
        assert "hubspot:12" not in dict(streamed)

        def stray_of(reader: MigratedLogReader) -> list[tuple[str, int | None, str]]:
            world.reader = reader
            report = verify_account(
                world.company, world.verify_ports(repair=False), world.transformer, settings=VerifySettings()
            )
            return sorted((f.external_id, f.audit_id, f.detail) for f in report.findings["stray"].items)

        found = stray_of(files)
        assert found == stray_of(mongo)
        assert [external_id for external_id, _, _ in found] == sorted(log.external_id for log in strays)
        assert [detail for external_id, _, detail in found if external_id.endswith("99999999")] == [
            "source_tag 'other_tool' (rollback deletes 'crm_migration' only), "
            "naming no in-scope audit: an id of ours"
        ]

    @pytest.mark.wire_duplicate  # the MongoDB stream on the wire: test_verify_stray_mongo.py
    def test_an_external_id_that_is_no_string_is_a_stray_of_both_readers_never_its_texts_copy(
        self, mongo_db: Database[Any], tmp_path: Path
    ) -> None:
        """A ``crm_migration`` log whose ``external_id`` is a number, null, an array, a document or
        another BSON type is streamed apart (``NonStringExternalIds``) as the same relaxed Extended
        JSON by both readers, and reported alike: a stray of its own, never a copy of the string of
        the same text (the number 5 and the string "5": two strays, no duplicate), and two logs of
        one such value a duplicate. Before, MongoDB's reader streamed 5 as the text "5", one id
        with the string (a false duplicate), and the file reader passed every such line over."""
        world = World("acme", rows=[row for row in audit_rows("acme") if row.id <= 40])
        world.trigger()
        world.run(settings=RunSettings(page_size=200, halt_threshold=1.0))
        logs = list(world.logs.logs)
        list(apply_migration(mongo_db, "up"))
        MongoActivityLogStore.in_database(mongo_db).insert_batch(logs)
        mongo_db.activity_logs.drop_index("uniq_company_external_id")  # for the string "5" twice
        template = mongo_db.activity_logs.find_one({"source_tag": "crm_migration"}, {"_id": 0})
        assert template is not None
        values: list[object] = [
            *(5, "5", 5, "5", None, 2.5, 5.0, Int64(7), True, "", [1, "a"], {"k": 1}),
            ObjectId("65f0c0ffee0000000000abcd"),
            Decimal128("1.10"),
            dt.datetime(2024, 5, 2, 12, 0, tzinfo=dt.UTC),
        ]
        odd = [{**template, "external_id": value} for value in values]
        odd.append({**template, "external_id": 8, "source_tag": "other_tool"})  # not ours: not streamed
        mongo_db.activity_logs.insert_many([dict(doc) for doc in odd])
        out = tmp_path / "logs.jsonl"
        with JsonlActivityLogSink(out, fsync="never") as sink:
            sink.insert_batch(logs)
        with out.open("a") as stream:
            stream.writelines(json_util.dumps(doc, json_options=RELAXED_JSON_OPTIONS) + "\n" for doc in odd)
        mongo, files = MongoMigratedLogReader.in_database(mongo_db), JsonlMigratedLogReader(out)
        non_strings = sorted(files.non_string_external_ids(world.company))
        assert non_strings == sorted(mongo.non_string_external_ids(world.company))
        assert non_strings == sorted(
            [
                *("5", "5", "null", "2.5", "5.0", "7", "true", '[1, "a"]', '{"k": 1}'),
                '{"$oid": "65f0c0ffee0000000000abcd"}',
                '{"$numberDecimal": "1.10"}',
                '{"$date": "2024-05-02T12:00:00Z"}',
            ]
        )
        prefix = "crm:acme:audit:"
        streamed = sorted(files.tagged_external_ids(world.company, prefix))
        assert streamed == sorted(mongo.tagged_external_ids(world.company, prefix))
        assert [ext_id for ext_id, _ in streamed if not ext_id.startswith(prefix)] == ["", "5", "5"]

        def found(reader: MigratedLogReader) -> dict[str, list[tuple[str, int | None, str]]]:
            world.reader = reader
            report = verify_account(
                world.company, world.verify_ports(repair=False), world.transformer, settings=VerifySettings()
            )
            return {
                kind: sorted((f.external_id, f.audit_id, f.detail) for f in report.findings[kind].items)
                for kind in ("stray", "duplicate")
            }

        from_file = found(files)
        assert from_file == found(mongo)
        not_ours = "not an external_id of tenant 'acme'"
        assert [item for item in from_file["stray"] if item[0] == "5"] == sorted(
            [("5", None, not_ours)] * 2 + [("5", None, NOT_A_STRING)] * 2
        )
        assert len(from_file["stray"]) == len(values)
        assert from_file["duplicate"] == sorted(
            [("5", None, "2 logs"), ("5", None, f"2 logs, {NOT_A_STRING}")]
        )

    def test_a_tag_that_is_no_string_or_none_reads_as_mongodb_gives_it(self, tmp_path: Path) -> None:
        """A line of ours by id whose ``source_tag`` is a number, or missing, streams with the tag
        ``""``, as MongoDB's stream gives a document's tag that is not a string; a line of ours is
        streamed without being read again."""
        log = corpus_logs()[0]
        doc = json.loads(sink_line(log)[1])
        lines = [
            {**doc, "external_id": "crm:acme:audit:99999999", "source_tag": 7},
            {key: value for key, value in doc.items() if key != "source_tag"}
            | {"external_id": "crm:acme:audit:99999998"},
            doc,
        ]
        out = tmp_path / "logs.jsonl"
        out.write_text("".join(json.dumps(line) + "\n" for line in lines))
        streamed = sorted(
            JsonlMigratedLogReader(out).tagged_external_ids(log.company_sso_id, "crm:acme:audit:")
        )
        assert streamed == sorted(
            [
                ("crm:acme:audit:99999999", ""),
                ("crm:acme:audit:99999998", ""),
                (log.external_id, "crm_migration"),
            ]
        )
