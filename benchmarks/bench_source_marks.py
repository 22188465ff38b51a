"""What a job's file mark costs against the run it guards (``files.file_marks.digest_mark``).

    nice -n 5 .venv/bin/python benchmarks/bench_source_marks.py [--rows 20000] [--repeat 5]

A job made over an audits file keeps its mark (the file's size and SHA-256, and its stamp when it
was last written ``RACY_NS`` or more before), taken once when the job is made and checked once when
each run starts (``digest_changed``): a read of the file at hashing speed for the mark, and for the
check either one ``fstat`` (the stamp as it was: ``check (stamp)``) or another read (the file
written since, or a mark without a stamp: ``check (digest)``, measured with the mark's first three
fields). ``RACY_NS`` is set to 0 here: the file may have just been prepared. Against them, the run
they guard: ``crm-audit-migrate dry-run … --no-progress`` over the same file
(``dry_run_scale.prepare``'s synthetic inputs, the command's whole wall time). Rounds alternate the
four (the mark, both checks, the dry run), in one process but the dry run's own; best of
``--repeat``. The file is in the page cache for all three (it was just read). ``uptime`` before
and after.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import arguments, uptime  # noqa: E402
from crm_audit_adapters.files import file_marks  # noqa: E402
from crm_audit_adapters.files.file_marks import digest_changed, digest_mark  # noqa: E402
from dry_run_scale import TENANT, prepare  # noqa: E402 - benchmarks are scripts beside each other
from generate import COMPANY_SSO_ID  # noqa: E402


def main() -> int:
    parser = arguments(__doc__, repeat=5)
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    data = prepare(args.rows)
    audits = data / "audits.jsonl"
    size = audits.stat().st_size
    script = Path(sys.executable).with_name("crm-audit-migrate")
    command = [
        str(script), "dry-run", "--company-sso-id", COMPANY_SSO_ID, "--tenant", TENANT,
        "--audits", str(audits), "--users", str(data / "users.jsonl"),
        "--contacts", str(data / "contacts.jsonl"), "--sso-directory", str(data / "sso.jsonl"),
        "--no-progress",
    ]  # fmt: skip
    print(f"file: {audits} ({size / 1e6:.1f} MB, {args.rows} rows)")
    print(f"load before: {uptime()}")
    file_marks.RACY_NS = 0  # type: ignore[misc]  # the file may have been written just now
    best = {"mark": float("inf"), "check": float("inf"), "stamp": float("inf"), "dry-run": float("inf")}
    for round_ in range(args.repeat):
        start = time.perf_counter()
        mark = digest_mark(audits)
        best["mark"] = min(best["mark"], time.perf_counter() - start)
        assert mark is not None
        assert mark.count(":") == 3, "no stamp kept: the file was written during the mark"
        start = time.perf_counter()
        assert digest_changed(audits, mark.rsplit(":", 1)[0]) is None
        best["check"] = min(best["check"], time.perf_counter() - start)
        start = time.perf_counter()
        assert digest_changed(audits, mark) is None
        best["stamp"] = min(best["stamp"], time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best["dry-run"] = min(best["dry-run"], time.perf_counter() - start)
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{name} best {seconds:.3f} s" for name, seconds in best.items())
        )
    print(f"load after: {uptime()}")
    mark, check, stamp, run = best["mark"], best["check"], best["stamp"], best["dry-run"]
    print(
        f"mark {mark:.3f} s ({size / mark / 1e6:,.0f} MB/s), check (digest) {check:.3f} s, "
        f"check (stamp) {stamp * 1e6:.1f} µs ({check / stamp:,.0f}× less), dry run {run:.2f} s "
        f"({size / run / 1e6:.1f} MB/s); mark + check (digest) = {100 * (mark + check) / run:.2f}%, "
        f"mark alone = {100 * mark / run:.2f}% of the dry run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
