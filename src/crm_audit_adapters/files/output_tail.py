"""A dry run's output read back after a kill mid-write: its torn last line, and the file before it.

The sink writes a batch in one ``write`` and reports it written only once that returns, so a kill
during the write can leave the file's last line cut off: the start of one of its lines, with no
newline. The sink itself drops such a line when it next opens the file (``sink.torn_start``).
``dry-run --verify`` of an output whose dry run did not finish (its progress file,
``dry_run_progress``) reads the file as that sink would find it: up to the torn line (``torn_tail``,
``upto``), without changing the file (docs/files.md, "Verify a dry run").
"""

from __future__ import annotations

import io
import os
from typing import IO, Final

from .errors import FileFormatError
from .lines import LONG_LINE_HEAD, PathLike
from .log_index import LogIndex
from .sink import torn_start

__all__ = ["torn_tail", "upto"]

_BLOCK: Final = LONG_LINE_HEAD
"""The file's end is searched back for its last newline this many bytes (1 MiB) at a time."""


def torn_tail(stream: IO[bytes], name: PathLike) -> int | None:
    """The offset of ``stream``'s last line when the sink would drop it as torn on open, else None.

    Torn: it has no newline, is not a JSON object (read as the index reads a line: a long one in
    blocks, ``LogIndex.of_stream``), and is the start of a line the sink writes (``torn_start``).
    A last line that is a whole document lacking only its newline is not torn (the sink keeps it);
    one that is neither is no crash state of the sink's and is left to the index, which refuses it.
    Reads the file's end back to its last newline, and that line once more; the stream is left
    anywhere. Memory: at most 1 MiB at a time.
    """
    size = stream.seek(0, os.SEEK_END)
    if size == 0:
        return None
    stream.seek(size - 1)
    if stream.read(1) == b"\n":
        return None
    start, end = 0, size - 1
    while end > 0:  # back to the last newline
        begin = max(0, end - _BLOCK)
        stream.seek(begin)
        found = stream.read(end - begin).rfind(b"\n")
        if found >= 0:
            start = begin + found + 1
            break
        end = begin
    stream.seek(start)
    if not torn_start(stream.read(len(b'{"company_sso_id": "'))):
        return None
    stream.seek(start)
    try:
        LogIndex.of_stream(stream, name)
    except FileFormatError:
        return start
    return None


class _Upto(io.RawIOBase):
    """The first ``limit`` bytes of a binary stream, read from where it is."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__()
        self._stream, self._left = stream, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._left)
        if wanted <= 0:
            return 0
        data = self._stream.read(wanted)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def upto(stream: IO[bytes], limit: int) -> IO[bytes]:
    """``stream`` from its start that ends after ``limit`` bytes (what the index reads of a file
    whose torn last line starts there)."""
    stream.seek(0)
    return io.BufferedReader(_Upto(stream, limit), buffer_size=_BLOCK)
