"""Command-line entry point: ``python run_bench.py --detectors all --attacks autoattack``."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
