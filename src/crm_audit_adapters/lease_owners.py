"""Who holds a job's (or a shard's) lease: its process, named by host, PID and a token of its own.

``status`` shows the owner (``host:pid:token``, a Celery worker's with ``:celery``). Host and PID
alone do not tell two processes apart: containers that share the host's network share its host
name, and the process each of them starts is PID 1 (a prefork child gets the same PID in each
too). Two runs of one account there had one owner, ``host:1``, and the lease let the second run it
beside the first, which then ended ``LEASE_HELD`` ("another runner took it over"). The token is
drawn once per process (again after a fork), so one process stays one owner, as a Celery task
redelivered to a live worker must find it.
"""

from __future__ import annotations

import os
import socket

_TOKENS: dict[int, str] = {}


def process_token() -> str:
    """This process's token: 8 hex digits, drawn on first use in each process."""
    pid = os.getpid()
    token = _TOKENS.get(pid)
    if token is None:
        # os.urandom, not secrets: a dry run's start-up imports neither secrets nor hashlib.
        token = _TOKENS[pid] = os.urandom(4).hex()
    return token


def lease_owner(pid: int | None = None, token: str | None = None) -> str:
    """``host:pid:token`` of this process, or of the process ``pid`` whose token is ``token`` (a
    shard process the runner started, its token handed to it)."""
    if pid is None:
        pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_token() if token is None else token}"
