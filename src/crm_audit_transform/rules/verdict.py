"""What a rule returns when a row must not become a log: the reason and a detail for people."""

from __future__ import annotations

from attrs import frozen


@frozen
class Rejection:
    """A rule's verdict against a row; ``skip`` decides ``Skipped`` versus ``Failed``."""

    reason: str
    detail: str = ""
    skip: bool = True
