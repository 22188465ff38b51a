"""Per-process CPU accounting of a benchmark window, from /proc (Linux only).

A wall-clock speed-up on a shared machine says nothing by itself: two workers that each got a
fifth of a core look like no scaling at all. So a run is also accounted per process:

- **CPU seconds** — ``utime + stime`` of ``/proc/PID/stat`` (every thread, exited ones included),
  in clock ticks (10 ms);
- **run-queue wait** — the 2nd field of ``/proc/PID/task/TID/schedstat``, summed over the
  process's threads: nanoseconds the thread was runnable but another task had the CPU (threads that
  exited during the window are not counted);
- the rest of the wall time a process was neither running nor waiting for a CPU: blocked (on a
  socket, a lock, a sleep).

And the machine: busy cores from ``/proc/stat`` (everyone's CPU, so "others" = busy − ours) and the
CPU pressure stall ``/proc/pressure/cpu`` ("some": share of the window in which at least one
runnable task waited for a CPU).

    snap = Snapshot.take({"worker0": [pid], "postgres": children_of(postmaster)})
    ...
    usage = snap.since()   # {"worker0": Usage(cpu_s, wait_s), ...}, machine figures
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MachineUsage", "Snapshot", "Usage", "autogroup", "children_of", "parent_pid"]

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One process group's CPU seconds and run-queue wait seconds over the window."""

    cpu_s: float
    wait_s: float


@dataclass(frozen=True)
class MachineUsage:
    """The whole machine over the window: wall seconds, busy CPU-seconds, CPU-pressure stall seconds."""

    wall_s: float
    busy_cpu_s: float
    stall_s: float | None  # None without /proc/pressure/cpu


def autogroup(pid: int) -> str:
    """The scheduler's autogroup of ``pid`` (``/autogroup-N``), "" without one.

    With ``kernel.sched_autogroup_enabled`` the CPU is shared fairly between *sessions* first: every
    process started from one shell shares that session's share, so under contention two workers
    in one session get what one would have got.
    """
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return ""


def parent_pid(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def children_of(root: int) -> Callable[[], list[int]]:
    """A group whose members are ``root`` and its live children *now* (PostgreSQL's backends)."""

    def members() -> list[int]:
        found = [root]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if parent_pid(int(entry.name)) == root:
                        found.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue  # exited meanwhile
        return found

    return members


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and ")": split after its last ")".
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _process(pid: int) -> tuple[float, float] | None:
    """(CPU s, run-queue wait s) of a live process, None once it has gone."""
    try:
        fields = _stat_fields(pid)
        cpu = (int(fields[11]) + int(fields[12])) * _TICK_S
        wait_ns = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                wait_ns += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except (OSError, IndexError, ValueError):
        return None
    return cpu, wait_ns / 1e9


def _machine() -> tuple[float, float, float | None]:
    """(monotonic s, busy CPU s of every core, CPU-pressure "some" stall s)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal …: busy = user + nice + system + irq + softirq
    # (guest time is inside user and nice; steal is time the hypervisor gave to someone else).
    busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) * _TICK_S
    stall: float | None = None
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        some = pressure.read_text().splitlines()[0]
        stall = int(some.rsplit("total=", 1)[1]) / 1e6
    return time.monotonic(), busy, stall


Members = list[int] | Callable[[], list[int]]


class Snapshot:
    """Counters of named process groups and of the machine at one moment; ``since()`` the deltas."""

    def __init__(
        self,
        groups: Mapping[str, Members],
        at: dict[str, dict[int, tuple[float, float]]],
        machine: tuple[float, float, float | None],
    ) -> None:
        self._groups = groups
        self._at = at
        self._machine = machine

    @classmethod
    def take(cls, groups: Mapping[str, Members]) -> Snapshot:
        return cls(groups, _read(groups), _machine())

    def since(self) -> tuple[dict[str, Usage], MachineUsage]:
        """Each group's usage since the snapshot (a process born meanwhile counts from zero;
        one that ended meanwhile is lost, so take this before stopping anything), and the machine's."""
        now = _read(self._groups)
        usage = {}
        for name, processes in now.items():
            before = self._at.get(name, {})
            cpu = sum(c - before.get(pid, (0.0, 0.0))[0] for pid, (c, _) in processes.items())
            wait = sum(w - before.get(pid, (0.0, 0.0))[1] for pid, (_, w) in processes.items())
            usage[name] = Usage(cpu, wait)
        t1, busy1, stall1 = _machine()
        t0, busy0, stall0 = self._machine
        stall = None if stall0 is None or stall1 is None else stall1 - stall0
        return usage, MachineUsage(t1 - t0, busy1 - busy0, stall)


def _read(groups: Mapping[str, Members]) -> dict[str, dict[int, tuple[float, float]]]:
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for name, members in groups.items():
        pids = members() if callable(members) else members
        out[name] = {pid: got for pid in pids if (got := _process(pid)) is not None}
    return out
