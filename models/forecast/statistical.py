"""Statistical forecasters from statsforecast, one fitted model per series, kept as JSON.

A fitted model is applied to later history with statsforecast's `forward`: the parameters
found on the train split are run through the data up to each forecast origin (states
updated, nothing refitted), as the neural models are applied to later windows.

Nothing here is pickled: a model is saved as its constructor's arguments and the arrays and
numbers of its fitted state (`fitted_state`), and rebuilt by `restore` from those alone, so
loading a model folder or a registered version runs no code from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

STATISTICAL_KINDS = ("autoets", "autoarima", "autotheta", "mstl")
# statsforecast's ETS (like R's forecast::ets) drops seasons longer than this, and a seasonal
# ARIMA with a longer season takes minutes per series (co2's 52 weeks: > 10 min): such
# seasons are taken out by STL decomposition first and the rest forecast without a season.
LONGEST_MODEL_SEASON = 24
# History MSTL decomposes at each origin, in seasons: the decomposition is redone per call,
# and eight seasons forecast co2 as well as its 2,000 weeks (MAE 0.362 vs 0.372), 5x faster.
MSTL_SEASONS = 8
# Fitted arrays `forward` recomputes from the new history: not saved.
RECOMPUTED = ("residuals", "fitted", "states", "actual_residuals")


@dataclass
class ModelSpec:
    """How one series' model is built: kind, seasons, and what that choice means."""

    kind: str
    season_lengths: list[int]  # seasons modelled; [] or [1]: none
    deseasonalised: bool  # seasons taken out by STL first (MSTL), the rest modelled


def spec_for(kind: str, season_lengths: list[int], train_length: int) -> ModelSpec:
    """Returns the model for a series whose train split has `train_length` steps: seasons
    need two whole cycles in it, and long seasons are decomposed by STL first."""
    seasons = sorted({s for s in season_lengths if s > 1 and train_length >= 2 * s})
    if kind == "mstl":
        return ModelSpec(kind, seasons, deseasonalised=bool(seasons))
    if kind not in STATISTICAL_KINDS:
        raise ValueError(f"unknown statistical forecaster {kind!r}")
    season = max(seasons, default=1)
    return ModelSpec(kind, seasons[-1:], deseasonalised=season > LONGEST_MODEL_SEASON)


def build(spec: ModelSpec) -> Any:
    """Returns the unfitted statsforecast model for `spec`."""
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta

    def trend_model(season: int) -> Any:
        if spec.kind == "autoarima":
            return AutoARIMA(season_length=season)
        if spec.kind == "autotheta":
            return AutoTheta(season_length=season)
        return AutoETS(season_length=season, model="ZZN" if season == 1 else "ZZZ")

    if spec.deseasonalised:
        season = spec.season_lengths if len(spec.season_lengths) > 1 else spec.season_lengths[0]
        return MSTL(season_length=season, trend_forecaster=trend_model(1))
    return trend_model(max(spec.season_lengths, default=1))


def forward(model: Any, spec: ModelSpec, history: np.ndarray, horizon: int, level: int) -> dict:
    """Returns statsforecast's forecast dict (mean, lo-<level>, hi-<level>) of the fitted
    `model` applied to `history` (no refit)."""
    if spec.deseasonalised:
        history = history[-MSTL_SEASONS * max(spec.season_lengths) :]
    return model.forward(y=history, h=horizon, level=[level])


def fitted_state(model: Any) -> dict[str, Any]:
    """Returns what a fitted model learned, as JSON-able data (see `restore`)."""
    if hasattr(model, "trend_forecaster"):  # MSTL: its decomposition is redone per call
        return {"trend": fitted_state(model.trend_forecaster)}
    state = {k: v for k, v in model.model_.items() if k not in RECOMPUTED}
    return {"model_": _encode(state)}


def restore(spec: ModelSpec, state: dict[str, Any]) -> Any:
    """Returns the model of `spec` with the fitted state `state` (from `fitted_state`)."""
    model = build(spec)
    if hasattr(model, "trend_forecaster"):
        model.trend_forecaster.model_ = _decode(state["trend"]["model_"])
    else:
        model.model_ = _decode(state["model_"])
    return model


def _encode(value: Any) -> Any:
    """Returns `value` as JSON-able data: arrays, tuples and frames become tagged objects."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot save an array of {value.dtype}")
        return {"__array__": value.dtype.str, "shape": list(value.shape), "data": value.tolist()}
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    if type(value).__name__ == "results" and hasattr(value, "_fields"):  # optimiser result
        return {"__results__": [_encode(item) for item in value]}
    if isinstance(value, tuple | list):
        tag = "__tuple__" if isinstance(value, tuple) else "__list__"
        return {tag: [_encode(item) for item in value]}
    if isinstance(value, pd.DataFrame):
        return {"__frame__": list(value.columns), "data": _encode(value.to_numpy())}
    raise TypeError(f"cannot save a {type(value).__name__} of a fitted model")


def _decode(value: Any) -> Any:
    """Returns the value `_encode` encoded; only arrays, tuples, lists and frames are built."""
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.asarray(value["data"], dtype=np.dtype(value["__array__"])).reshape(value["shape"])
    if "__results__" in value:
        from statsforecast.utils import results

        return results(*[_decode(item) for item in value["__results__"]])
    if "__tuple__" in value:
        return tuple(_decode(item) for item in value["__tuple__"])
    if "__list__" in value:
        return [_decode(item) for item in value["__list__"]]
    if "__frame__" in value:
        return pd.DataFrame(_decode(value["data"]), columns=value["__frame__"])
    return {key: _decode(item) for key, item in value.items()}


# --- many series at once, in worker processes ------------------------------------------------
# Below this many series the pool's start (fresh interpreters importing statsforecast: 2-4 s
# on 2 busy cores) costs more than it saves (AutoTheta fits a 72-step series in ~16 ms).
PARALLEL_FROM = 256


def fit_many(
    series: list[tuple[str, np.ndarray]], kind: str, season_lengths: list[int]
) -> list[tuple[ModelSpec, Any] | str]:
    """Returns (spec, fitted model) for each (id, train values), or the library's reason why
    that series cannot be fitted. Runs in a worker process (see `in_parallel`)."""
    import warnings

    fitted: list[tuple[ModelSpec, Any] | str] = []
    for _, values in series:
        spec = spec_for(kind, season_lengths, len(values))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fitted.append((spec, build(spec).fit(values)))
            except Exception as error:  # noqa: BLE001 - reported with its series by the caller
                fitted.append(str(error) or type(error).__name__)
    return fitted


class HistoryTooShortError(ValueError):
    """statsforecast cannot apply a fitted model to so short a history."""


def forward_many(
    series: list[tuple[ModelSpec, Any, np.ndarray, np.ndarray]], horizon: int, level: int
) -> list[np.ndarray]:
    """Returns, for each (spec, model, history, origins), an array [origins, horizon, 3] of
    the interval's lower bound, the forecast and the upper bound from the history before
    each origin. Runs in a worker process (see `in_parallel`)."""
    import warnings

    results = []
    for spec, model, history, origins in series:
        out = np.empty((len(origins), horizon, 3))
        for row, origin in enumerate(origins):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    result = forward(model, spec, history[:origin], horizon, level)
                except NotImplementedError:  # statsforecast: "tiny datasets"
                    raise HistoryTooShortError(
                        f"{spec.kind}: a history of {origin} steps is too short for "
                        "statsforecast to apply the fitted model to; give a longer history"
                    ) from None
            out[row, :, 0] = result[f"lo-{level}"]
            out[row, :, 1] = result["mean"]
            out[row, :, 2] = result[f"hi-{level}"]
        results.append(out)
    return results


def workers() -> int:
    """Returns the cores this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_parallel(function: Any, items: list[Any], *args: Any) -> list[Any]:
    """Returns function(items, *args) computed over chunks of `items` in worker processes,
    one per core, in the order of `items` (in this process for few items or one core).

    Workers are spawned (not forked: the caller may hold threads and torch's thread pools)
    and import only this module; items and results travel between processes of this run.
    """
    cores = workers()
    if cores < 2 or len(items) < PARALLEL_FROM:
        return function(items, *args)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(items) // (cores * 4))  # a few chunks per core evens out slow series
    chunks = [items[start : start + size] for start in range(0, len(items), size)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        parts = pool.map(function, chunks, *([arg] * len(chunks) for arg in args))
        return [result for part in parts for result in part]
