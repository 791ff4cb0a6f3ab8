"""Statistical forecasters as candidates: fitted per series on the train split in the train
step, applied (not refitted) at every validation and holdout origin, saved as JSON."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from trainyard.errors import DataError
from trainyard.models.forecast.statistical import (
    ModelSpec,
    build,
    fitted_state,
    forward,
    restore,
    spec_for,
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
    baselines): what its model folder holds, and the fitted models (as `load` returns)."""
    started = time.perf_counter()
    models: dict[str, Any] = {}
    fitted: dict[str, tuple[ModelSpec, Any]] = {}
    seasons = season_lengths(params)
    for position, series_id in enumerate(arrays.series_ids):
        values, split = series_values(arrays, position)
        train = fill_history(values[split == 0])
        spec = spec_for(kind, seasons, len(train))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = build(spec).fit(train)
            except Exception as error:  # noqa: BLE001 - the library's reason, with the series
                raise DataError(
                    f"series {series_id!r}: {kind} cannot be fitted to its {len(train)} train "
                    f"steps ({error}); drop {kind} from forecast.train.models or the series"
                ) from None
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
    point = np.empty((len(index), horizon))
    bounds = np.empty((len(index), horizon, 2))
    starts = index.starts.numpy()
    for position in np.unique(index.series):
        series_id = arrays.series_ids[position]
        if series_id not in models:
            raise DataError(
                f"series {series_id!r}: the statistical forecaster was fitted per series and "
                f"has no model for it (it knows {len(models)} series); train it on this series"
            )
        spec, model = models[series_id]
        history = fill_history(series_values(arrays, position)[0])
        for row in np.flatnonzero(index.series == position):
            origin = starts[row] + encoder - arrays.offsets[position]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = forward(model, spec, history[:origin], horizon, level)
            point[row] = result["mean"]
            bounds[row, :, 0] = result[f"lo-{level}"]
            bounds[row, :, 1] = result[f"hi-{level}"]
    tail = round((1 - level / 100) / 2, 6)
    quantiles = np.stack([bounds[..., 0], point, bounds[..., 1]], axis=-1)
    return Forecast(point=point, quantiles=quantiles, levels=[tail, 0.5, round(1 - tail, 6)])
