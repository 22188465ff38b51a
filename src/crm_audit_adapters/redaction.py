"""Secrets out of connection strings and free text: the one redaction used by errors, ``config``,
logs and HTTP answers.

Redaction parses; it never pattern-matches a password. ``redact(value)`` reads

- URIs (``postgresql://``, ``mongodb://``, ``mongodb+srv://``, ``https://`` …): everything between
  the first ``:`` of the user info and the **last** ``@`` before the hosts is the password, so an
  ``@``, ``:``, ``/``, ``?`` or a broken escape (``%ZZ``) inside it cannot push a fragment out;
  query options whose key names a secret (``password``, ``sslpassword``, ``…token…``,
  ``tlsCertificateKeyFilePassword`` …) are hidden, and in MongoDB's ``authMechanismProperties``
  every property but the known harmless ones (``SERVICE_NAME`` …) is hidden, which covers
  ``AWS_SESSION_TOKEN``;
- libpq conninfo (``host=db password='it\\'s'``) with libpq's own grammar: single quotes, backslash
  escapes, spaces around ``=``; a ``dbname`` that is itself a connection string is read too.
- a failover list of URLs of one scheme separated by ``;`` (``sentinel://:a@h1;sentinel://:b@h2``),
  as kombu reads a broker URL: when every URL has its own user info, each is redacted on its own,
  so every host is shown and every password hidden. Otherwise, or should a piece of the whole
  value's password (as the rule above reads it: everything up to the last ``@``) still show, the
  value is redacted whole (only the last host shown). A password that holds both an unescaped
  ``@`` and ``;`` followed by the scheme is read as kombu reads it: percent-encode both.

A value that does not parse is replaced whole by ``UNPARSEABLE``: the parser cannot know where its
secret ends. ``scrub(text, values)`` cleans free text (a driver's message, a traceback) of every
secret fragment that parsing ``values`` finds, and of every word of a value that does not parse,
each shown as ``MASK``; a value of one or two characters only where it stands alone (not inside a
run of letters and digits).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote

__all__ = ["MASK", "UNPARSEABLE", "ScrubbingFilter", "redact", "scrub", "secret_fragments"]

MASK: Final = "***"
UNPARSEABLE: Final = "<redacted: not a parseable connection string>"

# Option names whose values are secrets, whatever the driver (libpq, pymongo, httpx URLs).
_SECRET_KEY: Final = re.compile(
    r"pass|pwd|secret|token|credential|signature|^sig$|api_?key|access_?key", re.I
)
# authMechanismProperties entries that hold no secret (MongoDB's URI options spec).
_HARMLESS_MECHANISM_PROPERTIES: Final = frozenset(
    {
        "SERVICE_NAME",
        "CANONICALIZE_HOST_NAME",
        "SERVICE_REALM",
        "SERVICE_HOST",
        "ENVIRONMENT",
        "TOKEN_RESOURCE",
    }
)
# Database and broker schemes whose user name is an account, not a credential; elsewhere (``https://tok@h``)
# a lone user name may be a token and is hidden too.
_ACCOUNT_SCHEMES: Final = frozenset(
    {
        "postgresql",
        "postgres",
        "mongodb",
        "mongodb+srv",
        "mongomock",
        "redis",
        "rediss",
        "sentinel",
        "amqp",
        "amqps",
    }
)
_SCHEME: Final = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_CONNINFO_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# libpq connection keywords: never secret words, so scrubbing an unparseable DSN keeps them readable.
_LIBPQ_KEYWORDS: Final = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "target_session_attrs",
        "service",
    }
)
_MIN_FRAGMENT: Final = 3  # shorter pieces are indistinguishable from ordinary text


class _Unparseable(ValueError):
    pass


def redact(value: str | None) -> str | None:
    """``value`` (a URI or libpq conninfo) with every secret replaced by ``***``.

    ``None`` and ``""`` come back unchanged; a value that does not parse comes back as
    ``UNPARSEABLE`` (nothing of it is shown).
    """
    if not value:
        return value
    try:
        return _redact_uris(value) if _SCHEME.match(value) else _redact_conninfo(value)
    except _Unparseable:
        return UNPARSEABLE


def secret_fragments(value: str | None) -> frozenset[str]:
    """Every secret substring of ``value`` in each spelling (as written, percent-decoded, unescaped).

    For a value that does not parse, every word of it except libpq's keywords: any could be part of
    a password. Fragments shorter than three characters are left out (they cannot be told apart from
    ordinary text).
    """
    if not value:
        return frozenset()
    found: set[str] = set()
    try:
        if _SCHEME.match(value):
            _redact_uris(value, found)
        else:
            _redact_conninfo(value, found)
    except _Unparseable:
        found.update(w for w in re.split(r"[\s='\"\\@:/?&;,]+", value) if w not in _LIBPQ_KEYWORDS)
        found.add(value)
    spelled = found | {unquote(f) for f in found} | {f.replace("\\", "") for f in found}
    return frozenset(f for f in spelled if len(f) >= _MIN_FRAGMENT)


def scrub(text: str, values: Iterable[str | None]) -> str:
    """``text`` with each of ``values`` (connection strings, tokens) shown redacted and every secret
    fragment of them replaced by ``***``.

    A plain secret (a token, a password setting) is passed as itself: it is its own fragment.
    """
    replacements: dict[str, str] = {}
    short: set[str] = set()
    for value in values:
        if not value:
            continue
        shown = redact(value)
        # A value that does not parse (a token, a password setting) is shown as the mask, as its
        # fragments are: UNPARSEABLE says "connection string", which a token is not.
        if shown and shown != value and shown != UNPARSEABLE:
            replacements[value] = shown
        # A URL without credentials has no secret in it; a bare value (a token) is its own secret.
        own = set() if _SCHEME.match(value) else {value}
        for fragment in secret_fragments(value) or own:
            if len(fragment) >= _MIN_FRAGMENT:
                replacements.setdefault(fragment, MASK)
            elif fragment == value:
                short.add(value)
    for raw in sorted(replacements, key=len, reverse=True):  # longest first: a whole DSN before its parts
        text = text.replace(raw, replacements[raw])
    for value in short:
        # A secret of one or two characters is a piece of most words: masked where it stands alone
        # (not inside a run of letters and digits), so that a token "e" leaves the line readable.
        text = re.sub(rf"(?<![^\W_]){re.escape(value)}(?![^\W_])", MASK, text)
    return text


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs each record's message and traceback of the given secrets."""

    def __init__(self, values: Iterable[str | None]) -> None:
        super().__init__()
        self._values = tuple(v for v in values if v)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._values:
            return True
        record.msg = scrub(record.getMessage(), self._values)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self._values)
        return True


# -- URIs -----------------------------------------------------------------------------------------
def _redact_uris(value: str, found: set[str] | None = None) -> str:
    """One URI, or kombu's failover list of URIs of one scheme (``a://…;a://…``), each redacted."""
    whole_found: set[str] = set()
    whole = _redact_uri(value, whole_found)
    if found is not None:
        found.update(whole_found)
    pieces = _failover_pieces(value)
    # A piece without its own "@" may be the head of a password that holds ";scheme://"
    # (``redis://u:pw;redis://…@h``): then only the whole reading is safe.
    if len(pieces) < 2 or not all("@" in piece for piece in pieces):
        return whole
    pieces_found: set[str] = set()
    shown = ";".join(_redact_uri(piece, pieces_found) for piece in pieces)
    if any(len(f) >= _MIN_FRAGMENT and f in shown for f in whole_found):
        return whole  # a password that holds ";scheme://": the list reading would show a piece of it
    if found is not None:
        found.update(pieces_found)
    return shown


def _failover_pieces(value: str) -> list[str]:
    """``value`` split at each ``;`` that starts another URL of the same scheme, as kombu splits it."""
    match = _SCHEME.match(value)
    assert match is not None
    prefix = f";{match['scheme']}://"
    if prefix.lower() not in value.lower():
        return [value]
    return re.split(f"(?i);(?={re.escape(match['scheme'])}://)", value)


def _redact_uri(value: str, found: set[str] | None = None) -> str:
    match = _SCHEME.match(value)
    assert match is not None
    rest = value[match.end() :]
    head = f"{match['scheme']}://"
    query_spans_at = False
    if "@" in rest:
        # The last "@" ends the user info: a password may hold "@", ":", "/", "?" or "#".
        userinfo, _, rest = rest.rpartition("@")
        user, colon, password = userinfo.partition(":")
        account = match["scheme"].lower() in _ACCOUNT_SCHEMES and not any(c in user for c in "/?#")
        if found is not None:
            found.update(p for p in (password, "" if account else userinfo) if p)
            # libpq ends the user info at the first "@": each piece may be shown as a host name.
            found.update(piece for piece in userinfo.split("@")[1:] if piece)
        # "?…@…" : the last "@" sat inside the query (``?application_name=a@b&password=…``), so
        # what follows it is still query text and is read as options.
        query_spans_at = "?" in userinfo
        if account and not query_spans_at:
            head += f"{user}:{MASK}@" if colon else f"{user}@"
        else:
            head += f"{MASK}@"
    hosts_path, question, query = rest.partition("?")
    if query_spans_at and not question:
        return head + _redact_query(rest, found)
    hosts_path, hash_, fragment = hosts_path.partition("#")
    if fragment:
        if found is not None:
            found.add(fragment)
        fragment = MASK
    shown = head + hosts_path + hash_ + fragment
    return shown + ("?" + _redact_query(query, found) if question else "")


def _redact_query(query: str, found: set[str] | None) -> str:
    parts = []
    for part in re.split(r"([&;])", query):
        if part in ("&", ";"):
            parts.append(part)
            continue
        key, eq, val = part.partition("=")
        if not eq:
            # Not "key=value": a piece of a value that held "&"; it may be a secret's tail.
            if part and found is not None:
                found.add(part)
            parts.append(MASK if part else part)
        elif _SECRET_KEY.search(key):
            if val and found is not None:
                found.add(val)
            parts.append(f"{key}={MASK}")
        elif key.lower() == "authmechanismproperties":
            parts.append(f"{key}={_redact_mechanism_properties(val, found)}")
        else:
            parts.append(part)
    return "".join(parts)


def _redact_mechanism_properties(value: str, found: set[str] | None) -> str:
    shown = []
    for item in unquote(value).split(","):
        name, colon, prop = item.partition(":")
        if colon and name.strip().upper() in _HARMLESS_MECHANISM_PROPERTIES:
            shown.append(item)
            continue
        if found is not None:
            found.update(p for p in (prop, item, value) if p)
        shown.append(f"{name}:{MASK}" if colon else MASK)
    return ",".join(shown)


# -- libpq conninfo -------------------------------------------------------------------------------
def _redact_conninfo(value: str, found: set[str] | None = None) -> str:
    pairs = _parse_conninfo(value)
    shown = []
    for key, raw, decoded in pairs:
        if _SECRET_KEY.search(key):
            if found is not None:
                found.update(p for p in (raw, decoded) if p)
            shown.append(f"{key}={MASK}")
        elif key == "dbname" and ("=" in decoded or _SCHEME.match(decoded)):
            # libpq expands a dbname that is itself a connection string: it may carry a password.
            inner = redact(decoded) or ""
            if found is not None:
                found.update(secret_fragments(decoded))
            shown.append(f"{key}={_quote(inner)}")
        else:
            shown.append(f"{key}={_quote(decoded)}")
    return " ".join(shown)


def _parse_conninfo(value: str) -> list[tuple[str, str, str]]:
    """``(key, value as written, value unescaped)`` per pair, by libpq's ``conninfo_parse`` rules."""
    pairs: list[tuple[str, str, str]] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            break
        key_match = _CONNINFO_KEY.match(value, i)
        if key_match is None:
            raise _Unparseable
        key, i = key_match.group(), key_match.end()
        while i < n and value[i].isspace():
            i += 1
        if i >= n or value[i] != "=":
            raise _Unparseable
        i += 1
        while i < n and value[i].isspace():
            i += 1
        start, chars = i, []
        if i < n and value[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise _Unparseable  # unterminated quoted string
                c = value[i]
                if c == "\\" and i + 1 < n:
                    chars.append(value[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
        else:
            while i < n and not value[i].isspace():
                if value[i] == "\\" and i + 1 < n:
                    chars.append(value[i + 1])
                    i += 2
                else:
                    chars.append(value[i])
                    i += 1
        pairs.append((key, value[start:i], "".join(chars)))
    if not pairs:
        raise _Unparseable
    return pairs


def _quote(value: str) -> str:
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
