"""What a USMAN answer may be: its size bound, its shape, and how its emails match the request's.

Emails match ignoring the case of ASCII letters only (``email_key``; the reason is in ``usman``'s
docstring).
"""

from __future__ import annotations

from typing import Final

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
ANSWER_BASE_BYTES: Final = 64 * 1024
ANSWER_BYTES_PER_EMAIL: Final = 16 * 1024
"""A 200 answer may hold at most ``answer_bytes(emails)`` bytes: 64 KiB and 16 KiB an email asked
(an entry is an email and an id, under a kilobyte), 1.6 MiB for a chunk of 100. A larger body is no
answer to the request, and reading it would cost the runner its memory."""


MAX_SSO_ID_CHARS: Final = 256
"""The longest ``sso_id`` an answer may give (an SSO id is a UUID, 36 characters, by the plan's actor
rule): a longer one, or one holding a character ``str.isprintable`` refuses (a control character,
NUL, a line break), is no SSO id, and would be written as the actor of every log of that user."""


def answer_bytes(emails: int) -> int:
    """The most bytes a 200 answer to a request of ``emails`` emails may hold (``ANSWER_BASE_BYTES``)."""
    return ANSWER_BASE_BYTES + ANSWER_BYTES_PER_EMAIL * emails


def email_key(email: str) -> str:
    """The email with ASCII letters lower-cased and every other character kept as it is."""
    return email.translate(_ASCII_LOWER)


def sso_ids_in_answer(body: object) -> tuple[dict[str, str], frozenset[str]]:
    """Validate ``{"data": [{"email", "sso_id"}, ...]}``: the SSO ids found by ``email_key``, and the
    keys of the emails whose entry is no answer. A null ``sso_id`` counts as not found.

    An entry whose ``sso_id`` is no id — not a string, empty, over ``MAX_SSO_ID_CHARS`` or holding a
    character ``str.isprintable`` refuses — leaves its email unanswered (the caller degrades that
    actor), and the rest of the answer stands: the entry says which email it is about, and the
    others are well-formed. ``ValueError`` where the answer as a whole cannot be trusted: any other
    shape (no ``data`` list, an entry that is not an object or whose ``email`` is not a string: no
    telling which user it answers for), one email with two different answers (two ids, or an id and
    an entry that is no answer), or no well-formed entry at all (nothing shows the directory answers
    in the contract, so its silence about an email is no "not found" either). The client reports it
    as ``UsmanUnavailable``: every actor of the request degrades."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError('expected an object with a "data" list')
    found: dict[str, str] = {}
    bad: set[str] = set()
    sound = 0
    for index, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise ValueError(f"data[{index}] is not an object")
        email, sso_id = item.get("email"), item.get("sso_id")
        if not isinstance(email, str):
            raise ValueError(f"data[{index}].email is not a string")
        key = email_key(email)
        if sso_id is None:
            sound += 1
            continue
        if (
            not isinstance(sso_id, str)
            or not sso_id
            or len(sso_id) > MAX_SSO_ID_CHARS
            or not sso_id.isprintable()
        ):
            # The value is not quoted anywhere: it is the directory's, and no id.
            bad.add(key)
        elif found.setdefault(key, sso_id) != sso_id:
            raise ValueError(f"data[{index}]: one email with two different sso ids")
        else:
            sound += 1
        if key in bad and key in found:
            raise ValueError(f"data[{index}]: one email with an sso id and an entry that is no id")
    if bad and not sound:
        raise ValueError(
            f"no entry is well-formed: {len(bad)} email(s) with an sso_id that is no SSO id (not a "
            f"non-empty string, over {MAX_SSO_ID_CHARS} characters, or holding a control character)"
        )
    return found, frozenset(bad)


def is_address(email: str) -> bool:
    """Something before and after an ``@``: the least an email address is (``n/a`` is not one)."""
    local, at, domain = email.rpartition("@")
    return bool(at and local and domain)
