"""mka benchmarks: run ``python -m benchmarks.run_all [--quick]`` from a checkout (see docs/performance.md)."""
