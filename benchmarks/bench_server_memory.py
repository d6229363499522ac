"""``tesengine serve`` memory with large task documents: RSS before and after.

Eight tasks, each with a 30 MB input ``content`` (the case from issue 13),
are created one after the other on ``tesengine serve --runtime noop`` and run
to COMPLETE; then each task's FULL view is read once (what a client fetching
the logs does). The server's RSS is read from /proc at three points: idle
after start-up, once every task is COMPLETE, and after the FULL reads; the
peak (VmHWM) too. Median of the rounds (each a fresh server process) goes to
benchmarks/results/server_memory.json.

``--source DIR`` runs the server from another checkout (e.g. the code before
a change, unpacked with ``git archive <rev> | tar -x -C DIR``), for a
before/after comparison on the same machine::

    .venv/bin/python -m benchmarks bench_server_memory
    .venv/bin/python -m benchmarks bench_server_memory --source /tmp/old --label before
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

RESULTS = Path(__file__).parent / "results" / "server_memory.json"
API = "/ga4gh/tes/v1"
MB = 1_000_000


def _task(i: int, size: int) -> dict[str, Any]:
    return {
        "name": f"big-{i}",
        "inputs": [{"path": "/data/in.txt", "content": chr(ord("a") + i % 26) * size}],
        "executors": [{"image": "alpine", "command": ["true"]}],
    }


def _start(work: Path, source: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    argv = [
        sys.executable, "-m", "tesengine", "serve", "--runtime", "noop", "--port", "0",
        "--work-dir", str(work),
    ]  # fmt: skip
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=source or None
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("tesengine serve: listening on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def _status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


async def _wait_complete(session: aiohttp.ClientSession, url: str, ids: list[str]) -> None:
    deadline = time.monotonic() + 300
    for task_id in ids:
        while True:
            async with session.get(f"{url}{API}/tasks/{task_id}") as resp:
                if (await resp.json())["state"] == "COMPLETE":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("tasks did not complete within 300 s")
            await asyncio.sleep(0.05)


async def _round(tasks: int, size: int, source: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-server-memory-") as tmp:
        proc, url = _start(Path(tmp), source)
        try:
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                idle = _status(proc.pid)["VmRSS"]
                ids = []
                for i in range(tasks):
                    body = json.dumps(_task(i, size)).encode()
                    async with session.post(
                        f"{url}{API}/tasks", data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        if resp.status != 200:
                            raise RuntimeError(f"create -> {resp.status}: {await resp.text()}")
                        ids.append((await resp.json())["id"])
                await _wait_complete(session, url, ids)
                await asyncio.sleep(3)  # let the last write-behind commit land
                complete = _status(proc.pid)["VmRSS"]
                for task_id in ids:
                    async with session.get(f"{url}{API}/tasks/{task_id}?view=FULL") as resp:
                        got = await resp.json()
                        assert len(got["inputs"][0]["content"]) == size
                after_full = _status(proc.pid)
            return {
                "idle_rss_mib": idle,
                "complete_rss_mib": complete,
                "after_full_reads_rss_mib": after_full["VmRSS"],
                "peak_rss_mib": after_full["VmHWM"],
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_server_memory")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--mb", type=int, default=30, help="input content per task, in MB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", type=Path, help="run the server from this checkout")
    parser.add_argument("--label", default="current", help="name of this result in the file")
    args = parser.parse_args(argv)
    source = args.source.resolve() if args.source else None
    runs = []
    for i in range(max(1, args.rounds)):
        runs.append(asyncio.run(_round(args.tasks, args.mb * MB, source)))
        print(f"round {i + 1}: {runs[-1]}", flush=True)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    results: dict[str, Any] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
    results[args.label] = {
        "benchmark": f"{args.tasks} tasks x {args.mb} MB input content, noop runtime",
        "source": str(source) if source else "this checkout",
        "rounds": len(runs),
        "median": median,
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{'label':<10}{'idle':>8}{'complete':>10}{'after FULL':>12}{'peak':>8}   (RSS, MiB)")
    print(
        f"{args.label:<10}{median['idle_rss_mib']:>8.0f}{median['complete_rss_mib']:>10.0f}"
        f"{median['after_full_reads_rss_mib']:>12.0f}{median['peak_rss_mib']:>8.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
