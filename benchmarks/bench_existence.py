"""Batched existence checks vs one HEAD per file, against a bucket of 100,000 objects.

Issue 18 part 1. An S3 server on loopback (``--store``, see
:mod:`benchmarks._stores`: ``rclone serve s3``, whose listing pages cost
per bucket, or SeaweedFS, whose pages cost per page) holds ``--objects``
(100,000) objects under ``inputs/file/<hex>`` (random 64-hex names, tiny
bodies), among them the real Blake3 addresses (same bytes, same sizes) of
``--present`` (10,000) local files. Cases (median of the runs; the sides alternate which goes
first; every timed side runs in a fresh process):

A. the 10,000 present files: ``Stager.stage_many`` (concurrency 32) vs raw
   ``obstore.head_async`` of each address at concurrency 32. Targets: >= 5x
   faster, <= 1/10 of the requests.
B. 10 present files, the same two sides: never more than 10% slower
   (timed cold, the first call of a fresh process, and warm: the median
   of 20 calls on one connection pool and digester, a new Stager each).
C. 10,000 files, half present, half new: staging vs raw HEAD per file plus
   a PUT of each one missing. Checked after each side by a listing: every
   new file is there with its size and every present one was skipped. The
   new objects are deleted (untimed) after each side.

Digest time is kept out of the comparison by warming the digest cache
first (the raw side is handed the addresses): staging still pays its
warm-cache lookups (a stat and an SQLite read per file) inside its time;
``digest_warm_s`` reports that cost alone. ``--latency-ms`` puts the timed
sides behind :func:`benchmarks._latency.delayed` (that round trip added to
every request, as a store in the same region has; loopback has none).
Results go to ``benchmarks/results/existence.json``. Run::

    flock /tmp/bench.lock .venv/bin/python -m benchmarks bench_existence
    flock /tmp/bench.lock .venv/bin/python -m benchmarks bench_existence --small
    flock /tmp/bench.lock .venv/bin/python -m benchmarks bench_existence --store seaweedfs \
        --out benchmarks/results/existence-seaweedfs-100k.json
    flock /tmp/bench.lock .venv/bin/python -m benchmarks bench_existence --store seaweedfs \
        --latency-ms 10 --out benchmarks/results/existence-seaweedfs-100k-10ms.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._latency import delayed
from benchmarks._phases import run_worker, spawn
from benchmarks._stores import STORES, fill, s3_store, serving

RESULTS = Path(__file__).parent / "results" / "existence.json"
CONCURRENCY = 32
SMALL_BATCH = 10
WARM_REPEATS = 20


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_existence", description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="10,000 objects, 1,000 files")
    parser.add_argument("--objects", type=int, default=100_000, help="objects in the bucket")
    parser.add_argument("--present", type=int, default=10_000, help="local files present")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per side (>= 3)")
    parser.add_argument("--store", choices=STORES, default="rclone", help="the S3 server")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="round trip added to every request"
    )
    parser.add_argument("--worker", nargs=2, metavar=("PHASE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(*args.worker)
    from tests.fixtures.s3 import BUCKET

    objects, present = (10_000, 1_000) if args.small else (args.objects, args.present)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tesengine-bench-existence-", dir="/tmp") as tmp:
        work = Path(tmp)
        spec: dict[str, Any] = {"work": str(work), "cache": str(work / "cache")}
        _make_local(work, present)
        _spawn("seed", spec)  # digests every local file: the cache is warm from here
        with serving(args.store, work, objects, _spawn) as served:
            spec |= {"endpoint": served.endpoint, "bucket": BUCKET, "store": args.store}
            check = _spawn("check", {**spec, "objects": objects})
            with delayed(served.endpoint, args.latency_ms) as endpoint:
                result = _run_cases({**spec, "endpoint": endpoint}, max(3, args.runs))
    result["setup"] = {"objects": objects, "present": present, "fill_s": served.fill_s, **check}
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "python": sys.version.split()[0],
        "store": served.label,
        "concurrency": CONCURRENCY,
        "latency_ms": args.latency_ms,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print_table(result)
    return 0


def _make_local(work: Path, present: int) -> None:
    """``present`` files to find in the bucket, and as many halves again that are new."""
    for name, count in (("present", present), ("new", present // 2)):
        folder = work / "local" / name
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"f{i:06d}.txt").write_bytes(f"{name} {i}\n".encode() + os.urandom(24))


def _run_cases(spec: dict[str, Any], runs: int) -> dict[str, Any]:
    pairs = [("a_stage", "a_head"), ("b_stage", "b_head"), ("c_stage", "c_raw")]
    sides: dict[str, list[dict[str, Any]]] = {}
    for run in range(runs):
        for pair in pairs:
            for phase in pair if run % 2 == 0 else reversed(pair):
                sides.setdefault(phase, []).append(_spawn(phase, {**spec, "run": run}))
        sides.setdefault("digest_warm", []).append(_spawn("digest_warm", spec))
    return {"sides": sides, "summary": _summary(sides)}


def _spawn(phase: str, spec: dict[str, Any]) -> dict[str, Any]:
    return spawn("benchmarks.bench_existence", phase, spec)


def _summary(sides: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def med(phase: str, key: str) -> float:
        return statistics.median(float(o[key]) for o in sides[phase])

    out: dict[str, Any] = {}
    for case, ours, raw in (("a", "a_stage", "a_head"), ("c", "c_stage", "c_raw")):
        out[case] = {
            "files": sides[ours][0]["items"],
            "stage_s": med(ours, "seconds"),
            "raw_s": med(raw, "seconds"),
            "speedup": med(raw, "seconds") / med(ours, "seconds"),
            "stage_requests": med(ours, "requests"),
            "raw_requests": med(raw, "requests"),
            "stage_rounds_s": [o["seconds"] for o in sides[ours]],
            "raw_rounds_s": [o["seconds"] for o in sides[raw]],
            "plan": sides[ours][0]["plan"],
        }
    out["b"] = {
        "files": sides["b_stage"][0]["items"],
        **{
            f"{side}_{kind}_s": med(phase, kind)
            for side, phase in (("stage", "b_stage"), ("raw", "b_head"))
            for kind in ("cold", "warm")
        },
        **{
            f"{side}_{kind}_rounds_s": [o[kind] for o in sides[phase]]
            for side, phase in (("stage", "b_stage"), ("raw", "b_head"))
            for kind in ("cold", "warm")
        },
        "stage_requests": med("b_stage", "requests"),
        "raw_requests": med("b_head", "requests"),
    }
    out["digest_warm_s"] = med("digest_warm", "seconds")
    return out


def _print_table(result: dict[str, Any]) -> None:
    s = result["summary"]
    print(f"{'case':34} {'tesengine':>10} {'raw':>10} {'raw/ours':>9} {'requests':>14}")
    for case, label in (("a", "A all present"), ("c", "C half new")):
        r = s[case]
        reqs = f"{r['stage_requests']:.0f}/{r['raw_requests']:.0f}"
        name = f"{label} ({r['files']} files) s"
        print(f"{name:34} {r['stage_s']:10.3f} {r['raw_s']:10.3f} {r['speedup']:9.2f} {reqs:>14}")
    b = s["b"]
    reqs = f"{b['stage_requests']:.0f}/{b['raw_requests']:.0f}"
    for kind in ("cold", "warm"):
        ours, raw = b[f"stage_{kind}_s"] * 1e3, b[f"raw_{kind}_s"] * 1e3
        name = f"B {b['files']} files, {kind} ms"
        print(f"{name:34} {ours:10.2f} {raw:10.2f} {raw / ours:9.2f} {reqs:>14}")
    setup = result["setup"]
    print(f"plan A: {s['a']['plan']}; plan C: {s['c']['plan']}")
    print(
        f"bucket: {setup['objects']} objects (listed {setup['listed']} in {setup['list_s']:.1f} s,"
        f" offset honoured: {setup['offset_honoured']}); warm digest of"
        f" {s['a']['files']} files alone: {s['digest_warm_s']:.3f} s"
    )
    m = result["machine"]
    print(f"load average before/after: {m['load_before'][0]:.2f} / {m['load_after'][0]:.2f}")


# -- workers: one phase each, in a fresh process ----------------------------------


def _worker(phase: str, raw_spec: str) -> int:
    return run_worker(PHASES, phase, raw_spec)


def _files(spec: dict[str, Any], name: str) -> list[Path]:
    return sorted(Path(spec["work"], "local", name).iterdir())


def _mixed(spec: dict[str, Any]) -> list[Path]:
    """Case C: half present, half new, interleaved."""
    new = _files(spec, "new")
    present = _files(spec, "present")[: len(new)]
    return [p for pair in zip(present, new, strict=True) for p in pair]


def _keys(spec: dict[str, Any]) -> dict[str, str]:
    """Local path -> object key, from the seed."""
    seed = json.loads(Path(spec["work"], "keys.json").read_text())
    return {path: f"inputs/file/{hex_}" for kind in seed.values() for hex_, _, path in kind}


def _stager(spec: dict[str, Any], storage: Any = None, digester: Any = None) -> Any:
    from tesengine.digest import Digester
    from tesengine.storage import Stager, Storage
    from tests.fixtures.s3 import S3Server

    if storage is None:
        server = S3Server(spec["store"], spec["endpoint"], spec["bucket"])
        storage = Storage(server.storage_config())
    digester = digester or Digester(cache_dir=Path(spec["cache"]))
    return Stager(storage, digester, f"s3://{spec['bucket']}/inputs", concurrency=CONCURRENCY)


async def _seed(spec: dict[str, Any]) -> dict[str, Any]:
    from tesengine.digest import Digester

    digester = Digester(cache_dir=Path(spec["cache"]))
    out: dict[str, Any] = {}
    for name in ("present", "new"):
        files = _files(spec, name)
        digests = await digester.digest_files(files)
        out[name] = [[d.hex, p.stat().st_size, str(p)] for p, d in zip(files, digests, strict=True)]
    await digester.aclose()
    Path(spec["work"], "keys.json").write_text(json.dumps(out))
    return out


async def _check(spec: dict[str, Any]) -> dict[str, Any]:
    """The objects are visible through the S3 API, and a listing offset is honoured."""
    import obstore

    store = s3_store(spec)
    start = time.perf_counter()
    listed = sum([len(b) async for b in obstore.list(store, "inputs/file", chunk_size=1000)])
    list_s = time.perf_counter() - start
    assert listed == spec["objects"], f"listed {listed} of {spec['objects']}"
    stream = obstore.list(store, "inputs/file", offset="inputs/file/8", chunk_size=1000)
    page = await stream.__anext__()
    first = page[0]["path"]
    return {"listed": listed, "list_s": list_s, "offset_honoured": first > "inputs/file/8"}


async def _digest_warm(spec: dict[str, Any]) -> dict[str, Any]:
    from tesengine.digest import Digester

    digester = Digester(cache_dir=Path(spec["cache"]))
    files = _files(spec, "present")
    start = time.perf_counter()
    await digester.digest_files(files)
    seconds = time.perf_counter() - start
    await digester.aclose()
    return {"items": len(files), "seconds": seconds}


async def _a_stage(spec: dict[str, Any]) -> dict[str, Any]:
    out = await _stage_timed(spec, _files(spec, "present"))
    assert not out.pop("urls"), "uploaded a file that was present"
    assert out["skipped"] == out["items"], out
    return out


async def _stage_timed(spec: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    stager = _stager(spec)
    start = time.perf_counter()
    results = await stager.stage_many(files)
    seconds = time.perf_counter() - start
    await stager.digester.aclose()
    uploaded = sum(r.uploaded for r in results)
    st = stager.stats
    return {
        "items": len(files),
        "seconds": seconds,
        "requests": st.requests,
        "heads": st.heads,
        "lists": st.lists,
        "puts": st.puts,
        "uploaded": uploaded,
        "skipped": st.files_skipped,
        "plan": st.last_plan,
        "urls": [r.url for r in results if r.uploaded],
    }


async def _a_head(spec: dict[str, Any]) -> dict[str, Any]:
    keys = _keys(spec)
    return await _heads_timed(spec, [keys[str(p)] for p in _files(spec, "present")])


async def _heads_timed(spec: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    import obstore

    store = s3_store(spec)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def head(key: str) -> None:
        async with limit:
            await obstore.head_async(store, key)

    start = time.perf_counter()
    await asyncio.gather(*(head(k) for k in keys))
    return {"items": len(keys), "seconds": time.perf_counter() - start, "requests": len(keys)}


async def _b_stage(spec: dict[str, Any]) -> dict[str, Any]:
    files = _files(spec, "present")[:SMALL_BATCH]
    first = _stager(spec)
    start = time.perf_counter()
    await first.stage_many(files)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(WARM_REPEATS):
        # a new Stager (nothing known present yet) on the process's storage and digester
        stager = _stager(spec, first.storage, first.digester)
        start = time.perf_counter()
        results = await stager.stage_many(files)
        warm.append(time.perf_counter() - start)
        assert not any(r.uploaded for r in results)
    await first.digester.aclose()
    return {
        "items": len(files),
        "cold": cold,
        "warm": statistics.median(warm),
        "requests": first.stats.requests,
    }


async def _b_head(spec: dict[str, Any]) -> dict[str, Any]:
    import obstore

    keys = _keys(spec)
    names = [keys[str(p)] for p in _files(spec, "present")[:SMALL_BATCH]]
    store = s3_store(spec)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def head(key: str) -> None:
        async with limit:
            await obstore.head_async(store, key)

    async def once() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(head(k) for k in names))
        return time.perf_counter() - start

    cold = await once()
    warm = statistics.median([await once() for _ in range(WARM_REPEATS)])
    return {"items": len(names), "cold": cold, "warm": warm, "requests": len(names)}


async def _c_stage(spec: dict[str, Any]) -> dict[str, Any]:
    out = await _stage_timed(spec, _mixed(spec))
    keys = _keys(spec)  # once: it parses keys.json (per file, 5,000 parses took ~2 min)
    new = {f"s3://{spec['bucket']}/{keys[str(p)]}" for p in _files(spec, "new")}
    assert set(out.pop("urls")) == new, "uploaded other than the new half"
    assert out["skipped"] == len(new), out
    return out | await _verify_and_clean(spec)


async def _c_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import obstore

    keys = _keys(spec)
    files = _mixed(spec)
    store = s3_store(spec)
    limit = asyncio.Semaphore(CONCURRENCY)
    puts = 0

    async def one(path: Path) -> None:
        nonlocal puts
        key = keys[str(path)]
        async with limit:
            try:
                await obstore.head_async(store, key)
                return
            except FileNotFoundError:  # obstore's NotFoundError
                pass
        async with limit:
            await obstore.put_async(store, key, path.read_bytes())
            puts += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in files))
    seconds = time.perf_counter() - start
    out = {"items": len(files), "seconds": seconds, "requests": len(files) + puts, "puts": puts}
    return out | {"plan": "HEAD per file"} | await _verify_and_clean(spec)


async def _verify_and_clean(spec: dict[str, Any]) -> dict[str, float]:
    """Every new file is listed with its size; then the new objects go (untimed:
    the seconds each took are returned apart)."""
    import obstore

    seed = json.loads(Path(spec["work"], "keys.json").read_text())
    store = s3_store(spec)
    start = time.perf_counter()
    sizes: dict[str, int] = {}
    async for batch in obstore.list(store, "inputs/file", chunk_size=1000):
        sizes.update((m["path"], int(m["size"])) for m in batch)
    for kind in ("present", "new"):
        for hex_, size, _ in seed[kind]:
            assert sizes.get(f"inputs/file/{hex_}") == size, (kind, hex_)
    listed = time.perf_counter()
    new = [f"inputs/file/{hex_}" for hex_, _, _ in seed["new"]]
    for first in range(0, len(new), 1000):
        await obstore.delete_async(store, new[first : first + 1000])
    return {"verify_list_s": listed - start, "clean_s": time.perf_counter() - listed}


PHASES = {
    "seed": _seed,
    "fill": fill,
    "check": _check,
    "digest_warm": _digest_warm,
    "a_stage": _a_stage,
    "a_head": _a_head,
    "b_stage": _b_stage,
    "b_head": _b_head,
    "c_stage": _c_stage,
    "c_raw": _c_raw,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
