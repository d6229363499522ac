"""The real Sprocket as a client of ``tesengine serve``, and one bucket both stage into.

Every test here runs the Sprocket binary ``.ci/peers.sh`` builds (missing:
a failure in CI, a skip elsewhere) against ``tesengine serve --runtime
local`` on loopback, with S3 storage on moto_server. Sprocket reaches moto
through the counting proxy (``tests/fixtures/proxy.py``), so every PUT it
or ``tesengine stage`` sends is counted; the server reaches moto directly.

The quick run stages the quick trees; ``nox -s peers`` (PEERS_FULL=1) the
full ones (the 1,000-entry directory).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tesengine.tes import TesClient, View
from tests.fixtures.proxy import FaultProxy
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Server
from tests.fixtures.sprocket import S3Access, SprocketRun, run_sprocket, sprocket_toml
from tests.fixtures.tes_server import ServedTes
from tests.peers import trees
from tests.support import user_env

FULL = os.environ.get("PEERS_FULL") == "1"
VECTORS = Path(__file__).with_name("sprocket_vectors.json")
HERE = Path(__file__).parent

pytestmark = pytest.mark.timeout(900)


@dataclass
class Stack:
    """tesengine serve + moto + the counting proxy, under one fresh bucket prefix."""

    served: ServedTes
    s3: S3Server
    proxy: FaultProxy
    prefix: str
    work: Path

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.s3.bucket}/{self.prefix}", *parts])

    def sprocket_config(self, inputs: str = "inputs") -> Path:
        return sprocket_toml(
            self.work / f"sprocket-{inputs}.toml",
            tes_url=self.served.api,  # Sprocket posts to <url>/tasks: no discovery
            inputs=self.url(inputs),
            outputs=self.url("outputs"),
            s3=S3Access(self.proxy.url, ACCESS_KEY, SECRET_KEY),
        )

    def keys(self, under: str) -> set[str]:
        """Object keys below ``<prefix>/<under>/``, relative to it."""
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.s3.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip
        start = f"{self.prefix}/{under}/"
        found: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.s3.bucket, Prefix=start
        ):
            found.update(item["Key"].removeprefix(start) for item in page.get("Contents", []))
        return found

    def read(self, url: str) -> bytes:
        """An output as Sprocket reported it: an s3:// URL or a local path."""
        import boto3

        parts = urlsplit(url)
        if parts.scheme != "s3":
            return Path(unquote(parts.path) if parts.scheme == "file" else url).read_bytes()
        client = boto3.client(
            "s3", endpoint_url=self.s3.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip
        body = client.get_object(Bucket=parts.netloc, Key=unquote(parts.path.lstrip("/")))["Body"]
        data: bytes = body.read()
        return data

    async def sprocket(self, binary: Path, source: Path, *inputs: str, **kw: Any) -> SprocketRun:
        """``sprocket run`` in a thread: the proxy keeps serving on this loop."""
        config = kw.pop("config", None) or self.sprocket_config()
        return await asyncio.to_thread(
            run_sprocket, binary, config, source, *inputs, cwd=self.work, **kw
        )

    async def tesengine_stage(self, *paths: Path, inputs: str = "inputs") -> list[list[str]]:
        """``tesengine stage`` (the CLI, through the proxy); its tab-separated lines."""
        config = self.work / f"tesengine-{inputs}.toml"
        config.write_text(
            "[run.backends.default]\n"
            f'type = "tes"\nurl = "{self.served.url}"\n'
            f'inputs = "{self.url(inputs)}"\noutputs = "{self.url("outputs")}"\n'
        )
        env = {**user_env(self.work / "cache"), **self.s3.env(), "AWS_ENDPOINT_URL": self.proxy.url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tesengine", "stage", "--config", str(config),
            *map(str, paths), env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return [line.split("\t") for line in out.decode().splitlines()]

    async def task_inputs(self) -> dict[str, str]:
        """Guest path -> URL of every input of every task the server holds."""
        found: dict[str, str] = {}
        async with TesClient(self.served.url) as client:
            async for task in client.iter_tasks(view=View.FULL):
                for item in task.inputs or []:
                    if item.url:
                        found[item.path] = item.url
        return found


@pytest.fixture
async def stack(
    sprocket: Path,
    moto_s3: S3Server,
    serve_tes: Callable[..., ServedTes],
    fault_proxy: Callable[[str], Awaitable[FaultProxy]],
    tmp_path: Path,
) -> Stack:
    prefix = f"peers-{uuid.uuid4().hex[:10]}"
    served = serve_tes(
        runtime="local",
        args=["--storage", f"s3://{moto_s3.bucket}/{prefix}", "--max-tasks", "4"],
        env=moto_s3.env(),
    )
    proxy = await fault_proxy(moto_s3.endpoint)
    work = tmp_path / "work"
    work.mkdir()
    return Stack(served, moto_s3, proxy, prefix, work)


def _inputs_json(path: Path, values: dict[str, Any]) -> str:
    path.write_text(json.dumps(values, ensure_ascii=False))
    return f"@{path}"


async def test_sprocket_workflow_on_tesengine_serve(sprocket: Path, stack: Stack) -> None:
    """File and Directory inputs, a scatter, outputs read by a later task."""
    data = stack.work / "data"
    source = data / "input.txt"
    source.parent.mkdir()
    source.write_text("twelve bytes")
    tree = trees.nested(data / "tree")
    inputs = _inputs_json(
        stack.work / "inputs.json",
        {"wf.f": str(source), "wf.d": str(tree), "wf.words": ["one", "two", "three"]},
    )
    run = await stack.sprocket(sprocket, HERE / "wdl" / "workflow.wdl", inputs)
    assert run.ok, run.describe()
    outputs = run.outputs()
    assert stack.read(outputs["wf.all"]) == b"one 12\ntwo 12\nthree 12\n"
    listing = stack.read(outputs["wf.listing"]).decode().split()
    assert listing == ["./a/b/c/deep.txt", "./a/b/mid.bin", "./a/top.txt", "./z.txt"]
    assert stack.proxy.forwarded["PUT"] >= 2  # Sprocket uploaded the file and the tree


def _staging_inputs(stack: Stack) -> tuple[dict[str, Path], dict[str, Path], str]:
    dirs = trees.build(stack.work / "trees", full=FULL)
    files = trees.files(stack.work / "files")
    values = {
        "stage.dirs": [str(p) for p in dirs.values()],
        "stage.files": [str(p) for p in files.values()],
    }
    return dirs, files, _inputs_json(stack.work / "stage.json", values)


def _by_name(task_inputs: dict[str, str]) -> dict[str, str]:
    """Input name (the guest path's last part) -> the URL Sprocket gave the task."""
    return {path.rstrip("/").rsplit("/", 1)[-1]: url for path, url in task_inputs.items()}


def _addresses(urls: dict[str, str], base: str) -> dict[str, str]:
    """name -> ``file/<hex>`` or ``directory/<hex>`` under ``base``."""
    return {name: url.removeprefix(base.rstrip("/") + "/") for name, url in urls.items()}


def _record(vectors: dict[str, str]) -> None:
    """With RECORD_SPROCKET_VECTORS=1, merge what the real Sprocket computed into the file."""
    if os.environ.get("RECORD_SPROCKET_VECTORS") != "1":
        return
    known = json.loads(VECTORS.read_text()) if VECTORS.exists() else {}
    known.setdefault("addresses", {}).update(vectors)
    known["sprocket"] = "0.33.0"
    VECTORS.write_text(json.dumps(known, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


async def test_shared_bucket_sprocket_stages_first(sprocket: Path, stack: Stack) -> None:
    """After Sprocket staged, tesengine finds every input present and uploads no file."""
    dirs, files, inputs = _staging_inputs(stack)
    run = await stack.sprocket(sprocket, HERE / "wdl" / "stage.wdl", inputs, target="stage")
    assert run.ok, run.describe()
    by_sprocket = _by_name(await stack.task_inputs())
    names = set(dirs) | set(files)
    assert names <= set(by_sprocket), sorted(names - set(by_sprocket))
    sprocket_keys = stack.keys("inputs")
    _record(_addresses({n: by_sprocket[n] for n in names}, stack.url("inputs")))

    puts = stack.proxy.forwarded["PUT"]
    lines = await stack.tesengine_stage(*dirs.values(), *files.values())
    assert [status for _, status, _ in lines] == ["present"] * len(names)
    assert {Path(src).name: url for url, _, src in lines} == {n: by_sprocket[n] for n in names}
    # only tesengine's completion markers went up, one per directory, no file
    assert stack.proxy.forwarded["PUT"] - puts == len(dirs)
    added = stack.keys("inputs") - sprocket_keys
    assert len(added) == len(dirs)
    assert all(key.startswith("complete/directory/") for key in added), added


async def test_shared_bucket_tesengine_stages_first(sprocket: Path, stack: Stack) -> None:
    """After tesengine staged, Sprocket uploads nothing and uses the same addresses."""
    dirs, files, inputs = _staging_inputs(stack)
    lines = await stack.tesengine_stage(*dirs.values(), *files.values(), inputs="shared")
    # plain.txt and the symlink to it share one address: uploaded once, then present
    uploaded = [url for url, status, _ in lines if status == "uploaded"]
    assert sorted(uploaded) == sorted({url for url, _, _ in lines})
    ours = {Path(src).name: url for url, _, src in lines}
    keys = stack.keys("shared")

    puts = stack.proxy.forwarded["PUT"]
    config = stack.sprocket_config("shared")
    run = await stack.sprocket(
        sprocket, HERE / "wdl" / "stage.wdl", inputs, target="stage", config=config
    )
    assert run.ok, run.describe()
    assert stack.proxy.forwarded["PUT"] == puts  # Sprocket found every object there
    assert stack.keys("shared") == keys
    by_sprocket = _by_name(await stack.task_inputs())
    assert {n: by_sprocket[n] for n in ours} == ours


async def test_tesengine_digests_match_the_sprocket_vectors(tmp_path: Path) -> None:
    """The addresses the real Sprocket computed for the trees (recorded from its run)."""
    from tesengine.digest import Digester

    if not VECTORS.exists():
        # not recorded yet: the live tests above compare against Sprocket directly
        pytest.skip("no Sprocket vectors recorded yet (RECORD_SPROCKET_VECTORS=1 nox -s peers)")
    recorded: dict[str, str] = json.loads(VECTORS.read_text())["addresses"]
    inputs = {**trees.build(tmp_path / "trees", full=True), **trees.files(tmp_path / "files")}
    inputs["wide100"] = trees.wide(tmp_path / "trees" / "wide100", 100)

    async with Digester(cache=False) as digester:
        computed = {name: (await digester.digest(path)).key for name, path in inputs.items()}
    assert set(recorded) <= set(computed)
    assert {n: computed[n] for n in recorded} == recorded
