"""The ensemble candidate: the mean or median of the best k forecasters on validation.

Its members and how they are combined are chosen on the validation windows only; its folder
holds a copy of each member's folder, so it is logged, registered and served as one model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from trainyard.errors import DataError
from trainyard.tasks.forecast.config import Params
from trainyard.tasks.forecast.forecasters import FORECASTERS, Forecast, read_covariate_stats
from trainyard.tasks.forecast.windows import SeriesArrays, WindowIndex

ENSEMBLE = "ensemble"  # its model name (never a train.models kind)
MODEL_FILE = "ensemble"  # ensemble.json: members and method
MEMBERS = "members"  # folder of the members' folders
METHODS = ("mean", "median")


def combine(forecasts: list[Forecast], method: str) -> Forecast:
    """Returns the members' forecasts combined step by step (their quantiles too, level by
    level, when every member has the same levels)."""
    reduce = np.mean if method == "mean" else np.median
    point = reduce(np.stack([f.point for f in forecasts]), axis=0)
    levels = forecasts[0].levels
    if levels is None or any(f.levels != levels or f.quantiles is None for f in forecasts):
        return Forecast(point=point)
    quantiles = reduce(np.stack([f.quantiles for f in forecasts]), axis=0)
    quantiles[..., levels.index(0.5)] = point
    return Forecast(point=point, quantiles=np.sort(quantiles, axis=-1), levels=levels)


def choose(
    validation: dict[str, Forecast],
    score: Any,
    metric: str,
    size: int,
) -> tuple[list[str], str] | None:
    """Returns the members and method whose combination scores best on validation: the best
    k by their own validation `metric`, k from 2 to `size` (None with fewer than 2 models).
    `score(forecast)` returns a forecast's validation metrics."""
    ranked = sorted(validation, key=lambda name: score(validation[name])[metric])
    best, best_value = None, np.inf
    for k in range(2, min(size, len(ranked)) + 1):
        for method in METHODS:
            value = score(combine([validation[n] for n in ranked[:k]], method))[metric]
            if value < best_value:
                best, best_value = (ranked[:k], method), value
    return best


def write(folder: Path, members: list[str], method: str, model_dirs: dict[str, Path]) -> None:
    """Writes the ensemble's folder: ensemble.json and a copy of each member's folder."""
    folder.mkdir(parents=True)
    for name in members:
        shutil.copytree(model_dirs[name], folder / MEMBERS / name)
    (folder / f"{MODEL_FILE}.json").write_text(json.dumps({"members": members, "method": method}))


def load(model_dir: Path, params: Params) -> dict[str, Any]:
    """Returns the ensemble in model_dir: each member loaded as its kind loads."""
    path = Path(model_dir) / f"{MODEL_FILE}.json"
    try:
        spec = json.loads(path.read_text())
        members, method = list(spec["members"]), spec["method"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path}: not an ensemble trainyard wrote ({error}); run the forecast pipeline again"
        ) from None
    unknown = [m for m in members if m not in FORECASTERS or m == ENSEMBLE]
    if unknown or method not in METHODS:
        raise DataError(f"{path}: unknown members {unknown} or method {method!r}")
    loaded = {}
    for name in members:
        folder = Path(model_dir) / MEMBERS / name
        module = FORECASTERS[name].load(folder, params)
        loaded[name] = (module, folder, read_covariate_stats(folder))
    return {"members": loaded, "method": method}


def predict(
    ensemble: dict[str, Any],
    arrays: SeriesArrays,
    table: Any,
    index: WindowIndex,
    params: Params,
    model_dir: Path,
) -> Forecast:
    """Returns the combined forecasts of the members for every window in `index`. A member
    that scales covariates with its training statistics gets them (serving passes arrays
    scaled on the input)."""
    forecasts = []
    for name, (module, folder, stats) in ensemble["members"].items():
        own = (
            SeriesArrays.from_prepared(
                table, params.dataset, stats, season_features=params.train.season_features
            )
            if stats
            else arrays
        )
        forecasts.append(FORECASTERS[name].predict(module, own, table, index, params, folder))
    return combine(forecasts, ensemble["method"])
