"""Types of the optional compiled builder (``_cbuild.pyx``); absent at run time when not built."""

from typing import Any, Final

from ._limits import LoaderLimits

DECLINED: Final[object]

def build_text(text: str, limits: LoaderLimits) -> tuple[bool, Any] | object: ...
