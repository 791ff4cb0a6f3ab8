"""Benchmarks our vectorised WindowLoader against pytorch-forecasting's TimeSeriesDataSet.

Both loaders read the same synthetic table (seasonal sine + noise + a random level per series,
seeded) with the same encoder length, horizon and batch size, in one process, so the printed
samples/s are directly comparable. Run from the project root:

    .venv/bin/python bench/window_loader.py                       # 1,000 x 1,000 rows (~15 s)
    .venv/bin/python bench/window_loader.py --series 50 --steps 300 --batches 10   # seconds

The peer is timed over a fixed number of batches (it manages a few thousand samples/s, so a
full epoch of ~940k windows would take minutes); ours is timed over a full epoch by default.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from trainyard.models.forecast.window_forecaster import encoder_scale  # noqa: E402
from trainyard.tasks.forecast.config import DatasetConfig
from trainyard.tasks.forecast.windows import SeriesArrays, WindowLoader, window_index  # noqa: E402

SEASON = 7  # daily data with a weekly season


@dataclass
class Result:
    """One loader's measurements."""

    name: str
    build_seconds: float  # building the dataset/index and the loader, not generating the data
    windows: int  # windows the loader can draw in one epoch
    samples: int  # samples in the timed batches
    batches: int  # timed batches
    seconds: float  # wall time of the timed batches

    @property
    def samples_per_second(self) -> float:
        """Returns the timed throughput in samples (windows) per second."""
        return self.samples / self.seconds


def synthetic_table(series: int, steps: int, seed: int) -> pd.DataFrame:
    """Returns a prepared table: `series` x `steps` daily rows of level + weekly sine + noise."""
    rng = np.random.default_rng(seed)
    step = np.arange(steps)
    level = rng.uniform(10.0, 1000.0, size=(series, 1))
    amplitude = level * rng.uniform(0.05, 0.3, size=(series, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(series, 1))
    noise = rng.normal(0.0, 1.0, size=(series, steps)) * amplitude * 0.2
    values = level + amplitude * np.sin(2 * np.pi * step / SEASON + phase) + noise
    width = len(str(series - 1))
    ids = np.array([f"s{i:0{width}d}" for i in range(series)])
    return pd.DataFrame(
        {
            "series_id": np.repeat(ids, steps),
            "time_idx": np.tile(step, series),
            "date": np.tile(
                pd.date_range("2020-01-01", periods=steps, freq="D").to_numpy(), series
            ),
            "value": values.astype(np.float32).ravel(),
            "split": "train",
        }
    )


def time_batches(
    batches: Iterable[Any], warmup: int, limit: int | None, size: Callable[[Any], int]
) -> tuple[int, int, float]:
    """Returns (batches, samples, seconds) over up to `limit` batches after `warmup` batches."""
    iterator: Iterator[Any] = iter(batches)
    for _ in range(warmup):
        if next(iterator, None) is None:
            raise SystemExit(
                "fewer batches than --warmup: use more series/steps or a smaller batch"
            )
    count = samples = 0
    start = time.perf_counter()
    for batch in iterator:
        samples += size(batch)
        count += 1
        if limit is not None and count >= limit:
            break
    if count == 0:
        raise SystemExit("no batches left to time after warm-up: use more series/steps")
    return count, samples, time.perf_counter() - start


def bench_ours(
    table: pd.DataFrame,
    encoder_length: int,
    horizon: int,
    batch_size: int,
    warmup: int,
    limit: int | None,
    scale: bool,
) -> Result:
    """Returns our loader's measurements; with `scale`, each batch is also encoder-scaled."""
    spec = DatasetConfig(
        name="synthetic",
        time_column="date",
        target="value",
        series_columns=["series"],
        frequency="D",
        season_length=SEASON,
    )
    start = time.perf_counter()
    arrays = SeriesArrays.from_prepared(table, spec)
    index = window_index(arrays, "train", encoder_length, horizon)
    loader = WindowLoader(arrays, index, encoder_length, horizon, batch_size, shuffle=True, seed=0)
    build = time.perf_counter() - start

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for batch in loader:
            if scale:
                # What WindowForecaster does first with every batch; the peer's EncoderNormalizer
                # does the same inside __getitem__, so this is the like-for-like row.
                mean, std = encoder_scale(batch["encoder_target"])
                batch["encoder_scaled"] = (batch["encoder_target"] - mean) / std
            yield batch

    def size(batch: dict[str, torch.Tensor]) -> int:
        return len(batch["target"])

    count, samples, seconds = time_batches(batches(), warmup, limit, size)
    name = "ours: gather + encoder scaling" if scale else "ours: gather only"
    return Result(name, build, len(index), samples, count, seconds)


def bench_peer(
    table: pd.DataFrame,
    encoder_length: int,
    horizon: int,
    batch_size: int,
    warmup: int,
    limit: int,
) -> Result:
    """Returns pytorch-forecasting's TimeSeriesDataSet dataloader measurements."""
    from pytorch_forecasting import TimeSeriesDataSet
    from pytorch_forecasting.data import EncoderNormalizer

    start = time.perf_counter()
    dataset = TimeSeriesDataSet(
        table,
        time_idx="time_idx",
        target="value",
        group_ids=["series_id"],
        max_encoder_length=encoder_length,
        min_encoder_length=encoder_length,
        max_prediction_length=horizon,
        min_prediction_length=horizon,
        time_varying_unknown_reals=["value"],
        # Per-window standardisation by the encoder's mean and std, as our models do.
        target_normalizer=EncoderNormalizer(),
    )
    generator = torch.Generator().manual_seed(0)
    loader = dataset.to_dataloader(
        train=True, batch_size=batch_size, num_workers=0, generator=generator
    )
    build = time.perf_counter() - start

    def size(batch: tuple[dict[str, torch.Tensor], Any]) -> int:
        return len(batch[0]["encoder_cont"])

    count, samples, seconds = time_batches(loader, warmup, limit, size)
    return Result(
        "pytorch-forecasting TimeSeriesDataSet", build, len(dataset), samples, count, seconds
    )


def print_table(results: list[Result], peer: Result) -> None:
    """Returns nothing; prints one row per loader with throughput and ratio to the peer."""
    header = (
        f"{'loader':<40} {'build s':>8} {'windows':>9} {'batches':>8} {'timed s':>8} "
        f"{'samples/s':>11} {'vs peer':>8}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        ratio = result.samples_per_second / peer.samples_per_second
        print(
            f"{result.name:<40} {result.build_seconds:>8.2f} {result.windows:>9,} "
            f"{result.batches:>8,} {result.seconds:>8.2f} {result.samples_per_second:>11,.0f} "
            f"{ratio:>7.1f}x"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Returns the parsed command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000, help="number of series")
    parser.add_argument("--steps", type=int, default=1000, help="time steps per series")
    parser.add_argument(
        "--batches", type=int, default=60, help="timed pytorch-forecasting batches (after warm-up)"
    )
    parser.add_argument(
        "--our-batches",
        type=int,
        default=0,
        help="timed batches of our loader; 0 = the rest of a full epoch after warm-up",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="windows per batch")
    parser.add_argument("--encoder-length", type=int, default=48, help="encoder steps")
    parser.add_argument("--horizon", type=int, default=12, help="forecast steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches before timing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Returns nothing; runs both loaders on the same data and prints the comparison."""
    args = parse_args(argv)
    # pytorch-forecasting warns about attributes and dtypes irrelevant to loader speed.
    warnings.filterwarnings("ignore")
    table = synthetic_table(args.series, args.steps, args.seed)
    windows = (args.encoder_length, args.horizon, args.batch_size, args.warmup)
    print(
        f"data: {args.series:,} series x {args.steps:,} steps = {len(table):,} rows; "
        f"encoder {args.encoder_length}, horizon {args.horizon}, batch {args.batch_size}, "
        f"warm-up {args.warmup} batches"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        "single process (num_workers=0), shuffled"
    )
    our_limit = args.our_batches or None
    ours = [
        bench_ours(table, *windows, our_limit, scale=False),
        bench_ours(table, *windows, our_limit, scale=True),
    ]
    peer = bench_peer(table, *windows, args.batches)
    print()
    print_table([*ours, peer], peer)
    print()
    print(
        f"ratio (ours with encoder scaling / peer): "
        f"{ours[1].samples_per_second / peer.samples_per_second:,.1f}x"
    )
    print(
        "ours: batch = one index gather over the concatenated target/covariates "
        "(encoder_target, encoder_covariates, decoder_known, target); the scaling row also "
        "standardises every window by its encoder mean/std, as WindowForecaster does."
    )
    print(
        "peer: batch = batch_size calls of TimeSeriesDataSet.__getitem__ (EncoderNormalizer "
        "per window, encoder/decoder cont+cat, lengths, target scale) then its collate_fn."
    )


if __name__ == "__main__":
    main()
