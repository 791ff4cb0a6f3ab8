"""Baseline forecasts for a list of windows: naive, seasonal naive and ETS (statsmodels)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def fill_history(values: np.ndarray) -> np.ndarray:
    """Returns a series' history with missing targets linearly interpolated.

    Only baselines read this (ETS cannot take gaps); it is never a training or scoring target.
    """
    return pd.Series(values).interpolate(limit_direction="both").to_numpy()


def naive_forecast(history: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Returns the last value before each origin, repeated over the horizon: [origins, horizon]."""
    return np.repeat(history[origins - 1][:, None], horizon, axis=1)


def seasonal_naive_forecast(
    history: np.ndarray, origins: np.ndarray, horizon: int, season_length: int
) -> np.ndarray:
    """Returns, for step h after each origin, the value one season (or more) before it."""
    steps = np.arange(horizon)
    seasons_back = steps // season_length + 1
    rows = origins[:, None] + steps[None, :] - seasons_back[None, :] * season_length
    return history[rows]


def ets_forecast(
    history: np.ndarray, origins: np.ndarray, horizon: int, season_length: int
) -> np.ndarray:
    """Returns Holt-Winters ETS (additive trend and season) forecasts from each origin.

    Parameters are estimated once on the history before the first origin; at each later origin
    the same parameters are run through the data up to it (states updated, not refitted).
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = season_length if season_length > 1 and origins.min() >= 2 * season_length else None
    options = {
        "trend": "add",
        "seasonal": "add" if seasonal else None,
        "seasonal_periods": seasonal,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(history[: origins.min()], **options).fit()
        p = fitted.params
        known = {"initial_level": p["initial_level"], "initial_trend": p["initial_trend"]}
        if seasonal:
            known["initial_seasonal"] = p["initial_seasons"]
        smoothing = {
            "smoothing_level": p["smoothing_level"],
            "smoothing_trend": p["smoothing_trend"],
            "smoothing_seasonal": p["smoothing_seasonal"] if seasonal else None,
        }
        forecasts = []
        for origin in origins:
            model = ExponentialSmoothing(
                history[:origin], **options, initialization_method="known", **known
            )
            forecasts.append(model.fit(**smoothing, optimized=False).forecast(horizon))
    return np.asarray(forecasts)
