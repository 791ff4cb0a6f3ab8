"""Benchmark: reading a wide table (a row per series, a column per month) against the same
data written long, and trainyard's melt against pandas' own.

A synthetic panel of --series random walks of --months months is written twice in a scratch
folder: wide (store, 2010-01, 2010-02, ...) and long (store, month, sales). Timed in one
process: zero-config inference on each file (infer_file: read, melt for the wide one, every
key inferred), trainyard's read of the wide file into long (datasets.read_table with the
inferred keys: numbers checked, each series cut to its first and last value), and the peer,
pandas' read_csv + melt + to_datetime of the same file (no checks). Prints the seconds and
the ratios.

    .venv/bin/python bench/wide_tables.py                    # 10,000 series x 120 months
    .venv/bin/python bench/wide_tables.py --series 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000, help="rows of the wide table")
    parser.add_argument("--months", type=int, default=120, help="date columns")
    args = parser.parse_args()
    from trainyard.tasks.forecast.config import DatasetConfig
    from trainyard.tasks.forecast.datasets import read_table
    from trainyard.tasks.forecast.infer import infer_file

    months = pd.date_range("2010-01-01", periods=args.months, freq="MS").strftime("%Y-%m")
    values = 100 + np.random.default_rng(0).normal(size=(args.series, args.months)).cumsum(1)
    wide = pd.DataFrame(values, columns=months)
    wide.insert(0, "store", [f"s{i}" for i in range(args.series)])
    long = wide.melt(id_vars="store", var_name="month", value_name="sales")
    with tempfile.TemporaryDirectory(prefix="wide-bench-") as folder:
        root = Path(folder)
        wide.to_csv(root / "wide.csv", index=False)
        long.to_csv(root / "long.csv", index=False)
        seconds = {}
        started = time.perf_counter()
        inference = infer_file("wide.csv", root)
        seconds["infer wide"] = time.perf_counter() - started
        started = time.perf_counter()
        infer_file("long.csv", root)
        seconds["infer long"] = time.perf_counter() - started
        spec = DatasetConfig(name="wide.csv", **inference.dataset)
        started = time.perf_counter()
        melted, _ = read_table("wide.csv", root, spec)
        seconds["trainyard read wide"] = time.perf_counter() - started
        started = time.perf_counter()
        peer = pd.read_csv(root / "wide.csv").melt(
            id_vars="store", var_name="date", value_name="value"
        )
        peer["date"] = pd.to_datetime(peer["date"])
        seconds["pandas read + melt"] = time.perf_counter() - started
    assert len(melted) == len(peer) == args.series * args.months
    print(f"{args.series} series x {args.months} months ({len(melted):,} cells)")
    for name, value in seconds.items():
        print(f"  {name:22s} {value:6.2f} s")
    print(
        f"infer wide / infer long: {seconds['infer wide'] / seconds['infer long']:.2f}; "
        f"trainyard read wide / pandas read + melt: "
        f"{seconds['trainyard read wide'] / seconds['pandas read + melt']:.2f}"
    )


if __name__ == "__main__":
    main()
