"""One measurement of the scale benchmark, run in a fresh process so its peak RSS is its own.

    .venv/bin/python benchmarks/scale_stages.py STAGE --dsn DSN --schema bench_100000 --data-dir DIR

prints one JSON line: ``{"stage", "rows", "seconds", "rows_per_s", "peak_rss_kib", "base_rss_kib", …}``
or ``{"stage", "missing": "..."}`` when the code it measures is not importable. ``run_scale.py``
drives it; the stages themselves live in ``scale_floor.py`` and ``scale_pipeline.py``.
"""

from __future__ import annotations

import sys

import stage_start

if __name__ == "__main__":  # before the package is imported, as the command starts it
    stage_start.start_fork_server_for(sys.argv[1] if len(sys.argv) > 1 else "")

import argparse  # after the fork server's start, as the command imports after it
import cProfile
import json
import os
import pstats
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scale_context
import scale_floor
import scale_pipeline

STAGES: dict[str, Callable[[scale_context.Context], dict[str, Any]]] = {
    "copy": scale_floor.copy_floor,
    "parse": scale_floor.parse_floor,
    "parse_events": scale_floor.parse_events,
    "extract": scale_pipeline.extract,
    "transform": scale_pipeline.transform,
    "end_to_end": scale_pipeline.end_to_end,
    "end_to_end_ideal": scale_pipeline.end_to_end_ideal,
    "end_to_end_shards": scale_pipeline.end_to_end_shards,
    "end_to_end_shards_late": scale_pipeline.end_to_end_shards_late,
    "end_to_end_shards_one": scale_pipeline.end_to_end_shards_one,
    "end_to_end_preloaded": scale_pipeline.end_to_end_preloaded,
    "end_to_end_workers": scale_pipeline.end_to_end_workers,
    "end_to_end_workers_early": scale_pipeline.end_to_end_workers_early,
    "end_to_end_workers_early_n3": scale_pipeline.end_to_end_workers_early_n3,
    "end_to_end_workers_early_ppw3": scale_pipeline.end_to_end_workers_early_ppw3,
    "end_to_end_workers_early_p3o3": scale_pipeline.end_to_end_workers_early_p3o3,
    "end_to_end_workers_early_p4o4": scale_pipeline.end_to_end_workers_early_p4o4,
    "end_to_end_workers_early_p2o2": scale_pipeline.end_to_end_workers_early_p2o2,
    "end_to_end_workers_early_p2o1": scale_pipeline.end_to_end_workers_early_p2o1,
    "end_to_end_workers_early_p3o1": scale_pipeline.end_to_end_workers_early_p3o1,
    "end_to_end_workers_early_p3o2": scale_pipeline.end_to_end_workers_early_p3o2,
    "end_to_end_workers_early_p4o2": scale_pipeline.end_to_end_workers_early_p4o2,
    "end_to_end_workers_early_si05ms": scale_pipeline.end_to_end_workers_early_si05ms,
    "end_to_end_workers_early_si1ms": scale_pipeline.end_to_end_workers_early_si1ms,
    "end_to_end_workers_unshared": scale_pipeline.end_to_end_workers_unshared,
    "end_to_end_workers_two_trips": scale_pipeline.end_to_end_workers_two_trips,
    "end_to_end_workers_rows": scale_pipeline.end_to_end_workers_rows,
    "end_to_end_workers_deep": scale_pipeline.end_to_end_workers_deep,
    "end_to_end_workers_w3": scale_pipeline.end_to_end_workers_w3,
    "end_to_end_workers_own1": scale_pipeline.end_to_end_workers_own1,
    "mongo_write": scale_pipeline.mongo_write,
    "verify_files": scale_pipeline.verify_files,
    "end_to_end_http": scale_pipeline.end_to_end_http,
    "naive": scale_pipeline.naive,
    "naive_memo": scale_pipeline.naive_memo,
}


def _rss_kib() -> tuple[int, int]:
    """(current VmRSS, peak VmHWM) of this process in KiB, from /proc (ru_maxrss as a fallback)."""
    current = peak = 0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    except OSError:
        pass
    return current, peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_stage(name: str, ctx: scale_context.Context, profile: Path | None) -> dict[str, Any]:
    base_rss, _ = _rss_kib()
    load_before = os.getloadavg()[0]
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    try:
        if profiler:
            profiler.enable()
        result = STAGES[name](ctx)
    except scale_pipeline.Missing as missing:
        return {"stage": name, "missing": str(missing)}
    finally:
        if profiler:
            profiler.disable()
    wall = time.perf_counter() - started
    _, peak_rss = _rss_kib()
    seconds = result.pop("seconds", wall)
    rows = result.pop("rows")
    summary = {
        "stage": name,
        "rows": rows,
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds else None,
        "base_rss_kib": base_rss,
        "peak_rss_kib": peak_rss,
        "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        **result,
    }
    if profiler and profile:
        profiler.dump_stats(str(profile))
        with profile.with_suffix(".txt").open("w") as out:
            stats = pstats.Stats(str(profile), stream=out)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
        summary["profile"] = str(profile)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--mongo-uri")
    parser.add_argument("--profile", type=Path, help="run under cProfile and save the stats here")
    parser.add_argument("--limit", type=int, help="stop after about this many rows")
    parser.add_argument("--usman-url", help="a USMAN for the stages that look SSO ids up over HTTP")
    args = parser.parse_args(argv)
    ctx = scale_context.Context(
        dsn=args.dsn,
        schema=args.schema,
        data_dir=args.data_dir,
        out_dir=args.out_dir,
        mongo_uri=args.mongo_uri,
        limit=args.limit,
        usman_url=args.usman_url,
    )
    print(json.dumps(run_stage(args.stage, ctx, args.profile)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
