"""Benchmarks: each ``bench_*.py`` module has ``main(argv) -> int``; results go to results/."""
