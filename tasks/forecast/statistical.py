"""Statistical forecasters as candidates: fitted per series on the train split in the train
step, applied (not refitted) at every validation and holdout origin, saved as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainyard.errors import DataError
from trainyard.models.forecast.statistical import (
    HistoryTooShortError,
    ModelSpec,
    fit_many,
    fitted_state,
    forward_many,
    in_parallel,
    restore,
)
from trainyard.tasks.family import DirectFit
from trainyard.tasks.forecast.baselines import fill_history
from trainyard.tasks.forecast.config import Params
from trainyard.tasks.forecast.forecasters import Forecast
from trainyard.tasks.forecast.windows import SeriesArrays, WindowIndex

MODEL_FILE = "statistical"  # statistical.json in the model folder: every series' model


def season_lengths(params: Params) -> list[int]:
    """Returns the seasons the statistical models may use: the dataset's, then the extras."""
    return [params.dataset.season_length, *params.train.statistical.extra_seasons]


def series_values(arrays: SeriesArrays, position: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns one series' targets (float64, NaN where missing) and split codes."""
    offset, length = arrays.offsets[position], arrays.lengths[position]
    values = arrays.target[offset : offset + length].numpy().astype(np.float64)
    return values, arrays.split[offset : offset + length]


def fit(
    kind: str, arrays: SeriesArrays, params: Params
) -> tuple[DirectFit, dict[str, tuple[ModelSpec, Any]]]:
    """Returns `kind` fitted to every series' train split (gaps interpolated, as for the
    baselines): what its model folder holds, and the fitted models (as `load` returns).
    Series are fitted in worker processes, one per core, when there are many."""
    started = time.perf_counter()
    trains = []
    for position, series_id in enumerate(arrays.series_ids):
        values, split = series_values(arrays, position)
        trains.append((series_id, fill_history(values[split == 0])))
    outcomes = in_parallel(fit_many, trains, kind, season_lengths(params))
    models: dict[str, Any] = {}
    fitted: dict[str, tuple[ModelSpec, Any]] = {}
    for (series_id, train), outcome in zip(trains, outcomes, strict=True):
        if isinstance(outcome, str):
            raise DataError(
                f"series {series_id!r}: {kind} cannot be fitted to its {len(train)} train "
                f"steps ({outcome}); drop {kind} from forecast.train.models or the series"
            )
        spec, model = outcome
        models[series_id] = {"spec": vars(spec), "state": fitted_state(model)}
        fitted[series_id] = (spec, model)
    chosen = sorted({json.dumps(m["spec"]["season_lengths"]) for m in models.values()})
    result = DirectFit(
        files={MODEL_FILE: {"kind": kind, "series": models}},
        hparams={
            "kind": kind,
            "seasons": ", ".join(chosen),
            "interval_level": params.train.interval_level,
        },
        seconds=time.perf_counter() - started,
    )
    return result, fitted


def load(model_dir: Path, params: Params) -> dict[str, tuple[ModelSpec, Any]]:
    """Returns every series' fitted model in model_dir, rebuilt from JSON."""
    path = Path(model_dir) / f"{MODEL_FILE}.json"
    if not path.exists():
        raise DataError(f"{path}: missing; train it again with `trainyard train --family forecast`")
    try:
        saved = json.loads(path.read_text())
        models = {}
        for series_id, entry in saved["series"].items():
            spec = ModelSpec(**entry["spec"])
            models[series_id] = (spec, restore(spec, entry["state"]))
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path}: not a statistical forecaster trainyard wrote ({error}); train it again "
            "with `trainyard train --family forecast`"
        ) from None
    return models


def predict(
    models: dict[str, tuple[ModelSpec, Any]],
    arrays: SeriesArrays,
    table: Any,
    index: WindowIndex,
    params: Params,
    model_dir: Path | None = None,
) -> Forecast:
    """Returns each window's forecast and its train.interval_level% interval (as the 10/90%
    quantiles for level 80) from the history before its origin (a ForecasterKind's predict:
    `table` and `model_dir` are not read)."""
    horizon, encoder = params.windows.horizon, params.windows.encoder_length
    level = params.train.interval_level
    starts = index.starts.numpy()
    series = np.asarray(index.series)
    order = np.argsort(series, kind="stable")
    positions, firsts = np.unique(series[order], return_index=True)
    rows = np.split(order, firsts[1:]) if len(order) else []  # each series' rows, in order
    work = []
    for position, mine in zip(positions, rows, strict=True):
        series_id = arrays.series_ids[position]
        if series_id not in models:
            raise DataError(
                f"series {series_id!r}: the statistical forecaster was fitted per series and "
                f"has no model for it (it knows {len(models)} series); train it on this series"
            )
        spec, model = models[series_id]
        history = fill_history(series_values(arrays, position)[0])
        origins = starts[mine] + encoder - arrays.offsets[position]
        work.append((spec, model, history, origins))
    forecasts = np.empty((len(index), horizon, 3))
    try:
        results = in_parallel(forward_many, work, horizon, level)
    except HistoryTooShortError as error:
        raise DataError(str(error)) from None
    for mine, result in zip(rows, results, strict=True):
        forecasts[mine] = result
    tail = round((1 - level / 100) / 2, 6)
    return Forecast(
        point=forecasts[..., 1], quantiles=forecasts, levels=[tail, 0.5, round(1 - tail, 6)]
    )
