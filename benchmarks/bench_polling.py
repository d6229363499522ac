"""Status polling at scale: per-task GETs vs one tag-filtered listing per interval.

N tasks are held in flight (``tesengine serve --runtime noop`` with a delay
longer than the run) by one backend in its own process; over a window of
intervals it counts the GET requests it sends (listings among them) and its
own CPU. Both modes side by side in one run, alternating which goes first,
a fresh server for each, median of the rounds:

    .venv/bin/python -m benchmarks bench_polling            # 10,000 tasks, 1 s, 30 s window
    .venv/bin/python -m benchmarks bench_polling --small    # 1,000 tasks, 5 s window
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_engine import client, start_server, stop

RESULTS = Path(__file__).parent / "results" / "polling.json"
MODES = ("per-task", "batch")


def run_round(base: Path, args: argparse.Namespace, first: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for mode in MODES[first:] + MODES[:first]:
        proc, url = start_server(base / mode, delay=3600.0)
        try:
            polling = "auto" if mode == "batch" else mode  # batch as users get it: detected
            rows[mode] = client("requests", url, args.tasks, args.interval, args.window, polling)
        finally:
            stop(proc)
    return rows


def summary(rows: list[dict[str, Any]], tasks: int) -> dict[str, float]:
    """Medians; a state read is one GET, or one task seen by a walk (probes aside)."""

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    gets = med("requests_per_interval") - med("lists_per_interval")
    states = gets + tasks * med("walks_per_interval")
    return {
        "requests_per_interval": med("requests_per_interval"),
        "list_requests_per_interval": med("lists_per_interval"),
        "task_states_read_per_interval": states,
        "client_cpu_s_per_interval": med("cpu_per_interval"),
        "client_cpu_us_per_state_read": 1e6 * med("cpu_per_interval") / max(states, 1),
        "client_peak_rss_mb": med("rss_mb"),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_polling")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="quick run: 1,000 tasks, 5 s")
    args = parser.parse_args(argv)
    if args.small:
        args.tasks, args.window = 1000, 5.0
    load = os.getloadavg()[0]
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            rows = run_round(Path(tmp) / f"r{round_}", args, round_ % 2)
            for mode, row in rows.items():
                by_mode[mode].append(row)
    per_task = summary(by_mode["per-task"], args.tasks)
    batch = summary(by_mode["batch"], args.tasks)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "in_flight": args.tasks,
        "interval_s": args.interval,
        "window_s": args.window,
        "per_task": per_task,
        "batch": batch,
        "request_ratio": per_task["requests_per_interval"] / batch["requests_per_interval"],
        "cpu_ratio": per_task["client_cpu_s_per_interval"]
        / max(batch["client_cpu_s_per_interval"], 1e-9),
        "cpu_per_state_ratio": per_task["client_cpu_us_per_state_read"]
        / max(batch["client_cpu_us_per_state_read"], 1e-9),
        "batch_modes_seen": sorted({row["polling"] for row in by_mode["batch"]}),
        "rounds": by_mode,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.tasks} tasks in flight, interval {args.interval:g} s, window {args.window:g} s")
    print(f"{'figure':<36} {'per-task':>12} {'batch':>12}")
    for key, label in [
        ("requests_per_interval", "requests per interval"),
        ("list_requests_per_interval", "  of which list requests"),
        ("task_states_read_per_interval", "task states read per interval"),
        ("client_cpu_s_per_interval", "client CPU per interval (s)"),
        ("client_cpu_us_per_state_read", "client CPU per state read (us)"),
        ("client_peak_rss_mb", "client peak RSS (MB)"),
    ]:
        print(f"{label:<36} {per_task[key]:>12.3f} {batch[key]:>12.3f}")
    print(f"{'request ratio per-task/batch':<36} {report['request_ratio']:>25.1f}")
    print(f"{'CPU ratio per-task/batch (>= 10x)':<36} {report['cpu_ratio']:>25.1f}")
    print(f"{'  same, per state read':<36} {report['cpu_per_state_ratio']:>25.1f}")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
