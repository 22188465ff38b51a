"""The file dry run at growing sizes: time linear, peak RSS flat, rows/s against the bare-parse floor.

    .venv/bin/python benchmarks/dry_run_scale.py --rows 25000 --rows 100000 [--repeat 3]

For each size it writes (once, under ``data/dryrun_<rows>/``) the synthetic CRM of ``generate.py``
as dry-run inputs: ``audits.jsonl`` (the same rows ``generate.py`` loads into PostgreSQL, one JSON
line each, in id order), ``users.jsonl``, ``contacts.jsonl`` and ``sso.jsonl``. Then, in rounds that
alternate sizes and modes (best of ``--repeat``), each in a fresh process whose peak RSS is read
with ``wait4``:

* ``report``: ``crm-audit-migrate dry-run … --no-progress`` (report only, logs encoded and dropped);
* ``out``: the same with ``--out <file>`` (the documents written);
* ``out-workers-N`` (not in the default modes): ``out`` with ``--workers N``; its peak RSS is the
  command's own process (``wait4``), not its workers' (grandchildren, under the fork server);
* ``parse``: the floor, a bare ``yaml.load(text, CSafeLoader)`` of every row's ``audited_changes``
  read from the same file (Ruby tags built as plain maps; only the ``load`` calls are timed).

The mapping is the bundled default (the synthetic tenant ``bench`` has no won/resolved/done id-sets,
so status changes fall through to the generic update). ``uptime`` is recorded before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import arguments, uptime  # noqa: E402
from crm_audit_adapters.files import AUDIT_COLUMNS  # noqa: E402
from generate import (  # noqa: E402 - benchmarks are scripts beside each other
    COMPANY_SSO_ID,
    audit_lines,
    contact_records,
    load_templates,
    sso_records,
    user_records,
)

TENANT = "bench"
_INTEGERS = frozenset({"id", "auditable_id", "associated_id", "user_id", "version"})
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t"}


def _copy_field(text: str) -> str | None:
    if text == "\\N":
        return None
    if "\\" not in text:
        return text
    out, index = [], 0
    while index < len(text):
        pair = text[index : index + 2]
        if pair in _UNESCAPE:
            out.append(_UNESCAPE[pair])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _json_line(copy_line: str) -> str:
    fields = [_copy_field(field) for field in copy_line.rstrip("\n").split("\t")]
    record: dict[str, Any] = {"tenant": TENANT}
    for name, value in zip(AUDIT_COLUMNS, fields, strict=True):
        record[name] = int(value) if value is not None and name in _INTEGERS else value
    return json.dumps(record, ensure_ascii=False) + "\n"


def prepare(rows: int) -> Path:
    """Write the dry-run inputs of ``rows`` synthetic audits once; return their directory."""
    directory = HERE / "data" / f"dryrun_{rows}"
    if (directory / "done").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    templates = load_templates()
    with (directory / "audits.jsonl").open("w", encoding="utf-8") as out:
        for line in audit_lines(templates, rows):
            out.write(_json_line(line))
    users = list(user_records(rows, sorted(templates)))
    with (directory / "users.jsonl").open("w", encoding="utf-8") as out:
        for user in users:
            out.write(json.dumps({"tenant": TENANT, **user}) + "\n")
    with (directory / "contacts.jsonl").open("w", encoding="utf-8") as out:
        for contact in contact_records(templates, rows):
            out.write(json.dumps(contact) + "\n")
    with (directory / "sso.jsonl").open("w", encoding="utf-8") as out:
        for sso in sso_records(users):
            out.write(json.dumps(sso) + "\n")
    (directory / "done").write_text("", encoding="utf-8")
    return directory


_PARSE = """
import json, sys, time, yaml
class FloorLoader(yaml.CSafeLoader):
    pass
def by_kind(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)
FloorLoader.add_multi_constructor("!", by_kind)
FloorLoader.add_multi_constructor("tag:yaml.org,2002:", by_kind)
seconds = cpu = 0.0
with open(sys.argv[1], encoding="utf-8") as lines:
    while True:
        batch = [json.loads(line)["audited_changes"] or "{}" for line, _ in zip(lines, range(5000))]
        if not batch:
            break
        started, cpu_started = time.perf_counter(), time.process_time()
        for text in batch:
            try:
                yaml.load(text, FloorLoader)
            except yaml.YAMLError:
                pass
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
print(seconds, cpu)
"""


def installed_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with a bytecode cache, as an installed package has.

    ``pip install`` compiles a package's modules to bytecode; an editable install under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) recompiles every module of ours in each
    command, about 0.2 s of CPU that the floor (a bare parse, its imports cached) does not pay. The
    cache lives under ``out/pycache`` (``PYTHONPYCACHEPREFIX``), so a benchmark's first command warms
    it for the rounds after it, and each tree ``ab_trees.py`` runs has its own entries (by path).
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(HERE / "out" / "pycache")
    return env


def _measure_child(command: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS MiB, CPU seconds user + system, stdout) of one child process, its
    modules' bytecode cached as installed (``installed_env``)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=installed_env())
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command[:3])} failed: {stderr.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, stdout.decode()


def main() -> int:
    parser = arguments(__doc__, repeat=3)
    parser.add_argument("--rows", type=int, action="append", required=True)
    parser.add_argument("--modes", default="report,out,parse")
    args = parser.parse_args()
    modes = args.modes.split(",")
    script = Path(sys.executable).with_name("crm-audit-migrate")
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    dirs = {rows: prepare(rows) for rows in args.rows}
    print(f"load before: {uptime()}")
    best: dict[tuple[int, str], tuple[float, float, float]] = {}
    for round_ in range(args.repeat):
        for rows in args.rows:
            for mode in modes:
                data = dirs[rows]
                if mode == "parse":
                    command = [sys.executable, "-c", _PARSE, str(data / "audits.jsonl")]
                else:
                    target = out_dir / f"dryrun_{rows}.jsonl"
                    target.unlink(missing_ok=True)
                    command = [
                        str(script), "dry-run", "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT,
                        "--audits", str(data / "audits.jsonl"), "--users", str(data / "users.jsonl"),
                        "--contacts", str(data / "contacts.jsonl"),
                        "--sso-directory", str(data / "sso.jsonl"), "--no-progress",
                        *(["--out", str(target)] if mode.startswith("out") else []),
                        *(["--workers", mode.rsplit("-", 1)[1]] if mode.startswith("out-workers-") else []),
                    ]  # fmt: skip
                wall, rss, cpu, stdout = _measure_child(command)
                if mode == "parse":  # the floor: its load calls alone
                    seconds, cpu = (float(x) for x in stdout.split())
                else:  # the whole command, interpreter start and imports included
                    seconds = wall
                rate = f"{rows / seconds:,.0f} rows/s"
                print(
                    f"round {round_ + 1} rows {rows} {mode}: {seconds:.2f} s, {cpu:.2f} s CPU, {rate},"
                    f" peak {rss:.1f} MiB"
                )
                key = (rows, mode)
                old = best.get(key)
                best[key] = (
                    (min(seconds, old[0]), max(rss, old[1]), min(cpu, old[2])) if old else (seconds, rss, cpu)
                )
    print(f"load after: {uptime()}")
    print(
        "\n| rows | mode | best s | rows/s | × parse floor | best CPU s | × floor (CPU) | peak RSS MiB |"
        "\n|---:|---|---:|---:|---:|---:|---:|---:|"
    )
    for rows in args.rows:
        floor = best.get((rows, "parse"))
        for mode in modes:
            seconds, rss, cpu = best[(rows, mode)]
            ratio = f"{floor[0] / seconds:.2f}" if floor else "-"
            cpu_ratio = f"{floor[2] / cpu:.2f}" if floor else "-"
            print(
                f"| {rows:,} | {mode} | {seconds:.2f} | {rows / seconds:,.0f} | {ratio} | {cpu:.2f} |"
                f" {cpu_ratio} | {rss:.1f} |"
            )
    small, large = min(args.rows), max(args.rows)
    for mode in modes:
        if (small, mode) in best and (large, mode) in best and large != small:
            time_ratio = best[(large, mode)][0] / best[(small, mode)][0]
            rss_ratio = best[(large, mode)][1] / best[(small, mode)][1]
            print(f"{mode}: {large // small}× rows → {time_ratio:.2f}× time, {rss_ratio:.2f}× peak RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
