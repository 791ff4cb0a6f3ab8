"""Forecast accuracy metrics over arrays of windows ([windows, horizon])."""

from __future__ import annotations

import numpy as np


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Returns the mean absolute error."""
    return float(np.mean(np.abs(actual - forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Returns the root mean squared error."""
    return float(np.sqrt(np.mean((actual - forecast) ** 2)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Returns symmetric MAPE in percent (0-200); terms where both are 0 count as 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(
        2 * np.abs(actual - forecast),
        denominator,
        out=np.zeros_like(denominator, dtype=float),
        where=denominator > 0,
    )
    return float(100 * np.mean(ratio))


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    """Returns MASE: each window's absolute errors divided by its series' in-sample seasonal
    naive MAE (`scale`, one per window), averaged over everything."""
    return float(np.mean(np.abs(actual - forecast) / scale[:, None]))


def seasonal_naive_scale(history: np.ndarray, season_length: int) -> float:
    """Returns the in-sample MAE of the seasonal naive forecast (lag = season_length), ignoring
    missing values; falls back to lag 1 when the history is shorter than two seasons."""
    lag = season_length if len(history) >= 2 * season_length else 1
    errors = np.abs(history[lag:] - history[:-lag])
    value = float(np.nanmean(errors))
    if not np.isfinite(value) or value == 0:
        raise ValueError("MASE scale is zero or undefined: the series is constant in training")
    return value


def quantile_loss(actual: np.ndarray, quantiles: np.ndarray, levels: list[float]) -> float:
    """Returns the mean pinball loss over all quantile levels (quantiles: [..., levels])."""
    losses = []
    for i, level in enumerate(levels):
        error = actual - quantiles[..., i]
        losses.append(np.maximum(level * error, (level - 1) * error))
    return float(np.mean(losses))


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Returns the share of actual values inside [lower, upper]."""
    return float(np.mean((actual >= lower) & (actual <= upper)))
