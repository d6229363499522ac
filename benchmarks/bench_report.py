"""The run report at 10,000 tasks: file size, and load time in headless Chromium.

1. ``real``: ``tesengine run -q -f tasks.toml --report`` with N noop tasks
   against ``tesengine serve --runtime noop --noop-delay D`` on loopback (all
   complete: the noop runtime has no failure mode).
2. ``synthetic``: a recorded-shape snapshot of N tasks where every 10th
   failed with a 20-line stderr tail and every task has an output URL (the
   heavy case for the file size), rendered by the same code.

Each file is opened from disk in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium); load time is the page's own
``performance.now()`` at the first frame after its script has drawn the
summary, timeline and table (navigation start to first full paint), median
of the rounds.

    .venv/bin/python -m benchmarks bench_report
    .venv/bin/python -m benchmarks.bench_report --tasks 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_engine import start_server, stop

RESULTS = Path(__file__).parent / "results" / "report.json"
LIMIT_BYTES = 5 * 1024 * 1024
LIMIT_MS = 2000


def real_report(base: Path, tasks: int, delay: float, interval: float) -> tuple[Path, float]:
    """Run ``tasks`` noop tasks through the CLI with ``--report``; the file and wall time."""
    proc, url = start_server(base, delay)
    try:
        config = base / "sprocket.toml"
        config.write_text(
            f'[run.backends.default]\ntype = "tes"\nurl = "{url}"\n'
            f'inputs = "{(base / "storage" / "in").as_uri()}"\n'
            f'outputs = "{(base / "storage" / "out").as_uri()}"\n'
            f"interval = {interval}\nmax_concurrency = 256\n"
            f'cache_dir = "{base / "cache"}"\n'
        )
        taskfile = base / "tasks.toml"
        taskfile.write_text(
            "".join(f'[[tasks]]\nname = "t{i:05d}"\ncommand = ["true"]\n' for i in range(tasks))
        )
        report = base / "real.html"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tesengine", "run", "-q", "--config", str(config),
             "-f", str(taskfile), "--report", str(report)],
            check=True, stdout=subprocess.DEVNULL, timeout=3600,
        )  # fmt: skip
        return report, time.perf_counter() - start
    finally:
        stop(proc)


def synthetic_report(base: Path, tasks: int) -> Path:
    """A snapshot shaped like a long run with failures, rendered by the report code."""
    from tesengine.report import RunSnapshot, TaskRow, Transfers, render

    rows = []
    for i in range(tasks):
        t0 = i * 0.02
        failed = i % 10 == 0
        final = "EXECUTOR_ERROR" if failed else "COMPLETE"
        rows.append(
            TaskRow(
                name=f"align-sample-{i:05d}",
                id=f"{i:032x}",
                state=final,
                staging=t0,
                events=(
                    ("QUEUED", t0 + 0.4),
                    ("INITIALIZING", t0 + 3.1),
                    ("RUNNING", t0 + 3.3),
                    (final, t0 + 30 + (i % 17)),
                ),
                exit_codes=(1 if failed else 0,),
                outputs=(
                    (
                        "bam",
                        f"s3://bucket/outputs/align-sample-{i:05d}-20260101T000000Z-{i:08x}/out.bam",
                    ),
                ),
                stderr_tail="\n".join(
                    f"[bwa] error line {k}: read group missing" for k in range(20)
                )
                if failed
                else "",
            )
        )
    snapshot = RunSnapshot("synthetic", "2026-01-01T00:00:00+00:00", tasks * 0.02 + 60, "failed",
                           tuple(rows), Transfers())  # fmt: skip
    path = base / "synthetic.html"
    path.write_text(render(snapshot), encoding="utf-8")
    return path


def load_times(paths: list[Path], rounds: int) -> dict[str, list[float]]:
    """Milliseconds from navigation start until each report's script has drawn it."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    service = webdriver.ChromeService(
        executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"
    )
    driver = webdriver.Chrome(options=options, service=service)
    times: dict[str, list[float]] = {path.stem: [] for path in paths}
    try:
        for _ in range(rounds):
            for path in paths:
                driver.get("about:blank")
                driver.get(path.as_uri())
                deadline = time.monotonic() + 60
                ms = None
                while ms is None and time.monotonic() < deadline:
                    ms = driver.execute_script("return document.body.dataset.paintMs || null")
                rows = driver.execute_script(
                    "return document.getElementById('timeline').dataset.rows"
                )
                assert ms is not None, f"{path} did not render"
                assert int(rows) > 0
                times[path.stem].append(float(ms))
    finally:
        driver.quit()
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_report")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=2.0, help="noop seconds per task")
    parser.add_argument("--interval", type=float, default=1.0, help="client poll interval")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        real, wall = real_report(base / "real", args.tasks, args.delay, args.interval)
        synthetic = synthetic_report(base, args.tasks)
        times = load_times([real, synthetic], args.rounds)
        figures: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "tasks": args.tasks,
            "load_before": os.getloadavg()[0],
            "real": {
                "source": "tesengine run -q --report, noop server",
                "run_wall_s": round(wall, 2),
                "bytes": real.stat().st_size,
                "load_ms_median": statistics.median(times["real"]),
                "load_ms": times["real"],
            },
            "synthetic": {
                "source": "10% failed with 20-line stderr tails, one output URL each",
                "bytes": synthetic.stat().st_size,
                "load_ms_median": statistics.median(times["synthetic"]),
                "load_ms": times["synthetic"],
            },
        }
    print(json.dumps(figures, indent=2))
    if not args.no_save:
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    ok = all(
        figures[k]["bytes"] <= LIMIT_BYTES and figures[k]["load_ms_median"] < LIMIT_MS
        for k in ("real", "synthetic")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
