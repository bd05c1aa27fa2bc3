"""seawall's benchmarks: per-call overhead against pybreaker, circuitbreaker, tenacity, stamina, backoff.

Run with `python -m bench` (or `make bench`); see docs/bench.md.
"""
