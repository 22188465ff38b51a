"""The public API is explicit: every ``__all__`` is sorted and importable, nothing public is left out,
and docs/api.md is generated from it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import runpy
from pathlib import Path

import pytest

import crm_audit_transform

ROOT = Path(__file__).parents[2]
API_DOC_SCRIPT = ROOT / "scripts" / "api_doc.py"
SUBPACKAGES = runpy.run_path(str(API_DOC_SCRIPT))["SUBPACKAGES"]


def public_namespaces() -> list[object]:
    return [crm_audit_transform, *(importlib.import_module(f"crm_audit_transform.{s}") for s in SUBPACKAGES)]


class TestPublicApi:
    @pytest.mark.parametrize("module", public_namespaces(), ids=lambda m: m.__name__)
    def test_all_is_sorted_unique_and_resolves(self, module: object) -> None:
        """Each public ``__all__`` lists names once (ruff's RUF022 keeps them sorted), each resolvable."""
        names = list(module.__all__)  # type: ignore[attr-defined]
        assert len(names) == len(set(names))
        assert [name for name in names if not hasattr(module, name)] == []

    def test_every_public_class_and_function_is_exported_somewhere(self) -> None:
        """Each public class or function of a public core module is in some public ``__all__``."""
        exported = {
            id(getattr(namespace, name))
            for namespace in public_namespaces()
            for name in namespace.__all__  # type: ignore[attr-defined]
        }
        unexported = []
        for info in pkgutil.walk_packages(crm_audit_transform.__path__, "crm_audit_transform."):
            if any(part.startswith("_") for part in info.name.split(".")):
                continue
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in exported:
                    unexported.append(f"{module.__name__}.{name}")
        assert unexported == []

    def test_api_doc_is_generated_from_the_current_exports(self) -> None:
        """docs/api.md equals what scripts/api_doc.py renders now (run it after changing the API)."""
        render = runpy.run_path(str(API_DOC_SCRIPT))["render"]
        assert (ROOT / "docs" / "api.md").read_text() == render()
