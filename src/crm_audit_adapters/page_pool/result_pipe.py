"""A page worker's result pipe sized for a page, so the worker does not wait for the runner to read it.

``ProcessPoolExecutor`` sends each task's result back on one pipe (its ``SimpleQueue``), written
whole by the worker before it takes its next task. Linux's pipe holds 64 KiB by default, and a
page's result (its encoded logs: about 440 KiB for 500 rows of the benchmarks' data) is several
times that, so the worker waited until the runner's thread reading that pipe had taken all of it.
That thread needs the GIL for each chunk, and takes it back from the runner's main thread —
transforming a page of its own — only at the interpreter's switch interval (5 ms): the worker stood
still while the runner took its steps (benchmarks/RESULTS.md, issue 15 goal 2, "the worker's result
pipe"). With the pipe as large as ``RESULT_PIPE_BYTES`` the worker's write returns at once and it
goes on to its next page.

Linux only (``fcntl.F_SETPIPE_SZ``); elsewhere, or where the system caps pipes lower
(``/proc/sys/fs/pipe-max-size``, 1 MiB by default for an unprivileged process), the pipe stays as
it is: the same results, only the wait.
"""

from __future__ import annotations

import contextlib
import fcntl
from concurrent.futures import ProcessPoolExecutor
from typing import Final

__all__ = ["RESULT_PIPE_BYTES", "result_pipe_bytes", "widen_result_pipe"]

RESULT_PIPE_BYTES: Final = 1 << 20
"""The size asked for: Linux's default ceiling for an unprivileged process, two pages' results."""


def _result_fd(executor: ProcessPoolExecutor) -> int | None:
    """The file descriptor of ``executor``'s result pipe (its read end), if this Python has one
    where 3.11–3.13 keep it (``_result_queue._reader``)."""
    reader = getattr(getattr(executor, "_result_queue", None), "_reader", None)
    fileno = getattr(reader, "fileno", None)
    return fileno() if callable(fileno) else None


def widen_result_pipe(executor: ProcessPoolExecutor, size: int = RESULT_PIPE_BYTES) -> None:
    """Ask for ``size`` bytes of buffer on ``executor``'s result pipe; nothing if it cannot be had."""
    fd = _result_fd(executor)
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if fd is None or set_size is None:
        return
    with contextlib.suppress(OSError):  # over the system's ceiling: the pipe stays as it is
        fcntl.fcntl(fd, set_size, size)


def result_pipe_bytes(executor: ProcessPoolExecutor) -> int | None:
    """The buffer of ``executor``'s result pipe in bytes; None where it cannot be read."""
    fd = _result_fd(executor)
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if fd is None or get_size is None:
        return None
    return fcntl.fcntl(fd, get_size)
