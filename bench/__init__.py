"""Benchmarks: each prints its figures and writes a CSV under bench/out/. Not run by CI."""
