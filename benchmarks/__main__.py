"""Run benchmarks: all of them, or one with its own options.

python -m benchmarks                          # every bench_*.py, default options
python -m benchmarks bench_digest --runs 5    # one benchmark; options go to it
python -m benchmarks startup                  # the same, without the bench_ prefix
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv:
        name, options = argv[0].removesuffix(".py"), argv[1:]
        name = name if name.startswith("bench_") else f"bench_{name}"
        return int(importlib.import_module(f"benchmarks.{name}").main(options))
    status = 0
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"== {path.stem}", flush=True)
        status |= importlib.import_module(f"benchmarks.{path.stem}").main([])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
