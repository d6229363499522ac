"""Run every ``bench_*`` module in this folder, or the ones named on the command line."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = argv or sorted(p.stem for p in here.glob("bench_*.py"))
    status = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{name.removesuffix('.py')}")
        print(f"== {name}", flush=True)
        status |= module.main([])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
