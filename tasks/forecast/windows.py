"""Returns encoder/horizon windows over prepared series, gathered in whole batches.

All series are concatenated into one tensor; a window is just a start offset into it, and a
batch is one vectorised gather `values[starts[:, None] + arange(length)]` — no per-sample
Python, so a loader yields millions of windows per second on one core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from trainyard.tasks.forecast.config import DatasetConfig

SPLIT_CODES = {"train": 0, "validation": 1, "holdout": 2}

# Per series: (mean, std) of each covariate on its training split.
CovariateStats = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class SeriesArrays:
    """Every series' target and covariates, concatenated, with per-series bookkeeping."""

    target: torch.Tensor  # [rows] float32, NaN where the target is missing
    covariates: torch.Tensor  # [rows, known + unknown] float32, standardised per series
    n_known: int  # the first n_known covariate columns are known in advance
    series_ids: list[str]  # one per series, in order
    offsets: np.ndarray  # [series] first row of each series
    lengths: np.ndarray  # [series] rows per series
    split: np.ndarray  # [rows] 0 train, 1 validation, 2 holdout
    time_idx: np.ndarray  # [rows] step index within its series
    times: np.ndarray  # [rows] timestamps
    covariate_stats: CovariateStats  # the standardisation applied to each series' covariates

    @classmethod
    def from_prepared(
        cls, table: pd.DataFrame, spec: DatasetConfig, covariate_stats: CovariateStats | None = None
    ) -> SeriesArrays:
        """Returns arrays built from the prepared table (sorted by series, time).

        Covariates are standardised per series with `covariate_stats` where it has the series
        (a trained model's), else with the series' own training split: no holdout leakage.
        """
        table = table.sort_values(["series_id", "time_idx"], kind="stable")
        covariate_names = spec.known_covariates + spec.unknown_covariates
        # copy=True: pandas 3 may hand back a read-only array, and it is standardised in place.
        covariates = table[covariate_names].to_numpy(dtype=np.float32, copy=True)
        covariates = covariates.reshape(len(table), -1)
        train = (table["split"] == "train").to_numpy()
        stats: CovariateStats = {}
        for series_id, index in table.groupby("series_id", sort=False).indices.items():
            if covariate_stats and series_id in covariate_stats:
                mean, std = covariate_stats[series_id]
            else:
                fit = covariates[index][train[index]]
                mean, std = fit.mean(axis=0), fit.std(axis=0)
            stats[series_id] = (mean, std)
            covariates[index] = (covariates[index] - mean) / np.where(std > 0, std, 1.0)
        series_ids, starts, lengths = np.unique(
            table["series_id"].to_numpy(), return_index=True, return_counts=True
        )
        order = np.argsort(starts)
        return cls(
            target=torch.from_numpy(table[spec.target].to_numpy(dtype=np.float32)),
            covariates=torch.from_numpy(covariates),
            n_known=len(spec.known_covariates),
            series_ids=[str(s) for s in series_ids[order]],
            offsets=starts[order],
            lengths=lengths[order],
            split=table["split"].map(SPLIT_CODES).to_numpy(dtype=np.int8),
            time_idx=table["time_idx"].to_numpy(),
            times=table[spec.time_column].to_numpy(),
            covariate_stats=stats,
        )


@dataclass
class WindowIndex:
    """Windows as start rows into SeriesArrays, with the series and origin of each."""

    starts: torch.Tensor  # [windows] int64 row of the first encoder step
    series: np.ndarray  # [windows] series position in SeriesArrays.series_ids
    origins: np.ndarray  # [windows] time_idx of the first forecast step

    def __len__(self) -> int:
        return len(self.starts)


def window_index(
    arrays: SeriesArrays,
    split: str,
    encoder_length: int,
    horizon: int,
    stride: int = 1,
) -> WindowIndex:
    """Returns every window whose horizon lies wholly in `split` and that touches no missing
    target; for the holdout, origins step by `stride` from the holdout's first step."""
    code = SPLIT_CODES[split]
    length = encoder_length + horizon
    missing = torch.isnan(arrays.target).numpy()
    starts, series, origins = [], [], []
    for position, (offset, n) in enumerate(zip(arrays.offsets, arrays.lengths, strict=True)):
        # Every full-length window start in this series (none if it is too short), then keep
        # the valid ones; a too-short series still adds its empty arrays, so that an index
        # with no windows at all comes back empty rather than failing to concatenate.
        first = np.arange(max(n - length + 1, 0))
        missing_cum = np.concatenate([[0], np.cumsum(missing[offset : offset + n])])
        clean = missing_cum[first + length] == missing_cum[first]
        in_split = arrays.split[offset : offset + n] == code
        split_cum = np.concatenate([[0], np.cumsum(in_split)])
        horizon_in_split = split_cum[first + length] - split_cum[first + encoder_length] == horizon
        keep = clean & horizon_in_split
        if stride > 1:
            split_rows = np.flatnonzero(in_split)
            if len(split_rows):
                keep &= (first + encoder_length - split_rows[0]) % stride == 0
        chosen = first[keep]
        starts.append(offset + chosen)
        series.append(np.full(len(chosen), position))
        origins.append(arrays.time_idx[offset + chosen + encoder_length])
    return WindowIndex(
        starts=torch.from_numpy(np.concatenate(starts).astype(np.int64)),
        series=np.concatenate(series).astype(np.int64),
        origins=np.concatenate(origins).astype(np.int64),
    )


def gather_windows(
    arrays: SeriesArrays, starts: torch.Tensor, encoder_length: int, horizon: int
) -> dict[str, torch.Tensor]:
    """Returns a batch dict: encoder target/covariates, known future covariates, and target."""
    rows = starts[:, None] + torch.arange(encoder_length + horizon)
    target = arrays.target[rows]
    covariates = arrays.covariates[rows]
    return {
        "encoder_target": target[:, :encoder_length],
        "encoder_covariates": covariates[:, :encoder_length],
        "decoder_known": covariates[:, encoder_length:, : arrays.n_known],
        "target": target[:, encoder_length:],
    }


class WindowLoader:
    """Yields batch dicts of windows, shuffled per epoch from a seed when `shuffle` is set."""

    def __init__(
        self,
        arrays: SeriesArrays,
        index: WindowIndex,
        encoder_length: int,
        horizon: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ):
        self.arrays = arrays
        self.index = index
        self.encoder_length = encoder_length
        self.horizon = horizon
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self._share(len(self.index)) // self.batch_size)

    @staticmethod
    def _share(windows: int) -> int:
        """Returns how many of `windows` one process takes (all of them without DDP; the
        share is rounded up, as torch's DistributedSampler does, repeating a few windows)."""
        world = _process_group()[1]
        return -(-windows // world)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass shuffle as epoch `epoch` does (training calls this each epoch,
        so a resumed run sees the batch orders of one never stopped)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        starts = self.index.starts
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            starts = starts[torch.randperm(len(starts), generator=generator)]
            self.epoch += 1  # the next pass shuffles anew, unless set_epoch says otherwise
        rank, world = _process_group()
        if world > 1:  # DDP: every process the same number of windows, its own share of them
            padded = self._share(len(starts)) * world
            starts = torch.cat([starts, starts[: padded - len(starts)]])[rank::world]
        for begin in range(0, len(starts), self.batch_size):
            yield gather_windows(
                self.arrays,
                starts[begin : begin + self.batch_size],
                self.encoder_length,
                self.horizon,
            )


def _process_group() -> tuple[int, int]:
    """Returns (rank, world size) of the DDP process group this process is in ((0, 1): none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
