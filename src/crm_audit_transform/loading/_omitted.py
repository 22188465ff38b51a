"""``OmittedChanges``: an ``audited_changes`` value its source measured and did not fetch."""

from __future__ import annotations

from attrs import frozen


@frozen
class OmittedChanges:
    """An ``audited_changes`` value larger than its source's ``limit``: its size, not its text.

    ``size`` is the UTF-8 bytes of the value's text (a bytea's own bytes), as the loader counts them
    (``LoaderLimits.max_bytes``); ``limit`` the bytes above which the source sends the size instead
    of the value (the PostgreSQL source's ``max_changes_bytes``, the loader's ``max_bytes`` where
    the runner wires it). The loader refuses it as ``LimitExceeded``, as it refuses the text itself
    past ``max_bytes``: the row fails alone, while a value of hundreds of MiB never reaches memory.
    """

    size: int
    limit: int
