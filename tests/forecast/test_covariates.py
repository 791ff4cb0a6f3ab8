"""Known and unknown covariates reach every model, and the pyfunc needs future known values.
Covariate gaps are filled without look-ahead, and the same way by prepare and by serving."""

from __future__ import annotations

import copy
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from trainyard.errors import MissingStepError
from trainyard.tasks.family import PyfuncSpec
from trainyard.tasks.forecast.config import params_from_dict
from trainyard.tasks.forecast.evaluate import evaluate
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import FORECASTERS
from trainyard.tasks.forecast.prepare import (
    PREPARED_FILE,
    prepare,
    read_prepared,
    regularize,
    summary_of,
)
from trainyard.tasks.forecast.serving import ForecasterModel, future_table
from trainyard.tasks.forecast.validate import DataValidationError
from trainyard.tasks.prepared import write_table
from trainyard.tasks.registry import PYFUNC_ENTRY, pyfunc_config
from trainyard.tasks.training import train_model

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


@pytest.mark.slow
def test_known_covariates_let_the_lstm_beat_seasonal_naive(promo_project, trained):
    root, params, summary = promo_project
    scores = evaluate(
        Path(summary.path), {"lstm": trained["lstm"]}, params, root / "reports"
    ).metrics
    # Promos are random: only a model that reads the future promo flag can follow them.
    assert scores["lstm"]["mase"] < 0.5 * scores["seasonal_naive"]["mase"], scores


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- covariate gaps: no look-ahead, one fill for prepare and serving --------------------------

GAP_DAYS = 20
GAP_START = pd.Timestamp("2024-03-05")  # north's temperature is missing on days 4, 5 and 6
GAP_END = pd.Timestamp("2024-03-07")


def _gap_params(**dataset: object):
    values = {
        "name": "gaps.csv",
        "time_column": "day",
        "target": "units",
        "series_columns": ["store"],
        "known_covariates": ["promo"],
        "unknown_covariates": ["temperature"],
        "frequency": "D",
        "season_length": 7,
        "missing_target": "gap",
        **dataset,
    }
    windows = {"encoder_length": 4, "horizon": 3, "validation_length": 3, "holdout_length": 3}
    return params_from_dict({"dataset": values, "windows": windows})


def _gappy_table() -> pd.DataFrame:
    """Returns 2 stores over GAP_DAYS days, promo linear in time, temperature irregular, with
    a gap of north's temperature over days 4-6 (an empty cell, then two missing days) and one
    of its promo (day 9 empty, days 10-11 missing)."""
    frames = []
    for store, shift in (("north", 0.0), ("south", 100.0)):
        frames.append(
            pd.DataFrame(
                {
                    "day": pd.date_range("2024-03-01", periods=GAP_DAYS, freq="D"),
                    "store": store,
                    "units": shift + np.arange(GAP_DAYS) % 7 + np.arange(GAP_DAYS),
                    "promo": shift + 2.0 * np.arange(GAP_DAYS),
                    "temperature": shift + np.sin(np.arange(GAP_DAYS)) * 10,
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    north = frame["store"].eq("north")
    frame.loc[north & frame["day"].eq(GAP_START), "temperature"] = np.nan
    frame.loc[north & frame["day"].eq(pd.Timestamp("2024-03-10")), "promo"] = np.nan
    missing = pd.to_datetime(["2024-03-06", "2024-03-07", "2024-03-11", "2024-03-12"])
    return frame[~(north & frame["day"].isin(missing))].reset_index(drop=True)


def _cells(table: pd.DataFrame, store: str, column: str, days) -> np.ndarray:
    rows = table["series_id"].eq(store) & table["day"].isin(pd.DatetimeIndex(days))
    return table.loc[rows, column].to_numpy()


def test_unknown_covariate_gaps_are_filled_from_the_past_only() -> None:
    spec = _gap_params().dataset
    frame = _gappy_table()
    gap = pd.date_range(GAP_START, GAP_END, freq="D")

    filled, counts = regularize(frame, spec)

    before = frame.loc[frame["store"].eq("north") & frame["day"].eq("2024-03-04"), "temperature"]
    np.testing.assert_array_equal(_cells(filled, "north", "temperature", gap), [before.item()] * 3)
    # North: 4 inserted days, plus 1 empty cell in each covariate (known ones counted apart).
    assert (counts["forward_filled_covariates"], counts["interpolated_covariates"]) == (5, 5)

    # Whatever happens after the gap (in validation, holdout or beyond), the fill is the same.
    wild = frame.copy()
    later = wild["day"] > GAP_END
    wild.loc[later, "temperature"] = np.random.default_rng(0).uniform(-1e6, 1e6, later.sum())
    again, _ = regularize(wild, spec)
    upto = filled["day"] <= GAP_END
    np.testing.assert_array_equal(again.loc[upto, "temperature"], filled.loc[upto, "temperature"])
    np.testing.assert_array_equal(_cells(again, "north", "temperature", gap), [before.item()] * 3)


def test_known_covariates_are_still_interpolated_in_time() -> None:
    spec = _gap_params().dataset
    frame = _gappy_table()
    frame.loc[frame["store"].eq("south") & frame["day"].eq("2024-03-01"), "promo"] = np.nan

    filled, counts = regularize(frame, spec)

    # promo is linear in time: interpolating over north's empty day 9 and missing days 10-11
    # (from the later day 12: promo is known in advance) restores it exactly; south's empty
    # first day takes the nearest value.
    north = filled[filled["series_id"].eq("north")]
    np.testing.assert_allclose(north["promo"], 2.0 * np.arange(GAP_DAYS))
    south = filled[filled["series_id"].eq("south")]
    np.testing.assert_allclose(south["promo"], [102.0, *(100 + 2.0 * np.arange(1, GAP_DAYS))])
    assert counts["interpolated_covariates"] == 5 + 1


def test_serving_fills_a_history_as_prepare_does() -> None:
    params = _gap_params()
    horizon = params.windows.horizon
    frame = _gappy_table()
    # The last `horizon` days of each store are the future to forecast: no target, no unknown
    # covariate yet, and one known value left empty. North's last observed day has no
    # temperature and no promo: serving must fill it as prepare does (promo from the future).
    last = pd.Timestamp("2024-03-01") + pd.Timedelta(days=GAP_DAYS - 1)
    future = frame["day"] > last - pd.Timedelta(days=horizon)
    frame.loc[future, ["units", "temperature"]] = np.nan
    north = frame["store"].eq("north")
    frame.loc[north & frame["day"].eq(last - pd.Timedelta(days=1)), "promo"] = np.nan
    final_past = last - pd.Timedelta(days=horizon)
    frame.loc[north & frame["day"].eq(final_past), ["temperature", "promo"]] = np.nan

    served = future_table(frame, params)
    prepared, _ = regularize(frame, params.dataset)

    columns = ["series_id", "time_idx", "day", "promo", "temperature"]
    assert len(served) == len(prepared) == 2 * GAP_DAYS
    pd.testing.assert_frame_equal(
        served[columns].astype({"time_idx": "int64"}), prepared[columns], check_exact=True
    )
    np.testing.assert_allclose(
        served.loc[served["series_id"].eq("north"), "promo"], 2.0 * np.arange(GAP_DAYS)
    )
    unknown = _cells(served, "north", "temperature", pd.date_range(final_past, last))
    assert np.unique(unknown).tolist() == [10 * np.sin(GAP_DAYS - horizon - 2)]


def test_an_unknown_covariate_empty_at_a_series_start_is_refused(tmp_path: Path) -> None:
    params = _gap_params()
    frame = _gappy_table()
    frame.loc[frame["store"].eq("south") & (frame["day"] < "2024-03-03"), "temperature"] = np.nan
    frame.loc[frame["store"].eq("north") & frame["day"].eq("2024-03-01"), "promo"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)

    with pytest.raises(DataValidationError) as caught:
        prepare(params, tmp_path, tmp_path / "prepared")

    assert not (tmp_path / "prepared" / PREPARED_FILE).exists()
    (problem,) = caught.value.problems  # north's empty first promo is known: interpolated
    assert problem.column == "temperature"
    assert problem.series == ["south (first value at 2024-03-03 00:00:00)"]
    assert "look-ahead" in str(caught.value) and str(tmp_path / "gaps.csv") in str(caught.value)
    # Serving refuses the same history the same way.
    with pytest.raises(DataValidationError, match=r"model input[\s\S]*temperature[\s\S]*south"):
        future_table(frame.assign(units=frame["units"].where(frame["day"] < "2024-03-18")), params)

    # Dropping the rows before the first value, as the message says, prepares.
    kept = frame[~(frame["store"].eq("south") & (frame["day"] < "2024-03-03"))]
    kept.to_csv(tmp_path / "gaps.csv", index=False)
    summary = prepare(params, tmp_path, tmp_path / "prepared")
    table, meta = read_prepared(Path(summary.path))
    assert table["temperature"].notna().all()
    assert summary.forward_filled_covariates == meta["forward_filled_covariates"] == 5


def test_data_prepared_with_look_ahead_fills_is_refused(tmp_path: Path) -> None:
    params = _gap_params()
    _gappy_table().to_csv(tmp_path / "gaps.csv", index=False)
    summary = prepare(params, tmp_path, tmp_path / "prepared")
    assert summary_of(Path(summary.path), params).forward_filled_covariates == 5
    # A file written before unknown covariates were forward-filled has no such count.
    table, meta = read_prepared(Path(summary.path))
    del meta["forward_filled_covariates"]
    write_table(table, meta, Path(summary.path))

    with pytest.raises(MissingStepError, match=r"later values: run `trainyard prepare"):
        summary_of(Path(summary.path), params)
