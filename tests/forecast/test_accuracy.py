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
