"""Benchmarks: each ``bench/<name>_bench.py`` has ``main(argv) -> int``; ``python -m bench`` runs them all."""
