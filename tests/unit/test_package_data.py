"""The wheel ships every compiled extension's stub and none of Cython's generated C.

A stub left out of ``package-data`` makes an installed package's mypy users see the
extension as untyped; a generated ``.c`` shipped is dead weight in the wheel.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def _patterns(table: str, package: str) -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: list[str] = config["tool"]["setuptools"][table].get(package, [])
    return patterns


def _matches(path: Path, package: str, patterns: list[str]) -> bool:
    relative = path.relative_to(SRC / package).as_posix()
    return any(fnmatch(relative, pattern) for pattern in patterns)


def _extensions() -> list[tuple[str, Path]]:
    found = []
    for package_dir in sorted(SRC.iterdir()):
        if package_dir.is_dir() and (package_dir / "__init__.py").exists():
            found += [(package_dir.name, pyx) for pyx in sorted(package_dir.rglob("*.pyx"))]
    return found


def test_there_are_extensions_to_check() -> None:
    """The checks below have extensions to look at (a wrong source path would pass them all)."""
    assert len(_extensions()) >= 3


def test_every_extension_stub_is_package_data() -> None:
    """Each ``.pyx``'s ``.pyi`` is matched by a ``package-data`` pattern of its package."""
    missing = [
        str(pyx.with_suffix(".pyi").relative_to(SRC))
        for package, pyx in _extensions()
        if pyx.with_suffix(".pyi").exists()
        and not _matches(pyx.with_suffix(".pyi"), package, _patterns("package-data", package))
    ]
    assert missing == []


def test_every_extension_has_a_stub() -> None:
    """Each ``.pyx`` has a ``.pyi`` beside it, for mypy users of the installed package."""
    assert [
        str(pyx.relative_to(SRC)) for _, pyx in _extensions() if not pyx.with_suffix(".pyi").exists()
    ] == []


def test_generated_c_is_excluded() -> None:
    """Each ``.pyx``'s generated ``.c`` is matched by an ``exclude-package-data`` pattern."""
    shipped = [
        str(pyx.with_suffix(".c").relative_to(SRC))
        for package, pyx in _extensions()
        if not _matches(pyx.with_suffix(".c"), package, _patterns("exclude-package-data", package))
    ]
    assert shipped == []
