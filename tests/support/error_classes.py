"""Every error class of the library and the adapters, and every error code they define.

The class walk follows ``CrmAuditError``'s subclasses, so the adapters' modules that define errors are
imported first. A module left out of that list still has its codes found: ``error_codes`` also reads
each ``code = "..."`` class attribute written anywhere under ``src/``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from crm_audit_transform.errors import CrmAuditError, VerifyOptionInvalid

# The adapters' modules that define errors, imported so that their classes are in the walk.
ERROR_MODULES = (
    "crm_audit_adapters.celery.resend",
    "crm_audit_adapters.files.audit_order",
    "crm_audit_adapters.files.audit_source",
    "crm_audit_adapters.files.errors",
    "crm_audit_adapters.files.long_lines",
    "crm_audit_adapters.shard_processes",
    "crm_audit_adapters.usman",
)
for _module in ERROR_MODULES:
    importlib.import_module(_module)

SRC = Path(__file__).resolve().parents[2] / "src"
_CODE_ATTRIBUTE = re.compile(r'^    code = "([A-Za-z_]+)"$', re.MULTILINE)
"""A class attribute ``code = "..."`` (four spaces in: a class body's); ``self.code = ...`` is not one."""


def error_classes() -> list[type[CrmAuditError]]:
    """``CrmAuditError`` and each of its subclasses, sorted by module and name."""
    found: list[type[CrmAuditError]] = []
    pending: list[type[CrmAuditError]] = [CrmAuditError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def error_codes() -> set[str]:
    """The ``code`` of every error class, every ``code = "..."`` class attribute under ``src/``, and
    the codes ``VerifyOptionInvalid`` sets on its instance (one per option)."""
    codes = {code for cls in error_classes() if isinstance(code := getattr(cls, "code", None), str)}
    codes.update(VerifyOptionInvalid(option, "").code for option in ("sample", "seed"))
    for path in SRC.rglob("*.py"):
        codes.update(_CODE_ATTRIBUTE.findall(path.read_text()))
    return codes
