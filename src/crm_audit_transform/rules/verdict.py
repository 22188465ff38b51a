"""What a rule returns when a row must not become a log: the reason and a detail for people."""

from __future__ import annotations

from attrs import frozen

from .._fast_init import fast_init


@fast_init  # built for every row: see _fast_init
@frozen
class Rejection:
    """A rule's verdict against a row; ``skip`` decides ``Skipped`` versus ``Failed``."""

    reason: str
    detail: str = ""
    skip: bool = True
