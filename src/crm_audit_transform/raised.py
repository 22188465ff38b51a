"""A bug named by its type and where it was raised, never by its message.

An unexpected error's message may quote what it met — a value of a row (``KeyError: 'hunter2'``),
a field a driver could not convert — and no filter knows to scrub it (filters scrub configured
secrets). Where such an error is reported (a failed row's detail, the runner's ``error: INTERNAL:``
line, the HTTP server's ERROR log) it is named from the code instead: its type, its frames (file,
line, function) and those of the errors it came from. ``--debug`` is the runner's way to the full
traceback.

Pure: frames are read from the traceback objects; a frame's source line is looked up (a read of
the module's file, through ``linecache``) only when the caller asks for it.
"""

from __future__ import annotations

import traceback
from pathlib import PurePath


def _frames(error: BaseException, *, source_lines: bool) -> traceback.StackSummary:
    return traceback.StackSummary.extract(traceback.walk_tb(error.__traceback__), lookup_lines=source_lines)


def raised_at(error: BaseException) -> str:
    """``KeyError in lookup (rules.py:42)``: ``error``'s type, and the function, file name and line
    of the frame that raised it (its traceback's innermost frame); the type alone for an error never
    raised (no traceback). One line, with no part of ``str(error)``."""
    frames = _frames(error, source_lines=False)
    if not frames:
        return type(error).__name__
    last = frames[-1]
    return f"{type(error).__name__} in {last.name} ({PurePath(last.filename).name}:{last.lineno})"


def raised_chain(error: BaseException, *, source_lines: bool = False) -> str:
    """Every error of ``error``'s chain (its ``__cause__``, else its ``__context__`` unless
    suppressed), outermost first, each as ``module.QualName (message left out)`` and its traceback's
    frames as ``traceback`` prints them (``File "…", line N, in f``, and the source line when
    ``source_lines``); the errors joined by ``coming from:`` lines. No part of any message."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(_frames(current, source_lines=source_lines).format())
        parts.append(f"{type(current).__module__}.{type(current).__qualname__} (message left out)\n{frames}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\ncoming from:\n".join(parts).rstrip()
