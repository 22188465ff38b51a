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

Not caught: a change that keeps the size and both samples (bytes rewritten in place in the middle
of the file, away from both ends), and anything between two runs in different processes (nothing
is kept with the job; ``SourceChanged`` catches a resume's cursor id holding fewer rows).
"""

from __future__ import annotations

import os
import stat
from typing import Final

from .errors import FileFormatError
from .lines import PathLike

SAMPLE_BYTES: Final = 4096
"""The bytes of each sample: the file's first, and those before the size last seen (one page each)."""


class FileMark:
    """The size and samples of a file as a source last looked at it (``check``); none before the
    first look, nor for a file that is not a regular one (a pipe has no size and no bytes to read
    twice)."""

    __slots__ = ("_head", "_path", "_size", "_tail")

    def __init__(self, path: PathLike) -> None:
        self._path = path
        self._size: int | None = None
        self._head = self._tail = b""

    @property
    def size(self) -> int | None:
        """The file's bytes when last looked at: a later read must reach them (None: not known)."""
        return self._size

    def check(self) -> None:
        """Look at the file as it is now, and keep that look for the next.

        ``FileFormatError`` (``BAD_INPUT``) when it holds fewer bytes than the last look found, or
        other bytes in that look's samples: it changed while the run read it (rewritten, cut short,
        replaced). A file that cannot be opened is let be: the read that follows says why. One
        ``open``, one ``fstat`` and two reads of ``SAMPLE_BYTES`` a call.
        """
        try:
            # Not blocking: opening a FIFO for reading would wait for a writer.
            descriptor = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                return
            size, seen = status.st_size, self._size
            if seen is not None:
                if size < seen:
                    raise FileFormatError(
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
                    raise FileFormatError(
                        self._path,
                        1,
                        f"the file's bytes ({where}) are not those this run read before: "
                        "it changed while it was read (rewritten or replaced)",
                    )
            self._size = size
            self._head, self._tail = _samples(descriptor, size)
        finally:
            os.close(descriptor)


def _samples(descriptor: int, size: int) -> tuple[bytes, bytes]:
    """The file's first ``SAMPLE_BYTES`` and the ``SAMPLE_BYTES`` before ``size`` (fewer in a
    smaller file)."""
    width = min(SAMPLE_BYTES, size)
    return os.pread(descriptor, width, 0), os.pread(descriptor, width, size - width)
