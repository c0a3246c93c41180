"""robust-ad-bench: the harness (data, grid, cache, runner, executors, metrics, reports, regression gate)."""
