"""Peak RSS of a file dry run whose lines are mostly set aside: one process and ``--workers 2``.

    nice -n 5 .venv/bin/python benchmarks/unreadable_memory.py --lines 200000 [--lines 50000]
        [--repeats 200000 ...] [--src NAME=SRC ...] [--repeat 1]

Writes (once, under ``data/unreadable_in_scope_<lines>/``) a JSONL audits file of ``bench`` lines
(of type ``Crm::Person``, in the default scope: a line of a type outside it is not counted) that each
carry a readable id but cannot become a row (``"action": 5``: set aside as ``invalid_audit_row``),
with one readable row every 10,000 lines, and takes the users, contacts and SSO files of
``dry_run_scale.py``'s 1,000-row data. After one unmeasured run of each tree on 10,000 lines (its
first command compiles its modules' bytecode, tens of MiB of its own), runs ``crm-audit-migrate
dry-run … --out FILE --outcomes FILE --no-progress`` over it, in one process and with
``--workers 2``, for each tree, trees interleaved (``--src NAME=SRC``: a ``src`` directory put
first on ``PYTHONPATH``, e.g. ``git archive REV src`` with this tree's compiled extensions copied
in; default: this tree's own). ``--repeats N`` (a hostile file) writes instead, under
``data/repeats_<N>/``, one readable row repeated ``N`` times (each repeat set aside as
``duplicate_audit_id``) and then 999 readable rows of the next ids.

CPU is the command's user + system seconds with every process under it that it waited for
(``wait4``). Peak RSS is the kernel's high-water mark, ``VmHWM`` in ``/proc/PID/status``, of the
command's own process and of every process under it (the fork server, its workers), read every
20 ms while each lives (a process that grows in its last 20 ms is under-read). Not ``wait4``'s
``ru_maxrss``: a child forked from this script keeps this script's own high-water mark across its
``exec``, so a script that held an output file to hash it made the next command look as large.
The outputs of each tree are compared byte for byte with the first tree's. ``uptime`` is printed
before and after.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import arguments, uptime  # noqa: E402
from dry_run_scale import installed_env, prepare  # noqa: E402 - benchmarks are scripts beside each other
from generate import COMPANY_SSO_ID  # noqa: E402

TENANT = "bench"
READABLE_EVERY = 10_000


BASE_AUDIT = {
    "tenant": TENANT,
    "auditable_type": "Crm::Person",
    "auditable_id": 1,
    "created_at": "2024-01-01 00:00:00",
    "audited_changes": "---\nname: x\n",
}
"""Every line's fields but ``id`` and ``action``."""


def _written_once(name: str, lines: Iterator[dict[str, Any]]) -> Path:
    """``data/<name>/audits.jsonl`` with one JSON object a line, written unless it exists."""
    folder = HERE / "data" / name
    path = folder / "audits.jsonl"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps({**BASE_AUDIT, **line}) + "\n")
    return path


def write_audits(lines: int) -> Path:
    """The audits file of ``lines`` lines (see the module docstring), written once."""
    return _written_once(
        f"unreadable_in_scope_{lines}",
        (
            {"id": audit_id, "action": "update" if audit_id % READABLE_EVERY == 0 else 5}
            for audit_id in range(1, lines + 1)
        ),
    )


def write_repeats(repeats: int) -> Path:
    """The audits file of one row repeated ``repeats`` times, then 999 rows (``--repeats``), written once."""
    ids = itertools.chain(itertools.repeat(1, repeats + 1), range(2, 1001))
    return _written_once(f"repeats_{repeats}", ({"action": "update", "id": audit_id} for audit_id in ids))


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                todo.append(child)
    return found


def _hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(command: list[str], env: dict[str, str]) -> tuple[float, dict[int, float], float, float]:
    """(the command's peak RSS MiB, each process's under it by pid, wall seconds, CPU seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peaks: dict[int, float] = {}
    own = [0.0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            own[0] = max(own[0], _hwm_mib(proc.pid) or 0.0)
            for child in _descendants(proc.pid):
                hwm = _hwm_mib(child)
                if hwm is not None:
                    peaks[child] = max(hwm, peaks.get(child, 0.0))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    own[0] = max(own[0], _hwm_mib(proc.pid) or 0.0)  # a zombie's status has no VmHWM: read it before
    _, wait_status, usage = os.wait4(proc.pid, 0)
    status = proc.returncode = os.waitstatus_to_exitcode(wait_status)
    done.set()
    watcher.join()
    if status not in (0, 2):  # 2: the report's failures past the halt rule
        raise RuntimeError(f"{' '.join(command[:2])} failed: {stderr.decode()[-2000:]}")
    return own[0], peaks, time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def _command(script: Path, audits: Path, inputs: Path, out: Path, workers: int) -> list[str]:
    """The dry run over ``audits``, its documents and outcome lines written beside ``out``."""
    return [
        str(script), "dry-run", "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT,
        "--audits", str(audits), "--users", str(inputs / "users.jsonl"),
        "--contacts", str(inputs / "contacts.jsonl"), "--sso-directory", str(inputs / "sso.jsonl"),
        "--no-progress", "--out", f"{out}-logs.jsonl", "--outcomes", f"{out}-outcomes.jsonl",
        *(["--workers", str(workers)] if workers > 1 else []),
    ]  # fmt: skip


def _env(src: str) -> dict[str, str]:
    """``installed_env``, with ``src`` first on ``PYTHONPATH`` when given."""
    env = installed_env()
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:16]


def main() -> int:
    parser = arguments(__doc__, repeat=1)
    parser.add_argument("--lines", type=int, action="append", default=[])
    parser.add_argument("--repeats", type=int, action="append", default=[])
    parser.add_argument("--src", action="append", default=[], metavar="NAME=SRC")
    args = parser.parse_args()
    trees = [tuple(item.split("=", 1)) for item in args.src] or [("this", "")]
    script = Path(sys.executable).with_name("crm-audit-migrate")
    inputs = prepare(1000)
    out = HERE / "out" / "unreadable"
    out.mkdir(parents=True, exist_ok=True)
    # A first command of each tree compiles its modules' bytecode (installed_env's cache), which
    # takes tens of MiB of its own: one small unmeasured run each first.
    small = write_audits(READABLE_EVERY)
    for _, src in trees:
        for workers in (1, 2):
            run(_command(script, small, inputs, out / "warm", workers), _env(src))
    print(f"load before: {uptime()}")
    digests: dict[tuple[str, str], tuple[str, str]] = {}
    for round_ in range(args.repeat):
        files = [(f"lines {n:,}", write_audits(n)) for n in args.lines]
        files += [(f"repeats {n:,}", write_repeats(n)) for n in args.repeats]
        for lines, audits in files:
            for workers in (1, 2):
                for name, src in trees:
                    runner, others, wall, cpu = run(
                        _command(script, audits, inputs, out / name, workers), _env(src)
                    )
                    digest = (_digest(out / f"{name}-logs.jsonl"), _digest(out / f"{name}-outcomes.jsonl"))
                    first = digests.setdefault((lines, str(workers)), digest)
                    same = "same outputs" if digest == first else f"OUTPUTS DIFFER {digest} vs {first}"
                    children = ", ".join(f"{peak:.1f}" for peak in sorted(others.values(), reverse=True))
                    print(
                        f"round {round_ + 1} {lines} workers {workers} tree {name}: runner peak "
                        f"{runner:.1f} MiB; other processes {children or '-'} MiB; {wall:.1f} s wall, "
                        f"{cpu:.1f} s CPU; {same}"
                    )
    print(f"load after: {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
