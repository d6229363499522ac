"""The engine at scale against ``tesengine serve --runtime noop`` on loopback.

Each client runs in its own process (so its RSS and CPU are its own), side by
side in one run, median of the rounds:

1. ``tesengine``: N tasks submitted concurrently through :class:`TesBackend`
   and awaited; wall time, client CPU per task, client peak RSS.
2. ``py-tes``: the same tasks through py-tes (sync), a 64-thread pool where
   each thread creates a task and polls it at the same interval until final.
3. ``requests per interval``: 10,000 tasks held in flight (noop delay longer
   than the window) by one backend; GETs counted over a window of intervals.

    .venv/bin/python -m benchmarks bench_engine
    .venv/bin/python -m benchmarks.bench_engine --tasks 10000 --compare 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "engine.json"
LISTENING = "tesengine serve: listening on "
THREADS = 64


def start_server(base: Path, delay: float) -> tuple[subprocess.Popen[bytes], str]:
    argv = [
        sys.executable, "-m", "tesengine", "serve", "--port", "0", "--runtime", "noop",
        "--work-dir", str(base / "work"), "--storage", (base / "storage").as_uri(),
        "--noop-delay", str(delay), "--max-tasks", "100000",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith(LISTENING):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.removeprefix(LISTENING)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def client(
    kind: str, url: str, tasks: int, interval: float, window: float, polling: str = "auto"
) -> dict[str, Any]:
    """Run one client in a child process; it prints one JSON line of figures."""
    argv = [
        sys.executable, "-m", "benchmarks.bench_engine", "--child", kind, "--url", url,
        "--tasks", str(tasks), "--interval", str(interval), "--window", str(window),
        "--polling", polling,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def _config(url: str, interval: float, base: Path, polling: str = "auto") -> Any:
    from tesengine.config import BackendConfig, Config

    backend = BackendConfig(
        type="tes",
        url=url,
        inputs=(base / "in").as_uri(),
        outputs=(base / "out").as_uri(),
        interval=interval,
        cache_dir=base / "cache",
        max_concurrency=256,
        on_close="leave",
        polling=polling,
    )
    return Config(backend_name="bench", backend=backend)


def _task(i: int) -> Any:
    from tesengine import Executor, Task

    return Task(name=f"bench-{i}", executors=[Executor(image="alpine", command=["true"])])


async def child_tesengine(url: str, tasks: int, interval: float) -> dict[str, Any]:
    from tesengine import TesBackend

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        async with TesBackend(_config(url, interval, Path(tmp))) as backend:
            runs = await asyncio.gather(*(backend.submit(_task(i)) for i in range(tasks)))
            results = await asyncio.gather(*runs)
        wall = time.perf_counter() - start
    assert len(results) == tasks
    return {"wall": wall, **_usage()}


async def child_requests(
    url: str, tasks: int, interval: float, window: float, polling: str = "auto"
) -> dict[str, Any]:
    import aiohttp

    from tesengine import TesBackend, TesClient

    gets = lists = walks = 0

    async def on_start(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        nonlocal gets, lists, walks
        listing = params.method == "GET" and params.url.path.endswith("/tasks")
        gets += params.method == "GET"
        lists += listing
        walks += listing and "page_token" not in params.url.query

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    session = aiohttp.ClientSession(trace_configs=[trace])
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(url, interval, Path(tmp), polling)
        client = TesClient(url, session=session, max_concurrency=256)
        async with TesBackend(config, client=client) as backend:
            await asyncio.gather(*(backend.submit(_task(i)) for i in range(tasks)))
            await asyncio.sleep(interval * 1.5)  # let the first polls spread out
            before, listed, walked, cpu0 = gets, lists, walks, _usage()["cpu"]
            await asyncio.sleep(window)
            counted, cpu = gets - before, _usage()["cpu"] - cpu0
            mode = backend.polling
    await session.close()
    return {
        "polling": mode,
        "requests_per_interval": counted / (window / interval),
        "lists_per_interval": (lists - listed) / (window / interval),
        "walks_per_interval": (walks - walked) / (window / interval),
        "cpu_per_interval": cpu / (window / interval),
        **_usage(),
    }


def child_pytes(url: str, tasks: int, interval: float) -> dict[str, Any]:
    import tes

    final = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}
    cli = tes.HTTPClient(url, timeout=60)

    def one(i: int) -> str:
        task = tes.Task(
            name=f"bench-{i}", executors=[tes.Executor(image="alpine", command=["true"])]
        )
        task_id = cli.create_task(task)
        while True:
            time.sleep(interval)
            state = cli.get_task(task_id, view="MINIMAL").state
            if state in final:
                cli.get_task(task_id, view="FULL")
                return str(state)

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        states = list(pool.map(one, range(tasks)))
    wall = time.perf_counter() - start
    assert states.count("COMPLETE") == tasks
    return {"wall": wall, **_usage()}


def run_child(args: argparse.Namespace) -> None:
    if args.child == "tesengine":
        figures = asyncio.run(child_tesengine(args.url, args.tasks, args.interval))
    elif args.child == "requests":
        figures = asyncio.run(
            child_requests(args.url, args.tasks, args.interval, args.window, args.polling)
        )
    else:
        figures = child_pytes(args.url, args.tasks, args.interval)
    print(json.dumps(figures), flush=True)
    os._exit(0)  # obstore's runtime threads: see tesengine.cli.aio


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_engine")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=2_000, help="tasks for the py-tes run")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="quick run: 1,000 / 300 tasks")
    parser.add_argument("--child", choices=["tesengine", "pytes", "requests"])
    parser.add_argument("--url")
    parser.add_argument("--polling", default="auto", choices=["auto", "batch", "per-task"])
    args = parser.parse_args(argv)
    if args.child:
        run_child(args)
    if args.small:
        args.tasks, args.compare, args.rounds, args.window = 1000, 300, 3, 4.0
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "interval_s": args.interval,
        "load_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[str, list[dict[str, Any]]] = {"scale": [], "te": [], "pytes": [], "req": []}
        for round_ in range(args.rounds):
            proc, url = start_server(Path(tmp) / f"fast{round_}", delay=0.0)
            try:
                rows["scale"].append(client("tesengine", url, args.tasks, args.interval, 0))
                # Alternate the order so neither client always runs on a warmer server.
                pair = [("te", "tesengine"), ("pytes", "pytes")]
                for key, kind in pair if round_ % 2 == 0 else pair[::-1]:
                    rows[key].append(client(kind, url, args.compare, args.interval, 0))
            finally:
                stop(proc)
            proc, url = start_server(Path(tmp) / f"slow{round_}", delay=3600.0)
            try:
                rows["req"].append(client("requests", url, args.tasks, args.interval, args.window))
            finally:
                stop(proc)
    scale = rows["scale"]
    report["scale"] = {
        "tasks": args.tasks,
        "wall_s": median(scale, "wall"),
        "cpu_ms_per_task": 1000 * median(scale, "cpu") / args.tasks,
        "peak_rss_mb": median(scale, "rss_mb"),
    }
    te, pt = rows["te"], rows["pytes"]
    report["vs_pytes"] = {
        "tasks": args.compare,
        "tesengine_wall_s": median(te, "wall"),
        "pytes_wall_s": median(pt, "wall"),
        "tesengine_cpu_s": median(te, "cpu"),
        "pytes_cpu_s": median(pt, "cpu"),
        "wall_speedup": median(pt, "wall") / median(te, "wall"),
        "cpu_ratio": median(pt, "cpu") / median(te, "cpu"),
    }
    report["requests_per_interval"] = {
        "in_flight": args.tasks,
        "requests": median(rows["req"], "requests_per_interval"),
        "client_cpu_s_per_interval": median(rows["req"], "cpu_per_interval"),
    }
    report["rounds"] = rows
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    s, v, r = report["scale"], report["vs_pytes"], report["requests_per_interval"]
    print(f"{'figure':<44} {'value':>12}")
    print(f"{f'{args.tasks} tasks: wall (s)':<44} {s['wall_s']:>12.2f}")
    print(f"{'  client CPU per task (ms)':<44} {s['cpu_ms_per_task']:>12.3f}")
    print(f"{'  client peak RSS (MB, target <= 250)':<44} {s['peak_rss_mb']:>12.1f}")
    print(f"{f'{args.compare} tasks: tesengine wall (s)':<44} {v['tesengine_wall_s']:>12.2f}")
    print(f"{'  py-tes 64 threads wall (s)':<44} {v['pytes_wall_s']:>12.2f}")
    print(f"{'  wall speed-up (target >= 5x)':<44} {v['wall_speedup']:>12.1f}")
    print(f"{'  CPU ratio py-tes/tesengine (target >= 5x)':<44} {v['cpu_ratio']:>12.1f}")
    print(f"{f'requests per interval, {args.tasks} in flight':<44} {r['requests']:>12.0f}")
    print(f"results: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
