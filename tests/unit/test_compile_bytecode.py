"""``scripts/compile_bytecode.py``: a pytest process that writes no bytecode (``PYTHONDONTWRITEBYTECODE``,
as on CI) reads the test modules' rewritten bytecode it wrote, asserts still rewritten, and the plain
bytecode of the modules they import."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compile_bytecode.py"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_pytest_reads_the_rewritten_modules_and_its_asserts_stay_rewritten(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "helper.py").write_text("EXPECTED = 2\n")
    (tests / "conftest.py").write_text("")
    (tests / "test_one.py").write_text(
        "from helper import EXPECTED\n\ndef test_one():\n    found = 1\n    assert found == EXPECTED\n"
    )

    compiled = run([sys.executable, str(SCRIPT), "tests"], tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stderr == ""
    cache = tests / "__pycache__"
    tag = sys.implementation.cache_tag
    assert (cache / f"helper.{tag}.pyc").is_file()
    assert sorted(p.name.split(".")[0] for p in cache.glob(f"*.{tag}-pytest-*.pyc")) == [
        "conftest",
        "test_one",
    ]

    # Without the installed plugins (schemathesis's alone is 20 modules pytest rewrites): a quick start.
    session = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--debug=debug.log"], tmp_path)
    assert session.returncode == 1, session.stdout
    assert "assert 1 == 2" in session.stdout  # the rewritten assert's explanation
    ours = [line.strip() for line in (tmp_path / "debug.log").read_text().splitlines() if str(tests) in line]
    assert f"found cached rewritten pyc for {tests / 'test_one.py'} [assertion]" in ours
    assert not [line for line in ours if line.startswith("rewriting")]
    assert not list(cache.glob("*.pyc.*"))  # nothing left half written


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compile_bytecode", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_writes_every_plugin_module_this_session_rewrote(pytestconfig: pytest.Config) -> None:
    """Each module of an installed plugin's package that this pytest process imported and marked for
    rewrite (hypothesis, schemathesis…: it writes no bytecode of them either) is one the script
    writes the rewritten bytecode of, so that no test process rewrites them again."""
    hook = pytestconfig.pluginmanager.rewrite_hook
    marked = tuple(getattr(hook, "_must_rewrite", ()))
    assert marked, "no plugin marked for rewrite: the installed plugins are autoloaded"
    # pytest's own pytester is marked too once a test module asks for it: not a plugin's package.
    plugins = [mark for mark in marked if mark.split(".")[0] != "_pytest"]
    imported = {
        Path(module.__file__).resolve()
        for name, module in list(sys.modules.items())
        if any(name == mark or name.startswith(f"{mark}.") for mark in plugins)
        and (getattr(module, "__file__", None) or "").endswith(".py")
        and "site-packages" in (module.__file__ or "")
    }
    assert len(imported) > 50  # hypothesis's alone
    written = {path.resolve() for path in _script().plugin_modules()}
    assert imported <= written, sorted(map(str, imported - written))[:5]
