"""The public API is explicit: ``__all__`` is complete, sorted, importable, and documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import crm_audit_transform

API_DOC = Path(__file__).parents[2] / "docs" / "api.md"


class TestPublicApi:
    def test_all_is_sorted_and_unique(self) -> None:
        """``__all__`` lists each name once, in sorted order, so diffs of the API stay readable."""
        names = list(crm_audit_transform.__all__)
        assert names == sorted(set(names))

    def test_every_exported_name_resolves(self) -> None:
        """Every name in ``__all__`` is an attribute of the package."""
        missing = [name for name in crm_audit_transform.__all__ if not hasattr(crm_audit_transform, name)]
        assert missing == []

    def test_public_classes_of_public_modules_are_exported(self) -> None:
        """A public class or function defined in a public core module is reachable from the package root."""
        exported = {id(getattr(crm_audit_transform, name)) for name in crm_audit_transform.__all__}
        unexported = []
        for info in pkgutil.walk_packages(crm_audit_transform.__path__, "crm_audit_transform."):
            if any(part.startswith("_") for part in info.name.split(".")) or ".testing" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in exported:
                    unexported.append(f"{module.__name__}.{name}")
        assert unexported == []

    def test_api_doc_lists_exactly_the_exports(self) -> None:
        """docs/api.md documents every exported name, and nothing that is not exported."""
        documented = set(re.findall(r"^### `([A-Za-z_][A-Za-z0-9_]*)`", API_DOC.read_text(), re.MULTILINE))
        assert documented == set(crm_audit_transform.__all__)
