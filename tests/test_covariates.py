"""Known and unknown covariates reach every model, and the pyfunc needs future known values."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tasks.evaluate import evaluate
from tasks.prepare import prepare
from tasks.serving import ForecasterModel
from tasks.train import train_model
from trainyard.config import params_from_dict

pytestmark = pytest.mark.slow

DAYS = 320


def _promo_table() -> pd.DataFrame:
    """Returns 2 stores whose sales jump by 10 on random promo days (known in advance)."""
    rng = np.random.default_rng(7)
    frames = []
    for store, level in (("north", 30.0), ("south", 50.0)):
        promo = rng.integers(0, 2, DAYS).astype(float)
        weekly = 3 * np.sin(2 * np.pi * np.arange(DAYS) / 7)
        frames.append(
            pd.DataFrame(
                {
                    "day": pd.date_range("2023-01-01", periods=DAYS, freq="D"),
                    "store": store,
                    "units": level + weekly + 10 * promo + rng.normal(0, 0.5, DAYS),
                    "promo": promo,
                    "temperature": 15 + rng.normal(0, 3, DAYS),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def promo_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("promo")
    _promo_table().to_csv(root / "sales.csv", index=False)
    params = params_from_dict(
        {
            "dataset": {
                "name": "sales.csv",
                "time_column": "day",
                "target": "units",
                "series_columns": ["store"],
                "known_covariates": ["promo"],
                "unknown_covariates": ["temperature"],
                "frequency": "D",
                "season_length": 7,
            },
            "windows": {
                "encoder_length": 14,
                "horizon": 7,
                "validation_length": 28,
                "holdout_length": 28,
            },
            "train": {"max_epochs": 15, "patience": 4, "batch_size": 32},
            "evaluate": {"classical": "none"},
        }
    )
    summary = prepare(params, root, root / "prepared")
    return root, params, summary


def test_known_covariates_let_the_lstm_beat_seasonal_naive(promo_project):
    root, params, summary = promo_project
    result = train_model("lstm", Path(summary.path), params, root / "models")
    scores = evaluate(
        Path(summary.path), {"lstm": Path(result.model_dir)}, params, root / "reports"
    ).metrics
    # Promos are random: only a model that reads the future promo flag can follow them.
    assert scores["lstm"]["mase"] < 0.5 * scores["seasonal_naive"]["mase"], scores


def test_tft_takes_the_same_covariates(promo_project):
    root, params, summary = promo_project
    params.train.max_epochs = 1
    result = train_model("tft", Path(summary.path), params, root / "models")
    scores = evaluate(
        Path(summary.path), {"tft": Path(result.model_dir)}, params, root / "reports"
    ).metrics
    assert {"quantile_loss", "coverage_80"} <= set(scores["tft"])


def test_pyfunc_forecasts_with_future_known_covariates(promo_project, tmp_path):
    root, params, summary = promo_project
    model_dir = root / "models" / "lstm"
    if not model_dir.exists():
        train_model("lstm", Path(summary.path), params, root / "models")
    saved = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        saved,
        python_model=ForecasterModel(),
        artifacts={"model_dir": str(model_dir)},
        model_config={"kind": "lstm", "params": params.to_dict()},
    )
    model = mlflow.pyfunc.load_model(str(saved))
    table = _promo_table()
    history = table[table["day"] < "2023-10-01"]
    future = table[(table["day"] >= "2023-10-01") & (table["day"] < "2023-10-08")].copy()
    future["units"] = np.nan
    forecast = model.predict(pd.concat([history, future]))
    assert len(forecast) == 2 * params.windows.horizon
    assert forecast.groupby("series")["day"].min().eq(pd.Timestamp("2023-10-01")).all()
    actual = table.set_index(["store", "day"])["units"]
    errors = (
        forecast["prediction"].to_numpy()
        - actual.loc[list(zip(forecast["series"], forecast["day"], strict=True))].to_numpy()
    )
    assert np.abs(errors).mean() < 3  # promo jumps are 10: the forecast follows them
    with pytest.raises(ValueError, match=r"north[\s\S]*known covariates promo"):
        model.predict(history)
