"""Benchmarks: latency recording, result tables, and the raw pyzmq ceiling workload."""
