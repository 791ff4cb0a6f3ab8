"""Known and unknown covariates reach every model, and the pyfunc needs future known values."""

from __future__ import annotations

import copy
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from trainyard.tasks.family import PyfuncSpec
from trainyard.tasks.forecast.config import params_from_dict
from trainyard.tasks.forecast.evaluate import evaluate
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import FORECASTERS
from trainyard.tasks.forecast.prepare import prepare
from trainyard.tasks.forecast.serving import ForecasterModel
from trainyard.tasks.registry import PYFUNC_ENTRY, pyfunc_config
from trainyard.tasks.training import train_model

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


@pytest.fixture(scope="module")
def trained(promo_project):
    """Returns {kind: model folder} for an LSTM (15 epochs) and a TFT (1 epoch)."""
    root, params, summary = promo_project
    lstm = train_model(FORECAST, "lstm", Path(summary.path), params, root / "models")
    quick = copy.deepcopy(params)
    quick.train.max_epochs = 1
    tft = train_model(FORECAST, "tft", Path(summary.path), quick, root / "models")
    return {"lstm": Path(lstm.model_dir), "tft": Path(tft.model_dir)}


def test_known_covariates_let_the_lstm_beat_seasonal_naive(promo_project, trained):
    root, params, summary = promo_project
    scores = evaluate(
        Path(summary.path), {"lstm": trained["lstm"]}, params, root / "reports"
    ).metrics
    # Promos are random: only a model that reads the future promo flag can follow them.
    assert scores["lstm"]["mase"] < 0.5 * scores["seasonal_naive"]["mase"], scores


def test_tft_takes_the_same_covariates(promo_project, trained):
    root, params, summary = promo_project
    dataset = FORECASTERS["tft"].load(trained["tft"], params).dataset_parameters
    assert dataset["time_varying_known_reals"] == ["promo"]
    assert dataset["time_varying_unknown_reals"] == ["units", "temperature"]
    scores = evaluate(Path(summary.path), {"tft": trained["tft"]}, params, root / "reports")
    assert {"quantile_loss", "coverage_80"} <= set(scores.metrics["tft"])


def _load_pyfunc(kind: str, model_dir: Path, params, folder: Path):
    spec = PyfuncSpec(
        ForecasterModel,
        {"model_dir": str(model_dir)},
        {"kind": kind, "params": params.to_dict()},
        input_example=None,
    )
    mlflow.pyfunc.save_model(
        folder,
        python_model=str(PYFUNC_ENTRY),
        artifacts=spec.artifacts,
        model_config=pyfunc_config(spec),
    )
    return mlflow.pyfunc.load_model(str(folder))


def _history_and_future(end: str = "2023-10-01"):
    table = _promo_table()
    history = table[table["day"] < end]
    future = table[
        (table["day"] >= end) & (table["day"] < pd.Timestamp(end) + pd.Timedelta(days=7))
    ]
    return table, history, future.assign(units=np.nan)


def test_pyfunc_forecasts_with_future_known_covariates(promo_project, trained, tmp_path):
    _, params, _ = promo_project
    model = _load_pyfunc("lstm", trained["lstm"], params, tmp_path / "lstm")
    table, history, future = _history_and_future()
    forecast = model.predict(pd.concat([history, future]))
    assert len(forecast) == 2 * params.windows.horizon
    assert forecast.groupby("series")["day"].min().eq(pd.Timestamp("2023-10-01")).all()
    actual = table.set_index(["store", "day"])["units"]
    keys = list(zip(forecast["series"], forecast["day"], strict=True))
    errors = forecast["prediction"].to_numpy() - actual.loc[keys].to_numpy()
    assert np.abs(errors).mean() < 3  # promo jumps are 10: the forecast follows them
    # Covariates are scaled with the training statistics, not the caller's history: a short
    # history with the same last window forecasts exactly the same.
    short = history.groupby("store").tail(params.windows.encoder_length)
    again = model.predict(pd.concat([short, future]))
    np.testing.assert_allclose(again["prediction"], forecast["prediction"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"north[\s\S]*known covariates promo"):
        model.predict(history)


@pytest.mark.parametrize("kind", ["lstm", "tft"])
def test_pyfunc_refuses_a_gap_or_a_short_history(promo_project, trained, tmp_path, kind):
    _, params, _ = promo_project
    model = _load_pyfunc(kind, trained[kind], params, tmp_path / kind)
    _, history, future = _history_and_future()
    gap = history.copy()
    last_south = gap.index[gap["store"] == "south"][-3]
    gap.loc[last_south, "units"] = np.nan  # 3 steps before the forecast starts
    with pytest.raises(ValueError, match=r"series south: the last 14 steps"):
        model.predict(pd.concat([gap, future]))
    short = history.groupby("store").tail(params.windows.encoder_length)
    short = short[~((short["store"] == "north") & (short.index == short.index.min()))]
    with pytest.raises(ValueError, match=r"north"):
        model.predict(pd.concat([short, future]))
