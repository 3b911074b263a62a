"""The benchmark: `make bench` runs `python -m scripts.bench` (this bundler against `sam build`, writes
docs/benchmark.md) and `python -m scripts.bench.catalog` (synth time by catalog size,
docs/benchmark-catalog.md). local_api measures the local API's per-request overhead for the first.
"""
