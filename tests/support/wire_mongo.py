"""A MongoDB that several processes share: the configured server, else mongoeco's wire server.

Celery workers are separate processes, so they cannot share a mongomock client. The
``wire_mongo_uri`` session fixture answers with ``CRM_AUDIT_TEST_MONGO_URI`` when it is set, and
otherwise starts ``mongoeco_serve.py`` (mongoeco's in-memory engine behind its MongoDB
wire-protocol server) under a Python ≥ 3.13 found on the machine, in a virtual environment
``.venv-mongoeco`` built once from PyPI. Each test takes its own database name from
``wire_mongo_database`` so accounts never meet across tests.

mongoeco checks a unique index by scanning the collection, so an insert costs time in
proportion to the documents already there: fine for the corpus accounts, not for benchmarks.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from .mongo import MONGO_URI_ENV
from .redis_server import die_with_parent

__all__ = ["wire_mongo_database", "wire_mongo_uri"]

ROOT = Path(__file__).resolve().parents[2]
MONGOECO_VENV = ROOT / ".venv-mongoeco"
MONGOECO_REQUIREMENT = "mongoeco[wire]==4.11.0"
SERVE = Path(__file__).with_name("mongoeco_serve.py")


def _python313() -> str:
    candidates = [shutil.which("python3.13") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[3-9]*/bin/python3.1[3-9]")))
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-V"], capture_output=True, check=False).returncode == 0:
            return candidate
    raise RuntimeError(
        "mongoeco's wire server needs Python >= 3.13; none found (or set CRM_AUDIT_TEST_MONGO_URI)"
    )


def mongoeco_python() -> Path:
    """The interpreter of ``.venv-mongoeco``, built on first use."""
    python = MONGOECO_VENV / "bin" / "python"
    marker = MONGOECO_VENV / ".installed"
    if not marker.exists():
        subprocess.run([_python313(), "-m", "venv", str(MONGOECO_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", MONGOECO_REQUIREMENT], check=True)
        marker.touch()
    return python


@pytest.fixture(scope="session")
def wire_mongo_uri() -> Iterator[str]:
    """A MongoDB URI every process of the session can reach."""
    given = os.environ.get(MONGO_URI_ENV)
    if given:
        yield given
        return
    process = subprocess.Popen(
        [str(mongoeco_python()), str(SERVE)],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip())
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
            client.admin.command("ping")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def wire_mongo_database(wire_mongo_uri: str) -> Iterator[str]:
    """A fresh database name on the shared server, dropped after the test."""
    name = f"crm_audit_wire_{uuid.uuid4().hex[:12]}"
    yield name
    with MongoClient(wire_mongo_uri, serverSelectionTimeoutMS=10_000) as client:
        client.drop_database(name)
