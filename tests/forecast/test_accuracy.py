"""Accuracy: on the default dataset, a neural model beats seasonal naive on the holdout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.evaluate import evaluate
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.prepare import prepare
from trainyard.tasks.training import train_model

pytestmark = pytest.mark.slow


def test_neural_models_beat_seasonal_naive_on_co2(tmp_path: Path):
    params = load_params(ROOT / "params.yaml")  # the defaults `make run` uses
    summary = prepare(params, ROOT, tmp_path / "prepared")
    model_dirs = {}
    for name in ("lstm", "tcn"):
        result = train_model(FORECAST, name, Path(summary.path), params, tmp_path / "models")
        model_dirs[name] = Path(result.model_dir)
        # Learning happened: validation loss fell from the first epoch to the best.
        assert result.best_score < result.history[0]["val/loss"]
    scores = evaluate(Path(summary.path), model_dirs, params, tmp_path / "reports").metrics
    seasonal = scores["seasonal_naive"]["mase"]
    best = min(scores[name]["mase"] for name in model_dirs)
    assert best < 0.8 * seasonal, scores


def test_on_a_short_real_series_every_neural_model_trains_its_steps_and_beats_seasonal_naive(
    tmp_path: Path,
):
    """Mauna Loa CO2 as 156 monthly means (13 years): two batches of windows per epoch, so
    30 epochs would be 60 optimiser steps; train.min_steps makes it at least 200."""
    from trainyard.tasks.forecast.config import params_from_dict
    from trainyard.tasks.forecast.datasets import co2_weekly

    weekly = co2_weekly().set_index("date")["co2"]
    monthly = weekly.resample("MS").mean().dropna().tail(156)
    monthly.rename_axis("date").reset_index().to_csv(tmp_path / "co2m.csv", index=False)
    params = params_from_dict(
        {
            "dataset": {
                "name": "co2m.csv",
                "target": "co2",
                "frequency": "MS",
                "season_length": 12,
            },
            "windows": {
                "encoder_length": 24,
                "horizon": 12,
                "validation_length": 24,
                "holdout_length": 24,
            },
            "train": {
                "models": ["lstm", "tcn", "tft"],
                "min_steps": 200,
                "tcn": {"dilations": [1, 2, 4, 8]},  # a receptive field within 24 steps
            },
        }
    )
    summary = prepare(params, tmp_path, tmp_path / "prepared")
    model_dirs = {}
    for name in params.train.models:
        result = train_model(FORECAST, name, Path(summary.path), params, tmp_path / "models")
        assert result.epochs * result.train_batches >= 200, (name, result.epochs)
        assert result.epochs > params.train.max_epochs  # the steps, not the epochs, decided
        model_dirs[name] = Path(result.model_dir)
    scores = evaluate(Path(summary.path), model_dirs, params, tmp_path / "reports").metrics
    for name in model_dirs:
        assert scores[name]["mase"] < scores["seasonal_naive"]["mase"], scores
