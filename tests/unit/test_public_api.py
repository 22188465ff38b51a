"""The public API is explicit, small and documented: every ``__all__`` is sorted and importable, the
surface stays within its budget, every exported class and function has a docstring, the README and
docs import only exported names, and docs/api.md is generated from it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import runpy
from pathlib import Path
from types import ModuleType

import pytest

import crm_audit_transform

ROOT = Path(__file__).parents[2]
API_DOC_SCRIPT = ROOT / "scripts" / "api_doc.py"
SUBPACKAGES = runpy.run_path(str(API_DOC_SCRIPT))["SUBPACKAGES"]

SURFACE_BUDGET = 176
"""Names over every public ``__all__`` (230 before the surface was cut to what a user needs). Raise it
only for a name a user needs: a value they receive, a port or a type they implement, an error they catch
(168: ``JobNotRunnable``, which ``MigrationService.run`` raises; 170: ``RollbackHoldLost``, which
``MigrationService.rollback`` raises, and ``WholeAccountDelete``, which a ``JobStore`` records and
gives back in ``renew_rollback`` and ``adopt_rollback_chunk``; 171: ``SourceChanged``, which ``run_job``
and ``run_shard`` raise on a resume over a file rewritten since; 173: ``OmittedChanges``, which an
``AuditRow`` from the PostgreSQL source holds for a value too large to fetch, and ``SourceQueryFailed``,
which a run over that source raises for a query error no retry changes; 174: ``UntranslatableText``,
which an ``AuditRow`` from that source holds for a text value that is no text in its database's
encoding; 175: ``UntranslatableCharacter``, the ``SourceQueryFailed`` a run over that source raises for
such a value in a looked-up user or entity, which the database never refused; 176:
``VerifyOptionInvalid``, which ``MigrationService.verify`` raises for a sample or seed out of range)."""

CORE_MODULES = re.compile(r"^crm_audit_transform(\.[a-z_.]+)?$")


def public_namespaces() -> list[ModuleType]:
    return [crm_audit_transform, *(importlib.import_module(f"crm_audit_transform.{s}") for s in SUBPACKAGES)]


def documented_imports() -> list[tuple[str, str, str]]:
    """(file, module, name) of every ``from crm_audit_transform… import name`` in the README's and
    docs' Python examples."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL):
            # Examples may elide code (``...``, "…"): read their import lines one by one.
            lines = [line for line in block.splitlines() if line.startswith("from crm_audit_transform")]
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.ImportFrom) and node.module and CORE_MODULES.match(node.module):
                    found.extend((page.name, node.module, alias.name) for alias in node.names)
    return found


class TestPublicApi:
    @pytest.mark.parametrize("module", public_namespaces(), ids=lambda m: m.__name__)
    def test_all_is_sorted_unique_and_resolves(self, module: ModuleType) -> None:
        """Each public ``__all__`` lists names once (ruff's RUF022 keeps them sorted), each resolvable."""
        names = list(module.__all__)
        assert len(names) == len(set(names))
        assert [name for name in names if not hasattr(module, name)] == []

    def test_the_public_surface_stays_within_its_budget(self) -> None:
        """The exported names, summed over the public namespaces, stay at or under the budget."""
        total = sum(len(module.__all__) for module in public_namespaces())
        assert total <= SURFACE_BUDGET, f"{total} public names; the budget is {SURFACE_BUDGET}"

    def test_every_exported_class_and_function_has_a_docstring(self) -> None:
        """docs/api.md gives each exported class and function a summary: none is left without one."""
        summary = runpy.run_path(str(API_DOC_SCRIPT))["_summary"]
        undocumented = [
            f"{module.__name__}.{name}"
            for module in public_namespaces()
            for name in module.__all__
            if (inspect.isclass(obj := getattr(module, name)) or inspect.isroutine(obj)) and not summary(obj)
        ]
        assert undocumented == []

    def test_the_readme_and_docs_examples_import_only_exported_names(self) -> None:
        """Every name a documented example imports from the library is in that module's ``__all__``."""
        imports = documented_imports()
        assert ("README.md", "crm_audit_transform", "Transformer") in imports
        private = [
            f"{page}: from {module} import {name}"
            for page, module, name in imports
            if name not in getattr(importlib.import_module(module), "__all__", ())
        ]
        assert private == []

    def test_internal_helpers_are_not_exported(self) -> None:
        """The use-case functions, the planner and the rule classes stay internal: services use the
        ``MigrationService``, stage authors the ``RuleChain``."""
        exported = {name for module in public_namespaces() for name in module.__all__}
        assert exported.isdisjoint(
            {"run_job", "migrate_batch", "plan_patches", "CategoryMapper", "parse_int"}
        )

    def test_api_doc_is_generated_from_the_current_exports(self) -> None:
        """docs/api.md equals what scripts/api_doc.py renders now (run it after changing the API)."""
        render = runpy.run_path(str(API_DOC_SCRIPT))["render"]
        assert (ROOT / "docs" / "api.md").read_text() == render()
