"""The optional compiled loader, built the way PyYAML builds its ``_yaml`` extension.

``crm_audit_transform.loading._cbuild`` (Cython over libyaml: ``libyaml-dev`` / ``yaml.h``) is a
speed-up only: when Cython, a C compiler or libyaml's header is missing, or the build fails for any
other reason, the package installs without it and loads with the pure path, with identical
results. ``CRM_AUDIT_PURE=1`` skips the build on purpose. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = "src/crm_audit_transform/loading/_cbuild.pyx"


class OptionalBuildExt(build_ext):
    """Build the extension if this machine can; otherwise say so once and carry on without it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            _skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _skip(exc)


def _skip(exc: BaseException) -> None:
    print(f"crm-audit-transform: compiled loader not built ({exc}); using the pure path", file=sys.stderr)


def _extensions() -> list[Extension]:
    if os.environ.get("CRM_AUDIT_PURE") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _skip(ImportError("Cython is not installed"))
        return []
    extension = Extension("crm_audit_transform.loading._cbuild", [SOURCE], libraries=["yaml"])
    try:
        return list(cythonize([extension], quiet=True))
    except Exception as exc:
        _skip(exc)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
