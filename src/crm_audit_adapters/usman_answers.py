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


def sso_ids_in_answer(body: object) -> dict[str, str]:
    """Validate ``{"data": [{"email", "sso_id"}, ...]}``; a null ``sso_id`` counts as not found.

    ``ValueError`` for any other shape, one email with two different ids, or an ``sso_id`` that is no
    id (``MAX_SSO_ID_CHARS``): the client reports it as ``UsmanUnavailable`` (the actors degrade)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError('expected an object with a "data" list')
    found: dict[str, str] = {}
    for index, item in enumerate(body["data"]):
        if not isinstance(item, dict):
            raise ValueError(f"data[{index}] is not an object")
        email, sso_id = item.get("email"), item.get("sso_id")
        if not isinstance(email, str):
            raise ValueError(f"data[{index}].email is not a string")
        if sso_id is None:
            continue
        if not isinstance(sso_id, str) or not sso_id:
            raise ValueError(f"data[{index}].sso_id is not a non-empty string")
        if len(sso_id) > MAX_SSO_ID_CHARS or not sso_id.isprintable():
            # The value is not quoted: it is the directory's, and goes nowhere but into this refusal.
            raise ValueError(
                f"data[{index}].sso_id is no SSO id: over {MAX_SSO_ID_CHARS} characters, or holding a "
                "control character"
            )
        key = email_key(email)
        if found.setdefault(key, sso_id) != sso_id:
            raise ValueError(f"data[{index}]: one email with two different sso ids")
    return found


def is_address(email: str) -> bool:
    """Something before and after an ``@``: the least an email address is (``n/a`` is not one)."""
    local, at, domain = email.rpartition("@")
    return bool(at and local and domain)
