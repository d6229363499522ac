"""``tesengine gc``: remove finished embedded runs and the downloads nothing refers to.

The embedded default keeps everything under ``~/.cache/tesengine/embedded``
(see :mod:`tesengine.local_runs`): each run's task records (``runs/<run>/``),
its outputs (``storage/outputs/<task>-<time>-<random>/``) and the client's
cached downloads (``cache/outputs/``). ``gc`` removes the runs that have ended
(a live run's lock is held, so it is never touched), older than
``--older-than``, with their outputs; then every cached download whose source
output no longer exists. Uploaded inputs (``storage/inputs/``) are kept: they
are content addressed, so later runs reuse them (``--inputs`` removes them too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rich.filesize import decimal

from .main import UsageError

_AGE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd]?)$")
_UNITS = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def register(sub: Any) -> None:
    """Add the ``gc`` sub-command."""
    p = sub.add_parser(
        "gc",
        help="remove finished embedded runs, their outputs and unreferenced downloads",
        description=_plain(__doc__.split("\n\n", 1)[1]) if __doc__ else None,
    )
    p.add_argument(
        "--older-than",
        default="0",
        metavar="AGE",
        help="only runs that ended at least AGE ago: N (days), Ns, Nm, Nh or Nd (default: 0)",
    )
    p.add_argument("--inputs", action="store_true", help="also remove the uploaded inputs")
    p.add_argument("-n", "--dry-run", action="store_true", help="say what would go; remove nothing")
    p.set_defaults(func=run)


def _plain(text: str) -> str:
    """The docstring as ``--help`` shows it: no reST roles or double backquotes."""
    return re.sub(r":\w+:`([^`]+)`", r"\1", text).replace("``", "")


@dataclass(frozen=True, slots=True)
class Removed:
    """What ``gc`` removed (or would remove)."""

    runs: int
    tasks: int
    downloads: int
    size: int


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tesengine gc``."""
    from ..local_runs import embedded_root

    root = embedded_root()
    removed = collect(root, older_than=parse_age(args.older_than), dry_run=args.dry_run)
    size = removed.size + (_inputs(root, args.dry_run) if args.inputs else 0)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"tesengine gc: {verb} {removed.runs} finished run(s) ({removed.tasks} tasks),"
        f" {removed.downloads} cached download(s), {decimal(size)} in all, under {root}"
    )
    return 0


def parse_age(text: str) -> float:
    """``--older-than`` in seconds."""
    match = _AGE.match(text.strip())
    if not match:
        raise UsageError(f"--older-than {text!r}: expected N, Ns, Nm, Nh or Nd")
    return float(match["n"]) * _UNITS[match["unit"]]


def collect(root: Path, *, older_than: float = 0.0, dry_run: bool = False) -> Removed:
    """Remove finished runs older than ``older_than`` seconds, then stale downloads."""
    from ..local_runs import finished_runs

    now = time.time()
    runs = tasks = size = 0
    outputs = (root / "storage" / "outputs").resolve()
    gone: list[Path] = []
    for run_dir in finished_runs(root):
        if now - _ended(run_dir.path) < older_than:
            continue
        docs = list(_docs(run_dir.database))
        runs, tasks = runs + 1, tasks + len(docs)
        targets = [p for p in map(_prefix_dir, docs) if p is not None and _under(p, outputs)]
        gone += targets
        for path in [*targets, run_dir.path]:
            size += _size(path)
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
    downloads, freed = _stale_downloads(root, outputs, gone, dry_run)
    return Removed(runs, tasks, downloads, size + freed)


def _ended(path: Path) -> float:
    """When a run last changed (its database, else its directory)."""
    times = [p.stat().st_mtime for p in (path / "work").glob("tasks.sqlite3*")]
    return max(times, default=path.stat().st_mtime)


def _docs(database: Path) -> Iterator[dict[str, Any]]:
    if not database.exists():
        return
    with closing(sqlite3.connect(database, timeout=5)) as db:
        rows = db.execute("SELECT doc FROM tasks").fetchall()
    for (text,) in rows:
        yield json.loads(text)


def _prefix_dir(doc: dict[str, Any]) -> Path | None:
    from ..engine.request import PREFIX_TAG

    prefix = (doc.get("tags") or {}).get(PREFIX_TAG)
    return _local(prefix) if prefix else None


def _local(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(unquote(parts.path)).resolve() if parts.scheme == "file" else None


def _under(path: Path, root: Path) -> bool:
    # Only ever delete inside the embedded outputs: a task record is not trusted further.
    return path != root and path.is_relative_to(root)


def _stale_downloads(root: Path, outputs: Path, gone: list[Path], dry_run: bool) -> tuple[int, int]:
    """Remove cached downloads whose source output is gone (or going); (count, bytes)."""
    referenced = set(_referenced(outputs, gone))
    count = size = 0
    for kind in ("files", "dirs"):
        base = root / "cache" / "outputs" / kind
        for slot in sorted(base.iterdir()) if base.is_dir() else []:
            if slot.name in referenced:
                continue
            count, size = count + 1, size + _size(slot)
            if not dry_run:
                shutil.rmtree(slot, ignore_errors=True)
    return count, size


def _referenced(outputs: Path, gone: list[Path]) -> Iterator[str]:
    """Cache slot names (see OutputCache) of every output that stays."""
    if not outputs.is_dir():
        return
    for path in [outputs, *outputs.rglob("*")]:
        if any(path.is_relative_to(g) for g in gone):
            continue
        for url in {path.as_uri(), f"file://{path}"}:
            for form in (url, url + "/"):
                yield hashlib.sha256(form.encode()).hexdigest()[:40]


def _inputs(root: Path, dry_run: bool) -> int:
    inputs = root / "storage" / "inputs"
    size = _size(inputs)
    if not dry_run:
        shutil.rmtree(inputs, ignore_errors=True)
    return size


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
