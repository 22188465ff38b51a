"""A task broker that takes the connection and never answers: ``enqueue`` gives up, it does not hang."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from crm_audit_adapters.cli import cli, exit_codes, workers

PASSWORD = "Kx9vQ7zR-broker"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts every connection and never sends a byte (a port that is not
    Redis's, a proxy or firewall holding the connection)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_enqueue_gives_up_on_a_broker_that_never_answers(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNAVAILABLE (exit 6) once the check's answer timeout has passed on each of its two tries,
    nothing triggered, the password hidden. Before, redis-py read the broker's answer with no
    timeout and ``enqueue`` waited for ever (this test's process was killed at its timeout)."""
    monkeypatch.setattr(workers, "BROKER_ANSWER_TIMEOUT_S", 0.5)
    env = {
        "CRM_AUDIT_SETTINGS": "",
        "CRM_AUDIT_BROKER_URL": f"redis://:{PASSWORD}@127.0.0.1:{silent_port}/0",
        "CRM_AUDIT_MONGO_URI": "mongomock://",
        "CRM_AUDIT_DATABASE_URL": "postgresql://ro@127.0.0.1:1/crm",
        "CRM_AUDIT_ENABLED_COMPANIES": "*",
        "CRM_AUDIT_TENANTS": "acme-sso=acme",
    }
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["enqueue", "--company-sso-id", "acme-sso"], env=env)
    assert time.monotonic() - started < 30
    assert result.exit_code == exit_codes.CODES["UNAVAILABLE"], result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: UNAVAILABLE: the broker at redis://:***@127.0.0.1:")
    assert "nothing was enqueued" in line
    assert PASSWORD not in result.output
