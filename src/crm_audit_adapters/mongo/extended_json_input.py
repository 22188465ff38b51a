"""Reading Extended JSON that someone else wrote: every way the decoder refuses it is a ``ValueError``.

``bson.json_util.loads`` raises ``ValueError`` for text that is not JSON, but a malformed
``$``-operator inside valid JSON escapes as whatever its parser meets first: ``KeyError``
(``{"$binary": {}}``), ``AttributeError`` (``{"$binary": {}, "$type": "00"}``), ``OverflowError``
(``{"$date": 1e400}``), a ``decimal`` signal (``{"$numberDecimal": "1e99999999"}``), ``TypeError``
or ``bson.errors.BSONError``. An HTTP body or a line of a file is input, so each of them is the
input's fault and its caller's typed error (``MALFORMED_BODY``, ``FileFormatError``), never a 500 or
an uncaught exception. ``RecursionError`` (nesting past the interpreter's stack) passes through for
the caller to word. No message quotes the input (docs/files.md): a line may hold a password.
"""

from __future__ import annotations

import json
from typing import Any

from bson import json_util
from bson.json_util import JSONOptions

__all__ = ["loads_extended_json"]


def loads_extended_json(text: str, options: JSONOptions) -> Any:
    """``json_util.loads(text)``; ``ValueError`` naming the problem for any input it refuses: for text
    that is not JSON, ``json.JSONDecodeError`` (its fault, line and column); for a malformed
    ``$``-operator, the kind of error met, never the operand's text."""
    try:
        return json_util.loads(text, json_options=options)
    except RecursionError:
        raise
    except json.JSONDecodeError:
        raise  # not JSON: its message is a fault and a position ("Expecting value: line 1 column 7")
    except Exception as exc:  # the decoder's own failures on malformed input (module docstring)
        # Their messages quote the operand ("time data 'x' does not match", "'x' is not a valid
        # ObjectId"), which is the line's value: the kind of fault is named, never the text.
        raise ValueError(f"a malformed $-operator ({type(exc).__name__})") from None
