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
        done = list(pool.map(write_rewritten, rewritten(directories), chunksize=8))
    if not plain or not all(done):
        print(f"compile_bytecode: {done.count(False)} test module(s), and any above, left", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
