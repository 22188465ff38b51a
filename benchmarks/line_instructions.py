"""The JSONL line's cost alone, for instruction counts: logs read back from a dry run's ``--out``
file, then each written again by one path.

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python benchmarks/line_instructions.py OUT.jsonl 6000 {none,line,pure}

``none`` reads the logs and writes nothing (the harness alone), ``line`` writes each with
``relaxed_json_bytes`` (the compiled line when it is built), ``pure`` with
``pure_relaxed_json_bytes``; instructions a log = (I(mode) − I(none)) / N. ``check`` (no valgrind)
compares the compiled line with the pure path over the N logs and counts the logs it hands back.
An A/B of two trees runs each with its ``src`` first on ``PYTHONPATH`` (``ab_trees.py`` shows how
to build a tree's extensions).
"""

from __future__ import annotations

import sys

from bson import json_util

from crm_audit_adapters.mongo import extended_json
from crm_audit_adapters.mongo.documents import decode_activity_log
from crm_audit_transform.domain import ActivityLog


def read_logs(path: str, count: int) -> list[ActivityLog]:
    logs = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if len(logs) == count:
                break
            logs.append(decode_activity_log(json_util.loads(line)))
    return logs


def main() -> int:
    path, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    logs = read_logs(path, count)
    if mode == "line":
        if not extended_json.COMPILED_LINE:
            print("the compiled line is not built: this measures the pure path", file=sys.stderr)
        write = extended_json.relaxed_json_bytes
        for log in logs:
            write(log)
    elif mode == "pure":
        pure = extended_json.pure_relaxed_json_bytes
        for log in logs:
            pure(log)
    elif mode == "check":
        from crm_audit_adapters.mongo import _cline

        mismatched = declined = 0
        for log in logs:
            here = _cline.written_here(log)
            if here is None:
                declined += 1
            elif here != extended_json.pure_relaxed_json_bytes(log):
                mismatched += 1
        print(f"check: mismatch {mismatched} declined {declined} of {len(logs)}")
    elif mode != "none":
        raise SystemExit(f"unknown mode {mode!r}: none, line, pure or check")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
