"""The MongoDB wire-protocol emulator as a separate server process on a free loopback port.

``scripts/mongoeco-env`` builds its interpreter (mongoeco needs Python >= 3.13; the project does not)
and ``scripts/mongo_emulator.py`` serves mongoeco's in-memory engine. pymongo reaches it over TCP
exactly as it reaches a MongoDB server, so every test that uses it crosses a process boundary and
pymongo's network path. It is an emulator, not MongoDB: where it and mongomock disagree, the tests
decide by what MongoDB documents (docs/mongodb.md).

A missing Python 3.13 is an error, never a skip: the emulator is part of the suite.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from .redis_server import die_with_parent

__all__ = ["MongoEmulator", "emulator_python"]

ROOT = Path(__file__).resolve().parents[2]
ENV_SCRIPT = ROOT / "scripts" / "mongoeco-env"
SERVER_SCRIPT = ROOT / "scripts" / "mongo_emulator.py"
START_TIMEOUT_S = 60.0


def emulator_python() -> str:
    """The emulator venv's interpreter, built on first use; ``RuntimeError`` naming the fix if not."""
    built = subprocess.run([str(ENV_SCRIPT)], capture_output=True, text=True, timeout=900, check=False)
    if built.returncode != 0:
        raise RuntimeError(
            "the MongoDB emulator cannot be built (scripts/mongoeco-env): "
            + (built.stderr.strip().splitlines() or ["no output"])[-1]
        )
    return built.stdout.strip().splitlines()[-1]


class MongoEmulator:
    """``with MongoEmulator() as uri:`` a wire-protocol server for as long as the block runs.

    The server also stops when its stdin closes or its parent dies (``PR_SET_PDEATHSIG``), so it
    cannot outlive this process even after a ``kill -9`` of the test session.
    """

    def __init__(self, python: str | None = None) -> None:
        self._python = python
        self._process: subprocess.Popen[str] | None = None
        # A file, not a pipe: a server that logs a lot must never block on a pipe nobody reads.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in __exit__
        self.uri = ""

    def __enter__(self) -> str:
        python = self._python or emulator_python()
        self._process = subprocess.Popen(
            [python, str(SERVER_SCRIPT), "--port", "0", "--until-stdin-closes"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            # Its own environment holds its bytecode: the session's cache (tests/conftest.py) is not for it.
            env={**_without(os.environ, "PYTHONPYCACHEPREFIX"), "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent,
        )
        self.uri = self._first_line(self._process)
        return self.uri

    def _first_line(self, process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    line = process.stdout.readline().strip()
                    if line.startswith("mongodb://"):
                        return line
                    break
                if process.poll() is not None:
                    break
        process.kill()
        process.wait(timeout=10)
        self._stderr.seek(0)
        raise RuntimeError(f"the MongoDB emulator did not start: {self._stderr.read().strip()[-2000:]}")

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the server's cue to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()


def _without(environ: Mapping[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in environ.items() if key != name}
