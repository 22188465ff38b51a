"""No module imports another module's private names: a name two modules share is public in its home."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"


def _own_private_module(package: Path, name: str) -> bool:
    """``from . import _name`` where ``_name`` is a module or package of the importing package."""
    return (package / name).is_dir() or any(
        (package / f"{name}{suffix}").exists() for suffix in (".py", ".pyx")
    )


def private_imports(path: Path, root: Path) -> list[str]:
    """``file:line: from module import _name`` for each private name ``path`` imports from elsewhere."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or name.startswith("__"):
                continue
            if node.module is None and node.level == 1 and _own_private_module(path.parent, name):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            found.append(f"{where}: from {'.' * node.level}{node.module or ''} import {name}")
    return found


class TestPrivateNames:
    def test_no_module_imports_another_modules_private_names(self) -> None:
        """Every ``from X import _name`` in src/ is a package importing its own private submodule."""
        found = [line for path in sorted(SRC.rglob("*.py")) for line in private_imports(path, SRC)]
        assert found == []

    def test_a_private_name_from_a_sibling_is_reported(self, tmp_path: Path) -> None:
        """A sibling's private function and a library's private name are reported, a private module not."""
        (tmp_path / "_engine.py").write_text("")
        module = tmp_path / "user.py"
        module.write_text(
            "from . import _engine\nfrom .helpers import _trim, public\nfrom bson.datetime_ms import _to_ms\n"
        )
        assert private_imports(module, tmp_path) == [
            "user.py:2: from .helpers import _trim",
            "user.py:3: from bson.datetime_ms import _to_ms",
        ]
