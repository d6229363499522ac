"""The engine at scale against ``tesengine serve --runtime noop`` on loopback.

Each client runs in its own process (so its RSS and CPU are its own), side by
side in one run, median of the rounds:

1. ``tesengine``: N tasks submitted concurrently through :class:`TesBackend`
   and awaited; wall time, client CPU per task, client peak RSS.
   Beside it on the same fresh server: ``many`` (the same N through
   ``submit_many``, its create phase timed apart) and ``floor`` (one raw
   aiohttp ``POST /tasks`` per task, 256 at a time: the CPU floor per task,
   and at that concurrency the server's own create rate).
2. ``py-tes``: the same tasks through py-tes (sync), a 64-thread pool where
   each thread creates a task and polls it at the same interval until final.
3. ``requests per interval``: 10,000 tasks held in flight (noop delay longer
   than the window) by one backend; GETs counted over a window of intervals.

    .venv/bin/python -m benchmarks bench_engine
    .venv/bin/python -m benchmarks.bench_engine --tasks 10000 --compare 2000 --rounds 3
    .venv/bin/python -m benchmarks.bench_engine --tasks 100000 --compare 0 --req-rounds 1

``--compare 0`` skips py-tes; ``--in-flight`` sets the tasks held for the
request count (default ``--tasks``), ``--req-rounds`` in how many rounds.
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

    cpu0 = _usage()["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        async with TesBackend(_config(url, interval, Path(tmp))) as backend:
            runs = await asyncio.gather(*(backend.submit(_task(i)) for i in range(tasks)))
            _trace_memory()
            results = await asyncio.gather(*runs)
        wall = time.perf_counter() - start
    assert len(results) == tasks
    assert len({r.id for r in results}) == tasks  # none lost, none duplicated
    return {"wall": wall, "run_cpu": _usage()["cpu"] - cpu0, **_usage()}


def _trace_memory() -> None:
    """With BENCH_TRACEMALLOC=1 (and ``python -X tracemalloc``): top allocations to stderr."""
    import tracemalloc

    if os.environ.get("BENCH_TRACEMALLOC") and tracemalloc.is_tracing():
        stats = tracemalloc.take_snapshot().statistics("lineno")
        print(f"traced: {sum(s.size for s in stats) / 2**20:.1f} MiB", file=sys.stderr)
        for stat in stats[:15]:
            print(stat, file=sys.stderr)


async def child_many(url: str, tasks: int, interval: float) -> dict[str, Any]:
    """``submit_many`` for all tasks at once: the create phase is timed apart."""
    from tesengine import TesBackend

    cpu0 = _usage()["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        async with TesBackend(_config(url, interval, Path(tmp))) as backend:
            runs = await backend.submit_many([_task(i) for i in range(tasks)])
            created = time.perf_counter() - start
            results = await asyncio.gather(*runs)
        wall = time.perf_counter() - start
    assert len(results) == tasks
    assert len({r.id for r in results}) == tasks  # none lost, none duplicated
    return {"wall": wall, "create_wall": created, "run_cpu": _usage()["cpu"] - cpu0, **_usage()}


def _raw_body(i: int) -> bytes:
    """What tesengine posts for ``_task(i)``, near enough: same fields, same tags."""
    import uuid

    doc = {
        "name": f"bench-{i}",
        "executors": [
            {
                "image": "alpine",
                "command": ["true"],
                "stdout": "/tesengine-logs/0.stdout",
                "stderr": "/tesengine-logs/0.stderr",
            }
        ],
        "inputs": [],
        "outputs": [
            {
                "url": f"file:///tmp/out/bench-{i}/_logs",
                "path": "/tesengine-logs",
                "type": "DIRECTORY",
            }
        ],
        "volumes": ["/tesengine-logs"],
        "tags": {"tesengine-run": "raw", "tesengine-submission": str(uuid.uuid4())},
    }
    return json.dumps(doc).encode()


async def child_floor(url: str, tasks: int) -> dict[str, Any]:
    """The floor: one raw aiohttp POST /tasks per task (256 at a time), nothing else."""
    import aiohttp

    limit = asyncio.Semaphore(256)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=256)
    cpu0 = _usage()["cpu"]
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        base = f"{url.rstrip('/')}/ga4gh/tes/v1/tasks"

        async def create(i: int) -> str:
            async with limit, session.post(base, data=_raw_body(i), headers=headers) as resp:
                resp.raise_for_status()
                return str(json.loads(await resp.read())["id"])

        ids = await asyncio.gather(*(create(i) for i in range(tasks)))
    wall = time.perf_counter() - start
    assert len(set(ids)) == tasks
    usage = _usage()
    return {"wall": wall, "create_cpu": usage["cpu"] - cpu0, **usage}


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
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if args.child == "tesengine":
        figures = asyncio.run(child_tesengine(args.url, args.tasks, args.interval))
    elif args.child == "many":
        figures = asyncio.run(child_many(args.url, args.tasks, args.interval))
    elif args.child == "floor":
        figures = asyncio.run(child_floor(args.url, args.tasks))
    elif args.child == "requests":
        figures = asyncio.run(
            child_requests(args.url, args.tasks, args.interval, args.window, args.polling)
        )
    else:
        figures = child_pytes(args.url, args.tasks, args.interval)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps(figures), flush=True)
    os._exit(0)  # obstore's runtime threads: see tesengine.cli.aio


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_engine")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=2_000, help="py-tes tasks (0: skip)")
    parser.add_argument("--in-flight", type=int, help="tasks held for requests (default --tasks)")
    parser.add_argument("--req-rounds", type=int, help="rounds counting requests (default all)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="quick run: 1,000 / 300 tasks")
    parser.add_argument("--child", choices=["tesengine", "many", "floor", "pytes", "requests"])
    parser.add_argument("--profile", help="child only: write a cProfile dump here")
    parser.add_argument("--url")
    parser.add_argument("--polling", default="auto", choices=["auto", "batch", "per-task"])
    return parser


def run_rounds(args: argparse.Namespace, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Every client, each round against fresh servers; the order rotates per round."""
    rows: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("scale", "many", "floor", "te", "pytes", "req")
    }
    in_flight = args.in_flight or args.tasks
    req_rounds = args.rounds if args.req_rounds is None else args.req_rounds
    for round_ in range(args.rounds):
        proc, url = start_server(tmp / f"fast{round_}", delay=0.0)
        try:
            # Rotate the order so no client always runs on a warmer (or fuller) server.
            trio = [("scale", "tesengine"), ("many", "many"), ("floor", "floor")]
            shift = round_ % len(trio)
            for key, kind in trio[shift:] + trio[:shift]:
                rows[key].append(client(kind, url, args.tasks, args.interval, 0))
                print(f"round {round_ + 1} {kind}: {rows[key][-1]}", file=sys.stderr, flush=True)
            pair = [("te", "tesengine"), ("pytes", "pytes")] if args.compare else []
            for key, kind in pair if round_ % 2 == 0 else pair[::-1]:
                rows[key].append(client(kind, url, args.compare, args.interval, 0))
        finally:
            stop(proc)
        if round_ >= req_rounds:
            continue
        proc, url = start_server(tmp / f"slow{round_}", delay=3600.0)
        try:
            rows["req"].append(client("requests", url, in_flight, args.interval, args.window))
        finally:
            stop(proc)
    return rows


def summarise(args: argparse.Namespace, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    n = args.tasks
    scale, many, floor = rows["scale"], rows["many"], rows["floor"]
    floor_ms = 1000 * median(floor, "create_cpu") / n
    report: dict[str, Any] = {
        "scale": {
            "tasks": n,
            "wall_s": median(scale, "wall"),
            "cpu_ms_per_task": 1000 * median(scale, "cpu") / n,
            "peak_rss_mb": median(scale, "rss_mb"),
            "run_cpu_ms_per_task": 1000 * median(scale, "run_cpu") / n,
            "cpu_vs_floor": median(scale, "run_cpu") / median(floor, "create_cpu"),
        },
        "many": {
            "wall_s": median(many, "wall"),
            "create_wall_s": median(many, "create_wall"),
            "cpu_ms_per_task": 1000 * median(many, "cpu") / n,
            "peak_rss_mb": median(many, "rss_mb"),
            "run_cpu_ms_per_task": 1000 * median(many, "run_cpu") / n,
            "cpu_vs_floor": median(many, "run_cpu") / median(floor, "create_cpu"),
            "create_wall_vs_floor": median(many, "create_wall") / median(floor, "wall"),
        },
        "floor": {
            "wall_s": median(floor, "wall"),
            "cpu_ms_per_task": floor_ms,
            "server_creates_per_s": n / median(floor, "wall"),
        },
    }
    if rows["te"]:
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
    if rows["req"]:
        report["requests_per_interval"] = {
            "in_flight": args.in_flight or n,
            "requests": median(rows["req"], "requests_per_interval"),
            "client_cpu_s_per_interval": median(rows["req"], "cpu_per_interval"),
        }
    return report


def print_table(args: argparse.Namespace, report: dict[str, Any]) -> None:
    s, m, f = report["scale"], report["many"], report["floor"]
    lines = [
        (f"{args.tasks} tasks, tesengine: wall (s)", f"{s['wall_s']:.2f}"),
        ("  client CPU per task (ms, process)", f"{s['cpu_ms_per_task']:.3f}"),
        ("  client CPU per task (ms, run only)", f"{s['run_cpu_ms_per_task']:.3f}"),
        ("  run CPU / raw-create floor (target <= 2.5x)", f"{s['cpu_vs_floor']:.2f}x"),
        ("  client peak RSS (MB, target <= 250)", f"{s['peak_rss_mb']:.1f}"),
        ("submit_many: wall (s)", f"{m['wall_s']:.2f}"),
        ("  create wall (s)", f"{m['create_wall_s']:.2f}"),
        ("  create wall / floor wall (target <= 1.5x)", f"{m['create_wall_vs_floor']:.2f}x"),
        ("  client CPU per task (ms, run only)", f"{m['run_cpu_ms_per_task']:.3f}"),
        ("  run CPU / raw-create floor", f"{m['cpu_vs_floor']:.2f}x"),
        ("  client peak RSS (MB)", f"{m['peak_rss_mb']:.1f}"),
        ("raw-create floor: wall (s)", f"{f['wall_s']:.2f}"),
        ("  CPU per task (ms, creates only)", f"{f['cpu_ms_per_task']:.3f}"),
        ("  server creates per s", f"{f['server_creates_per_s']:.0f}"),
    ]
    if (v := report.get("vs_pytes")) is not None:
        lines += [
            (f"{args.compare} tasks: tesengine wall (s)", f"{v['tesengine_wall_s']:.2f}"),
            ("  py-tes 64 threads wall (s)", f"{v['pytes_wall_s']:.2f}"),
            ("  wall speed-up (target >= 5x)", f"{v['wall_speedup']:.1f}"),
            ("  CPU ratio py-tes/tesengine (target >= 5x)", f"{v['cpu_ratio']:.1f}"),
        ]
    if (r := report.get("requests_per_interval")) is not None:
        label = f"requests per interval, {r['in_flight']} in flight (target <= 60)"
        lines.append((label, f"{r['requests']:.0f}"))
    print(f"{'figure':<52} {'value':>12}")
    for label, value in lines:
        print(f"{label:<52} {value:>12}")
    print(f"results: {RESULTS}")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        run_child(args)
    if args.small:
        args.tasks, args.compare, args.rounds, args.window = 1000, 300, 3, 4.0
    head = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "interval_s": args.interval,
        "load_before": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_rounds(args, Path(tmp))
    report = {**head, **summarise(args, rows), "rounds": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(args, report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
