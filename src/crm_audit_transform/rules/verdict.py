"""What a rule returns when a row must not become a log: the reason and a detail for people."""

from __future__ import annotations

from attrs import frozen

from .._fast_init import fast_init

__all__ = ["NAME_SHOWN", "Rejection", "shown_name"]

NAME_SHOWN = 120  # characters of a row's name (a column, a type, an action) that a detail shows


@fast_init  # built for every row: see _fast_init
@frozen
class Rejection:
    """A rule's verdict against a row; ``skip`` decides ``Skipped`` versus ``Failed``."""

    reason: str
    detail: str = ""
    skip: bool = True


def shown_name(name: str) -> str:
    """A name a row wrote (an ``audited_changes`` key, ``auditable_type``, ``action``, a
    ``created_at`` text) as a rejection's detail shows it: its first ``NAME_SHOWN`` characters,
    escaped by ``repr`` (control and non-printable characters as ``\\x..`` escapes), and its length
    when cut. audited stores these in unbounded varchar/text columns (and a file holds any string),
    so a row may carry any size and any character; the detail goes to logs, status and outcomes."""
    if len(name) <= NAME_SHOWN:
        return repr(name)
    return f"{name[:NAME_SHOWN]!r}… ({len(name)} characters)"
