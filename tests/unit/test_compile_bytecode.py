"""``scripts/compile_bytecode.py``: a pytest process that writes no bytecode (``PYTHONDONTWRITEBYTECODE``,
as on CI) reads the test modules' rewritten bytecode it wrote, asserts still rewritten, and the plain
bytecode of the modules they import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
