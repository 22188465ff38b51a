"""Loading ``audited_changes`` exactly as Ruby reads it, and safely (see docs/value-model.md).

* Text column (``str``/``bytes``): YAML as Psych 4 wrote it, read with Psych's own scalar rules
  and the class allowlist Rails applies to YAML columns; any other tag is refused, never built.
* jsonb column: the mapping the driver already decoded (``ActiveSupport::JSON.decode``'s view),
  or the column's text as ``JsonbText``, decoded here under the limits (deep nesting is a typed
  error, not a ``RecursionError``).
* A value its source did not fetch for its size (``OmittedChanges``): ``LimitExceeded``, as its
  text would have been.
* A value whose bytes are no text in its source's encoding (``UntranslatableText``): ``BadEncoding``.

Only ``AuditedChangesError`` subclasses escape, and ``LoaderLimits`` bounds bytes, nodes
(aliases included) and depth before they can cost memory or time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import AuditedChangesError, BadEncoding, LimitExceeded, MalformedYaml, NotAMapping
from ..values import Changes
from ._backends import Backend, available_backends, parse, utf8_checked
from ._jsonb import JsonbText, check_json_depth, from_json, from_json_text
from ._limits import LoaderLimits
from ._omitted import OmittedChanges
from ._untranslatable import UntranslatableText

_DEFAULT_LIMITS = LoaderLimits()
_RUBY_CLASSES = {
    type(None): "nil",
    bool: "true or false",
    int: "Integer",
    float: "Float",
    str: "String",
    list: "Array",
    tuple: "Array",
}


def load_audited_changes(
    value: str | bytes | Mapping[str, Any] | JsonbText | OmittedChanges | UntranslatableText | None,
    limits: LoaderLimits | None = None,
    *,
    backend: Backend = "auto",
) -> Changes:
    """The column → value mapping of one ``audited_changes`` column value.

    ``value`` is the raw column: YAML ``str``/``bytes`` from a text column, the decoded
    mapping from a jsonb column, or that column's text wrapped in ``JsonbText``, or the size of a
    value its source did not fetch (``OmittedChanges``: ``LimitExceeded`` against ``max_bytes``
    when it is larger, else against the source's own, lower, limit), or a value whose bytes are
    no text in its source's encoding (``UntranslatableText``: ``BadEncoding``). Like Rails,
    text that does not start with ``---`` is not YAML (Rails hands it back as a String) and so
    is ``NotAMapping``; SQL NULL is ``NotAMapping`` too.
    ``backend`` picks the YAML parser (``"libyaml"``, ``"python"``; results are identical).

    Raises only ``AuditedChangesError`` subclasses for bad input: ``MalformedYaml``,
    ``UnsupportedTag``, ``LimitExceeded``, ``NotAMapping``, ``BadEncoding``. An unknown or
    unavailable ``backend`` is a ``ValueError`` (a caller's mistake, not the row's).
    """
    limits = _DEFAULT_LIMITS if limits is None else limits
    if type(value) is not str:  # a text column's str, the common case, is neither of these
        if isinstance(value, Mapping):
            return from_json(value, limits)
        if isinstance(value, JsonbText):
            if type(value.text) is not str:  # a caller's JsonbText of anything else: not JSON text
                raise NotAMapping(
                    f"{_ruby_class(value.text)} in a JsonbText, which holds a jsonb column's text"
                )
            return from_json_text(value.text, limits)
        if isinstance(value, OmittedChanges):
            # The message the text would have had (its size is known: "saw" it), or the source's
            # limit when the source was set lower than the loader.
            maximum = limits.max_bytes if value.size > limits.max_bytes else value.limit
            raise LimitExceeded("payload bytes", maximum, value.size)
        if isinstance(value, UntranslatableText):
            raise BadEncoding(str(value))
    text = _text(value, limits.max_bytes)
    if "\x00" in text or not text.startswith("---"):
        utf8_checked(text)  # a lone surrogate is told first, as before any other check
        if "\x00" in text:
            raise BadEncoding("NUL characters cannot appear in YAML (or in a PostgreSQL text column)")
        raise NotAMapping("String (Rails reads text that does not start with '---' as a plain String)")
    try:
        found, loaded = parse(text, limits, backend)
    except AuditedChangesError:
        raise
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise _untyped(exc, limits, backend) from None
    if type(loaded) is not dict:
        raise NotAMapping(_ruby_class(loaded) if found else "nil (the text holds no YAML document)")
    return loaded


def _untyped(exc: Exception, limits: LoaderLimits, backend: Backend) -> Exception:
    """What an exception a parser or constructor let out of ``parse`` means: the row's ``MalformedYaml``
    (a ``\\U`` escape ``chr`` refuses in the pure parser, ``OverflowError`` for a wider one, …),
    or — when the backend itself cannot parse a trivial document — the caller's ``ValueError`` as is.
    Caught once here, at the boundary, so the hot path checks nothing per node."""
    if isinstance(exc, ValueError):
        try:
            parse("--- {}\n", limits, backend)
        except ValueError:
            return exc  # an unknown or unavailable backend: the caller's mistake
    return MalformedYaml(f"a value the loader cannot build ({type(exc).__name__})")


def _text(value: object, max_bytes: int) -> str:
    if isinstance(value, str):
        if len(value) > max_bytes:
            raise LimitExceeded("payload bytes", max_bytes, None)
        if value.isascii():  # one byte a character, and no surrogates: no need to encode it
            return value
        if len(value) * 4 <= max_bytes:
            # At most 4 bytes a character: within the limit without counting. The text is encoded
            # once, where it is parsed, which also finds a lone surrogate (``utf8_checked``).
            return value
        size = len(utf8_checked(value))
        if size > max_bytes:
            raise LimitExceeded("payload bytes", max_bytes, size)
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        if size > max_bytes:
            raise LimitExceeded("payload bytes", max_bytes, size)
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadEncoding(f"bytes that are not UTF-8: {exc}") from None
    raise NotAMapping(_ruby_class(value))


def _ruby_class(value: object) -> str:
    return _RUBY_CLASSES.get(type(value), type(value).__name__)


__all__ = [
    "Backend",
    "JsonbText",
    "LoaderLimits",
    "OmittedChanges",
    "UntranslatableText",
    "available_backends",
    "check_json_depth",
    "load_audited_changes",
]
