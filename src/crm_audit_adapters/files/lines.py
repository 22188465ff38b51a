"""Reading files line by line: numbered, UTF-8 checked, one JSON object per line, never whole-file."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

from .errors import FileFormatError

PathLike: TypeAlias = str | os.PathLike[str]
OnError: TypeAlias = Callable[[FileFormatError], None]
"""Called with each line that cannot become a value; without one, that line's error is raised."""


def numbered_lines(path: PathLike) -> Iterator[tuple[int, bytes]]:
    """Every physical line (terminator included) with its 1-based number, streamed."""
    with open(path, "rb") as stream:
        yield from enumerate(stream, 1)


def decode(path: PathLike, number: int, raw: bytes) -> str:
    try:
        # A byte order mark is tolerated at the start of the file only.
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(path, number, f"not UTF-8 (byte {exc.start})") from exc


def json_objects(path: PathLike, on_error: OnError | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; a line that is not a JSON object is an error."""
    for number, raw in numbered_lines(path):
        if not raw.strip():
            continue  # blank lines separate nothing and hold nothing
        try:
            value = parse_object(path, number, decode(path, number, raw))
        except FileFormatError as error:
            report(error, on_error)
            continue
        yield number, value


def parse_object(path: PathLike, number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileFormatError(path, number, f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise FileFormatError(path, number, f"expected a JSON object, found {type(value).__name__}")
    return value


def report(error: FileFormatError, on_error: OnError | None) -> None:
    if on_error is None:
        raise error
    on_error(error)


def parse_timestamp(text: str) -> dt.datetime:
    """ISO-8601 or PostgreSQL's text form (``2019-01-04 05:44:28.125496``); no offset means UTC."""
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
