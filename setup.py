"""The optional compiled extensions, built the way PyYAML builds its ``_yaml`` extension.

``crm_audit_transform.loading._cbuild`` (the loader: Cython over libyaml, ``libyaml-dev`` /
``yaml.h``), ``crm_audit_adapters.mongo._cline`` (the JSONL sink's line: Cython, no library) and
``crm_audit_transform._cslots`` (the per-row value classes' slot writes: Cython, no library) are
speed-ups only: when Cython, a C compiler or libyaml's header is missing, or a build fails for any
other reason, the package installs without that extension and runs the pure path, with identical
results. ``CRM_AUDIT_PURE=1`` skips every build on purpose. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXTENSIONS = (
    ("crm_audit_transform.loading._cbuild", "src/crm_audit_transform/loading/_cbuild.pyx", ["yaml"]),
    ("crm_audit_adapters.mongo._cline", "src/crm_audit_adapters/mongo/_cline.pyx", []),
    ("crm_audit_transform._cslots", "src/crm_audit_transform/_cslots.pyx", []),
)


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
    print(f"crm-audit-transform: a compiled extension not built ({exc}); using the pure path", file=sys.stderr)


def _extensions() -> list[Extension]:
    if os.environ.get("CRM_AUDIT_PURE") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _skip(ImportError("Cython is not installed"))
        return []
    built: list[Extension] = []
    for name, source, libraries in EXTENSIONS:  # one at a time: a failure skips only its own
        try:
            built += cythonize([Extension(name, [source], libraries=libraries)], quiet=True)
        except Exception as exc:
            _skip(exc)
    return built


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
