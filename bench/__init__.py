"""Benchmark suite of dify-hitl: `python -m bench` (see bench/README.md)."""
