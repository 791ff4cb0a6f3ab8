"""Returns encoder/horizon windows over prepared series, gathered in whole batches.

All series are concatenated into one tensor; a window is just a start offset into it, and a
batch is one vectorised gather `values[starts[:, None] + arange(length)]` — no per-sample
Python, so a loader yields millions of windows per second on one core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from scipy import optimize, special

from trainyard.errors import DataError
from trainyard.tasks.forecast.config import DatasetConfig

STOP = "stop"  # the end of the train split, when the neural models stop early on it (never
# a prepared row's split: stop_split relabels train rows)
SPLIT_CODES = {"train": 0, "validation": 1, "holdout": 2, STOP: 3}
STOP_CODE = SPLIT_CODES[STOP]

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
        cls,
        table: pd.DataFrame,
        spec: DatasetConfig,
        covariate_stats: CovariateStats | None = None,
        season_features: bool = False,
    ) -> SeriesArrays:
        """Returns arrays built from the prepared table (sorted by series, time).

        Covariates are standardised per series with `covariate_stats` where it has the series
        (a trained model's), else with the series' own training split: no holdout leakage.
        With `season_features` (train.season_features), the sine and cosine of each step's
        position in its season (season_phase) come first, as known covariates.
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
        phase = season_phase(table[spec.time_column], spec) if season_features else None
        if phase is not None:
            angle = 2 * np.pi * phase / spec.season_length
            waves = np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)
            covariates = np.concatenate([waves, covariates], axis=1)
        series_ids, starts, lengths = np.unique(
            table["series_id"].to_numpy(), return_index=True, return_counts=True
        )
        order = np.argsort(starts)
        return cls(
            target=torch.from_numpy(table[spec.target].to_numpy(dtype=np.float32)),
            covariates=torch.from_numpy(covariates),
            n_known=len(spec.known_covariates) + (0 if phase is None else 2),
            series_ids=[str(s) for s in series_ids[order]],
            offsets=starts[order],
            lengths=lengths[order],
            split=table["split"].map(SPLIT_CODES).to_numpy(dtype=np.int8),
            time_idx=table["time_idx"].to_numpy(),
            times=table[spec.time_column].to_numpy(),
            covariate_stats=stats,
        )


def season_phase(times: pd.Series, spec: DatasetConfig) -> np.ndarray | None:
    """Returns each time's position in its season (0 to season_length - 1), counted in
    dataset.frequency steps from one fixed origin, so a time has the same position in every
    series, table and served history (a month its month of the year for MS with season 12, an
    hour its hour of the day for h with 24); None with no season, or for a frequency with no
    fixed count (business days, custom offsets)."""
    if spec.season_length <= 1:
        return None
    offset = pd.tseries.frequencies.to_offset(spec.frequency)
    stamps = pd.DatetimeIndex(times)
    if isinstance(offset, pd.offsets.Tick):
        steps = stamps.as_unit("ns").asi8 // pd.Timedelta(offset).value
    elif isinstance(offset, pd.offsets.Week):
        steps = stamps.as_unit("ns").asi8 // pd.Timedelta(days=1).value // 7
    elif isinstance(offset, pd.offsets.MonthBegin | pd.offsets.MonthEnd):
        steps = stamps.year.to_numpy() * 12 + stamps.month.to_numpy() - 1
    elif isinstance(offset, pd.offsets.QuarterBegin | pd.offsets.QuarterEnd):
        steps = stamps.year.to_numpy() * 4 + (stamps.month.to_numpy() - 1) // 3
    elif isinstance(offset, pd.offsets.YearBegin | pd.offsets.YearEnd):
        steps = stamps.year.to_numpy()
    else:
        return None
    return np.mod(np.asarray(steps, dtype=np.int64), spec.season_length)


BOXCOX_LAMBDAS = (-0.9, 2.0)  # Guerrero's search range (fable's and coreforecast's)
BOXCOX_EDGE = 1e-6  # least 1 + lambda * u an inverse takes: a forecast past the range is clipped


@dataclass
class TargetTransform:
    """The neural models' target transform (train.target_transform), one per series.

    Each series becomes g * boxcox(y / g, lambda), g the geometric mean of its train split
    ("log": lambda 0, i.e. g * log(y / g)). In units of g the transformed series keeps the
    target's own scale near its level, so the per-window scaling (and its floor) sees what it
    would see untransformed. Forecasts go back through `inverse`, so metrics stay in target units.
    """

    kind: str = "none"  # none, log or boxcox
    lambdas: dict[str, float] = field(default_factory=dict)  # per series; 0 for log
    levels: dict[str, float] = field(default_factory=dict)  # per series: g

    @classmethod
    def fit(cls, kind: str, arrays: SeriesArrays, spec: DatasetConfig) -> TargetTransform:
        """Returns the `kind` transform of every series, fitted on its train split; raises
        DataError when a target is not above 0 (check_positive)."""
        if kind == "none":
            return cls()
        check_positive(arrays, kind, spec.target)
        target = arrays.target.numpy().astype(np.float64)
        train = arrays.split == SPLIT_CODES["train"]
        lambdas, levels = {}, {}
        for position, series in enumerate(arrays.series_ids):
            start = arrays.offsets[position]
            rows = slice(start, start + arrays.lengths[position])
            history = target[rows][train[rows]]  # its train split on the time grid, gaps NaN
            levels[series] = float(np.exp(np.nanmean(np.log(history))))
            lambdas[series] = 0.0 if kind == "log" else guerrero_lambda(history, spec.season_length)
        return cls(kind, lambdas, levels)

    def forward(self, values: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Returns `values` transformed (NaN where not above 0); `series` names each row."""
        if self.kind == "none":
            return values
        lam, level = self._parameters(series, values.ndim)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, level * special.boxcox(values / level, lam), np.nan)

    def inverse(self, values: np.ndarray, series: np.ndarray) -> np.ndarray:
        """Returns transformed `values` in target units; `series` names each row (first axis).
        A value past the transform's range (a wild forecast) is taken to its edge, not NaN."""
        if self.kind == "none":
            return values
        lam, level = self._parameters(series, values.ndim)
        u = values / level
        edge = (BOXCOX_EDGE - 1) / np.where(lam == 0, 1.0, lam)
        return level * special.inv_boxcox(np.where(lam * u > BOXCOX_EDGE - 1, u, edge), lam)

    def applied(self, arrays: SeriesArrays) -> SeriesArrays:
        """Returns `arrays` with the target transformed (NaN where it is not above 0)."""
        if self.kind == "none":
            return arrays
        series = np.repeat(arrays.series_ids, arrays.lengths)
        target = self.forward(arrays.target.numpy().astype(np.float64), series)
        return replace(arrays, target=torch.from_numpy(target.astype(np.float32)))

    def _parameters(self, series: np.ndarray, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (lambda, g) of every row's series, shaped to broadcast over `ndim` axes."""
        names = pd.Series(np.asarray(series), dtype=object)
        lam, level = names.map(self.lambdas).to_numpy(), names.map(self.levels).to_numpy()
        unknown = names[pd.isna(level)].unique()
        if len(unknown):
            raise DataError(
                f"series {', '.join(map(repr, unknown[:5]))}: the model's {self.kind} target "
                f"transform was fitted on other series ({', '.join(list(self.levels)[:5])}); "
                "forecast the series it trained on"
            )
        shape = (-1,) + (1,) * (ndim - 1)
        return lam.astype(np.float64).reshape(shape), level.astype(np.float64).reshape(shape)

    def to_json(self) -> dict[str, object]:
        """Returns the transform as JSON-able data (from_json reads it back)."""
        return {"kind": self.kind, "lambdas": self.lambdas, "levels": self.levels}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TargetTransform:
        """Returns the transform `to_json` wrote."""
        return cls(str(data["kind"]), dict(data["lambdas"]), dict(data["levels"]))


def check_positive(
    arrays: SeriesArrays, kind: str, target: str, rows: np.ndarray | None = None
) -> None:
    """Raises DataError naming the first series and step among `rows` (default: all) whose
    target is 0 or below, which target transform `kind` (log, boxcox) cannot take."""
    if kind == "none":
        return
    values = arrays.target.numpy()
    rows = np.arange(len(values)) if rows is None else np.sort(np.asarray(rows).reshape(-1))
    bad = rows[values[rows] <= 0]  # a gap (NaN) is not bad
    if len(bad) == 0:
        return
    first = bad[0]
    series = arrays.series_ids[np.searchsorted(arrays.offsets, first, side="right") - 1]
    raise DataError(
        f"series {series!r}: {target} is {values[first]:g} at step {arrays.time_idx[first]} "
        f"({pd.Timestamp(arrays.times[first])}), but train.target_transform {kind!r} needs "
        f"every value above 0 ({len(bad)} are not); set train.target_transform: none, or "
        "shift the data so that every value is positive"
    )


def guerrero_lambda(history: np.ndarray, season_length: int) -> float:
    """Returns the Box-Cox lambda (within BOXCOX_LAMBDAS) that makes a series' spread least
    dependent on its level: Guerrero's method as R's forecast::BoxCox.lambda has it.

    The last whole seasons of `history` (pairs of steps when it holds fewer than two seasons)
    each give std / mean^(1 - lambda); the lambda minimising their coefficient of variation
    wins. Gaps (NaN) are skipped; a history too short for two such blocks gets 0 (log).
    """
    period = season_length if len(history) >= 2 * season_length else 2
    blocks = history[len(history) % period :].reshape(-1, period)
    blocks = blocks[(~np.isnan(blocks)).sum(axis=1) >= 2]
    if len(blocks) < 2:
        return 0.0
    mean, std = np.nanmean(blocks, axis=1), np.nanstd(blocks, axis=1, ddof=1)

    def variation(lam: float) -> float:
        ratio = std / mean ** (1 - lam)
        return float(np.std(ratio, ddof=1) / np.mean(ratio))

    best = optimize.minimize_scalar(variation, bounds=BOXCOX_LAMBDAS, method="bounded")
    return float(best.x)


@dataclass
class WindowIndex:
    """Windows as start rows into SeriesArrays, with the series and origin of each."""

    starts: torch.Tensor  # [windows] int64 row of the first encoder step
    series: np.ndarray  # [windows] series position in SeriesArrays.series_ids
    origins: np.ndarray  # [windows] time_idx of the first forecast step

    def __len__(self) -> int:
        return len(self.starts)


def spread(index: WindowIndex, limit: int) -> WindowIndex:
    """Returns at most `limit` windows of `index` (all when it holds no more, or limit is 0),
    evenly spaced through it: windows are ordered by series, so every series keeps its
    share and each its windows spread over time."""
    if not limit or len(index) <= limit:
        return index
    chosen = np.unique(np.linspace(0, len(index) - 1, limit).round().astype(np.int64))
    return WindowIndex(index.starts[chosen], index.series[chosen], index.origins[chosen])


def stop_split(arrays: SeriesArrays, length: int) -> SeriesArrays:
    """Returns `arrays` with the last `length` steps of each series' train split relabelled
    STOP: windows whose horizon lies there choose the neural models' early stop, and the
    train split's windows end before them. Validation then scores every model alike (none
    has seen it), so the challenger is chosen on it without an early-stopping bias."""
    train = arrays.split == SPLIT_CODES["train"]
    order = np.argsort(arrays.offsets)  # the series in row order
    series = np.repeat(order, arrays.lengths[order])
    position = np.arange(len(series)) - arrays.offsets[series]
    train_rows = np.bincount(series, weights=train, minlength=len(arrays.lengths))
    split = arrays.split.copy()
    split[train & (position >= train_rows[series] - length)] = STOP_CODE
    return replace(arrays, split=split)


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
