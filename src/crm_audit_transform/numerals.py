"""The one place ids and numbers are read from text (CSV fields, JSONL strings, settings, ids).

Python's ``int()`` is too lenient for ids: it accepts ``1_0_0_1``, surrounding spaces, a ``+`` sign
and any Unicode decimal digit (``١٢٣``, Arabic-Indic), so a mangled export could silently name
another row. Here a number is ASCII digits with at most a leading ``-``, and nothing else.
"""

from __future__ import annotations

import re
from typing import Final

_INTEGER: Final = re.compile(r"-?[0-9]+\Z", re.ASCII)
MAX_DIGITS: Final = 19
"""A PostgreSQL bigint has at most 19 digits; longer text is not an id of ours."""
BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1
"""PostgreSQL's ``bigint``, the type of audited's ``audits.id``: no audit has an id outside it."""


def parse_int(text: str) -> int:
    """The integer ``text`` spells strictly (``-?[0-9]{1,19}``); ``ValueError`` for anything else."""
    if not _INTEGER.match(text) or len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"not a plain decimal integer: {text[:40]!r}")
    return int(text)


_DECIMAL: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z", re.ASCII)


def parse_float(text: str) -> float:
    """The number ``text`` spells strictly: ASCII digits, an optional leading ``-``, a ``.`` and an
    exponent (``0.1``, ``5``, ``1e-3``); ``ValueError`` for anything else, as ``parse_int`` refuses
    it (``float()`` takes ``1_0``, spaces, ``+``, other scripts' digits, ``nan`` and ``inf``)."""
    if not _DECIMAL.match(text):
        raise ValueError(f"not a plain decimal number: {text[:40]!r}")
    return float(text)


def as_id(value: object) -> int | None:
    """A CRM id from a loaded or stored value: an int (not a bool) as it is, or text of a
    non-negative integer :func:`parse_int` accepts once surrounding whitespace is stripped; any
    other value is ``None``.

    The one reading of ids the rules (person ids in changes), enrichment (referent ids a live
    feed may store as text) and the adapters (``crm_data.id`` in MongoDB) share."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = value.strip()
        if is_int_text(digits) and not digits.startswith("-"):
            return int(digits)
    return None


def is_int_text(text: str) -> bool:
    """Whether :func:`parse_int` accepts ``text``."""
    return bool(_INTEGER.match(text)) and len(text.lstrip("-")) <= MAX_DIGITS
