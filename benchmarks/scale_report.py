"""Render the scale benchmark's JSON report as Markdown (figures, ratios to the floor, goals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_MEMORY_STAGES = (
    "copy",
    "parse",
    "extract",
    "transform",
    "end_to_end",
    "end_to_end_workers",
    "end_to_end_workers_unshared",
    "end_to_end_workers_two_trips",
    "end_to_end_workers_rows",
    "end_to_end_workers_deep",
)


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.0f}" if isinstance(kib, int | float) else "—"


def floor_of(entry: dict[str, Any]) -> tuple[str, float] | None:
    """The slower of the COPY floor and the bare-parse floor: (stage, rows/s)."""
    rates = [
        (name, entry[name]["rows_per_s"])
        for name in ("copy", "parse")
        if name in entry and entry[name].get("rows_per_s")
    ]
    return min(rates, key=lambda pair: pair[1]) if rates else None


def _stage_rows(entry: dict[str, Any]) -> list[str]:
    floor = floor_of(entry)
    lines = [
        "| stage | rows | timed s | rows/s | × floor | peak RSS MiB | RSS before MiB | load 1m | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in entry.items():
        if name in ("generate", "profile"):
            continue
        if "rows_per_s" not in result:
            note = result.get("missing") or result.get("error", "")
            lines.append(f"| {name} | | | | | | | | {note.splitlines()[-1] if note else ''} |")
            continue
        ratio = f"{result['rows_per_s'] / floor[1]:.2f}" if floor else "—"
        shown = (
            "parse_errors",
            "outcomes",
            "fallthrough",
            "status",
            "run_rows_per_s",
            "verify_vs_run",
            "clean",
            "cpu_seconds",
            "worker_cpu_seconds",
            "shard_cpu_seconds",
            "server_cpu_seconds",
        )
        extra = {k: v for k, v in result.items() if k in shown}
        if "setup_rss_kib" in result:
            extra["RSS after setup MiB"] = _mib(result["setup_rss_kib"])
        if "worker_peak_rss_kib" in result:
            extra["workers' peak RSS MiB"] = [_mib(kib) for kib in result["worker_peak_rss_kib"]]
        lines.append(
            f"| {name} | {result['rows']} | {result['seconds']:.2f} | {result['rows_per_s']:,.0f} | {ratio} "
            f"| {_mib(result['peak_rss_kib'])} | {_mib(result['base_rss_kib'])} "
            f"| {result['loadavg_1m_before']}→{result['loadavg_1m_after']} | {extra or ''} |"
        )
    if floor:
        lines.append(f"\nFloor = `{floor[0]}` at {floor[1]:,.0f} rows/s (the slower of copy and parse).")
    return lines


def _all_cpu(result: dict[str, Any]) -> float | None:
    """A run's CPU seconds in every process, the PostgreSQL server's included; None if not known."""
    own, server = result.get("cpu_seconds"), result.get("server_cpu_seconds")
    if own is None or server is None:
        return None
    return float(own) + float(server) + sum(result.get("worker_cpu_seconds", ()))


def _goals(sizes: dict[str, Any]) -> list[str]:
    lines = ["## Goals", ""]
    for rows, entry in sizes.items():
        floor, e2e = floor_of(entry), entry.get("end_to_end", {})
        if floor and e2e.get("rows_per_s"):
            ratio = e2e["rows_per_s"] / floor[1]
            verdict = "met" if ratio >= 1.0 else "MISSED"
            lines.append(f"- {rows} rows: end to end = {ratio:.2f} × floor (goal ≥ 1.00): {verdict}")
        else:
            lines.append(f"- {rows} rows: end to end not measured ({e2e.get('missing') or e2e.get('error')})")
        ideal = entry.get("end_to_end_ideal", {})
        if ideal.get("rows_per_s") and e2e.get("rows_per_s"):
            lines.append(
                f"- {rows} rows: the ideal (2 independent processes, a shard each) = "
                f"{ideal['rows_per_s'] / e2e['rows_per_s']:.2f} × one process; all CPU, server "
                f"included, {_all_cpu(ideal) / _all_cpu(e2e):.2f} × one process's"
                if _all_cpu(ideal) and _all_cpu(e2e)
                else f"- {rows} rows: the ideal = {ideal['rows_per_s'] / e2e['rows_per_s']:.2f} × one process"
            )
        for stage, how in (
            ("end_to_end_shards", ", a 2-shard job, its shards side by side (one process each)"),
            (
                "end_to_end_shards_late",
                ", the same as this stage measured before (no early start, the job cut in each shard)",
            ),
            ("end_to_end_workers", ""),
            ("end_to_end_workers_early", ", the fork server started first, as `run --workers N` does"),
            ("end_to_end_workers_unshared", ", runner not sharing"),
            ("end_to_end_workers_two_trips", ", lookups made by the runner (two trips a page)"),
            ("end_to_end_workers_rows", ", rows sent by the runner (before id ranges)"),
            ("end_to_end_workers_deep", ", 4 pages a process"),
            ("end_to_end_workers_w3", ", 3 pages on the worker, 2 of the runner's own"),
            ("end_to_end_workers_own1", ", 2 pages on the worker, 1 of the runner's own"),
        ):
            workers = entry.get(stage, {})
            if workers.get("rows_per_s") and e2e.get("rows_per_s"):
                ratio = workers["rows_per_s"] / e2e["rows_per_s"]
                verdict = "met" if ratio >= 1.8 else "MISSED"
                floor_ratio = f", {workers['rows_per_s'] / floor[1]:.2f} × floor" if floor else ""
                lines.append(
                    f"- {rows} rows: --workers {workers.get('workers')}{how} = {ratio:.2f} × one process"
                    f"{floor_ratio} (goal ≥ 1.80 × one process): {verdict}"
                )
                if ideal.get("rows_per_s"):
                    lines.append(f"  - {workers['rows_per_s'] / ideal['rows_per_s']:.2f} × the ideal")
                if workers.get("total_seconds"):
                    lines.append(
                        f"  - from the launcher's start (process start and setup included): "
                        f"{workers['rows'] / workers['total_seconds'] / e2e['rows_per_s']:.2f} × one process"
                    )
                if workers.get("stage_seconds"):
                    lines.append(
                        f"  - from the stage's start (the early start and the job's cut included): "
                        f"{workers['rows'] / workers['stage_seconds'] / e2e['rows_per_s']:.2f} × one process"
                    )
                own_wall, one_wall = (
                    workers.get("best_process_wall_seconds"),
                    e2e.get("best_process_wall_seconds"),
                )
                if own_wall and one_wall:
                    lines.append(
                        f"  - from the process's start to its exit, best against best (as a command is "
                        f"waited for): {one_wall:.2f} / {own_wall:.2f} s = "
                        f"{one_wall / own_wall:.2f} × one process"
                    )
                pool_cpu, one_cpu = _all_cpu(workers), _all_cpu(e2e)
                if pool_cpu and one_cpu:
                    lines.append(f"  - all CPU, server included: {pool_cpu / one_cpu:.2f} × one process's")
        ours = entry.get("end_to_end_http", {}).get("rows_per_s")
        for peer, goal in (("naive", 5.0), ("naive_memo", 2.0)):
            theirs = entry.get(peer, {}).get("rows_per_s")
            if ours and theirs:
                verdict = "met" if ours / theirs >= goal else "MISSED"
                lines.append(
                    f"- {rows} rows: end_to_end_http = {ours / theirs:.2f} × `{peer}` "
                    f"(goal ≥ {goal:.1f}): {verdict}"
                )
    for rows, entry in sizes.items():
        verify = entry.get("verify_files", {})
        if verify.get("verify_vs_run"):
            verdict = "met" if verify["verify_vs_run"] >= 1.0 else "MISSED"
            lines.append(
                f"- {rows} rows: verify = {verify['verify_vs_run']:.2f} × the run's rows/s (same process) "
                f"(goal ≥ 1.00, no sample): {verdict}"
            )
    keys = sorted(sizes, key=int)
    if len(keys) >= 2:
        small, large = sizes[keys[0]], sizes[keys[-1]]
        for name in _MEMORY_STAGES:
            a, b = small.get(name, {}).get("peak_rss_kib"), large.get(name, {}).get("peak_rss_kib")
            if a and b:
                verdict = "met" if b / a <= 1.2 else "MISSED"
                lines.append(
                    f"- peak RSS of `{name}`: {_mib(b)} MiB at {keys[-1]} vs {_mib(a)} MiB at {keys[0]} "
                    f"= {b / a:.2f}× (goal ≤ 1.2×): {verdict}"
                )
        # Before the loop (the lookups' data: the contacts index, the SSO ids) and during it (the
        # lookup cache, the sink's written keys, what the allocator keeps): where a ratio comes from.
        for name in ("end_to_end", "end_to_end_workers", "end_to_end_workers_unshared"):
            a_setup = small.get(name, {}).get("setup_rss_kib")
            b_setup = large.get(name, {}).get("setup_rss_kib")
            if a_setup and b_setup:
                a_loop = small[name]["peak_rss_kib"] - a_setup
                b_loop = large[name]["peak_rss_kib"] - b_setup
                lines.append(
                    f"  - `{name}`, RSS once the lookups' data is loaded (before the loop): "
                    f"{_mib(b_setup)} vs {_mib(a_setup)} MiB; growth during the run loop: "
                    f"{_mib(b_loop)} vs {_mib(a_loop)} MiB"
                )
    return [*lines, ""]


def render(report: dict[str, Any]) -> str:
    machine = report["machine"]
    out = [
        "# Scale benchmark report",
        "",
        f"Command: `{report['command']}`",
        "",
        "## Machine",
        "",
        f"- nproc: {machine['nproc']}; Python {machine['python']}; libyaml, PyYAML: {machine['libyaml']}",
        f"- loader backends: {machine.get('loader_backends', '?')}",
        f"- compiled JSONL line: {machine.get('compiled_line', '?')}",
        f"- {machine['postgres']}",
        f"- load average at start / end: {machine['loadavg_start']} / {machine.get('loadavg_end', '?')}",
        "",
        "```",
        machine["lscpu"],
        "",
        machine["free"],
        "```",
        "",
        *_goals(report["sizes"]),
    ]
    for rows, entry in report["sizes"].items():
        gen = entry["generate"]
        out += [
            f"## {int(rows):,} audit rows",
            "",
            f"Generated: {gen.get('rows')} audits, {gen.get('users')} users, {gen.get('contacts')} contacts, "
            f"{gen.get('audits_bytes_with_indexes', 0) / 2**20:.0f} MiB with indexes, load "
            f"{gen.get('load_seconds')} s, total {gen.get('total_seconds')} s"
            + (" (reused)" if gen.get("reused") else ""),
            "",
            *_stage_rows(entry),
            "",
        ]
        profile = entry.get("profile")
        if profile and profile.get("profile"):
            text = Path(profile["profile"]).with_suffix(".txt").read_text()
            out += [
                f"### Profile of `{profile['stage']}` (cProfile, {profile['rows']} rows, "
                f"{profile['seconds']:.1f} s under the profiler)",
                "",
                "```",
                text.strip(),
                "```",
                "",
            ]
    return "\n".join(out) + "\n"
