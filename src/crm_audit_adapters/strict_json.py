"""JSON text that every strict reader takes, for the dry run's side files (``--outcomes``,
``--report``): a text that is not Unicode is kept exactly, beside a readable stand-in.

Python reads a file name or an option holding bytes that are not UTF-8 (``caf\\xe9.jsonl``) as a
text with one lone surrogate per such byte (U+DC80-U+DCFF, PEP 383's ``surrogateescape``), and a
detail naming that file carries them into these files. JSON can write a lone surrogate only as its
escape (``\\udce9``): Python reads that back, but RFC 8259 §8.2 leaves an unpaired surrogate's
meaning unpredictable, and strict readers do not take it (Go's ``encoding/json`` puts U+FFFD in
its place, Rust's ``serde_json`` refuses the document). So ``dumps`` writes a record whose texts
hold a surrogate

* with each surrogate of such a text replaced by U+FFFD (the replacement character), so that every
  reader reads the record and a person sees where the odd bytes were;
* with one more member, ``"not_utf8"``: an object mapping the JSON Pointer (RFC 6901) of each such
  text to its exact content, base64 (RFC 4648 §4) of its bytes as Python's ``surrogateescape``
  writes them, which are a file name's own bytes (``os.fsencode``). A surrogate that no byte made
  (a ``\\udXXX`` escape in an input line, outside U+DC80-U+DCFF) is written in those bytes as its
  six-character escape ``\\udXXX``.

A record with no surrogate is written as before, with no ``not_utf8`` member. ``restore`` gives a
Python reader the record as it was (each text made of bytes exactly); a reader in another language
decodes the base64 to get the bytes. Member names are the program's own (field names, reason
codes) and never hold one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final

NOT_UTF8: Final = "not_utf8"
"""The member that maps the JSON Pointer of each text that held a surrogate to its bytes, base64."""

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_ESCAPED: Final = re.compile(r"\\u[dD][89a-fA-F]")
"""A surrogate as ``json.dumps`` escapes it with ``ensure_ascii``; a pair (a character past U+FFFF)
matches too, and is then found to be no lone surrogate."""


def has_surrogate(text: str) -> bool:
    """Whether ``text`` (written without ``ensure_ascii``: a surrogate stays as it is) holds one."""
    return _SURROGATE.search(text) is not None


def dumps(record: Mapping[str, object], *, indent: int | None = None, ensure_ascii: bool = False) -> str:
    """``record`` as ``json.dumps`` writes it (``indent``, ``ensure_ascii``), except that a text
    holding a surrogate is written as the module docstring says: valid UTF-8 (and I-JSON) text.

    ``ValueError`` if ``record`` already has a ``not_utf8`` member and a text needs it."""
    text = json.dumps(record, indent=indent, ensure_ascii=ensure_ascii)
    if (_ESCAPED if ensure_ascii else _SURROGATE).search(text) is None:
        return text
    found: dict[str, str] = {}
    replaced = _replaced(record, "", found)
    if not found:
        return text  # only pairs: characters past U+FFFF, escaped
    if NOT_UTF8 in record:
        raise ValueError(f"the record already has a {NOT_UTF8!r} member")
    assert isinstance(replaced, dict)
    replaced[NOT_UTF8] = found
    return json.dumps(replaced, indent=indent, ensure_ascii=ensure_ascii)


def restore(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record read (``json.loads``) from ``dumps``' text, each text its ``not_utf8`` member names
    back as Python had it, and without that member; a record without it, as it is.

    ``ValueError`` for a ``not_utf8`` member that is not such a map, or names no text."""
    found = record.get(NOT_UTF8)
    restored = {key: value for key, value in record.items() if key != NOT_UTF8}
    if found is None:
        return restored
    if not isinstance(found, dict):
        raise ValueError(f"{NOT_UTF8!r} is not an object")
    for pointer, encoded in found.items():
        if not isinstance(encoded, str):
            raise ValueError(f"{NOT_UTF8!r}[{pointer!r}] is not a text")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{NOT_UTF8!r}[{pointer!r}] is not base64") from exc
        text = raw.decode("utf-8", "surrogateescape")
        restored = _put(restored, _tokens(pointer), text)
    return restored


def _replaced(value: object, pointer: str, found: dict[str, str]) -> object:
    """``value`` with each text holding a surrogate replaced (U+FFFD for each), and its bytes, base64,
    in ``found`` under its pointer."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        found[pointer] = base64.b64encode(_bytes_of(value)).decode("ascii")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {key: _replaced(item, f"{pointer}/{_token(str(key))}", found) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replaced(item, f"{pointer}/{index}", found) for index, item in enumerate(value)]
    return value


def _bytes_of(text: str) -> bytes:
    """``text``'s bytes as ``surrogateescape`` writes them; a surrogate no byte made as ``\\udXXX``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape_unmade, text).encode("utf-8", "surrogateescape")


def _escape_unmade(surrogate: re.Match[str]) -> str:
    """A surrogate that ``surrogateescape`` made of a byte as it is; any other as ``\\udXXX``."""
    char = surrogate[0]
    return char if "\udc80" <= char <= "\udcff" else f"\\u{ord(char):04x}"


def _token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError(f"{NOT_UTF8!r} names {pointer!r}, not a JSON Pointer to a member")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _put(value: Any, tokens: list[str], text: str) -> Any:
    """``value`` with the text at ``tokens`` (a JSON Pointer's) replaced by ``text``."""
    if not tokens:
        if not isinstance(value, str):
            raise ValueError(f"{NOT_UTF8!r} names a member that is not a text")
        return text
    head, rest = tokens[0], tokens[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: _put(value[head], rest, text)}
    if isinstance(value, list) and head.isdigit() and int(head) < len(value):
        index = int(head)
        return [*value[:index], _put(value[index], rest, text), *value[index + 1 :]]
    raise ValueError(f"{NOT_UTF8!r} names a member the record does not have")
