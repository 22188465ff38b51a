"""stdout and stderr as the console script writes them: closed ones opened, a failed write named.

* **Named.** An ``OSError`` from writing a standard stream names no file: ``>/dev/full`` ended
  ``error: FILE_ERROR: [Errno 28] No space left on device``, ``>&-`` ``[Errno 9] Bad file
  descriptor``, saying nothing of what could not be written. ``open_standard_streams`` puts stdout
  and stderr on files whose failed write raises the same error (same ``errno``, so a broken pipe is
  still a ``BrokenPipeError``) with ``filename`` ``<stdout>`` or ``<stderr>``:
  ``error: FILE_ERROR: cannot write to stdout: No space left on device`` (``exit_codes.one_line``).
  A failed write to stderr can be said only where the error goes elsewhere (``--json``'s error
  document on stdout); the exit code says it either way.
* **Settled.** What a failed write left in a stream's buffer would be written again by the
  interpreter's exit, fail again, print ``Exception ignored`` and end the process with
  exit 120 instead of the reported code (with ``PYTHONUNBUFFERED`` unset, the default: Python then
  buffers the standard streams). ``settle`` drops it once the command has reported its error.
* **Closed ones opened.** A stream the script was started without (``<&-``, ``>&-``, ``2>&-``:
  Python's ``None``) is given what a closed one means to any Unix tool, on a file descriptor of its
  own. stdin: an empty input (``/dev/null``), so a prompt reads an end of file (``rollback``: no
  answer, ``DECLINED``, exit 9, as with ``</dev/null``), where ``input()`` would raise
  ``RuntimeError: lost sys.stdin``, reported ``INTERNAL`` (exit 1). stdout and stderr: a file every
  write to fails (EBADF), reported ``FILE_ERROR`` (exit 7), where click would drop every line
  written to a missing stream (``status --json``, ``run``'s summary and the dry run's report on
  stdout lost with exit 0) and ``dry-run --out -`` would end ``INTERNAL``, as would a dry run's
  progress line on a closed stderr.

Only the interpreter's own streams are replaced (a ``TextIOWrapper`` on descriptor 1 or 2): the
console script's. An in-process caller's (click's ``CliRunner``, a test's capture) are left alone.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["STDERR", "STDOUT", "open_standard_streams", "settle"]

STDOUT: Final = "<stdout>"
"""The ``filename`` of an ``OSError`` from writing stdout."""
STDERR: Final = "<stderr>"
"""The ``filename`` of an ``OSError`` from writing stderr."""


class _StandardFile(io.FileIO):
    """A standard stream's descriptor (left open when this closes) whose failed write names it."""

    def __init__(self, fd: int, label: str) -> None:
        super().__init__(fd, "w", closefd=False)
        self.label = label
        self.failed = False
        self.settled = False

    def write(self, data: ReadableBuffer, /) -> int:
        if self.failed and self.settled:
            # The command has reported the failure: what is left is the exit's flush of a stream
            # that cannot take it. Dropped, as it was lost when the first write failed.
            return memoryview(data).nbytes
        try:
            return super().write(data)
        except OSError as error:
            self.failed = True
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, self.label) from None


_OPENED: list[_StandardFile] = []


def open_standard_streams() -> None:
    """Open what the script was started without (stdin, stdout, stderr), and name stdout and stderr
    in the errors of their writes (the module docstring)."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the process's stdin from now on
    sys.stdout = _named(sys.stdout, 1, STDOUT)
    sys.stderr = _named(sys.stderr, 2, STDERR)


def settle() -> None:
    """After the command has reported: a stream whose write failed drops what its buffer still
    holds, so that the interpreter's exit does not fail on it again (the module docstring)."""
    for file in _OPENED:
        file.settled = True


def _named(stream: TextIO | None, fd: int, label: str) -> TextIO:
    """``stream`` (descriptor ``fd``) on a ``_StandardFile``, with its encoding and buffering; a
    missing one on a descriptor of its own that every write fails on; any other left as it is."""
    if stream is None:
        # Opened for reading only, so that each write fails as on the closed descriptor; written
        # through, so that a failed write leaves nothing for the exit's flush to fail on again.
        raw = _StandardFile(os.open(os.devnull, os.O_RDONLY), label)
        _OPENED.append(raw)
        return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", write_through=True)
    if not isinstance(stream, io.TextIOWrapper) or _descriptor(stream) != fd:
        return stream
    stream.flush()
    raw = _StandardFile(fd, label)
    _OPENED.append(raw)
    # Buffered as the interpreter buffered it: unbuffered (``-u``, ``PYTHONUNBUFFERED``) writes to
    # the file at once; else through a buffer that each of click's writes flushes.
    buffer = raw if isinstance(stream.buffer, io.RawIOBase) else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffer,
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )


def _descriptor(stream: io.TextIOWrapper) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None
