"""What a file source saw of its audits file, checked each time it opens it again: a file changed
under a running job is refused, not read as if it were the same one.

A read's own check (``lines.check_read_whole``) holds one read to the size the file had when that
read opened it. A source opens its file several times in one run (the scope pass, the pages, a
resume's read from the start, the byte ranges of ``--workers``), and a file cut, rewritten or
replaced between two of those opens left no trace: the later read took the new file for the old
one. ``FileMark`` keeps, from the source's previous look, the file's size and two samples of its
bytes (its first ``SAMPLE_BYTES``, and the ``SAMPLE_BYTES`` before that size): the file may only
have grown past that size since (rows appended, the case a file source supports, docs/files.md),
so a smaller file, or other bytes in either sample, is another file.

At the same size it also keeps the file's device, inode and modification time: rows appended grow
a file, so the same size with another of those is a write (in place anywhere, or another file moved
over it). Not caught by ``FileMark``: bytes rewritten away from both samples in a file that also
grew, or whose modification time was set back after the write.

Between two runs in different processes, the job keeps the file's digest instead (``digest_mark``,
``ports.SourceMarks``): its size and the SHA-256 of its bytes when the job was made, and its stamp
(device, inode, modification and change times) when it was last written long enough before
(``RACY_NS``), on a file system that keeps change times (``mounts``). Each run, and verify, checks
it before it reads a row (``digest_changed``): the file may only have grown past that size since,
every byte before it the same. One read of the file at the trigger, at the speed of SHA-256 (about
1 GB/s here, benchmarks/RESULTS.md "Source marks"); at a check, one ``fstat`` while the stamp is as
it was, else one read of the marked bytes.

A run that reads past a job's mark (rows appended since) grows it first (``GrowingMark.grown``,
``ports.SourceMarks.grown_mark``): the job's mark then covers every row the run hands over, so a
later run, or verify, refuses a file whose rows behind its cursor were rewritten, appended ones
included. The SHA-256 state a check or a growth reached is kept, so a mark grows by a read of the
bytes appended since alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from typing import Final, Protocol

from . import mounts
from .errors import FileChangedWhileRead
from .lines import PathLike


class _Digest(Protocol):
    """What this module asks of a running SHA-256 (``hashlib.sha256()``)."""

    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> _Digest: ...


@contextlib.contextmanager
def _opened(path: PathLike) -> Iterator[tuple[int, os.stat_result] | None]:
    """The file's descriptor, opened to read, and its status, closed on exit; None when it cannot
    be opened (the read that follows says why). Not blocking: opening a FIFO for reading would wait
    for a writer."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        yield None
        return
    try:
        yield descriptor, os.fstat(descriptor)
    finally:
        os.close(descriptor)


SAMPLE_BYTES: Final = 4096
"""The bytes of each sample: the file's first, and those before the size last seen (one page each)."""


class FileMark:
    """The size and samples of a file as a source last looked at it (``check``); none before the
    first look, nor for a file that is not a regular one (a pipe has no size and no bytes to read
    twice)."""

    __slots__ = ("_head", "_path", "_size", "_stamp", "_tail")

    def __init__(self, path: PathLike) -> None:
        self._path = path
        self._size: int | None = None
        self._head = self._tail = b""
        self._stamp: tuple[int, int, int] | None = None

    @property
    def size(self) -> int | None:
        """The file's bytes when last looked at: a later read must reach them (None: not known)."""
        return self._size

    def check(self) -> None:
        """Look at the file as it is now, and keep that look for the next.

        ``FileFormatError`` (``BAD_INPUT``) when it holds fewer bytes than the last look found, or
        other bytes in that look's samples, or the same number of bytes but another device, inode
        or modification time (written in place or replaced at the same size, which rows appended
        never are): it changed while the run read it (rewritten, cut short, replaced). A file that
        cannot be opened is let be: the read that follows says why. One ``open``, one ``fstat`` and
        two reads of ``SAMPLE_BYTES`` a call.
        """
        with _opened(self._path) as opened:
            if opened is None:
                return
            descriptor, status = opened
            if not stat.S_ISREG(status.st_mode):
                return
            size, seen = status.st_size, self._size
            if seen is not None:
                if size < seen:
                    raise FileChangedWhileRead(
                        self._path,
                        1,
                        f"the file holds {size} bytes, short of the {seen} bytes it held when this run "
                        "read it before: it changed while it was read",
                    )
                head, tail = _samples(descriptor, seen)
                if head != self._head or tail != self._tail:
                    where = (
                        f"its first {len(head)} bytes"
                        if head != self._head
                        else f"the bytes before byte {seen}"
                    )
                    raise FileChangedWhileRead(
                        self._path,
                        1,
                        f"the file's bytes ({where}) are not those this run read before: "
                        "it changed while it was read (rewritten or replaced)",
                    )
            if size == seen and self._stamp is not None and _stamp(status) != self._stamp:
                # Rows are appended, never written at the same size: a write there (in place,
                # anywhere, or another file moved over it) is a rewrite the samples may miss.
                raise FileChangedWhileRead(
                    self._path,
                    1,
                    f"the file holds the same {size} bytes as when this run read it before, but was "
                    "written or replaced since: it changed while it was read",
                )
            self._size, self._stamp = size, _stamp(status)
            self._head, self._tail = _samples(descriptor, size)


def _stamp(status: os.stat_result) -> tuple[int, int, int]:
    """What a write to a file, or another file moved in its place, changes besides its bytes: its
    device and inode and its modification time (nanoseconds). Not its change time, which a
    ``chmod`` or a new hard link moves too: at the same size a changed stamp is refused outright,
    so it should mean a write."""
    return status.st_dev, status.st_ino, status.st_mtime_ns


def _samples(descriptor: int, size: int) -> tuple[bytes, bytes]:
    """The file's first ``SAMPLE_BYTES`` and the ``SAMPLE_BYTES`` before ``size`` (fewer in a
    smaller file)."""
    width = min(SAMPLE_BYTES, size)
    return os.pread(descriptor, width, 0), os.pread(descriptor, width, size - width)


DIGEST: Final = "sha256"
"""The digest of a file's mark (``digest_mark``): its first word."""
_BLOCK: Final = 1 << 20
"""The bytes read a step while a file is digested: memory stays flat at any size."""


RACY_NS: Final = 3_000_000_000
"""How long before a mark is taken its file must have been last written (its change time, in
nanoseconds) for the mark to keep the file's stamp (``digest_mark``): a write later than the mark
then gets a later change time, even on a file system whose times are coarse (a second; FAT's
modification time, two). A file written more recently is digested again at every check."""


def digest_mark(path: PathLike) -> str | None:
    """``sha256:{size}:{hex digest}[:{stamp}]`` of the regular file's bytes as they are now (ASCII,
    under 200 characters: no byte of the file, no path); None for a file that cannot be opened (the
    read that follows says why) or that is not a regular one (a pipe cannot be read twice).

    The stamp, ``{device}.{inode}.{mtime_ns}.{ctime_ns}``, is what ``digest_changed`` compares
    first, to pass over the digest of a file no one wrote since: kept only when the file's status
    was the same before and after it was digested and its change time is ``RACY_NS`` or more before
    the mark was taken (as git's index trusts only entries older than itself, its "racy git" rule),
    and only on a file system known to keep change times (``mounts.CHANGE_TIMES_KEPT``: local ones
    such as ext4, xfs, btrfs, tmpfs; not FUSE or network mounts, nor any whose type cannot be read,
    such as every file off Linux).
    """
    with _opened(path) as opened:
        if opened is None or not stat.S_ISREG(opened[1].st_mode):
            return None
        descriptor, before = opened
        digest, size = _digest(descriptor, None)
        after = os.fstat(descriptor)
    mark = f"{DIGEST}:{size}:{digest.hexdigest()}"
    stamp = _digest_stamp(after)
    if stamp != _digest_stamp(before) or after.st_size != size:
        return mark  # written while it was digested: only the digest tells
    if time.time_ns() - max(after.st_ctime_ns, after.st_mtime_ns) < RACY_NS:
        return mark  # a write right after this mark could keep the same times
    if not mounts.keeps_change_times(after.st_dev):
        # sshfs reports the modification time as the change time (other FUSE and network
        # mounts what their remote says): a same-size rewrite with its mtime kept (`cp -p`)
        # would keep the whole stamp, and pass unread.
        return mark
    return f"{mark}:{stamp}"


def digest_changed(path: PathLike, mark: str) -> str | None:
    """None while the file holds the bytes ``mark`` (a ``digest_mark``) was taken of, rows appended
    after them allowed; else why not, in a few words of byte counts (``SourceChanged``'s reason):
    a file that holds fewer bytes, other bytes before that size, or is not a regular file now, or a
    mark no file source makes. A file that cannot be opened is let be: the read that follows says
    why.

    When the mark keeps a stamp and the file's status holds it still (the same device, inode and
    size, modification and change times to the nanosecond), nothing was written to it since the
    mark (the kernel moves its change time at every write, and no call sets that time back): None
    at the cost of one ``fstat``. Otherwise (rows appended, a ``touch``, a ``chmod``, another file
    moved over it) the file's first ``size`` bytes are read once, ``_BLOCK`` at a time, and
    decide. Not caught by the stamp: bytes changed beneath the file system (on its block device, or
    a file system that reports them but does not keep them, which ``digest_mark`` stamps only when it
    knows the type), or under a clock set back past the mark.
    """
    return GrowingMark(path).changed(mark)


class GrowingMark:
    """A job's mark of its file as one source checks it (``changed``, before a run or verify reads
    a row) and grows it over rows appended since (``grown``, before the run hands one over).

    It keeps the SHA-256 state of the file's first bytes as its last check or growth read them
    (and when that read began), so a mark is grown by reading the bytes past it alone: the check
    that found rows appended read the marked bytes already. It also keeps the state at the mark its
    last growth grew from (``_base``): another shard's run may store a growth shorter than this
    one's, and this one's next growth, from that mark, then reads on from there, not from the
    file's first byte (``usecases._source_check.grow_source_mark``).
    """

    __slots__ = ("_base", "_hashed", "_path", "_read", "_since_ns")

    def __init__(self, path: PathLike) -> None:
        self._path = path
        # The SHA-256 of the file's first ``_read`` bytes, read from ``_since_ns`` (wall clock) on.
        self._hashed: _Digest | None = None
        self._read = 0
        self._since_ns = 0
        # The same at the mark the last growth grew from: (its state, its bytes, since).
        self._base: tuple[_Digest, int, int] | None = None

    def changed(self, mark: str) -> str | None:
        """``digest_changed``'s answer; the state of a digest it read is kept for ``grown``."""
        parsed = _parsed(mark)
        if parsed is None:
            return _FOREIGN
        seen, expected, stamp = parsed
        with _opened(self._path) as opened:
            if opened is None:
                return None
            descriptor, status = opened
            if not stat.S_ISREG(status.st_mode):
                return "the file is not a regular file now: it cannot be checked against the job's"
            if (
                stamp is not None
                and status.st_size == seen
                and _digest_stamp(status) == stamp
                # A stamp taken where change times are not kept (by a release that stamped every
                # file system) proves nothing there: digest.
                and mounts.keeps_change_times(status.st_dev)
            ):
                return None
            since = time.time_ns()
            digest, size = _digest(descriptor, seen)
        if size < seen:
            return f"the file holds {size} bytes, short of the {seen} bytes it held when the job was made"
        if digest.hexdigest() != expected:
            return f"its first {seen} bytes are not those the job was made over"
        self._hashed, self._read, self._since_ns = digest, seen, since
        return None

    def grown(self, mark: str) -> str | None:
        """``mark`` grown over the whole file as it is now, when the file holds more bytes than
        ``mark`` covers (rows appended since): a mark of its size and SHA-256 (``digest_mark``'s
        form), which covers everything a read of it has handed so far; None while it holds no
        more (one ``stat``), or when it cannot be told (a file gone, not a regular one, a mark of
        another kind: the read, or the next check, says why).

        Reads the bytes past those its last check or growth read (all of them after a check that
        passed on the stamp alone), and ``FileChangedWhileRead`` (``BAD_INPUT``) when those it
        read up to ``mark``'s size are not the ones ``mark`` was taken of: the file changed under
        the run. Bytes read before are not read again: a change to them since makes a grown mark
        of bytes the file no longer holds, which the next check (a run's, verify's) refuses. The
        grown mark keeps a stamp (as ``digest_mark``'s) only when the file was last written
        ``RACY_NS`` or more before that read began and not during it, on a mount that keeps change
        times.
        """
        parsed = _parsed(mark)
        if parsed is None:
            return None
        seen, expected, _ = parsed
        try:
            if os.stat(self._path).st_size <= seen:
                return None
        except OSError:
            return None
        with _opened(self._path) as opened:
            if opened is None or not stat.S_ISREG(opened[1].st_mode):
                return None
            descriptor, before = opened
            digest, read, since = self._hashed, self._read, self._since_ns
            if (digest is None or read > seen) and self._base is not None and self._base[1] <= seen:
                # Read past this mark (a mark another shard's run grew less far than this one's
                # last growth), but not past the one that growth grew from: on from that.
                digest, read, since = self._base[0].copy(), self._base[1], self._base[2]
            elif digest is None or read > seen:
                # Nothing read yet (the check passed on the stamp), or read past this mark: from
                # the first byte.
                digest, read, since = _new_digest(), 0, time.time_ns()
            self._hashed = self._base = None  # taken over; kept again below once it is the file's
            read += _feed(descriptor, digest, read, seen)
            if read < seen or digest.hexdigest() != expected:
                raise FileChangedWhileRead(
                    self._path,
                    1,
                    f"its first {seen} bytes are not those its job's mark was taken of: it changed "
                    "while it was read",
                )
            self._base = digest.copy(), seen, since
            size = read + _feed(descriptor, digest, read, None)
            after = os.fstat(descriptor)
        self._hashed, self._read, self._since_ns = digest, size, since
        grown = f"{DIGEST}:{size}:{digest.hexdigest()}"
        stamp = _digest_stamp(after)
        if (
            stamp == _digest_stamp(before)
            and after.st_size == size
            # No write since ``since`` (which would move the change time past it, however coarse
            # the file system's times), nor in the RACY_NS before: the bytes read are the file's.
            and max(after.st_ctime_ns, after.st_mtime_ns) + RACY_NS <= since
            and mounts.keeps_change_times(after.st_dev)
        ):
            return f"{grown}:{stamp}"
        return grown

    def covers(self, mark: str, grown: str) -> bool:
        """Whether ``mark`` (another run's growth of the job's mark, stored first) covers every
        byte ``grown`` (this object's last ``grown`` answer) covers, with the same digest there:
        at the same size the digests are compared; past it, the bytes between are read on from
        this growth's state (those appended between the two reads), and the digest then compared.
        False when it covers fewer bytes, or ``grown`` is not this object's last growth.

        ``FileChangedWhileRead`` (``BAD_INPUT``) when the digests differ, or the file now holds
        fewer bytes than ``grown``: it changed while the runs read it.
        """
        theirs, ours = _parsed(mark), _parsed(grown)
        if theirs is None or ours is None:
            return False
        if theirs[0] < ours[0]:
            try:
                size: int | None = os.stat(self._path).st_size
            except OSError:
                size = None
            if size is not None and size < ours[0]:
                raise self._changed_under_runs(ours[0])
            return False
        if theirs[0] == ours[0]:
            if theirs[1] != ours[1]:
                raise self._changed_under_runs(ours[0])
            return True
        digest, read = self._hashed, self._read
        if digest is None or read != ours[0] or digest.hexdigest() != ours[1]:
            return False
        self._hashed = None  # taken over; kept again below once it is the file's
        with _opened(self._path) as opened:
            if opened is None:
                return False
            read += _feed(opened[0], digest, read, theirs[0])
        if read < theirs[0] or digest.hexdigest() != theirs[1]:
            raise self._changed_under_runs(theirs[0])
        self._hashed, self._read = digest, read
        return True

    def _changed_under_runs(self, size: int) -> FileChangedWhileRead:
        return FileChangedWhileRead(
            self._path,
            1,
            f"its first {size} bytes are not those another run's mark of the job was taken of: it "
            "changed while it was read",
        )


def _parsed(mark: str) -> tuple[int, str, str | None] | None:
    """A ``digest_mark``'s size, hex digest and stamp (None: it keeps none); None for a mark no
    file source makes."""
    parts = mark.split(":")
    if len(parts) not in (3, 4):
        return None
    kind, text, expected = parts[:3]
    if kind != DIGEST or not text.isdigit() or not text.isascii() or len(expected) != 64:
        return None
    return int(text), expected, parts[3] if len(parts) == 4 else None


_FOREIGN: Final = "the job's mark of its file is not one a file source makes"


def _digest_stamp(status: os.stat_result) -> str:
    """``{device}.{inode}.{mtime_ns}.{ctime_ns}``: what ``digest_changed`` compares before a digest."""
    return f"{status.st_dev}.{status.st_ino}.{status.st_mtime_ns}.{status.st_ctime_ns}"


def _new_digest() -> _Digest:
    # Imported here, not with the module: a dry run takes no mark, and loading OpenSSL's hashlib
    # is start-up time it would pay for nothing (tests/e2e/test_cli_imports.py).
    import hashlib

    return hashlib.sha256()


def _digest(descriptor: int, limit: int | None) -> tuple[_Digest, int]:
    """The SHA-256 of the file's first ``limit`` bytes (all of them: None) and how many it read:
    fewer than ``limit`` when the file ends before."""
    digest = _new_digest()
    return digest, _feed(descriptor, digest, 0, limit)


def _feed(descriptor: int, digest: _Digest, start: int, limit: int | None) -> int:
    """Hash the file's bytes from ``start`` to ``limit`` (to its end: None) into ``digest``,
    ``_BLOCK`` at a time (memory stays flat); how many it read: fewer when the file ends before."""
    block = bytearray(_BLOCK)
    view = memoryview(block)
    read = 0
    at = start
    while limit is None or at < limit:
        want = _BLOCK if limit is None else min(_BLOCK, limit - at)
        got = os.preadv(descriptor, [view[:want]], at)
        if got == 0:
            break
        digest.update(view[:got])
        read += got
        at += got
    return read
