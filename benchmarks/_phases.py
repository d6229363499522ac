"""Benchmark phases, each in a fresh process (so its RSS and CPU are its own).

The parent :func:`spawn` runs ``python -m <module> --worker PHASE SPEC``;
the worker side, :func:`run_worker`, runs that phase and prints its
figures as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NoReturn

Phase = Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]


def spawn(module: str, phase: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``phase`` of ``module`` in a fresh process; its figures, plus its wall time."""
    argv = [sys.executable, "-m", module, "--worker", phase, json.dumps(spec)]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} exited {proc.returncode}: {proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    out["process_wall_s"] = wall
    return out


def run_worker(phases: Mapping[str, Phase], phase: str, raw_spec: str) -> NoReturn:
    """The worker side of :func:`spawn`: run ``phase``, print its figures, exit."""
    from tesengine.cli.aio import exit_now

    out = asyncio.run(phases[phase](json.loads(raw_spec)))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    exit_now(0)  # obstore's runtime threads can abort a 3.11 interpreter at exit
