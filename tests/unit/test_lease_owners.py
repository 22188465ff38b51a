"""Lease owners: one per process, never shared by two processes with one host name and one PID."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crm_audit_adapters.lease_owners import lease_owner, process_token

# What a container's process sees: the host's name (the host's network) and PID 1 (its own PID
# namespace). Each run of this is another process.
AS_PID_1 = """
import os, sys
os.getpid = lambda: 1
if sys.argv[1] == "celery":
    from crm_audit_adapters.celery import tasks
    print(tasks._owner(None))
else:
    from crm_audit_adapters.lease_owners import lease_owner
    print(lease_owner())
"""


@pytest.mark.parametrize("kind", ["celery", "run"])
def test_two_processes_with_one_host_name_and_pid_are_two_owners(kind: str) -> None:
    """Two workers (or two `run`s) on one host's network, each PID 1 in its container, were both
    ``host:1`` and shared the lease: the second ran the account beside the first, which then ended
    ``LEASE_HELD`` ("another runner took it over"). Now each process draws a token of its own."""
    owners = [
        subprocess.run(
            [sys.executable, "-c", AS_PID_1, kind], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        for _ in range(2)
    ]
    assert owners[0] != owners[1]
    assert all(owner.split(":")[1] == "1" for owner in owners)


def test_one_process_is_one_owner() -> None:
    """A task redelivered to a live worker process must meet that process's own lease."""
    assert lease_owner() == lease_owner()
    token = process_token()
    assert len(token) == 8
    assert lease_owner(pid=42, token="abcd0123").endswith(":42:abcd0123")
