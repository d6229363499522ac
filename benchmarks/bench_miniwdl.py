"""A 200-way WDL scatter through the miniwdl backend: TES requests per interval, CPU per task.

``miniwdl run`` (a subprocess, tesengine backend) runs a scatter of N tasks on
``tesengine serve --runtime noop`` (each executor takes ``--delay`` seconds,
so all N are in flight together) through a counting reverse proxy: every TES
request is recorded with its time and kind. Reported: requests per poll
interval while every task is in flight (batched polling should make that a
few listings, not N GETs), the request mix, and the miniwdl process's CPU per
task (its whole CPU over N; a 1-task run gives the start-up share)::

    .venv/bin/python -m benchmarks bench_miniwdl               # 200 tasks, interval 1 s
    .venv/bin/python -m benchmarks bench_miniwdl --tasks 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fixtures.tes_server import start_serve
from tests.support import REPO, stop_process, user_env

RESULTS = Path(__file__).parent / "results" / "miniwdl.json"
WDL_SOURCE = """
version 1.1
task nap {
  input { Int i }
  command <<< echo ~{i} >>>
}
workflow fan {
  input { Int n }
  scatter (i in range(n)) { call nap { input: i = i } }
}
"""


class CountingProxy:
    """Forwards to ``upstream``; records (time, method, kind) of every request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[tuple[float, str, str]] = []
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app = web.Application(client_max_size=1 << 30)
            app.router.add_route("*", "/{tail:.*}", lambda r: self._forward(session, r))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _forward(self, session: aiohttp.ClientSession, req: web.Request) -> web.Response:
        self.seen.append((time.monotonic(), req.method, _kind(req)))
        body = await req.read()
        drop = ("host", "content-length")
        headers = {k: v for k, v in req.headers.items() if k.lower() not in drop}
        async with session.request(
            req.method, self.upstream + req.path_qs, data=body or None, headers=headers
        ) as up:
            data = await up.read()
            kept = ("content-type", "content-encoding", "retry-after")
            keep = {k: v for k, v in up.headers.items() if k.lower() in kept}
            return web.Response(status=up.status, body=data, headers=keep)


def _kind(req: web.Request) -> str:
    path = req.path.rstrip("/")
    if req.method == "POST" and path.endswith("/tasks"):
        return "create"
    if path.endswith("/tasks"):
        return "list"
    if path.endswith(":cancel"):
        return "cancel"
    if path.endswith("service-info"):
        return "service-info"
    return f"get-task-{req.query.get('view', 'MINIMAL')}"  # FULL: the one read at the end


def run_miniwdl(
    base: Path, proxy_url: str, storage: Path, tasks: int, interval: float
) -> dict[str, Any]:
    sprocket = base / "sprocket.toml"
    sprocket.write_text(
        "[run.backends.default]\n"
        f'type = "tes"\nurl = "{proxy_url}"\n'
        f'inputs = "{(storage / "inputs").as_uri()}"\n'
        f'outputs = "{(storage / "outputs").as_uri()}"\n'
        f"interval = {interval}\n"
    )
    cfg = base / "bench.cfg"
    cfg.write_text(
        "[scheduler]\ncontainer_backend = tesengine\n"
        f"task_concurrency = {tasks}\n[tesengine]\nconfig = {sprocket}\n"
    )
    wdl = base / "fan.wdl"
    wdl.write_text(WDL_SOURCE)
    run_dir = base / f"run-{tasks}"
    run_dir.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "WDL", "run", str(wdl), f"n={tasks}", "--cfg", str(cfg),
         "--dir", f"{run_dir}/."],
        env=user_env(base / "cache"), cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"miniwdl failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"tasks": tasks, "wall_s": round(wall, 2), "miniwdl_cpu_s": round(cpu, 2)}


def steady_rate(seen: list[tuple[float, str, str]], interval: float) -> dict[str, float]:
    """Requests per interval between the last create and the first cancel-free finish."""
    creates = [t for t, _, kind in seen if kind == "create"]
    if not creates:
        return {}
    begin = max(creates) + interval  # every task in flight from here
    polls = [(t, kind) for t, _, kind in seen if t >= begin and kind != "create"]
    if not polls:
        return {}
    end = polls[-1][0]
    window = max(end - begin, interval)
    counts = Counter(kind for _, kind in polls)
    return {
        "window_s": round(window, 2),
        "list_requests_per_interval": round(counts["list"] * interval / window, 2),
        "minimal_gets_per_interval": round(counts["get-task-MINIMAL"] * interval / window, 2),
        "final_full_reads_per_interval": round(counts["get-task-FULL"] * interval / window, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_miniwdl")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=8.0, help="seconds per noop executor")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-miniwdl-") as tmp:
        base = Path(tmp)
        served = start_serve(
            base / "serve",
            runtime="noop",
            args=["--noop-delay", str(args.delay), "--max-tasks", str(args.tasks * 2)],
        )
        try:
            with CountingProxy(served.url) as proxy:
                one = run_miniwdl(base, proxy.url, served.storage_dir, 1, args.interval)
                proxy.seen.clear()
                many = run_miniwdl(base, proxy.url, served.storage_dir, args.tasks, args.interval)
                mix = Counter(kind for _, _, kind in proxy.seen)
                rate = steady_rate(proxy.seen, args.interval)
        finally:
            stop_process(served.proc)
    startup = one["miniwdl_cpu_s"]
    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "interval_s": args.interval,
        "noop_delay_s": args.delay,
        "one_task_run": one,
        "scatter_run": many,
        "miniwdl_cpu_ms_per_task": round(1000 * many["miniwdl_cpu_s"] / args.tasks, 1),
        "miniwdl_cpu_ms_per_task_without_startup": round(
            1000 * (many["miniwdl_cpu_s"] - startup) / args.tasks, 1
        ),
        "tes_requests": dict(mix),
        "tes_requests_total": sum(mix.values()),
        "in_flight": rate,
    }
    print(json.dumps(report, indent=2))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
