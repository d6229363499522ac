"""Side by side: Sprocket's TES backend and tesengine running the same N-task scatter.

Both clients submit N ``true`` tasks to a fresh ``tesengine serve --runtime
noop`` at the same polling interval, through a counting proxy (the one the
tests use, in a thread of this process). Each client is its own process:
its wall time, CPU and peak RSS come from ``wait4``. Then the same again with
a share of the creates answered 503 *after* the server created the task (the
case where a blind retry duplicates): duplicates = tasks on the server - N.

Sprocket is the binary .ci/peers.sh builds; both clients keep their default
request concurrency (Sprocket 10, tesengine 256) and get 8 retries.

    .venv/bin/python -m benchmarks bench_peers                     # N=1000, median of 3
    .venv/bin/python -m benchmarks bench_peers --tasks 200 --rounds 1
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
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_engine import start_server, stop

RESULTS = Path(__file__).parent / "results"
CLIENTS = ("sprocket", "tesengine")
WDL = """version 1.2

task noop {
  input {
    Int i
  }

  command <<<
    true
  >>>

  runtime {
    container: "ubuntu:22.04"
  }
}

workflow bench {
  input {
    Int n
  }

  scatter (i in range(n)) {
    call noop { input: i = i }
  }
}
"""


class ProxyThread:
    """The tests' FaultProxy on its own event loop in a daemon thread."""

    def __init__(self, upstream: str, fault_rate: float) -> None:
        from tests.fixtures.proxy import Fault, FaultProxy

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.proxy = FaultProxy(upstream, seed=1)
        if fault_rate:
            # a create that reached the server, answered 503: the duplicate-maker
            self.proxy.add(
                Fault("status_after", 503), method="POST", path=r"/tasks$", probability=fault_rate
            )
        self.url = self._run(self.proxy.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self._run(self.proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


def sprocket_binary(given: str | None) -> Path | None:
    if given:
        return Path(given)
    from tests.fixtures.sprocket import sprocket_binary as find

    return find()


def sprocket_argv(binary: Path, url: str, work: Path, tasks: int, interval: int) -> list[str]:
    config = work / "sprocket.toml"
    config.write_text(
        '[run]\nbackend = "default"\n'
        "[run.backends.default]\n"
        f'type = "tes"\nurl = "{url}"\ninsecure = true\nretries = 8\ninterval = {interval}\n'
        f'inputs = "{(work / "in").as_uri()}/"\noutputs = "{(work / "out").as_uri()}/"\n'
    )
    source = work / "bench.wdl"
    source.write_text(WDL)
    return [
        str(binary), "--skip-config-search", "--config", str(config), "run", str(source),
        f"bench.n={tasks}", "--output-dir", str(work / "runs"), "--unlocked", "--no-call-cache",
    ]  # fmt: skip


def tesengine_argv(url: str, tasks: int, interval: int) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.bench_engine", "--child", "tesengine", "--url", url,
        "--tasks", str(tasks), "--interval", str(interval), "--window", "0",
    ]  # fmt: skip


def measure(argv: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``argv``; wall, CPU and peak RSS of that process alone (``wait4``)."""
    log = cwd / "client.log"
    start = time.perf_counter()
    with log.open("wb") as sink:  # files, not pipes: Sprocket writes much to stderr
        proc = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {tail}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def server_tasks(url: str) -> int:
    from tesengine.tes import TesClient

    async def count() -> int:
        async with TesClient(url) as client:
            return sum([1 async for _ in client.iter_tasks()])

    return asyncio.run(count())


def run_one(kind: str, args: argparse.Namespace, fault_rate: float, base: Path) -> dict[str, Any]:
    base.mkdir(parents=True)
    proc, url = start_server(base / "server", delay=0.0)
    proxy = ProxyThread(url, fault_rate)
    try:
        if kind == "sprocket":
            api = f"{proxy.url}/ga4gh/tes/v1"  # Sprocket takes the API base as is
            argv = sprocket_argv(args.sprocket, api, base, args.tasks, args.interval)
        else:
            argv = tesengine_argv(proxy.url, args.tasks, args.interval)
        row = measure(argv, base)
        created = server_tasks(url)
    finally:
        proxy.close()
        stop(proc)
    intervals = row["wall_s"] / args.interval
    return {
        **row,
        "requests": proxy.proxy.requests,
        "requests_per_interval": proxy.proxy.requests / intervals,
        "injected_5xx": proxy.proxy.injected["status_after"],
        "tasks_on_server": created,
        "duplicates": created - args.tasks,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {key: statistics.median(row[key] for row in rows) for key in keys}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_peers")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=1, help="seconds (Sprocket: integer)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--sprocket", help="the Sprocket binary (default: the .ci/peers.sh build)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    args.sprocket = sprocket_binary(args.sprocket)
    if args.sprocket is None:
        print("bench_peers: skipped, Sprocket is not built (bash .ci/peers.sh builds it)")
        return 0
    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for round_ in range(args.rounds):
            order = CLIENTS if round_ % 2 == 0 else CLIENTS[::-1]
            for rate in (0.0, args.fault_rate):
                for kind in order:
                    key = f"{kind} faults={rate}"
                    row = run_one(kind, args, rate, Path(tmp) / f"{round_}-{rate}-{kind}")
                    rows.setdefault(key, []).append(row)
                    print(key, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    result = {
        "tasks": args.tasks,
        "interval_s": args.interval,
        "rounds": args.rounds,
        "fault_rate_on_create": args.fault_rate,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "median": {key: summary(value) for key, value in rows.items()},
        "runs": rows,
    }
    print(json.dumps(result["median"], indent=2))
    if not args.no_save:
        # one file per size: the 1,000- and 10,000-task runs are both in the README
        (RESULTS / f"peers-{args.tasks}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
