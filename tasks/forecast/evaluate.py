"""Evaluate step: every model and baseline on the same rolling-origin holdout windows."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.family import EvaluationResult, TrainResult
from trainyard.tasks.forecast import metrics
from trainyard.tasks.forecast.baselines import (
    ets_forecast,
    fill_history,
    naive_forecast,
    seasonal_naive_forecast,
)
from trainyard.tasks.forecast.config import METRICS, Params
from trainyard.tasks.forecast.forecasters import FORECASTERS, Forecast
from trainyard.tasks.forecast.prepare import read_prepared_for
from trainyard.tasks.forecast.windows import SeriesArrays, WindowIndex, window_index

METRICS_FILE = "metrics.json"  # holdout scores
SELECTION_FILE = "validation_metrics.json"  # validation scores: what the challenger is chosen on
FORECASTS_FILE = "forecasts.csv"
CURVES_FILE = "learning_curves.csv"


def _series_history(arrays: SeriesArrays, position: int) -> tuple[np.ndarray, np.ndarray]:
    offset, length = arrays.offsets[position], arrays.lengths[position]
    values = arrays.target[offset : offset + length].numpy().astype(np.float64)
    split = arrays.split[offset : offset + length]
    return values, split


def baseline_forecasts(
    arrays: SeriesArrays, index: WindowIndex, params: Params
) -> dict[str, np.ndarray]:
    """Returns each baseline's [windows, horizon] forecasts, in `index` order."""
    horizon, season = params.windows.horizon, params.dataset.season_length
    names = ["naive", "seasonal_naive"] + (["ets"] if params.evaluate.classical == "ets" else [])
    out = {name: np.empty((len(index), horizon)) for name in names}
    for position in np.unique(index.series):
        rows = np.flatnonzero(index.series == position)
        history = fill_history(_series_history(arrays, position)[0])
        origins = index.origins[rows]
        out["naive"][rows] = naive_forecast(history, origins, horizon)
        out["seasonal_naive"][rows] = seasonal_naive_forecast(history, origins, horizon, season)
        if "ets" in out:
            out["ets"][rows] = ets_forecast(history, origins, horizon, season)
    return out


def mase_scales(arrays: SeriesArrays, index: WindowIndex, season_length: int) -> np.ndarray:
    """Returns each window's MASE scale: its series' seasonal naive MAE on the train split."""
    scales = {}
    for position in np.unique(index.series):
        values, split = _series_history(arrays, position)
        try:
            scales[position] = metrics.seasonal_naive_scale(values[split == 0], season_length)
        except ValueError as error:
            raise DataError(f"series {arrays.series_ids[position]!r}: {error}") from None
    return np.array([scales[position] for position in index.series])


def score(actual: np.ndarray, forecast: Forecast, scale: np.ndarray) -> dict[str, float]:
    """Returns MAE, RMSE, sMAPE, MASE (and quantile loss/coverage for quantile forecasts)."""
    result = {
        "mae": metrics.mae(actual, forecast.point),
        "rmse": metrics.rmse(actual, forecast.point),
        "smape": metrics.smape(actual, forecast.point),
        "mase": metrics.mase(actual, forecast.point, scale),
    }
    if forecast.quantiles is not None:
        levels = forecast.levels
        result["quantile_loss"] = metrics.quantile_loss(actual, forecast.quantiles, levels)
        lower, upper = min(levels), max(levels)
        result[f"coverage_{round(100 * (upper - lower))}"] = metrics.interval_coverage(
            actual,
            forecast.quantiles[..., levels.index(lower)],
            forecast.quantiles[..., levels.index(upper)],
        )
    return result


def _forecast_table(
    arrays: SeriesArrays,
    index: WindowIndex,
    encoder_length: int,
    actual: np.ndarray,
    forecasts: dict[str, Forecast],
) -> pd.DataFrame:
    windows, horizon = actual.shape
    origin_rows = index.starts.numpy() + encoder_length
    rows = (origin_rows[:, None] + np.arange(horizon)).reshape(-1)
    table = pd.DataFrame(
        {
            "series": np.repeat(np.asarray(arrays.series_ids)[index.series], horizon),
            "origin": np.repeat(arrays.times[origin_rows], horizon),
            "time": arrays.times[rows],
            "step": np.tile(np.arange(1, horizon + 1), windows),
            "actual": actual.reshape(-1),
        }
    )
    for name, forecast in forecasts.items():
        table[name] = forecast.point.reshape(-1)
        if forecast.quantiles is not None:
            for i, level in enumerate(forecast.levels):
                if level != 0.5:
                    table[f"{name}_q{round(100 * level)}"] = forecast.quantiles[..., i].reshape(-1)
    return table


@dataclass
class Windows:
    """The rolling-origin windows of one split (validation or holdout) of a prepared dataset,
    with their actuals and MASE scales."""

    table: pd.DataFrame
    arrays: SeriesArrays
    index: WindowIndex
    actual: np.ndarray  # [windows, horizon]
    scale: np.ndarray  # [windows] MASE denominator of each window's series


def load_windows(
    prepared_path: Path, params: Params, split: str = "holdout", stride: int | None = None
) -> Windows:
    """Returns the rolling-origin windows of `split` in the prepared data (split_windows)."""
    table = read_prepared_for(prepared_path, params)
    arrays = SeriesArrays.from_prepared(
        table, params.dataset, season_features=params.train.season_features
    )
    return split_windows(table, arrays, params, split, stride)


def split_windows(
    table: pd.DataFrame,
    arrays: SeriesArrays,
    params: Params,
    split: str,
    stride: int | None = None,
) -> Windows:
    """Returns the rolling-origin windows of `split` ("validation": models are chosen there;
    "holdout": they are scored there), origins `stride` (else evaluate.stride) steps apart."""
    windows = params.windows
    stride = stride or params.evaluate.stride
    index = window_index(arrays, split, windows.encoder_length, windows.horizon, stride)
    if len(index) == 0:
        length = "holdout_length" if split == "holdout" else "validation_length"
        raise DataError(
            f"no complete {split} windows: every one touches a missing target. Lengthen "
            f"windows.{length} or fix the gaps."
        )
    offsets = index.starts[:, None] + windows.encoder_length + np.arange(windows.horizon)
    actual = arrays.target[offsets].numpy().astype(np.float64)
    scale = mase_scales(arrays, index, params.dataset.season_length)
    return Windows(table, arrays, index, actual, scale)


def load_holdout(prepared_path: Path, params: Params) -> Windows:
    """Returns the rolling-origin holdout windows of the prepared data."""
    return load_windows(prepared_path, params, "holdout")


def model_forecast(kind: str, model_dir: Path, windows: Windows, params: Params) -> Forecast:
    """Returns the forecasts of the `kind` model stored in model_dir for every window."""
    return model_forecasts(kind, model_dir, [windows], params)[0]


def model_forecasts(
    kind: str, model_dir: Path, splits: list[Windows], params: Params
) -> list[Forecast]:
    """Returns the `kind` model's forecasts for the windows of each split (loaded once)."""
    forecaster = FORECASTERS[kind]
    module = forecaster.load(Path(model_dir), params)
    return [
        forecaster.predict(module, split.arrays, split.table, split.index, params, model_dir)
        for split in splits
    ]


def evaluate(
    prepared_path: Path,
    model_dirs: dict[str, Path],
    params: Params,
    report_dir: Path,
    histories: dict[str, list[dict[str, float]]] | None = None,
) -> EvaluationResult:
    """Returns holdout scores for the trained models in `model_dirs`, the ensemble of the best
    of them on validation (a derived model) and every baseline, with their validation scores
    (the challenger is chosen on those); writes metrics.json, validation_metrics.json,
    forecasts.csv, learning_curves.csv, plots/ and the ensemble's folder to report_dir."""
    from trainyard.tasks.forecast import ensemble
    from trainyard.tasks.forecast.plots import plot_forecasts
    from trainyard.tasks.reports import learning_curves, plot_learning_curves, staged_reports

    started = time.perf_counter()
    table = read_prepared_for(prepared_path, params)
    arrays = SeriesArrays.from_prepared(
        table, params.dataset, season_features=params.train.season_features
    )
    holdout = split_windows(table, arrays, params, "holdout")
    validation = split_windows(table, arrays, params, "validation")
    arrays, index, actual = holdout.arrays, holdout.index, holdout.actual
    windows, metric = params.windows, params.evaluate.metric
    # An ensemble of an earlier run (`trainyard evaluate` reads every published model) is
    # derived again from this run's models, never a member of itself.
    model_dirs = {n: Path(d) for n, d in model_dirs.items() if n != ensemble.ENSEMBLE}
    forecasts, chosen_on = {}, {}
    for name, model_dir in model_dirs.items():
        chosen_on[name], forecasts[name] = model_forecasts(
            name, model_dir, [validation, holdout], params
        )
    combination = ensemble.choose(
        dict(chosen_on),
        lambda forecast: score(validation.actual, forecast, validation.scale),
        metric,
        params.evaluate.ensemble_size,
    )
    if combination:
        members, method = combination
        for target in (chosen_on, forecasts):
            target[ensemble.ENSEMBLE] = ensemble.combine([target[m] for m in members], method)
    baselines = baseline_forecasts(arrays, index, params)
    forecasts.update({name: Forecast(point=values) for name, values in baselines.items()})
    validation_baselines = baseline_forecasts(validation.arrays, validation.index, params)
    chosen_on.update({name: Forecast(point=v) for name, v in validation_baselines.items()})
    scores = {name: score(actual, forecast, holdout.scale) for name, forecast in forecasts.items()}
    selection = {
        name: score(validation.actual, forecast, validation.scale)
        for name, forecast in chosen_on.items()
    }

    with staged_reports(report_dir) as work:
        (work / METRICS_FILE).write_text(json.dumps(scores, indent=2, sort_keys=True))
        (work / SELECTION_FILE).write_text(json.dumps(selection, indent=2, sort_keys=True))
        forecast_table = _forecast_table(arrays, index, windows.encoder_length, actual, forecasts)
        forecast_table.to_csv(work / FORECASTS_FILE, index=False)
        curves = learning_curves(histories or {})
        curves.to_csv(work / CURVES_FILE, index=False)
        plots_dir = work / "plots"
        plots_dir.mkdir()
        plots = plot_forecasts(
            forecast_table,
            list(forecasts),
            windows.horizon,
            params.evaluate.stride,
            params.evaluate.plot_series,
            plots_dir,
        )
        if not curves.empty:
            plots.append(
                plot_learning_curves(curves, plots_dir, ["train/loss", "val/loss"], log_scale=True)
            )
        if combination:
            ensemble.write(work / ensemble.ENSEMBLE, members, method, model_dirs)
    derived = []
    if combination:
        derived.append(
            TrainResult(
                name=ensemble.ENSEMBLE,
                model_dir=str(report_dir / ensemble.ENSEMBLE),
                epochs=0,
                best_score=selection[ensemble.ENSEMBLE][metric],
                monitor=f"val/{metric}",
                seconds=time.perf_counter() - started,
                n_parameters=0,
                hparams={"members": ", ".join(members), "method": method},
            )
        )
    return EvaluationResult(
        metrics=scores,
        selection=selection,
        baselines=list(baselines),
        report_dir=str(report_dir),
        title=f"Holdout: {len(index)} windows over {len(np.unique(index.series))} series",
        columns=list(METRICS),
        higher_is_better=dict.fromkeys(METRICS, False),
        plots=[str(report_dir / "plots" / Path(p).name) for p in plots],
        derived=derived,
    )
