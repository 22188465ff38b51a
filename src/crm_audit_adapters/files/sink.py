"""Activity logs out to a file: one MongoDB relaxed Extended JSON document per line.

Each line is ``bson.json_util.dumps(encode_activity_log(log), json_options=RELAXED_JSON_OPTIONS)`` —
the very document ``MongoActivityLogStore`` would insert, minus the ``_id`` that ``mongoimport``
(or the server) assigns — so ``mongoimport --collection activity_logs --file out.jsonl`` loads a
dry run's output as it is.

The sink behaves like the collection with its unique index: one ``(company_sso_id, external_id)``
is written once, a repeat is ``skipped: duplicate_external_id``, also across restarts, because
the keys already in the file are read back when it is opened (and kept compactly, see ``keys``).
A batch is written and flushed to the operating system before its results are returned, and a
failed write is cut back off the file, so what was reported written survives a crash of the process
and a batch is never half there. A torn last line left by a crash mid-write is removed on open: it
was never reported. Only the start of a line this sink writes is taken for one; a file whose last
line is anything else is not this sink's output and is refused, untouched (``_recover``).

One process writes a file at a time, and the sink makes sure of it: it holds an exclusive ``flock``
on the file from before it reads the file's keys until it is closed, and a second sink on the same
file — in another process, or another sink in this one — is refused at once with ``OutputLocked``
(two writers would each append every log: each log twice). ``delete_migrated`` locks its rewrite
before it replaces the file, so the lock never lapses. A filesystem without ``flock`` support
(``ENOLCK``, ``EOPNOTSUPP``) is written without the lock.

``fsync`` says when the file is also forced to the disk, for a crash of the machine: ``"batch"``
(every batch before its results, the default), ``"close"`` (once, when the sink is closed) or
``"never"``. A dry run uses ``"close"``: its output can be recreated by running it again, and the
job cursor's promise is about the process dying, which the per-batch flush already keeps; an fsync
per batch cost ~6% of a dry run.

``log_encoder`` (``jsonl_log``) lets a ``--workers`` process make a log's line where it transformed
the log: the sink then writes the ``EncodedLog``'s bytes as they are (``ports.EncodingLogWriter``).

Lines are built by ``mongo.extended_json`` in one pass. MongoDB refuses documents over 16 MiB; the
BSON size is only computed when the line is long enough to possibly exceed it: BSON never takes
more than 7 bytes per byte of this JSON (the worst case is a one-digit int in a long array: ``1,``
is 2 bytes, its BSON element at most 13 bytes — type, index of up to 7 digits, NUL, int32 — every
other element costs relatively less), so a line of at most 16 MiB / 7 is within the limit. A lone
surrogate, which BSON cannot encode, cannot be written as UTF-8 either: orjson refuses that log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Final, Literal

import bson
from bson.errors import BSONError

from crm_audit_transform import reasons
from crm_audit_transform.domain import (
    NO_EXTERNAL_ID,
    SOURCE_TAG,
    ActivityLog,
    EncodedLog,
    Migrated,
    WriteResult,
)
from crm_audit_transform.packed import PackedOutcomes
from crm_audit_transform.ports import LogEncoder
from crm_audit_transform.usecases.pages import encoded_log

from ..mongo.document_limits import ID_BYTES, MAX_DOCUMENT_BYTES, too_large
from ..mongo.documents import encode_activity_log
from ..mongo.extended_json import relaxed_json_line, relaxed_json_line_bytes
from .errors import FileFormatError, FileWriteError, OutputLocked
from .keys import Token, WrittenKeys, new_packed_ids
from .lines import LONG_LINE_HEAD, PathLike, shallow_object, too_many_values
from .long_lines import skim_long_line

__all__ = [
    "JSONL_ENCODING",
    "FsyncMode",
    "JsonlActivityLogSink",
    "encode_log_line",
    "jsonl_log",
    "sink_line",
    "torn_start",
]


BSON_BYTES_PER_JSON_BYTE: Final = 7
"""An upper bound of BSON size over relaxed JSON length (see the module docstring)."""

FsyncMode = Literal["batch", "close", "never"]

_HELD_LINE_BYTES: Final = LONG_LINE_HEAD
"""A line of the file read back longer than this (1 MiB) is read on in blocks, never held whole."""
_KEY_MEMBERS: Final = ("company_sso_id", "external_id", "source_tag")
_LINE_STARTS: Final = (b'{"company_sso_id":"', b'{"company_sso_id": "')
"""How this sink's lines start: compact (orjson, today) and spaced (``json.dumps``, earlier releases)."""

JSONL_ENCODING: Final = "jsonl"
"""``EncodedLog.encoding`` of this sink's lines (``jsonl_log``)."""


def encode_log_line(log: ActivityLog) -> str:
    """The relaxed Extended JSON line (without newline) of one log's MongoDB document.

    ``json_util.loads`` reads it back as ``encode_activity_log(log)`` (see ``mongo.extended_json``).
    """
    return relaxed_json_line(log)


class JsonlActivityLogSink:
    """``ports.ActivityLogStore`` over a JSONL file (created if missing, appended to otherwise)."""

    __slots__ = ("_file", "_fsync", "_keys", "_migrated", "_owned", "_path")

    def __init__(
        self,
        path: PathLike,
        *,
        fsync: FsyncMode | bool = "batch",
    ) -> None:
        """``fsync``: ``"batch"``, ``"close"`` or ``"never"`` (``True``/``False`` mean batch/never).

        ``OSError`` (with ``filename``) when ``path`` cannot be read back and appended to: a pipe, a
        device or a directory — the sink re-reads its file to append without repeating a log.
        ``OutputLocked`` when another sink (of any process) has the file open.
        """
        self._path = os.fspath(path)
        if os.path.exists(self._path) and not os.path.isfile(self._path):
            why = "not a regular file (the log file is read back, then appended to)"
            raise OSError(errno.ESPIPE, why, self._path)
        self._fsync: FsyncMode = ("batch" if fsync else "never") if isinstance(fsync, bool) else fsync
        if self._fsync not in ("batch", "close", "never"):
            raise ValueError(f"fsync must be 'batch', 'close' or 'never', not {fsync!r}")
        self._keys = WrittenKeys()
        self._migrated: Counter[str] = Counter()
        self._owned = True
        self._file: IO[bytes] | None = _open_locked(self._path)
        try:
            self._recover()
            self._file.seek(0, os.SEEK_END)  # the recovery may have cut a torn line off the end
        except BaseException:
            self._file.close()
            raise

    @classmethod
    def over_stream(cls, stream: IO[bytes] | None, name: str = "<stream>") -> JsonlActivityLogSink:
        """A sink writing to an open binary stream (stdout), or, given None, to nowhere.

        Every log is encoded and checked exactly as for a file, so the write results — and a dry
        run's report — are the same whether or not the documents are kept. Nothing is read back
        (a stream starts empty), nothing is fsynced, the stream is flushed per batch and left open
        on ``close``, and ``delete_migrated`` only forgets the keys (a stream cannot be rewritten).
        """
        sink = cls.__new__(cls)
        sink._path = name
        sink._fsync = "never"
        sink._keys = WrittenKeys()
        sink._migrated = Counter()
        sink._owned = False
        sink._file = stream
        return sink

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"JsonlActivityLogSink({self._path!r})"

    def __enter__(self) -> JsonlActivityLogSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is None or self._file.closed:
            return
        try:
            if not self._owned:
                self._file.flush()
                return
            try:
                if self._fsync == "close":
                    self._file.flush()
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()
        except OSError as exc:
            raise _cannot_write(self._path, exc) from exc

    def log_encoder(self) -> LogEncoder:
        """``jsonl_log``: a log's line made where it was transformed, written here as it is."""
        return jsonl_log

    def insert_batch(self, logs: Sequence[ActivityLog | EncodedLog]) -> Sequence[WriteResult]:
        """Append the new logs as one write; duplicates and unencodable logs are reported, not written.

        An ``EncodedLog`` is written as ``jsonl_log`` made it (``TypeError`` for another encoding).
        """
        results: list[WriteResult] = []
        lines: list[bytes] = []
        added: dict[Token, None] = {}  # in batch order: ids then append to the key arrays
        migrated: list[str] = []  # the company of each inserted crm_migration log
        keys = self._keys
        for log in logs:
            external_id = log.external_id
            if not external_id:
                results.append(_failed(log, NO_EXTERNAL_ID))
                continue
            token = keys.token(log.company_sso_id, external_id)  # the key read once, for both uses
            if token in added or keys.has(token):
                results.append(WriteResult(external_id, "skipped", reasons.DUPLICATE_EXTERNAL_ID))
                continue
            if isinstance(log, EncodedLog):
                if log.encoding != JSONL_ENCODING:
                    raise TypeError(f"{self!r} writes {JSONL_ENCODING} lines, not {log.encoding}")
                problem, line = log.problem, log.data
            else:
                problem, line = sink_line(log)
            if problem:
                results.append(_failed(log, problem))
                continue
            lines.append(line)
            added[token] = None
            results.append(WriteResult(external_id, "inserted"))
            if log.source_tag == SOURCE_TAG:
                migrated.append(log.company_sso_id)
        if lines:
            self._append(b"".join(lines))
            for token in added:
                keys.add_token(token)
            self._migrated.update(migrated)
        return tuple(results)

    def insert_packed(self, outcomes: PackedOutcomes) -> Sequence[WriteResult] | None:
        """``insert_batch`` of the logs of a worker's packed step (``ports.PackedLogWriter``): when
        none of their keys is in the file yet (a run's usual step), their lines are appended as the
        one slice of the page's buffer they are, the keys added a block at a time, and None is
        returned; otherwise ``insert_batch`` of the logs, read row by row."""
        rows = outcomes.rows
        if rows.encoding != JSONL_ENCODING:
            raise TypeError(f"{self!r} writes {JSONL_ENCODING} lines, not {rows.encoding}")
        fresh = new_packed_ids(self._keys, outcomes)
        if fresh is None:
            return self.insert_batch([o.log for o in outcomes if isinstance(o, Migrated)])
        group, numbers = fresh
        self._append(outcomes.lines())
        self._keys.add_ascending(group, numbers)
        if rows.source_tag == SOURCE_TAG:
            self._migrated[rows.company] += len(numbers)
        return None

    def delete_migrated(self, company_sso_id: str) -> int:
        """Rewrite the file without this company's ``crm_migration`` logs; return how many went.

        The rewrite goes to a temporary file that replaces the original atomically, so a crash
        leaves either the old file or the new one. A second call deletes nothing and returns 0.
        A line longer than ``_HELD_LINE_BYTES`` (1 MiB) is read on in blocks for its three keys
        (``long_lines.skim_long_line``) and, when it stays, copied in blocks: never held whole.
        """
        if not self._migrated[company_sso_id]:
            return 0
        if not self._owned or self._file is None:
            return self._forget(company_sso_id)
        deleted: list[tuple[str, str]] = []
        directory = os.path.dirname(os.path.abspath(self._path))
        # The rewrite is locked before it replaces the file, and the old file's lock is let go
        # after: no other sink can take the file in between.
        descriptor, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        fcntl.fcntl(descriptor, fcntl.F_SETFL, fcntl.fcntl(descriptor, fcntl.F_GETFL) | os.O_APPEND)
        out = open(descriptor, "ab")  # noqa: SIM115 - becomes the sink's file
        try:
            _lock(out, self._path)
            with open(self._path, "rb") as source:
                number = 0
                while raw := source.readline(_HELD_LINE_BYTES):
                    number += 1
                    start, line = source.tell() - len(raw), raw
                    if len(raw) == _HELD_LINE_BYTES and not raw.endswith(b"\n"):
                        # A long line: read on in blocks for its three keys, never held whole.
                        line = skim_long_line(
                            self._path, number, raw, source.readline, _KEY_MEMBERS, _HELD_LINE_BYTES
                        )
                    doc = _keys_of(self._path, number, line)
                    if doc is not None and doc[0] == company_sso_id and _is_migrated(doc):
                        deleted.append((doc[0], doc[1]))
                        continue
                    if line is raw:
                        out.write(raw)
                    else:
                        _copy_span(source, out, start, source.tell())
            out.flush()
            os.fsync(out.fileno())
            os.replace(temporary, self._path)
        except BaseException as exc:
            out.close()
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                # A full disk mid-rewrite is the operator's, as for an append: FILE_ERROR, exit 7.
                raise _cannot_write(self._path, exc) from exc
            raise
        self._file.close()
        self._file = out
        self._keys.discard_all(deleted)
        self._migrated.pop(company_sso_id, None)
        return len(deleted)

    def _forget(self, company_sso_id: str) -> int:
        # A stream keeps no documents to delete; only what it was told it wrote is forgotten.
        return self._migrated.pop(company_sso_id, 0)

    def count_migrated(self, company_sso_id: str) -> int:
        """This company's ``crm_migration`` logs now in the file (earlier runs' included)."""
        return self._migrated[company_sso_id]

    def _append(self, data: bytes) -> None:
        if self._file is None:
            return
        if not self._owned:
            try:
                self._file.write(data)
                self._file.flush()
            except OSError as exc:
                raise _cannot_write(self._path, exc) from exc
            return
        start = self._file.tell()
        try:
            self._file.write(data)
            self._file.flush()
            if self._fsync == "batch":
                os.fsync(self._file.fileno())
        except OSError as exc:
            # If even this fails, the torn tail is removed when the file is next opened.
            with contextlib.suppress(OSError):
                self._file.truncate(start)
            raise _cannot_write(self._path, exc) from exc

    def _recover(self) -> None:
        """Learn the keys already in the file; drop a torn last line (never reported written).

        A last line without its newline that is a whole JSON document (a file edited by hand, or
        joined from parts) is kept and given its newline. One that does not parse is removed only
        when it is the start of a line this sink writes (``torn_start``): anything else is not this
        sink's output, and the file is refused (``FileFormatError``) and left as it is, as a file
        with a line that is not JSON is. A line longer than ``_HELD_LINE_BYTES`` is read on in
        blocks for its three keys (``long_lines.skim_long_line``), never held whole.
        """
        if not os.path.exists(self._path):
            return
        offset, number = 0, 0
        with open(self._path, "r+b") as existing:
            while raw := existing.readline(_HELD_LINE_BYTES):
                number += 1
                line, problem = raw, None
                if len(raw) == _HELD_LINE_BYTES and not raw.endswith(b"\n"):
                    try:
                        line = skim_long_line(
                            self._path, number, raw, existing.readline, _KEY_MEMBERS, _HELD_LINE_BYTES
                        )
                    except FileFormatError as error:
                        problem = error
                    end = existing.tell()
                    existing.seek(end - 1)
                    ended = existing.read(1) == b"\n"
                else:
                    end, ended = offset + len(raw), raw.endswith(b"\n")
                doc = None
                if problem is None:
                    try:
                        doc = _keys_of(self._path, number, line)
                    except FileFormatError as error:
                        problem = error
                if problem is not None:
                    if not ended and torn_start(raw):
                        existing.truncate(offset)
                        break
                    if not ended:
                        why = "not a JSON document, nor the start of a log cut off mid-write"
                        raise FileFormatError(
                            self._path, number, f"{why}: not this sink's output; the file is left as it is"
                        ) from problem
                    raise problem
                if not ended:
                    existing.seek(0, os.SEEK_END)
                    existing.write(b"\n")
                    end += 1
                offset = end  # where the file now is: the next line's start, or its end
                if doc is None:
                    continue
                self._keys.add((doc[0], doc[1]))
                if _is_migrated(doc):
                    self._migrated[doc[0]] += 1


def _cannot_write(path: str, exc: OSError) -> FileWriteError:
    """``cannot write activity logs to PATH: why``, naming the target once: an ``OSError`` from stdout
    carries ``<stdout>`` as its file name (``cli.standard_streams``), and ``str(exc)`` repeated it
    (``… to <stdout>: [Errno 28] No space left on device: '<stdout>'``)."""
    return FileWriteError(f"cannot write activity logs to {path}: {exc.strerror or exc}")


def _copy_span(source: IO[bytes], out: IO[bytes], start: int, end: int) -> None:
    """Copy ``source``'s bytes ``start:end`` to ``out`` in blocks of ``_HELD_LINE_BYTES``; ``source``
    is left at ``end``.

    Raises:
        FileWriteError: ``source`` ended before ``end`` (another process truncated the file the sink
            holds locked); the rewrite is abandoned and the file is left as it was.
    """
    source.seek(start)
    left = end - start
    while left > 0:
        block = source.read(min(left, _HELD_LINE_BYTES))
        if not block:
            raise FileWriteError(
                f"cannot rewrite activity logs in {source.name}: it shrank while it was read"
            )
        out.write(block)
        left -= len(block)


def torn_start(raw: bytes) -> bool:
    """Whether ``raw`` (a last line, unterminated) is a start of a line this sink writes, or wrote in
    an earlier release: ``{"company_sso_id":"`` (compact) or ``{"company_sso_id": "`` (spaced), or a
    part of one of them."""
    return any(prefix.startswith(raw[: len(prefix)]) for prefix in _LINE_STARTS)


def _open_locked(path: str) -> IO[bytes]:
    """``path`` opened to append (created if missing) under this process's exclusive ``flock``.

    A file replaced between the open and the lock (another sink's ``delete_migrated``) is opened
    again, so the lock held is the one on the file the path names.
    """
    for _ in range(3):
        file = open(path, "ab")  # noqa: SIM115 - held open until the sink is closed
        try:
            _lock(file, path)
            if os.fstat(file.fileno()).st_ino == os.stat(path).st_ino:
                return file
        except BaseException:
            file.close()
            raise
        file.close()
    raise OutputLocked(path)


def open_locked_for_writing(path: str) -> IO[str]:
    """``path`` opened to write UTF-8 text from its start (created if missing, emptied once locked),
    under the same exclusive ``flock`` as the sink's: ``OutputLocked`` while another writer holds
    it, so a side file (``--report``, ``--outcomes``) never overwrites a file another dry run is
    writing. Only a regular file is emptied (a device or pipe has nothing to truncate).

    Their writers give it valid UTF-8 (``strict_json``: a name that is not UTF-8 as U+FFFD, its bytes
    in a ``not_utf8`` member). A lone surrogate that reached the file all the same would be written
    as its escape ``\\udcXX``, never fail the dry run: a strict encoder failed the whole dry run
    (``INTERNAL``) on a detail naming such a file.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    file = open(descriptor, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115 - the caller closes it
    try:
        _lock(file, path)
        if os.path.isfile(path):
            file.truncate(0)
    except BaseException:
        file.close()
        raise
    return file


def _lock(file: IO[bytes] | IO[str], path: str) -> None:
    """An exclusive ``flock`` on ``file`` until it is closed; ``OutputLocked`` if another holds one."""
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputLocked(path) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):  # no flock there: written unlocked
            raise


def sink_line(log: ActivityLog) -> tuple[str, bytes]:
    """``("", line)`` — the line this sink writes for ``log``, newline included — or
    ``(why, b"")`` when the log cannot be written (as the Mongo adapter would refuse it)."""
    try:
        line = relaxed_json_line_bytes(log)  # the newline included: one bytes object, not two
        # mongoimport adds an ObjectId ``_id`` to a line without one, and MongoDB's limit counts it.
        if (len(line) - 1) * BSON_BYTES_PER_JSON_BYTE + ID_BYTES > MAX_DOCUMENT_BYTES:
            size = len(bson.encode(encode_activity_log(log))) + ID_BYTES
            if size > MAX_DOCUMENT_BYTES:
                return too_large(size), b""
    except (TypeError, ValueError, OverflowError, BSONError) as exc:
        return f"cannot encode the document: {exc}", b""
    return "", line


def jsonl_log(log: ActivityLog) -> EncodedLog:
    """``log`` with its line as ``sink_line`` makes it (``JsonlActivityLogSink.log_encoder``)."""
    problem, line = sink_line(log)
    return encoded_log(log, JSONL_ENCODING, line, problem)


def _failed(log: ActivityLog | EncodedLog, detail: str) -> WriteResult:
    return WriteResult(log.external_id, "failed", reasons.WRITE_ERROR, detail)


def _keys_of(path: str, number: int, raw: bytes) -> tuple[str, str, str] | None:
    """``(company_sso_id, external_id, source_tag)`` of a stored line; None for a log without key."""
    if not raw.strip():
        return None
    try:
        # A line of too many values: its members of too many are kept as their text, never decoded.
        doc: object = shallow_object(raw.decode()) if too_many_values(raw) else json.loads(raw)
    except ValueError as exc:
        raise FileFormatError(path, number, f"not a JSON document: {exc}") from exc
    if not isinstance(doc, dict):
        raise FileFormatError(path, number, "not a JSON object")
    company, external_id = doc.get("company_sso_id"), doc.get("external_id")
    if not isinstance(company, str) or not isinstance(external_id, str) or not external_id:
        return None  # a log without our key (native); kept, never matched
    source_tag = doc.get("source_tag")
    return company, external_id, source_tag if isinstance(source_tag, str) else ""


def _is_migrated(doc: tuple[str, str, str]) -> bool:
    return doc[2] == SOURCE_TAG
