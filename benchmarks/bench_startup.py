"""Command start-up: how long a newcomer waits for ``tesengine --help`` and a first run.

Wall time of whole processes, median of ``--runs`` (default 10), each command
side by side with a reference in the same round (``python -c pass``: the
interpreter's own start-up on this machine, under the same load):

* ``tesengine --help`` (target <= 150 ms) and ``tesengine config check``;
* ``tesengine run --file examples/wordcount/tasks.toml`` with no configuration
  (the embedded server, local runtime), warm: after one untimed run, so its
  inputs are staged and digests cached (target <= 1.5 s).

    .venv/bin/python -m benchmarks bench_startup             # 10 runs each
    .venv/bin/python -m benchmarks bench_startup --runs 3 --no-run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "startup.json"
WORDCOUNT = REPO / "examples" / "wordcount" / "tasks.toml"
TARGETS = {"help": 0.150, "run_wordcount_warm": 1.5}
CONFIG = """\
[run.backends.default]
type = "tes"
url = "http://127.0.0.1:8000"
inputs = "file:///tmp/in"
outputs = "file:///tmp/out"
"""


def tesengine() -> str:
    """The console script next to this interpreter (what a user types)."""
    script = Path(sys.executable).parent / "tesengine"
    return str(script) if script.exists() else "tesengine"


def environment(cache: Path) -> dict[str, str]:
    """A fresh user's environment: no TESENGINE_* settings, a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESENGINE_")}
    env["XDG_CACHE_HOME"] = str(cache)
    env["PYTHONPATH"] = str(REPO)
    # An installed package has its .pyc files; a checkout under PYTHONDONTWRITEBYTECODE
    # would compile every module on every start. Byte code goes to a private prefix.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache / "pycache")
    return env


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system, children included) seconds of one process.

    CPU time barely moves with the machine's load, so it is reported too.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr[-2000:]!r}"
        )
    return elapsed, cpu


def commands(work: Path, with_run: bool) -> dict[str, list[str]]:
    exe = tesengine()
    (work / "conf").mkdir()
    config = work / "conf" / "sprocket.toml"  # not in the cwd: ``run`` uses no config
    config.write_text(CONFIG)
    config.chmod(0o600)
    chosen = {
        "reference_python_pass": [sys.executable, "-c", "pass"],
        "help": [exe, "--help"],
        "config_check": [exe, "config", "check", str(config)],
    }
    if with_run:
        chosen["run_wordcount_warm"] = [exe, "-q", "run", "--file", str(WORDCOUNT)]
    return chosen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_startup")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-run", action="store_true", help="skip the wordcount run")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = environment(work / "cache")
        chosen = commands(work, with_run=not args.no_run)
        for argv_ in chosen.values():  # warm-up: caches, staged inputs, .pyc files
            timed(argv_, work, env)
        for _ in range(args.runs):
            for name, argv_ in chosen.items():  # interleaved: the same load for each
                wall, used = timed(argv_, work, env)
                samples.setdefault(name, []).append(wall)
                cpu.setdefault(name, []).append(used)
    medians = {name: statistics.median(times) for name, times in samples.items()}
    cpu_medians = {name: statistics.median(times) for name, times in cpu.items()}
    reference = medians["reference_python_pass"]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "runs": args.runs,
        "median_s": medians,
        "median_cpu_s": cpu_medians,
        "over_reference_s": {n: m - reference for n, m in medians.items()},
        "targets_s": TARGETS,
        "met": {n: medians[n] <= t for n, t in TARGETS.items() if n in medians},
        "samples_s": samples,
        "cpu_samples_s": cpu,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median of {args.runs}, wall and cpu (load {load:.1f} on {os.cpu_count()} cores)")
    for name, median in medians.items():
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f"  target {target * 1000:.0f} ms: " + ("met" if median <= target else "MISSED")
        )
        over = f"(+{(median - reference) * 1000:.0f})"
        used = f"cpu {cpu_medians[name] * 1000:5.0f} ms"
        print(f"  {name:<24} {median * 1000:6.0f} ms {over:>7}  {used}{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
