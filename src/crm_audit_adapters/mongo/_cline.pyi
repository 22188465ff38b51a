"""Types of the optional compiled line writer (``_cline.pyx``); absent at run time when not built."""

from collections.abc import Callable, Iterable
from typing import Any

from crm_audit_transform.domain import ActivityLog

def configure(
    pure: Callable[[ActivityLog], bytes],
    walk: Any,
    leaf: Callable[..., object],
    escape_key: Callable[[object], str],
    flat_leaves: Iterable[type],
    attribute_room: int,
    metadata_room: int,
) -> bool: ...
def relaxed_json_bytes(log: ActivityLog, newline: bool = False) -> bytes: ...
def written_here(log: ActivityLog) -> bytes | None: ...
