"""The checks of single settings: ranges, connection strings, names and secrets' lengths.

Each returns the problem, or None; a problem never quotes a value that may hold a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..redaction import UNPARSEABLE, redact
from ..url_checks import dsn_port_problem

MONGO_SCHEMES: Final = ("mongodb://", "mongodb+srv://", "mongomock://")


Check = Callable[[Any], "str | None"]


def within(low: float, high: float, *, low_open: bool = False, whole: str | None = None) -> Check:
    """A range check; the caller adds the value as given (``as_written``). ``whole``: the value must
    be a whole number too (``2.0`` is, ``2.5`` is not), of that unit (``seconds``)."""

    def check(value: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if whole is not None and not float(value).is_integer():
            return f"must be a whole number of {whole}"
        if value < low or (low_open and value == low) or value > high:
            bracket = "(" if low_open else "["
            return f"must be in {bracket}{_plain(low)}, {_plain(high)}]"
        return None

    return check


def _plain(number: float) -> str:
    """A bound as people write it: ``10000``, ``86400``, ``0.5`` (not ``1e+06``)."""
    return str(int(number)) if float(number).is_integer() else repr(number)


_SHOWN_CHARS: Final = 32
"""A given number longer than this is described (its length), not quoted whole."""


def as_written(value: object) -> str | None:
    """A numeric setting's value as its user gave it, for the problem's ``got …``.

    Text (an environment variable) as written, stripped; a TOML integer with all its digits; a
    TOML float in its shortest form (``5e21``, not ``5e+21``; what TOML read is all there is);
    a long one by its length. None for a table or an array: not worth quoting. Only numeric
    settings are quoted: they hold no secret.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        return text if len(text) <= _SHOWN_CHARS else f"a value of {len(text)} characters"
    if isinstance(value, int):
        try:
            text = str(value)
        except ValueError:  # past Python's integer-to-text limit
            return "an integer of thousands of digits"
        digits = len(text.lstrip("-"))
        return text if digits <= _SHOWN_CHARS else f"an integer of {digits} digits"
    if isinstance(value, float):
        return _FLOAT_EXPONENT.sub(r"e\1\2", repr(value))
    return None


_FLOAT_EXPONENT: Final = re.compile(r"e\+?(-?)0*(\d)")


PADDED: Final = (
    "starts or ends with whitespace or a control character (a trailing newline, as `$(cat file)` or a "
    "file's last line leaves): remove it"
)
CONTROL: Final = "holds a control character (a newline, a tab, …): remove it"
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0, DEL and C1: Unicode's ``Cc`` characters."""


def text_problem(value: str, *, separators: str = "") -> str | None:
    """``PADDED`` or ``CONTROL`` for a text setting no driver reads as written, else None.

    A URL, DSN, password or token read from a file (``$(cat file)``, a secret mounted as a file, a
    TOML multi-line string) often ends with a newline. The drivers took it as part of the value: a
    database ``crm\n`` that "does not exist", a password that never matches. Refused at load rather
    than stripped: the setting then means what it says, and a secret is never changed silently.
    ``separators``: control characters the setting's own syntax reads as spaces (libpq's key=value
    DSN). The problem never quotes the value.
    """
    if value != value.strip():
        return PADDED
    if _CONTROL.search(value.translate({ord(c): None for c in separators})):
        return CONTROL
    return None


def plain_text(check: Check | None) -> Check:
    """``check`` after ``text_problem``: a padded or controlled text is refused before it is parsed."""

    def checked(value: Any) -> str | None:
        problem = text_problem(value) if isinstance(value, str) else None
        return problem or (check(value) if check else None)

    return checked


def postgres_dsn_problem(value: str) -> str | None:
    # libpq's key=value form separates its pairs by any white space, a newline or a tab included.
    problem = text_problem(value, separators="" if "://" in value else "\t\n\r")
    if problem:
        return problem
    if redact(value) == UNPARSEABLE:
        return "not a PostgreSQL connection string (libpq key=value pairs or a postgresql:// URI)"
    if "://" in value and not value.lower().startswith(("postgresql://", "postgres://")):
        return "a URI DSN must start with postgresql:// or postgres://"
    if "://" in value and re.split(r"[/?]", value.split("://", 1)[1], maxsplit=1)[0].count("@") > 1:
        # libpq ends the user info at the first "@": the rest of the password would become the host
        # name, and appear in its "could not translate host name" error.
        return "the user or password holds an unescaped '@': percent-encode it as %40"
    import psycopg.conninfo  # the adapters' driver: its own parser has the final word

    try:
        parsed = psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.Error:
        # The driver's message may quote a piece of the password: never show it.
        return "libpq cannot parse this connection string (check quoting and %-escapes)"
    # libpq reads the port only when it connects, and its error would be retried as an outage.
    return dsn_port_problem({k: str(v) for k, v in parsed.items()})


def mongo_uri_problem(value: str) -> str | None:
    if not value.startswith(MONGO_SCHEMES):
        return "must start with mongodb://, mongodb+srv:// or mongomock://"
    if value.startswith("mongodb://"):
        from pymongo.errors import PyMongoError
        from pymongo.uri_parser import parse_uri  # no network for mongodb:// (SRV would look up DNS)

        try:
            parse_uri(value)
        except (PyMongoError, ValueError):
            return "pymongo cannot parse this URI (check %-escapes of the user and password, hosts, options)"
    return None


def mongo_database_problem(value: str) -> str | None:
    # MongoDB's database naming restrictions (manual: "Restrictions on Database Names").
    if not value or len(value.encode()) >= 64 or any(c in value for c in '/\\. "$\x00'):
        return 'must be 1-63 bytes without / \\ . " $ or spaces'
    return None


def mapping_file_problem(value: str) -> str | None:
    path = Path(value)
    if path.is_file():
        return None
    if path.is_dir():
        return f"is a directory, not a mapping file: {value}"
    if path.exists():
        return f"not a regular file (a mapping file is YAML): {value}"
    return f"no such mapping file: {value}"


SESSION_SECRET_MIN_CHARS: Final = 32
"""The session secret signs every tenant's session token (HMAC): anyone holding one token can try
secrets offline, and with the secret forge a token for any company. 32 characters, as a
``secrets.token_urlsafe(32)`` gives 43."""
HTTP_PASSWORD_MIN_CHARS: Final = 16
"""The BasicAuth password of the S2S routes (``/private``), which write and roll back accounts."""


def at_least(chars: int, why: str) -> Check:
    """A length check of a secret: the problem never quotes it, only its rule."""

    def check(value: Any) -> str | None:
        return None if len(value) >= chars else f"must be at least {chars} characters ({why})"

    return check


LEASE_SECONDS_MIN: Final = 1.0
"""The shortest lease: it is renewed once per batch (a page read, lookups, up to 20 inserts and a
progress write, each a round trip to a server), so a lease shorter than a batch is taken over from a
live runner between two renewals; its expiry is a BSON date, which keeps milliseconds, so a lease of
``1e-9`` s is stored already expired; and a Celery task that meets a held lease waits
``lease_seconds`` before each of its retries. One second is the least that still lets a test see a
takeover quickly; production keeps the default, 120 s."""
