"""``tesengine serve --runtime noop``: create and complete 10,000 tasks; tasks/s and RSS.

Side by side in one run, alternating order, each in its own process:

- ``bare``: a trivial aiohttp server that answers ``POST /tasks`` with a new id
  and keeps the body in a dict (the HTTP floor: no validation, no storage);
- ``tesengine``: ``tesengine serve --runtime noop`` (strict validation, SQLite
  group commit, scheduler, lifecycle), counted until every task is COMPLETE.

The client posts with 64 requests in flight. Reference: Funnel's own stress
test reported about 54 tasks/s (quoted, not measured here). Target: >= 1,000
tasks/s created. Medians of the rounds go to benchmarks/results/server.json.

    .venv/bin/python -m benchmarks bench_server
    .venv/bin/python -m benchmarks.bench_server --tasks 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

RESULTS = Path(__file__).parent / "results" / "server.json"
API = "/ga4gh/tes/v1"
CONCURRENCY = 64
FUNNEL_REPORTED = 54.0
TARGET = 1000.0

BARE = """
import sys, uuid
from aiohttp import web
tasks = {}
async def create(request):
    body = await request.json()
    task_id = uuid.uuid4().hex
    tasks[task_id] = body
    return web.json_response({"id": task_id})
app = web.Application()
app.router.add_post("/ga4gh/tes/v1/tasks", create)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"tesengine serve: listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()
import asyncio
asyncio.run(main())
"""


def _task(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "tags": {"bench": "server"},
        "inputs": [{"path": "/data/in.txt", "content": "x"}],
        "outputs": [{"path": "/data/out.txt", "url": "file:///tmp/bench-out.txt"}],
        "executors": [{"image": "alpine", "command": ["echo", str(i)]}],
    }


def _start(variant: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    if variant == "bare":
        argv = [sys.executable, "-c", BARE]
    else:
        argv = [
            sys.executable, "-m", "tesengine", "serve", "--runtime", "noop", "--port", "0",
            "--work-dir", str(work),
        ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("tesengine serve: listening on "):
        proc.kill()
        raise RuntimeError(f"{variant} server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def _rss_mib(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return {"rss_mib": out.get("VmRSS", 0.0), "peak_rss_mib": out.get("VmHWM", 0.0)}


async def _create_all(url: str, n: int) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def one(i: int) -> None:
            async with limit, session.post(f"{url}{API}/tasks", json=_task(i)) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"create -> {resp.status}: {await resp.text()}")
                await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - start


async def _count_complete(url: str) -> int:
    count, token = 0, ""
    async with aiohttp.ClientSession() as session:
        while True:
            query = f"{url}{API}/tasks?state=COMPLETE&page_size=2047"
            async with session.get(query + (f"&page_token={token}" if token else "")) as resp:
                page = await resp.json()
            count += len(page["tasks"])
            token = page.get("next_page_token", "")
            if not token:
                return count


async def _round(variant: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        proc, url = _start(variant, Path(tmp))
        try:
            start = time.perf_counter()
            created = await _create_all(url, n)
            result: dict[str, Any] = {"created_per_s": n / created}
            if variant == "tesengine":
                deadline = time.monotonic() + 120
                while await _count_complete(url) < n:
                    if time.monotonic() > deadline:
                        raise RuntimeError("tasks did not complete within 120 s")
                    await asyncio.sleep(0.05)
                result["completed_per_s"] = n / (time.perf_counter() - start)
            result.update(_rss_mib(proc.pid))
            return result
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_server")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "tesengine": []}
    load_before = os.getloadavg()[0]
    for i in range(args.rounds):
        order = ["bare", "tesengine"] if i % 2 == 0 else ["tesengine", "bare"]
        for variant in order:
            runs[variant].append(asyncio.run(_round(variant, args.tasks)))
            print(f"round {i + 1} {variant}: {runs[variant][-1]}", flush=True)
    median = {name: _median(r) for name, r in runs.items()}
    created = median["tesengine"]["created_per_s"]
    result = {
        "benchmark": "noop runtime: create + complete tasks over loopback HTTP, 64 in flight",
        "tasks_per_round": args.tasks,
        "rounds": args.rounds,
        "median": median,
        "ratio_to_bare_created": round(created / median["bare"]["created_per_s"], 3),
        "funnel_reported_tasks_per_s": FUNNEL_REPORTED,
        "target_created_per_s": TARGET,
        "meets_target": created >= TARGET,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": load_before,
            "load_avg_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "note": "client and server share the machine (2 cores, shared with other work)",
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'variant':<12}{'created/s':>12}{'completed/s':>13}{'RSS MiB':>10}{'peak MiB':>10}")
    for name, m in median.items():
        done = f"{m['completed_per_s']:>13.0f}" if "completed_per_s" in m else f"{'-':>13}"
        print(
            f"{name:<12}{m['created_per_s']:>12.0f}{done}{m['rss_mib']:>10.1f}"
            f"{m['peak_rss_mib']:>10.1f}"
        )
    print(f"{'funnel*':<12}{FUNNEL_REPORTED:>12.0f}{'':>13}   (*reported by Funnel, not measured)")
    print(f"target >= {TARGET:.0f} created/s: {'met' if result['meets_target'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
