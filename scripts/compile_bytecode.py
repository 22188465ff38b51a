"""Compiles the package and the tests once, before the suite, so its test processes read the bytecode.

Where bytecode is not written (``PYTHONDONTWRITEBYTECODE``, set on the CI machine), every test
process (pytest-xdist's controller and its three workers, each collecting the whole suite) compiled
the package's and the tests' sources again, and rewrote every test module's asserts, as pytest does on
import: about 6 s of CPU a process (ast parse, assert rewrite and compile of 2.2 MB of tests). The
variable only stops a process from writing bytecode; each still reads what it finds. So this writes,
in the ``__pycache__`` directories beside the sources (ignored by git):

- the plain bytecode of every module under the given directories (``compileall``, timestamp-checked);
- pytest's rewritten bytecode of each module pytest rewrites as it collects (``test_*.py``,
  ``*_test.py``, ``conftest.py``), in pytest's own format, name and directory
  (``_pytest.assertion.rewrite``): pytest checks its version tag and the source's hash as it reads
  one, and rewrites the module itself when either differs.

- the same rewritten bytecode of the installed pytest plugins' packages (``plugin_modules``), beside
  them in the virtual environment: pytest rewrites the asserts of every module of a distribution
  that declares a ``pytest11`` entry point (hypothesis, schemathesis, syrupy, anyio, xdist,
  platformdirs here: 594 modules) as any process imports them, and writes no bytecode of them
  either. Each test process rewrote the ~300 it imports again: collecting one test file took
  4.5-5.2 s of CPU, 2.0-2.2 s with these written (measured on the 2-core machine).

The assert rewrite is the one pytest makes without ``enable_assertion_pass_hook`` (the project does not
set it). A failure here fails nothing: the suite compiles as before. Run by ``scripts/check``.
Usage: .venv/bin/python scripts/compile_bytecode.py DIRECTORY...
"""

from __future__ import annotations

import compileall
import fnmatch
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REWRITTEN = ("test_*.py", "*_test.py", "conftest.py")
"""The modules pytest rewrites as it collects: its default ``python_files`` and the conftest files."""


def rewritten(directories: list[Path]) -> list[Path]:
    """The modules under ``directories`` that pytest rewrites on import, absolute paths, sorted."""
    found = {
        path.resolve()
        for directory in directories
        for path in directory.rglob("*.py")
        if "__pycache__" not in path.parts and any(fnmatch.fnmatch(path.name, p) for p in REWRITTEN)
    }
    return sorted(found)


def plugin_modules() -> list[Path]:
    """The source files pytest rewrites as the installed plugins import them: every module of each
    package or module it marks for rewrite from the distributions with a ``pytest11`` entry point
    (``_pytest.config``'s ``_mark_plugins_for_rewrite``, by the same ``_iter_rewritable_modules``)."""
    import importlib.metadata
    import importlib.util

    from _pytest.config import _iter_rewritable_modules

    files = (
        str(file)
        for dist in importlib.metadata.distributions()
        if any(entry.group == "pytest11" for entry in dist.entry_points)
        for file in dist.files or []
    )
    found: set[Path] = set()
    for name in set(_iter_rewritable_modules(files)):
        spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            found.update(
                path for location in spec.submodule_search_locations for path in Path(location).rglob("*.py")
            )
        elif spec.origin.endswith(".py"):
            found.add(Path(spec.origin))
    return sorted(found)


def write_rewritten(path: Path) -> bool:
    """Writes pytest's rewritten bytecode of ``path`` where pytest looks for it; False on an error
    (an unwritable directory, a syntax error pytest then reports itself)."""
    from _pytest.assertion import rewrite

    try:
        source_hash, code = rewrite._rewrite_test(path, None)  # type: ignore[arg-type]
        cache = rewrite.get_cache_dir(path)
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f"{path.name[:-3]}{rewrite.PYC_TAIL}.{os.getpid()}"
        with partial.open("wb") as out:
            rewrite._write_pyc_fp(out, source_hash, code)
        os.replace(partial, cache / f"{path.name[:-3]}{rewrite.PYC_TAIL}")
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def main(argv: list[str]) -> int:
    directories = [Path(arg) for arg in argv] or [Path("src"), Path("tests")]
    plain = all(compileall.compile_dir(d, quiet=1, workers=0) for d in directories)
    with ProcessPoolExecutor() as pool:
        done = list(pool.map(write_rewritten, [*rewritten(directories), *plugin_modules()], chunksize=8))
    if not plain or not all(done):
        print(
            f"compile_bytecode: {done.count(False)} module(s) to rewrite, and any above, left",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
