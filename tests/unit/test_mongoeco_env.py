"""``scripts/mongoeco-env`` run twice at once builds the emulator's environment once: the second waits
for the first and finds it built, instead of removing what the first is installing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for Python 3.13: passes the version probe, makes a "virtual environment" (itself as its
# python) and, as pip, counts the build and takes its time, until both runs have started.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
  "-c "*) exit 0 ;;
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "-m pip install "*)
    echo build >> "$BUILDS"
    for _ in $(seq 100); do [ -e "$BOTH_STARTED" ] && break; sleep 0.05; done
    sleep 0.3 ;;
  *) exit 1 ;;
esac
"""


def test_two_runs_at_once_build_the_environment_once(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "mongoeco-env", tmp_path / "scripts" / "mongoeco-env")
    (tmp_path / "scripts" / "mongoeco-requirements.txt").write_text("mongoeco\n")
    fake = tmp_path / "python3.13"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {
        **os.environ,
        "CRM_AUDIT_MONGOECO_PYTHON": str(fake),
        "BUILDS": str(tmp_path / "builds"),
        "BOTH_STARTED": str(tmp_path / "both-started"),
    }
    runs = [
        subprocess.Popen(
            ["bash", str(tmp_path / "scripts" / "mongoeco-env")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    (tmp_path / "both-started").touch()
    ended = [run.communicate(timeout=60) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], ended
    assert [out for out, _ in ended] == [f"{tmp_path}/.venv-mongoeco/bin/python\n"] * 2
    assert (tmp_path / "builds").read_text() == "build\n"
    assert (tmp_path / ".venv-mongoeco" / ".installed").exists()
