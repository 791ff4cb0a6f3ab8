"""Accuracy metrics and baseline forecasts against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from trainyard.tasks.forecast.baselines import (
    ets_forecast,
    fill_history,
    naive_forecast,
    seasonal_naive_forecast,
)
from trainyard.tasks.forecast.metrics import (
    interval_coverage,
    mae,
    mase,
    quantile_loss,
    rmse,
    seasonal_naive_scale,
    smape,
)

# Two windows of three steps; errors (actual - forecast) are [-1, 0, 2] and [0, -2, 0].
ACTUAL = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
FORECAST = np.array([[2.0, 2.0, 1.0], [4.0, 7.0, 6.0]])


def test_mae() -> None:
    assert mae(ACTUAL, FORECAST) == pytest.approx(5 / 6)
    assert mae(ACTUAL, ACTUAL) == 0.0


def test_rmse() -> None:
    assert rmse(ACTUAL, FORECAST) == pytest.approx(np.sqrt(9 / 6))
    assert rmse(ACTUAL, FORECAST) >= mae(ACTUAL, FORECAST)


def test_smape() -> None:
    # 2|a - f| / (|a| + |f|): 2/3, 0, 4/4, 0, 4/12, 0 -> mean 1/3 -> 33.3 %.
    assert smape(ACTUAL, FORECAST) == pytest.approx(100 / 3)


def test_smape_bounds_and_zero_terms() -> None:
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(50.0)
    assert smape(np.array([0.0]), np.array([5.0])) == pytest.approx(200.0)
    assert smape(np.zeros(4), np.zeros(4)) == 0.0  # 0/0 terms count as 0, not NaN


def test_mase_scales_each_window_by_its_series() -> None:
    scale = np.array([1.0, 2.0])
    # [1, 0, 2] / 1 and [0, 2, 0] / 2 -> [1, 0, 2, 0, 1, 0] -> 4/6.
    assert mase(ACTUAL, FORECAST, scale) == pytest.approx(4 / 6)
    assert mase(ACTUAL, FORECAST, np.ones(2)) == pytest.approx(mae(ACTUAL, FORECAST))


def test_quantile_loss() -> None:
    actual = np.array([[10.0]])
    quantiles = np.array([[[8.0, 10.0, 13.0]]])  # [windows, horizon, levels]
    # Errors 2, 0, -3: pinball 0.1 * 2 = 0.2, 0, (0.9 - 1) * -3 = 0.3 -> mean 0.5 / 3.
    assert quantile_loss(actual, quantiles, [0.1, 0.5, 0.9]) == pytest.approx(0.5 / 3)


def test_quantile_loss_of_the_median_is_half_the_mae() -> None:
    loss = quantile_loss(ACTUAL, FORECAST[..., None], [0.5])
    assert loss == pytest.approx(0.5 * mae(ACTUAL, FORECAST))


def test_quantile_loss_penalises_under_prediction_more_at_high_levels() -> None:
    actual = np.array([[10.0]])
    low = np.array([[[9.0]]])
    assert quantile_loss(actual, low, [0.9]) == pytest.approx(0.9)
    assert quantile_loss(actual, low, [0.1]) == pytest.approx(0.1)


def test_interval_coverage_counts_the_bounds_as_inside() -> None:
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    lower = np.array([0.0, 2.0, 4.0, 0.0])
    upper = np.array([1.0, 3.0, 5.0, 3.0])
    assert interval_coverage(actual, lower, upper) == pytest.approx(0.5)


# --- MASE scale -------------------------------------------------------------------------------

SEASONAL_HISTORY = np.array([1.0, 2, 3, 4, 2, 3, 4, 6, 3, 4, 5, 5])  # 3 seasons of 4


def test_seasonal_naive_scale_uses_the_season_lag() -> None:
    # |h[t] - h[t - 4]|: 1, 1, 1, 2, 1, 1, 1, 1 -> 9 / 8.
    assert seasonal_naive_scale(SEASONAL_HISTORY, 4) == pytest.approx(9 / 8)


def test_seasonal_naive_scale_ignores_missing_values() -> None:
    history = SEASONAL_HISTORY.copy()
    history[9] = np.nan  # drops the one difference |h[9] - h[5]| = 1
    assert seasonal_naive_scale(history, 4) == pytest.approx(8 / 7)


def test_seasonal_naive_scale_falls_back_to_lag_one_on_short_history() -> None:
    history = np.array([1.0, 3, 2, 5, 4, 4, 6])  # under two seasons of 4
    # |diffs|: 2, 1, 3, 1, 0, 2 -> 9 / 6.
    assert seasonal_naive_scale(history, 4) == pytest.approx(9 / 6)


def test_seasonal_naive_scale_of_a_constant_series_raises() -> None:
    with pytest.raises(ValueError, match="constant"):
        seasonal_naive_scale(np.full(20, 3.0), 4)


# --- baselines --------------------------------------------------------------------------------

HISTORY = np.arange(20, dtype=float) * 10  # value = 10 * step


def test_naive_forecast_repeats_the_last_value_before_the_origin() -> None:
    forecast = naive_forecast(HISTORY, np.array([5, 10]), 3)

    np.testing.assert_array_equal(forecast, [[40, 40, 40], [90, 90, 90]])


def test_seasonal_naive_forecast_reads_one_season_back_and_repeats() -> None:
    forecast = seasonal_naive_forecast(HISTORY, np.array([8, 12]), horizon=6, season_length=4)

    # Steps 8..13 from origin 8 read steps 4, 5, 6, 7, then 4, 5 again (never 8 or later).
    expected = np.array([[4, 5, 6, 7, 4, 5], [8, 9, 10, 11, 8, 9]]) * 10
    np.testing.assert_array_equal(forecast, expected)


def test_seasonal_naive_is_exact_on_a_purely_seasonal_series() -> None:
    history = np.tile([3.0, 1.0, 4.0, 1.0, 5.0], 8)
    origins = np.array([10, 17, 23])

    forecast = seasonal_naive_forecast(history, origins, horizon=12, season_length=5)

    np.testing.assert_array_equal(forecast, history[origins[:, None] + np.arange(12)])


def test_fill_history_interpolates_inside_and_extends_at_the_ends() -> None:
    filled = fill_history(np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan]))

    np.testing.assert_allclose(filled, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])


def seasonal_trend_series(n: int = 144, season: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n)
    return 50 + 0.5 * t + 10 * np.sin(2 * np.pi * t / season) + rng.normal(0, 0.5, n)


def test_ets_beats_seasonal_naive_on_a_trending_seasonal_series() -> None:
    history = seasonal_trend_series()
    origins = np.arange(108, 133, 4)
    actual = history[origins[:, None] + np.arange(12)]

    ets = ets_forecast(history, origins, horizon=12, season_length=12)
    seasonal = seasonal_naive_forecast(history, origins, horizon=12, season_length=12)

    assert ets.shape == (len(origins), 12)
    # Seasonal naive misses a year of trend (0.5 * 12 = 6); ETS is near the noise level (0.5).
    assert mae(actual, seasonal) == pytest.approx(6.0, abs=0.5)
    assert mae(actual, ets) < 1.0
    assert mae(actual, ets) < 0.25 * mae(actual, seasonal)


def test_ets_forecasts_use_only_data_before_each_origin() -> None:
    history = seasonal_trend_series()
    origins = np.array([108, 116])
    changed = history.copy()
    changed[116:] += 1000.0  # everything from the last origin on

    before = ets_forecast(history, origins, horizon=12, season_length=12)
    after = ets_forecast(changed, origins, horizon=12, season_length=12)

    np.testing.assert_allclose(before, after)


def test_ets_without_two_seasons_of_history_drops_the_season() -> None:
    history = 5.0 + 2.0 * np.arange(40) + np.random.default_rng(1).normal(0, 0.1, 40)

    forecast = ets_forecast(history, np.array([20, 30]), horizon=5, season_length=12)

    assert forecast.shape == (2, 5)
    expected = 5.0 + 2.0 * (np.array([20, 30])[:, None] + np.arange(5))
    np.testing.assert_allclose(forecast, expected, atol=1.0)  # a straight-line trend
