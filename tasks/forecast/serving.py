"""An MLflow pyfunc that forecasts the next `horizon` steps of every series in a history table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from trainyard.errors import DataError
from trainyard.tasks.forecast.config import Params, params_from_dict
from trainyard.tasks.forecast.forecasters import FORECASTERS, read_covariate_stats
from trainyard.tasks.forecast.prepare import fill_covariates, to_time_grid
from trainyard.tasks.forecast.validate import series_labels, validate_table
from trainyard.tasks.forecast.windows import SeriesArrays, WindowIndex


def future_table(history: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Returns the history on its time grid with `horizon` future rows appended per series,
    covariates filled by prepare's `fill_covariates` (as the model's training data was).

    Known covariates of future rows must be in the input (rows with an empty target after the
    last observed one); without known covariates the future rows are created here. The fill
    runs after the future rows are appended: prepare interpolates known covariates over whole
    series, and carries unknown ones forward into the future rows.
    """
    spec, horizon = params.dataset, params.windows.horizon
    labels = series_labels(history, spec.series_columns)
    observed = history[spec.time_column].where(history[spec.target].notna())
    past = history[history[spec.time_column] <= observed.groupby(labels).transform("max")]
    table, _ = to_time_grid(past, spec)
    offset = pd.tseries.frequencies.to_offset(spec.frequency)
    futures = []
    for series_id, part in table.groupby("series_id", sort=True):
        last = part.iloc[-1]
        times = pd.date_range(last[spec.time_column] + offset, periods=horizon, freq=offset)
        future = pd.DataFrame({spec.time_column: times, "series_id": series_id})
        for name in spec.series_columns:
            future[name] = last[name]
        future["time_idx"] = last["time_idx"] + 1 + np.arange(horizon)
        future[spec.target] = np.nan
        if spec.known_covariates:
            given = history[(labels == series_id) & history[spec.time_column].isin(times)]
            given = given.set_index(spec.time_column)
            if len(given) < horizon:
                raise DataError(
                    f"series {series_id!r}: known covariates "
                    f"{', '.join(spec.known_covariates)} are needed for the {horizon} steps "
                    "after the last observed target; add those rows with an empty target"
                )
            future[spec.known_covariates] = given.loc[times, spec.known_covariates].to_numpy()
        for name in spec.unknown_covariates:
            future[name] = np.nan  # carried forward; not read by the models (only encoder steps)
        futures.append(future)
    table = pd.concat([table, *futures], ignore_index=True)
    table = table.sort_values(["series_id", "time_idx"], kind="stable").reset_index(drop=True)
    table, _ = fill_covariates(table, spec, "model input")
    table["split"] = "train"  # covariates are standardised on the history given
    return table


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a trained forecaster (LSTM, TCN, TFT, a statistical model or the
    ensemble).

    Input: a long table like the training table (time, target, series id and covariate columns)
    holding at least encoder_length steps per series. Output: one row per series and step with
    the point forecast `prediction` (and quantile columns `q10`, `q90`, ... for the TFT).
    """

    def load_context(self, context: Any) -> None:
        self.params = params_from_dict(context.model_config["params"])
        self.kind = context.model_config["kind"]
        self.model_dir = Path(context.artifacts["model_dir"])
        self.module = FORECASTERS[self.kind].load(self.model_dir, self.params)
        # LSTM/TCN covariates are scaled with their training statistics (the TFT keeps its own).
        self.covariate_stats = read_covariate_stats(self.model_dir)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        spec, windows = self.params.dataset, self.params.windows
        # Future rows (for known covariates) have no target yet; the series need only an encoder.
        # A series too short to forecast is an error here, never left out of the answer.
        checked, _ = validate_table(
            model_input,
            spec.model_copy(update={"missing_target": "gap", "short_series": "error"}),
            windows.model_copy(update={"horizon": 0, "validation_length": 0, "holdout_length": 0}),
            "model input",
        )
        table = future_table(checked, self.params)
        arrays = SeriesArrays.from_prepared(
            table, spec, self.covariate_stats, self.params.train.season_features
        )
        ends = arrays.offsets + arrays.lengths
        starts = ends - windows.horizon - windows.encoder_length
        encoders = starts[:, None] + np.arange(windows.encoder_length)
        short = starts < arrays.offsets
        gaps = short | np.isnan(arrays.target.numpy()[np.maximum(encoders, 0)]).any(axis=1)
        if gaps.any():
            bad = [arrays.series_ids[i] for i in np.flatnonzero(gaps)]
            raise DataError(
                f"series {', '.join(bad)}: the last {windows.encoder_length} steps before the "
                "forecast are not all observed; forecasting needs a complete encoder window"
            )
        if self.kind == "tft" or (self.kind == "ensemble" and "tft" in self.module["members"]):
            # The TimeSeriesDataSet needs the future rows to exist; it never reads their target.
            future = table["time_idx"] >= table.groupby("series_id")["time_idx"].transform(
                "max"
            ) - (windows.horizon - 1)
            table.loc[future, spec.target] = 0.0
        index = WindowIndex(
            starts=torch.from_numpy(starts.astype(np.int64)),
            series=np.arange(len(arrays.series_ids)),
            origins=arrays.time_idx[ends - windows.horizon],
        )
        forecast = FORECASTERS[self.kind].predict(
            self.module, arrays, table, index, self.params, self.model_dir
        )
        rows = (ends - windows.horizon)[:, None] + np.arange(windows.horizon)
        out = pd.DataFrame(
            {
                "series": np.repeat(arrays.series_ids, windows.horizon),
                spec.time_column: arrays.times[rows.reshape(-1)],
                "step": np.tile(np.arange(1, windows.horizon + 1), len(arrays.series_ids)),
                "prediction": forecast.point.reshape(-1),
            }
        )
        if forecast.quantiles is not None:
            for i, level in enumerate(forecast.levels):
                out[f"q{round(100 * level)}"] = forecast.quantiles[..., i].reshape(-1)
        return out
