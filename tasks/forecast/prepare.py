"""Prepare step: validated raw table -> regular, split series in data/prepared/series.parquet.

Gap policy (documented in docs/data.md): every series is reindexed to its full time grid.
Empty covariate cells (those of inserted steps included) are filled by `fill_covariates`, the
one fill that serving uses too, so a model is served covariates filled as it was trained on:

- Known covariates (known in advance: calendar, price plans) are interpolated in time within
  their series, and take the nearest value at its ends. Their future is known by definition,
  so reading a later value is no look-ahead.
- Unknown covariates take the last value observed before the gap in their series (forward
  fill). A later value lies in the future of the step being filled (near a series' end, in its
  validation or holdout part): interpolating from it would be look-ahead.
- An unknown covariate empty at the start of a series is refused (DataValidationError naming
  the series and column). There is no earlier value, a later one would be look-ahead, and a
  constant such as 0 is a value the covariate never had that would also shift the statistics
  it is standardised with. The user knows the honest value, or can drop those first rows.

The target is never filled: a missing target marks its step missing, and every window touching
a missing step is skipped by training and evaluation alike.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainyard.errors import DataError, MissingStepError
from trainyard.tasks.family import Prepared
from trainyard.tasks.forecast.config import DatasetConfig, Params, WindowConfig
from trainyard.tasks.forecast.datasets import BUILTIN_DATASETS, EMPTY_SERIES, LONG, read_table
from trainyard.tasks.forecast.validate import (
    DataValidationError,
    Problem,
    series_grid,
    series_labels,
    steps_needed,
    validate_table,
)
from trainyard.tasks.prepared import check_prepared_with, file_md5, write_table
from trainyard.tasks.prepared import read_table as read_prepared_table

log = logging.getLogger(__name__)

PREPARED_FILE = "series.parquet"


@dataclass
class PrepareSummary(Prepared):
    """What the prepare step wrote and what its gap policy did."""

    raw_md5: str = ""  # md5 of the raw table's content
    series: int = 0  # number of series
    rows: int = 0  # rows after reindexing
    inserted_steps: int = 0  # time steps added to fill gaps in the time grid
    missing_target: int = 0  # steps whose target is missing (gaps + empty target cells)
    interpolated_covariates: int = 0  # known covariate cells filled by time interpolation
    forward_filled_covariates: int = 0  # unknown covariate cells given their last earlier value
    left_out_series: int = 0  # series too short for the windows (dataset.short_series: drop)

    def __post_init__(self) -> None:
        self.stats = {
            name: getattr(self, name)
            for name in (
                "series",
                "rows",
                "inserted_steps",
                "missing_target",
                "interpolated_covariates",
                "forward_filled_covariates",
                "left_out_series",
            )
        }
        left_out = (
            f"; {self.left_out_series} series too short left out" if self.left_out_series else ""
        )
        self.description = (
            f"{self.source}: {self.series} series, {self.rows} rows (version {self.md5[:12]}; "
            f"{self.missing_target} missing targets skipped, {self.inserted_steps} gap steps "
            f"inserted{left_out})"
        )


def frame_md5(frame: pd.DataFrame) -> str:
    """Returns an md5 of a table's content, stable across runs."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    columns = ",".join(map(str, frame.columns)).encode()
    return hashlib.md5(columns + hashed.tobytes()).hexdigest()


def to_time_grid(frame: pd.DataFrame, spec: DatasetConfig) -> tuple[pd.DataFrame, int]:
    """Returns the table reindexed to every step of each series' time grid (sorted by series and
    time, with `series_id` and `time_idx`; inserted steps empty), and how many were inserted.
    Rows off their series' grid are dropped (validate_table refuses them first)."""
    labels = series_labels(frame, spec.series_columns)
    offset = pd.tseries.frequencies.to_offset(spec.frequency)
    grid = series_grid(frame[spec.time_column], labels, offset)
    order = np.argsort(grid.labels.astype(str), kind="stable")  # series sorted by label
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    lengths = grid.lengths[order]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    on_grid = grid.steps >= 0
    rows = starts[rank[grid.codes[on_grid]]] + grid.steps[on_grid]
    columns = {spec.time_column: grid.times(order)}
    _, first_of = np.unique(grid.codes, return_index=True)  # the first row of each series
    for name in frame.columns:
        if name == spec.time_column:
            continue
        if name in spec.series_columns:
            columns[name] = np.repeat(frame[name].to_numpy()[first_of][order], lengths)
        else:
            values = pd.Series(frame[name].to_numpy()[on_grid], index=rows)
            columns[name] = values.reindex(np.arange(total)).to_numpy()
    table = pd.DataFrame(columns)
    table["series_id"] = np.repeat(grid.labels[order], lengths)
    table["time_idx"] = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    return table, total - len(frame)


def _leading_gap_problems(table: pd.DataFrame, spec: DatasetConfig) -> list[Problem]:
    """Returns one problem per unknown covariate that is empty on the first step of a series."""
    problems = []
    starts = table.groupby("series_id", sort=True)[spec.time_column].min()
    for name in spec.unknown_covariates:
        observed = table[spec.time_column].where(table[name].notna())
        first = observed.groupby(table["series_id"], sort=True).min().reindex(starts.index)
        late = first.isna() | (first > starts)
        if late.any():
            problems.append(
                Problem(
                    column=name,
                    what=(
                        "unknown covariate empty at the start of a series: there is no earlier "
                        "value to carry forward, and filling from a later one would be "
                        "look-ahead"
                    ),
                    fix=(
                        "fill those first cells with values known at the time, or drop each "
                        "series' rows before its first value"
                    ),
                    series=[
                        f"{label} (first value at {first[label]})"
                        if pd.notna(first[label])
                        else f"{label} (no value)"
                        for label in starts.index[late]
                    ],
                )
            )
    return problems


def _interpolated_in_time(values: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    """Returns the columns interpolated in time, ends filled with the nearest value."""
    by_time = values.set_axis(pd.DatetimeIndex(times))
    filled = by_time.interpolate(method="time", limit_direction="both")
    return filled.set_axis(values.index)


def fill_covariates(
    table: pd.DataFrame, spec: DatasetConfig, source: str = "the table"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Returns the table with every covariate cell filled, and how many cells were filled:
    known covariates interpolated in time (`interpolated_covariates`), unknown ones given the
    last value observed before them (`forward_filled_covariates`).

    `table` holds whole series on their time grid, sorted by series and time, as
    `to_time_grid` returns them. Prepare (`regularize`) and serving (`future_table`) both fill
    through here. Raises DataValidationError naming the series and column when an unknown
    covariate is empty at the start of a series (see the module docstring for why).
    """
    known, unknown = spec.known_covariates, spec.unknown_covariates
    counts = {
        "interpolated_covariates": int(table[known].isna().sum().sum()),
        "forward_filled_covariates": int(table[unknown].isna().sum().sum()),
    }
    table = table.copy()
    if unknown:
        problems = _leading_gap_problems(table, spec)
        if problems:
            raise DataValidationError(source, problems)
        table[unknown] = table.groupby("series_id", sort=False)[unknown].ffill()
    if known:
        table[known] = pd.concat(
            _interpolated_in_time(part[known], part[spec.time_column])
            for _, part in table.groupby("series_id", sort=False)
        )
    return table, counts


def regularize(
    frame: pd.DataFrame, spec: DatasetConfig, source: str = "the table"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Returns the table on a full time grid per series with its covariates filled, plus counts
    of what the gap policy did."""
    table, inserted = to_time_grid(frame, spec)
    table, filled = fill_covariates(table, spec, source)
    counts = {
        "inserted_steps": inserted,
        "missing_target": int(table[spec.target].isna().sum()),
        **filled,
    }
    return table, counts


def assign_splits(table: pd.DataFrame, windows: WindowConfig) -> pd.Series:
    """Returns each row's split: the last holdout_length steps of a series are holdout, the
    validation_length before them validation, the rest train."""
    steps_from_end = table.groupby("series_id")["time_idx"].transform("max") - table["time_idx"]
    split = np.where(
        steps_from_end < windows.holdout_length,
        "holdout",
        np.where(
            steps_from_end < windows.holdout_length + windows.validation_length,
            "validation",
            "train",
        ),
    )
    return pd.Series(split, index=table.index)


def read_prepared(path: Path) -> tuple[pd.DataFrame, dict]:
    """Returns the prepared table and the metadata the prepare step stored with it."""
    return read_prepared_table(path, "forecast")


def read_prepared_for(path: Path, params: Params) -> pd.DataFrame:
    """Returns the prepared table, after checking it was prepared with these dataset and
    windows parameters (a model trained on other splits would be scored wrongly); a model
    reading one of the encoder lengths it was prepared for (windows.shorter_encoders) may."""
    table, meta = read_prepared(path)
    windows = params.windows.model_dump()
    prepared = meta.get("windows", {})
    if windows["encoder_length"] in [prepared.get("encoder_length")] + list(
        prepared.get("shorter_encoders", [])
    ):
        del windows["encoder_length"], windows["shorter_encoders"]
    sections = {"dataset": params.dataset.model_dump(), "windows": windows}
    check_prepared_with(meta, sections, path, "forecast")
    return table


# A series whose seasonal naive MAE over its training part is below this share of its mean
# absolute level changes by less than float32's resolution (its machine epsilon, 1.2e-7): the
# models, trained in float32, see a constant, and MASE would mostly measure rounding.
NEAR_CONSTANT = float(np.finfo(np.float32).eps)


def _shown(labels: list[str]) -> str:
    return ", ".join(labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def check_scales(table: pd.DataFrame, spec: DatasetConfig, source: str) -> list[str]:
    """Returns the series whose training part the seasonal naive forecast fits exactly
    (constant or exactly periodic, or no two observed steps a season apart), or all but
    exactly (changes below float32's resolution): MASE has nothing, or almost nothing, to
    divide by. Under dataset.flat_series: drop they are left out (the caller drops them);
    else, or when every series is such, raises DataError naming them before any model trains
    on them."""
    train = table[table["split"] == "train"]
    values = train[spec.target].astype("float64")
    by_series = values.groupby(train["series_id"], sort=True)
    # As metrics.seasonal_naive_scale, per series at once: the in-sample MAE of the seasonal
    # naive forecast (lag 1 when the train part is shorter than two seasons), NaN ignored.
    lag = np.where(by_series.transform("size") >= 2 * spec.season_length, spec.season_length, 1)
    seasonal = (values - by_series.shift(spec.season_length)).abs()
    step = (values - by_series.shift(1)).abs()
    errors = pd.Series(np.where(lag > 1, seasonal, step), index=values.index)
    scale = errors.groupby(train["series_id"], sort=True).mean()
    level = values.abs().groupby(train["series_id"], sort=True).mean()
    undefined = scale.isna() | (scale == 0)
    flat = [str(label) for label in scale.index[undefined]]
    nearly = [str(label) for label in scale.index[~undefined & (scale < NEAR_CONSTANT * level)]]
    if spec.flat_series == "drop" and len(flat) + len(nearly) < len(scale):
        return flat + nearly
    near = [
        f"{label} (seasonal naive MAE {scale[label]:.3g} at mean level {level[label]:.3g})"
        for label in nearly
    ]
    drop = (
        ""
        if spec.flat_series == "drop"  # every series: nothing would be left
        else " (or set dataset.flat_series: drop to leave them out)"
    )
    problems = []
    if flat:
        problems.append(
            f"{spec.target} is constant or repeats exactly every season "
            f"({spec.season_length} steps) over the training part of series {_shown(flat)}: the "
            "seasonal naive forecast is exact there, so MASE has nothing to divide by; drop "
            f"these series{drop}, or check the data and dataset.season_length"
        )
    if near:
        problems.append(
            f"{spec.target} is nearly constant over the training part of series "
            f"{_shown(near)}: it changes by less than float32's resolution (1.2e-7 of its "
            "level), so models train on a constant and MASE would divide by almost nothing; "
            f"drop these series{drop}, or check the data (a stuck sensor, a unit or rounding "
            "error)"
        )
    if problems:
        raise DataError(f"{source}: " + "; and ".join(problems))
    return []


def prepare(params: Params, root: Path, out_dir: Path) -> PrepareSummary:
    """Returns a summary after validating the configured table and writing the prepared series."""
    spec = params.dataset
    raw, source = read_table(spec.name, root, spec)
    empty = list(raw.attrs.get(EMPTY_SERIES, []))  # a wide file's series with no value
    try:
        typed, short = validate_table(raw, spec, params.windows, source)
    except DataValidationError as error:
        if spec.layout == LONG or spec.name in BUILTIN_DATASETS:
            raise
        rows = (
            f"the file's layout is {spec.layout}: rows count the long table it is read as, a "
            "row per series and time, series after series from 1; the series are named above"
        )
        raise DataValidationError(source, error.problems, rows) from None
    if short:
        needed, parts = steps_needed(params.windows, spec.season_length)
        log.warning(
            "%s: left out %d series shorter than the %d steps the windows need (%s; "
            "dataset.short_series: drop): %s",
            source,
            len(short),
            needed,
            parts,
            _shown(short),
        )
    raw_md5 = frame_md5(typed)
    table, counts = regularize(typed, spec, source)
    table["split"] = assign_splits(table, params.windows)
    flat = check_scales(table, spec, source)
    if flat:
        log.warning(
            "%s: left out %d series constant or exactly seasonal over their training part "
            "(dataset.flat_series: drop; MASE could not score them): %s",
            source,
            len(flat),
            _shown(flat),
        )
        table = table[~table["series_id"].isin(flat)].reset_index(drop=True)
    table = table[
        [
            "series_id",
            "time_idx",
            spec.time_column,
            *spec.series_columns,
            spec.target,
            *spec.known_covariates,
            *spec.unknown_covariates,
            "split",
        ]
    ]
    n_series = table["series_id"].nunique()
    meta = {
        "dataset": spec.model_dump(),
        "windows": params.windows.model_dump(),
        "source": source,
        "raw_md5": raw_md5,
        **counts,
        "left_out_series": empty + short + flat,
    }
    path = out_dir / PREPARED_FILE
    write_table(table, meta, path)
    summary = PrepareSummary(
        path=str(path),
        md5=file_md5(path),
        source=source,
        raw_md5=raw_md5,
        series=n_series,
        rows=len(table),
        **counts,
        left_out_series=len(empty) + len(short) + len(flat),
    )
    log.info(
        "prepared %d series, %d rows: %d gap steps inserted, %d missing targets (never filled), "
        "%d known covariate cells interpolated, %d unknown covariate cells forward-filled",
        n_series,
        len(table),
        counts["inserted_steps"],
        counts["missing_target"],
        counts["interpolated_covariates"],
        counts["forward_filled_covariates"],
    )
    return summary


def summary_of(path: Path, params: Params) -> PrepareSummary:
    """Returns the summary of a prepared file written earlier with these params."""
    table = read_prepared_for(path, params)
    _, meta = read_prepared(path)
    if "forward_filled_covariates" not in meta:
        # Older prepare code interpolated unknown covariates from later values (look-ahead);
        # without unknown covariates its file is what the current code writes.
        if params.dataset.unknown_covariates:
            raise MissingStepError(
                f"{path} was prepared by an older trainyard that filled gaps in unknown "
                "covariates from later values: run `trainyard prepare --family forecast` again"
            )
        meta = {**meta, "forward_filled_covariates": 0}
    names = (
        "inserted_steps",
        "missing_target",
        "interpolated_covariates",
        "forward_filled_covariates",
    )
    counts = {name: meta[name] for name in names}
    return PrepareSummary(
        path=str(path),
        md5=file_md5(path),
        source=meta["source"],
        raw_md5=meta["raw_md5"],
        series=int(table["series_id"].nunique()),
        rows=len(table),
        **counts,
        left_out_series=len(meta.get("left_out_series", [])),
    )


def prepare_input_key(params: Params, root: Path) -> str:
    """Returns a hash of everything the prepare step reads: the raw table's bytes (or the
    built-in's name and providing package version), the dataset and windows parameters, and
    the code of the prepare, validate, datasets and periods modules and of the CSV reader
    (tasks/prepared.py)."""
    from trainyard.tasks.forecast.datasets import BUILTIN_DATASETS

    spec = params.dataset
    if spec.name in BUILTIN_DATASETS:
        import statsmodels

        source = f"builtin:{spec.name}:statsmodels-{statsmodels.__version__}"
    else:
        path = Path(spec.name) if Path(spec.name).is_absolute() else root / spec.name
        source = f"file:{file_md5(path)}" if path.exists() else f"missing:{path}"
    code = "".join(file_md5(Path(module.__file__)) for module in _prepare_code())
    return hashlib.sha256(
        f"{source}|{params.section_hash('dataset', 'windows')}|{code}".encode()
    ).hexdigest()[:16]


def _prepare_code() -> list:
    """Returns the modules whose code decides what prepare writes."""
    import sys

    from trainyard.tasks import prepared
    from trainyard.tasks.forecast import datasets, periods, validate

    return [prepared, datasets, periods, validate, sys.modules[__name__]]
