"""TesClient.get_task(MINIMAL) against a bare aiohttp loop doing the same GETs.

A trivial aiohttp.web server answers ``GET /ga4gh/tes/v1/tasks/{id}`` on
loopback, in its own process. In the same run, alternating order, each
round measures requests/s and client CPU per request for:

- ``bare``: one aiohttp session (pool of 256), ``read()`` + ``json.loads``;
- ``tesengine``: ``TesClient.get_task(id, View.MINIMAL)`` (pydantic model,
  retry-ready transport, semaphore, auth hook), max_concurrency 256.

Medians over the rounds go to benchmarks/results/tes_client.json. Target:
tesengine >= 0.8x bare in requests/s.

    .venv/bin/python -m benchmarks bench_tes_client
    .venv/bin/python -m benchmarks.bench_tes_client --requests 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tesengine.tes import TesClient, View

RESULTS = Path(__file__).parent / "results" / "tes_client.json"

SERVER = """
import sys
from aiohttp import web

async def get_task(request):
    return web.json_response({"id": request.match_info["id"], "state": "RUNNING"})

app = web.Application()
app.router.add_get("/ga4gh/tes/v1/tasks/{id}", get_task)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"benchmark server did not start on port {port}")


async def _drive(total: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> None:
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _measure(
    total: int, concurrency: int, one: Callable[[int], Awaitable[object]]
) -> dict[str, float]:
    await _drive(concurrency * 2, concurrency, one)  # warm the pool
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await _drive(total, concurrency, one)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"requests_per_s": total / wall, "cpu_us_per_request": cpu / total * 1e6}


async def bare(base: str, total: int, concurrency: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> object:
            async with session.get(f"{base}/tasks/t{i}?view=MINIMAL") as resp:
                return json.loads(await resp.read())

        return await _measure(total, concurrency, one)


async def tesengine(base: str, total: int, concurrency: int) -> dict[str, float]:
    async with TesClient(base, max_concurrency=concurrency) as tes:

        async def one(i: int) -> object:
            return await tes.get_task(f"t{i}", View.MINIMAL)

        return await _measure(total, concurrency, one)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_tes_client")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args(argv)

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        _wait_for_port(port)
        base = f"http://127.0.0.1:{port}/ga4gh/tes/v1"
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "tesengine": []}
        for round_no in range(args.rounds):
            order = [("bare", bare), ("tesengine", tesengine)]
            if round_no % 2:
                order.reverse()
            for name, fn in order:
                runs[name].append(asyncio.run(fn(base, args.requests, args.concurrency)))
    finally:
        server.terminate()
        server.wait(timeout=10)

    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    ratio = medians["tesengine"]["requests_per_s"] / medians["bare"]["requests_per_s"]
    result = {
        "benchmark": "get_task(MINIMAL) vs bare aiohttp GET, loopback, server in its own process",
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "median": medians,
        "throughput_ratio": round(ratio, 3),
        "target_ratio": 0.8,
        "meets_target": ratio >= 0.8,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'client':<12}{'req/s':>12}{'CPU us/req':>14}")
    for name, m in medians.items():
        print(f"{name:<12}{m['requests_per_s']:>12.0f}{m['cpu_us_per_request']:>14.1f}")
    print(f"ratio tesengine/bare: {ratio:.2f} (target >= 0.8); load avg {os.getloadavg()[0]:.2f}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
