"""DDP on CPU: one forecaster trained by 1 process and by `--devices` gloo processes, side by
side in one run, on the same prepared data (the quick profile's co2 windows).

    .venv/bin/python bench/ddp_overhead.py [--epochs 3] [--devices 2] [--model lstm]

Prints wall time, batches per process per epoch and the best validation loss of each, and the
ratio. Wall time includes starting the DDP processes and their rendezvous: what a user waits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.training import train_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--model", default="lstm", choices=FORECAST.distributed_kinds)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = [args.model]
    params.train.max_epochs = args.epochs
    params.train.patience = args.epochs
    params.train.limit_train_batches = 0
    prepared = Path(FORECAST.prepare(params, ROOT, folder / "prepared").path)
    rows = []
    for devices in (1, args.devices):
        params.train.devices = devices
        started = time.perf_counter()
        out = folder / f"d{devices}"
        result = train_model(FORECAST, args.model, prepared, params, out, threads=2)
        rows.append((devices, time.perf_counter() - started, result))
    print(f"{'processes':>9} {'seconds':>8} {'batches/epoch':>13} {'best val/loss':>13}")
    for devices, seconds, result in rows:
        print(f"{devices:>9} {seconds:>8.1f} {result.train_batches:>13} {result.best_score:>13.4f}")
    print(f"DDP / one process wall time: {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
