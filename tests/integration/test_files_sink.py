"""The JSONL activity-log sink: the Mongo adapter's documents as relaxed Extended JSON, written once."""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import json_util
from bson.codec_options import DEFAULT_CODEC_OPTIONS
from bson.json_util import RELAXED_JSON_OPTIONS

from crm_audit_adapters.cli.exit_codes import error_code, exit_code_for
from crm_audit_adapters.files import JsonlActivityLogSink, encode_log_line
from crm_audit_adapters.files.errors import FileWriteError, OutputLocked
from crm_audit_adapters.mongo.activity_logs import BsonLogEncoder, MongoActivityLogStore
from crm_audit_adapters.mongo.document_limits import ID_BYTES, MAX_DOCUMENT_BYTES
from crm_audit_adapters.mongo.documents import encode_activity_log
from crm_audit_transform import reasons
from crm_audit_transform.domain import ActivityLog, Actor, FieldChange, WriteResult
from support.mongo import activity_log

READ_BACK = RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=dt.UTC)


def varied_logs() -> list[ActivityLog]:
    """Logs whose documents exercise every value kind the encoder handles."""
    rich = activity_log(
        1,
        actor=Actor("deleted_user", "[Deleted CRM User]"),
        changes=(
            FieldChange("amount", "Amount", Decimal("1234567.890"), Decimal("-0")),
            FieldChange(
                "closed_at", "Closed at", None, dt.datetime(2020, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
            ),
            FieldChange("birthdate", "Birthdate", dt.date(2000, 2, 29), None),
            FieldChange("score", "Score", 0.1, -0.0),
            FieldChange("big", "Big", 2**62, 2**70),
            FieldChange("prefs", "Prefs", {"a.b": [1, "x"], "$y": {"z": None}}, {}),
            FieldChange("notes", "Notes", "línea\r\nدو\t😀", ""),
            FieldChange("avatar", "Avatar", b"\xff\xd8\x00", None),
        ),
        timestamp=dt.datetime(2019, 1, 4, 5, 44, 28, 125496, tzinfo=dt.UTC),
        metadata={"crm_audit_id": 1, "crm_tenant": "acme", "username": None, "request_uuid": "u-1"},
    )
    return [
        rich,
        activity_log(2),
        activity_log(3, company="company-b"),
        activity_log(4, actor=Actor("system", "Q")),
    ]


def file_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


class TestDocuments:
    def test_each_line_reads_back_as_json_utils_text_of_the_mongo_document(self, tmp_path: Path) -> None:
        """json_util.loads of each line gives what json_util.loads of json_util.dumps gives, in order."""
        logs = varied_logs()
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch(logs)
        reference = [
            json_util.dumps(encode_activity_log(log), json_options=RELAXED_JSON_OPTIONS) for log in logs
        ]
        lines = file_lines(tmp_path / "out.jsonl")
        assert lines == [encode_log_line(log) for log in logs]
        for line, text in zip(lines, reference, strict=True):
            ours, theirs = (
                json_util.loads(line, json_options=READ_BACK),
                json_util.loads(text, json_options=READ_BACK),
            )
            assert bson.encode(ours) == bson.encode(theirs)

    def test_lines_are_compact_utf8_json(self, tmp_path: Path) -> None:
        """The documented form: no spaces after separators, non-ASCII text as UTF-8, not \\u escapes."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch(varied_logs()[:1])
        raw = (tmp_path / "out.jsonl").read_bytes()
        assert b'"company_sso_id":"company-a","customer_id":' in raw
        assert "línea".encode() in raw
        assert b"\\u00ed" not in raw

    def test_bytes_are_written_as_extended_json_binary(self) -> None:
        """A bytes value is ``{"$binary": {"base64", "subType": "00"}}`` in the line."""
        log = activity_log(5, changes=(FieldChange("avatar", "Avatar", None, b"\xff\xd8"),))
        change = json.loads(encode_log_line(log))["attributes"][0]
        assert change["to"] == {"$binary": {"base64": "/9g=", "subType": "00"}}

    def test_lines_parse_back_to_the_same_documents(self, tmp_path: Path) -> None:
        """json_util.loads of a line gives the encoder's dict: same keys, values and BSON bytes."""
        logs = varied_logs()
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch(logs)
        for line, log in zip(file_lines(tmp_path / "out.jsonl"), logs, strict=True):
            loaded = json_util.loads(line, json_options=READ_BACK)
            assert loaded == encode_activity_log(log)
            assert bson.encode(loaded) == bson.encode(encode_activity_log(log))

    def test_the_file_holds_what_the_mongo_adapter_stores(self, tmp_path: Path, mongo_db: Any) -> None:
        """Inserted through MongoActivityLogStore and read back, each document (minus _id) equals its line."""
        logs = varied_logs()
        MongoActivityLogStore(mongo_db["activity_logs"]).insert_batch(logs)
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch(logs)
        stored = {
            doc["external_id"]: bson.encode({k: v for k, v in doc.items() if k != "_id"})
            for doc in mongo_db["activity_logs"].find()
        }
        lines = [json_util.loads(line, json_options=READ_BACK) for line in file_lines(tmp_path / "out.jsonl")]
        assert [stored[log.external_id] for log in logs] == [bson.encode(doc) for doc in lines]

    def test_lines_are_single_line_json_objects(self, tmp_path: Path) -> None:
        """Newlines inside values are escaped, so one log is exactly one line mongoimport can read."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch(varied_logs()[:1])
        [line] = file_lines(tmp_path / "out.jsonl")
        assert isinstance(json.loads(line), dict)


class TestIdempotency:
    def test_a_repeated_external_id_is_skipped_within_and_across_batches(self, tmp_path: Path) -> None:
        """Like the unique index: the second (company, external_id) is skipped duplicate_external_id."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            first = sink.insert_batch([activity_log(1), activity_log(1)])
            second = sink.insert_batch([activity_log(1), activity_log(2)])
        duplicate = WriteResult("crm:tenant_a:audit:1", "skipped", reasons.DUPLICATE_EXTERNAL_ID)
        assert list(first) == [WriteResult("crm:tenant_a:audit:1", "inserted"), duplicate]
        assert list(second) == [duplicate, WriteResult("crm:tenant_a:audit:2", "inserted")]
        assert len(file_lines(tmp_path / "out.jsonl")) == 2

    def test_the_same_external_id_in_another_company_is_not_a_duplicate(self, tmp_path: Path) -> None:
        """Uniqueness is per company, as the index's (company_sso_id, external_id) key."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            results = sink.insert_batch([activity_log(1), activity_log(1, company="company-b")])
        assert [r.status for r in results] == ["inserted", "inserted"]

    def test_a_reopened_file_remembers_what_it_holds(self, tmp_path: Path) -> None:
        """After a restart the keys and counts already in the file still count: nothing is written twice."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1), activity_log(2)])
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == 2
            results = sink.insert_batch([activity_log(2), activity_log(3)])
        assert [r.status for r in results] == ["skipped", "inserted"]
        assert len(file_lines(path)) == 3

    def test_a_log_without_external_id_fails_and_is_not_written(self, tmp_path: Path) -> None:
        """Without its key a log cannot be written idempotently: failed write_error, like the Mongo store."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            [result] = sink.insert_batch([activity_log(1, external_id="")])
        assert (result.status, result.reason) == ("failed", reasons.WRITE_ERROR)
        assert file_lines(tmp_path / "out.jsonl") == []

    def test_a_log_too_big_for_mongodb_fails_alone(self, tmp_path: Path) -> None:
        """A document over 16 MiB would be refused by mongoimport; it fails, its batch-mates are written."""
        huge = activity_log(1, changes=(FieldChange("notes", "Notes", None, "x" * (17 * 1024 * 1024)),))
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            results = sink.insert_batch([huge, activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [("failed", reasons.WRITE_ERROR), ("inserted", "")]
        assert len(file_lines(tmp_path / "out.jsonl")) == 1

    def test_a_log_bson_cannot_encode_fails_alone(self, tmp_path: Path) -> None:
        """A lone surrogate is valid JSON text but not BSON: refused as the Mongo store would refuse it."""
        broken = activity_log(1, changes=(FieldChange("notes", "Notes", None, "a\ud800b"),))
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            results = sink.insert_batch([broken, activity_log(2)])
        assert [(r.status, r.reason) for r in results] == [("failed", reasons.WRITE_ERROR), ("inserted", "")]
        assert len(file_lines(tmp_path / "out.jsonl")) == 1

    def test_a_compact_json_line_whose_bson_is_too_big_fails(self, tmp_path: Path) -> None:
        """1.5M one-digit ints: 4.5 MB of JSON but over 16 MiB of BSON, so the exact size is checked."""
        dense = activity_log(1, changes=(FieldChange("ids", "Ids", None, [1] * 1_500_000),))
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            [result] = sink.insert_batch([dense])
        assert len(encode_log_line(dense)) < 16 * 1024 * 1024 / 3
        assert (result.status, result.reason) == ("failed", reasons.WRITE_ERROR)
        assert "exceeds" in result.detail

    @pytest.mark.parametrize("margin", [0, 1, 17, 18])
    def test_the_limit_counts_the_id_mongodb_adds_as_the_mongo_store_does(
        self, tmp_path: Path, margin: int
    ) -> None:
        """A log whose BSON without ``_id`` is ``margin`` bytes under 16 MiB: the sink refuses it
        exactly when the Mongo store's encoder does (``_id`` adds 17 bytes), with the same detail."""
        base = activity_log(1, changes=(FieldChange("notes", "Notes", None, ""),))
        fill = MAX_DOCUMENT_BYTES - margin - len(bson.encode(encode_activity_log(base)))
        log = activity_log(1, changes=(FieldChange("notes", "Notes", None, "x" * fill),))
        assert len(bson.encode(encode_activity_log(log))) == MAX_DOCUMENT_BYTES - margin
        store_view = BsonLogEncoder(DEFAULT_CODEC_OPTIONS)(log)
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            [result] = sink.insert_batch([log])
        assert (result.status == "failed") == (margin < ID_BYTES) == bool(store_view.problem)
        assert result.detail == store_view.problem


class TestOneWriterAFile:
    def test_a_second_sink_on_an_open_file_is_refused_before_it_writes(self, tmp_path: Path) -> None:
        """Two writers would each append every log: the second is OutputLocked (exit 4), the file
        keeps the first one's lines only, and once the first is closed the file opens again."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as first:
            first.insert_batch([activity_log(1)])
            with pytest.raises(OutputLocked) as refused:
                JsonlActivityLogSink(path)
            first.insert_batch([activity_log(2)])
        assert str(path) in str(refused.value)
        assert (error_code(refused.value), exit_code_for(refused.value)) == ("OUTPUT_LOCKED", 4)
        assert len(file_lines(path)) == 2
        with JsonlActivityLogSink(path) as again:
            assert again.count_migrated("company-a") == 2

    def test_a_sink_of_another_process_is_seen(self, tmp_path: Path) -> None:
        """The lock is the operating system's (flock): a sink held open by another process refuses."""
        path = tmp_path / "out.jsonl"
        hold = (
            "import sys; from crm_audit_adapters.files import JsonlActivityLogSink as S; s = S(sys.argv[1]);"
        )
        hold += " print('ready', flush=True); sys.stdin.read(); s.close()"
        holder = subprocess.Popen(
            [sys.executable, "-c", hold, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "ready"
            with pytest.raises(OutputLocked):
                JsonlActivityLogSink(path)
        finally:
            holder.communicate(timeout=60)  # closes its stdin: it exits, and its pipes are closed
        JsonlActivityLogSink(path).close()  # the holder is gone, and so is its lock

    def test_the_lock_holds_across_a_rewrite(self, tmp_path: Path) -> None:
        """delete_migrated replaces the file: the new file is locked before it takes the name."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1), activity_log(2, company="company-b")])
            assert sink.delete_migrated("company-a") == 1
            with pytest.raises(OutputLocked):
                JsonlActivityLogSink(path)
            sink.insert_batch([activity_log(3)])
        assert [json.loads(line)["external_id"] for line in file_lines(path)] == [
            activity_log(2).external_id,
            activity_log(3).external_id,
        ]
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


class TestDurability:
    def test_a_batch_is_on_disk_when_its_results_are_returned(self, tmp_path: Path) -> None:
        """Another reader sees the batch before the sink is closed: a crash now loses nothing reported."""
        path = tmp_path / "out.jsonl"
        sink = JsonlActivityLogSink(path)
        try:
            sink.insert_batch([activity_log(1), activity_log(2)])
            assert len(file_lines(path)) == 2
        finally:
            sink.close()

    @pytest.mark.parametrize("fsync", ["batch", "close", "never", True, False])
    def test_every_fsync_mode_flushes_each_batch_to_the_os(self, tmp_path: Path, fsync: Any) -> None:
        """Whatever the disk cadence, a batch reported written is in the file for another reader."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path, fsync=fsync) as sink:
            sink.insert_batch([activity_log(1)])
            assert len(file_lines(path)) == 1
            sink.insert_batch([activity_log(2)])
            assert len(file_lines(path)) == 2

    def test_an_unknown_fsync_mode_is_refused(self, tmp_path: Path) -> None:
        """A misspelt mode is an error at construction, not a silent choice."""
        with pytest.raises(ValueError, match="fsync"):
            JsonlActivityLogSink(tmp_path / "out.jsonl", fsync="sometimes")  # type: ignore[arg-type]

    def test_a_torn_last_line_is_dropped_when_the_file_is_reopened(self, tmp_path: Path) -> None:
        """A partial line from a crash mid-write was never reported written; it is cut off, the rest kept."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1)])
        with path.open("ab") as out:
            out.write(encode_log_line(activity_log(2)).encode()[:40])
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == 1
            assert [r.status for r in sink.insert_batch([activity_log(2)])] == ["inserted"]
        assert [json.loads(line)["external_id"] for line in file_lines(path)] == [
            "crm:tenant_a:audit:1",
            "crm:tenant_a:audit:2",
        ]

    def test_a_whole_last_document_without_its_newline_is_kept(self, tmp_path: Path) -> None:
        """A complete last log lacking only its newline (a hand-joined file) is kept, not dropped as torn."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1)])
        with path.open("ab") as out:
            out.write(encode_log_line(activity_log(2)).encode())
        with JsonlActivityLogSink(path) as sink:
            assert sink.count_migrated("company-a") == 2
            assert [r.status for r in sink.insert_batch([activity_log(2), activity_log(3)])] == [
                "skipped",
                "inserted",
            ]
        assert [json.loads(line)["external_id"] for line in file_lines(path)] == [
            "crm:tenant_a:audit:1",
            "crm:tenant_a:audit:2",
            "crm:tenant_a:audit:3",
        ]


class TestRollback:
    def test_delete_migrated_removes_only_that_companys_migrated_logs(self, tmp_path: Path) -> None:
        """Other companies' logs and native lines (no external_id) stay; the count says how many went."""
        path = tmp_path / "out.jsonl"
        native = json_util.dumps(
            {"company_sso_id": "company-a", "category": "deal", "source_tag": "live_feed"},
            json_options=RELAXED_JSON_OPTIONS,
        )
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1), activity_log(2), activity_log(3, company="company-b")])
        with path.open("a", encoding="utf-8") as out:
            out.write(native + "\n")
        with JsonlActivityLogSink(path) as sink:
            assert sink.delete_migrated("company-a") == 2
            assert sink.count_migrated("company-a") == 0
            assert sink.count_migrated("company-b") == 1
            assert sink.delete_migrated("company-a") == 0
            # The keys are free again, as after a rollback in MongoDB.
            assert [r.status for r in sink.insert_batch([activity_log(1)])] == ["inserted"]
        remaining = [json.loads(line) for line in file_lines(path)]
        assert [doc.get("external_id") for doc in remaining] == [
            "crm:tenant_a:audit:3",
            None,
            "crm:tenant_a:audit:1",
        ]

    def test_logs_with_another_source_tag_are_not_rolled_back(self, tmp_path: Path) -> None:
        """Only source_tag crm_migration counts as migrated, whatever else shares the file."""
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            sink.insert_batch([activity_log(1), activity_log(2, source_tag="other")])
            assert sink.count_migrated("company-a") == 1
            assert sink.delete_migrated("company-a") == 1
        assert len(file_lines(tmp_path / "out.jsonl")) == 1

    def test_a_full_disk_during_the_rewrite_is_a_file_error_and_leaves_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENOSPC while the rewrite is flushed: FILE_ERROR (exit 7) naming the file, as for an append;
        the file keeps every log and no temporary file is left."""
        path = tmp_path / "out.jsonl"
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([activity_log(1), activity_log(2, company="company-b")])
        before = path.read_bytes()

        def full_disk(_: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with JsonlActivityLogSink(path) as sink:
            monkeypatch.setattr("os.fsync", full_disk)
            with pytest.raises(
                FileWriteError, match=f"cannot write activity logs to {path}: No space"
            ) as caught:
                sink.delete_migrated("company-a")
            monkeypatch.undo()
            assert sink.count_migrated("company-a") == 1
        assert (error_code(caught.value), exit_code_for(caught.value)) == ("FILE_ERROR", 7)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]

    def test_a_file_truncated_under_the_rewrite_is_a_file_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A long line kept by the rewrite is copied in blocks; if another process truncated the file
        meanwhile, the rewrite stops with FILE_ERROR (not a bare OSError without an errno)."""
        path = tmp_path / "out.jsonl"
        long_log = activity_log(2, company="company-b", customer_id="c" * (2 << 20))
        with JsonlActivityLogSink(path) as sink:
            sink.insert_batch([long_log, activity_log(1)])
        from crm_audit_adapters.files import sink as sink_module

        real_skim = sink_module.skim_long_line

        def skim_then_truncate(*args: Any) -> bytes:
            line = real_skim(*args)
            with path.open("r+b") as other:
                other.truncate(100)
            return line

        with JsonlActivityLogSink(path) as sink:
            monkeypatch.setattr(sink_module, "skim_long_line", skim_then_truncate)
            with pytest.raises(FileWriteError, match="shrank while it was read") as caught:
                sink.delete_migrated("company-a")
        assert (error_code(caught.value), exit_code_for(caught.value)) == ("FILE_ERROR", 7)
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


class TestStreams:
    def test_a_stream_receives_the_same_lines_and_results_as_a_file(self, tmp_path: Path) -> None:
        """over_stream writes byte for byte what a file sink writes, with the same write results."""
        logs = [*varied_logs(), activity_log(2), activity_log(9, external_id="")]
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            expected = sink.insert_batch(logs)
        stream = io.BytesIO()
        with JsonlActivityLogSink.over_stream(stream) as sink:
            assert sink.insert_batch(logs) == expected
            assert sink.count_migrated("company-a") == 3
        assert not stream.closed
        assert stream.getvalue() == (tmp_path / "out.jsonl").read_bytes()

    def test_no_stream_encodes_and_reports_but_keeps_nothing(self, tmp_path: Path) -> None:
        """Without a stream every log is still encoded and checked, so the results equal a file sink's."""
        too_big = activity_log(5, changes=(FieldChange("blob", "Blob", None, "x" * (17 * 1024 * 1024)),))
        logs = [activity_log(1), activity_log(1), too_big]
        with JsonlActivityLogSink(tmp_path / "out.jsonl") as sink:
            expected = sink.insert_batch(logs)
        with JsonlActivityLogSink.over_stream(None) as sink:
            results = sink.insert_batch(logs)
            assert sink.delete_migrated("company-a") == 1
            assert sink.count_migrated("company-a") == 0
        assert results == expected
        assert [r.status for r in results] == ["inserted", "skipped", "failed"]

    def test_a_full_stdout_is_a_file_error_naming_it_not_a_store_outage(self) -> None:
        """A full stdout (ENOSPC) is FILE_ERROR, exit 7, naming <stdout>: not STORE_UNAVAILABLE's retry."""
        with open("/dev/full", "wb", buffering=0) as full:
            sink = JsonlActivityLogSink.over_stream(full, "<stdout>")
            with pytest.raises(FileWriteError, match="<stdout>") as caught:
                sink.insert_batch([activity_log(1)])
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == errno.ENOSPC
        assert (error_code(caught.value), exit_code_for(caught.value)) == ("FILE_ERROR", 7)

    def test_a_failed_fsync_at_close_is_a_file_error_naming_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``fsync="close"`` on a disk that fails it (EIO): FILE_ERROR naming the file, not a bare errno."""
        path = tmp_path / "out.jsonl"
        sink = JsonlActivityLogSink(path, fsync="close")
        sink.insert_batch([activity_log(1)])

        def failing_fsync(_: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr("os.fsync", failing_fsync)
        with pytest.raises(FileWriteError, match=f"cannot write activity logs to {path}: ") as caught:
            sink.close()
        assert (error_code(caught.value), exit_code_for(caught.value)) == ("FILE_ERROR", 7)
