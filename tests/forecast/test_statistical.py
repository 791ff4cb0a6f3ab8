"""Statistical candidates (statsforecast) and the ensemble: saved as JSON and rebuilt exactly,
applied without refitting and without looking past an origin, scored on validation,
registered and served through MLflow, and chosen on validation like every other model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from trainyard.config import RegisterConfig
from trainyard.environment import ProjectPaths, configure_environment
from trainyard.errors import DataError
from trainyard.models.forecast import statistical as models
from trainyard.tasks.family import EvaluationResult
from trainyard.tasks.forecast import ensemble, statistical
from trainyard.tasks.forecast.config import STATISTICAL_KINDS, Params, params_from_dict
from trainyard.tasks.forecast.evaluate import load_windows, model_forecast, score
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.forecasters import Forecast
from trainyard.tasks.forecast.prepare import prepare
from trainyard.tasks.pipeline import run_family
from trainyard.tasks.registry import CHALLENGER
from trainyard.tasks.training import train_model


def monthly(length: int = 150, seed: int = 0) -> np.ndarray:
    """Returns a positive series with trend and a multiplicative yearly season."""
    t = np.arange(length)
    noise = np.random.default_rng(seed).normal(0, 0.02, length)
    return (100 + 0.8 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12)) * (1 + noise)


def params_for(**train: object) -> Params:
    return params_from_dict(
        {
            "dataset": {
                "name": "sales.csv",
                "target": "y",
                "series_columns": ["store"],
                "frequency": "MS",
                "season_length": 12,
            },
            "windows": {
                "encoder_length": 24,
                "horizon": 6,
                "validation_length": 18,
                "holdout_length": 18,
            },
            "train": {"models": list(STATISTICAL_KINDS), **train},
            "evaluate": {"stride": 2},
        }
    )


@pytest.fixture(scope="module")
def prepared_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a prepared two-store monthly panel, 150 months each."""
    root = tmp_path_factory.mktemp("raw")
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "date": pd.date_range("2010-01-01", periods=150, freq="MS"),
                    "store": store,
                    "y": scale * monthly(seed=seed),
                }
            )
            for store, scale, seed in (("a", 1.0, 1), ("b", 3.0, 2))
        ]
    )
    frame.to_csv(root / "sales.csv", index=False)
    return Path(prepare(params_for(), root, root / "prepared").path)


# --- saved as JSON, rebuilt exactly ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "seasons", "length"),
    [
        ("autoets", [12], 120),
        ("autoarima", [12], 120),
        ("autotheta", [12], 120),
        ("mstl", [12, 6], 120),
        ("autoets", [30], 120),  # a season longer than ETS models: STL takes it out first
        ("autotheta", [12], 20),  # too short for two seasons: no season
    ],
)
def test_a_saved_model_forecasts_exactly_as_the_fitted_one(kind, seasons, length) -> None:
    y = monthly(length + 30)
    spec = models.spec_for(kind, seasons, length)
    fitted = models.build(spec).fit(y[:length])
    saved = json.loads(json.dumps(models.fitted_state(fitted)))  # through the file's format

    rebuilt = models.restore(spec, saved)

    for origin in (length, length + 17, length + 30):
        want = models.forward(fitted, spec, y[:origin], 6, 80)
        have = models.forward(rebuilt, spec, y[:origin], 6, 80)
        assert set(have) == {"mean", "lo-80", "hi-80"}
        for key in want:  # equal to rounding (Theta's decomposition is redone per call)
            np.testing.assert_allclose(have[key], want[key], rtol=1e-6)
    assert spec.deseasonalised == (kind == "mstl" or max(seasons) > models.LONGEST_MODEL_SEASON)
    if length < 2 * max(seasons):
        assert spec.season_lengths == []


def test_many_series_fit_and_forecast_in_worker_processes_as_in_one() -> None:
    count = models.PARALLEL_FROM + 6  # enough to start the worker pool
    rng = np.random.default_rng(3)
    series = [(f"s{i}", monthly(60) * rng.uniform(0.5, 2.0)) for i in range(count)]

    pooled = models.in_parallel(models.fit_many, series, "autotheta", [12])
    alone = models.fit_many(series[:3], "autotheta", [12])

    assert len(pooled) == count
    work = [
        (spec, model, values, np.array([48, 54]))
        for (spec, model), (_, values) in zip(pooled, series, strict=True)
    ]
    forecasts = models.in_parallel(models.forward_many, work, 6, 80)
    assert [f.shape for f in forecasts] == [(2, 6, 3)] * count
    for (spec, model), (_, values), forecast in zip(alone, series, forecasts, strict=False):
        want = models.forward(model, spec, values[:48], 6, 80)
        np.testing.assert_allclose(forecast[0, :, 1], want["mean"], rtol=1e-6)
        np.testing.assert_allclose(forecast[0, :, 0], want["lo-80"], rtol=1e-6)
    assert all((f[..., 0] <= f[..., 1]).all() and (f[..., 1] <= f[..., 2]).all() for f in forecasts)


def test_a_history_too_short_to_forecast_from_is_a_clear_error() -> None:
    y = monthly(60)
    spec = models.spec_for("autotheta", [12], 60)
    model = models.build(spec).fit(y)
    with pytest.raises(models.HistoryTooShortError, match="autotheta: a history of 3 steps"):
        models.forward_many([(spec, model, y, np.array([3]))], 6, 80)


def test_a_series_no_model_fits_is_named() -> None:
    arrays = SimpleNamespace(
        series_ids=["good", "empty"],
        offsets=np.array([0, 60]),
        lengths=np.array([60, 60]),
        target=torch.tensor(np.r_[monthly(60), np.full(60, np.nan)], dtype=torch.float32),
        split=np.zeros(120, dtype=np.int8),
    )
    with pytest.raises(DataError, match=r"series 'empty': autotheta cannot be fitted"):
        statistical.fit("autotheta", arrays, params_for())


def test_only_arrays_numbers_and_text_are_saved() -> None:
    with pytest.raises(TypeError, match="cannot save a object"):
        models._encode({"fitted": object()})
    with pytest.raises(TypeError, match="cannot save an array of object"):
        models._encode(np.array(["a", None], dtype=object))


def test_a_damaged_model_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "statistical.json").write_text('{"kind": "autoets", "series": {"a": {}}}')
    with pytest.raises(DataError, match=r"statistical\.json: not a statistical forecaster"):
        statistical.load(tmp_path, params_for())
    (tmp_path / "statistical.json").unlink()
    with pytest.raises(DataError, match=r"statistical\.json: missing"):
        statistical.load(tmp_path, params_for())


# --- fitted in the train step, applied at every origin --------------------------------------


@pytest.fixture(scope="module")
def fitted_dir(prepared_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    result = train_model(FORECAST, "autoets", prepared_path, params_for(), out)
    assert result.monitor == "val/mase" and np.isfinite(result.best_score)
    assert result.epochs == 0 and result.hparams["seasons"] == "[12]"
    assert sorted(p.name for p in Path(result.model_dir).iterdir()) == ["statistical.json"]
    return Path(result.model_dir)


def test_every_window_gets_a_forecast_inside_its_interval(prepared_path, fitted_dir) -> None:
    params = params_for()
    for split in ("validation", "holdout"):
        windows = load_windows(prepared_path, params, split)
        forecast = model_forecast("autoets", fitted_dir, windows, params)
        assert forecast.point.shape == windows.actual.shape
        assert forecast.levels == [0.1, 0.5, 0.9]
        low, mid, high = np.moveaxis(forecast.quantiles, -1, 0)
        assert (low <= mid).all() and (mid <= high).all()
        np.testing.assert_array_equal(mid, forecast.point)
        scores = score(windows.actual, forecast, windows.scale)
        assert 0.5 <= scores["coverage_80"] <= 1.0
        assert scores["mase"] < 1.0  # better than seasonal naive in-sample on this clean panel


def test_a_forecast_reads_nothing_from_its_origin_on(prepared_path, fitted_dir) -> None:
    params = params_for()
    windows = load_windows(prepared_path, params, "holdout")
    fitted = statistical.load(fitted_dir, params)
    before = statistical.predict(fitted, windows.arrays, windows.table, windows.index, params)
    origin_row = int(windows.index.starts[0]) + params.windows.encoder_length
    changed = windows.arrays.target.clone()
    series_end = windows.arrays.offsets[0] + windows.arrays.lengths[0]
    changed[origin_row:series_end] = 1e6  # every value from the first origin on
    windows.arrays.target = changed

    after = statistical.predict(fitted, windows.arrays, windows.table, windows.index, params)

    np.testing.assert_array_equal(after.point[0], before.point[0])
    np.testing.assert_array_equal(after.quantiles[0], before.quantiles[0])
    assert not np.allclose(after.point[1:], before.point[1:])  # later origins see the change


def test_a_series_the_model_was_not_fitted_on_is_named(prepared_path, fitted_dir) -> None:
    params = params_for()
    windows = load_windows(prepared_path, params, "holdout")
    fitted = statistical.load(fitted_dir, params)
    del fitted["b"]
    with pytest.raises(DataError, match="series 'b': .* has no model for it"):
        statistical.predict(fitted, windows.arrays, windows.table, windows.index, params)


# --- the ensemble ----------------------------------------------------------------------------


def test_the_ensemble_is_the_combination_best_on_validation() -> None:
    actual = np.zeros((4, 2))
    forecasts = {  # errors on validation: a and b cancel out in their mean; c is far off
        "a": Forecast(point=actual + 1.0),
        "b": Forecast(point=actual - 1.0),
        "c": Forecast(point=actual + 5.0),
    }

    def mae(forecast: Forecast) -> dict[str, float]:
        return {"mae": float(np.abs(forecast.point - actual).mean())}

    assert ensemble.choose(forecasts, mae, "mae", size=3) == (["a", "b"], "mean")
    assert ensemble.choose(forecasts, mae, "mae", size=1) is None
    assert ensemble.choose({"a": forecasts["a"]}, mae, "mae", size=4) is None


def test_an_ensemble_combines_quantiles_level_by_level_and_keeps_them_ordered() -> None:
    levels = [0.1, 0.5, 0.9]
    one = Forecast(np.full((1, 1), 10.0), np.array([[[8.0, 10.0, 12.0]]]), levels)
    two = Forecast(np.full((1, 1), 20.0), np.array([[[19.0, 20.0, 30.0]]]), levels)
    mean = ensemble.combine([one, two], "mean")
    assert mean.point[0, 0] == 15.0 and mean.levels == levels
    np.testing.assert_array_equal(mean.quantiles[0, 0], [13.5, 15.0, 21.0])
    without = ensemble.combine([one, Forecast(point=np.full((1, 1), 0.0))], "median")
    assert without.quantiles is None and without.point[0, 0] == 5.0


def test_a_damaged_ensemble_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "ensemble.json").write_text('{"members": ["lstm", "ensemble"], "method": "mean"}')
    with pytest.raises(DataError, match=r"ensemble\.json: unknown members \['ensemble'\]"):
        ensemble.load(tmp_path, params_for())
    (tmp_path / "ensemble.json").write_text("{")
    with pytest.raises(DataError, match=r"ensemble\.json: not an ensemble trainyard wrote"):
        ensemble.load(tmp_path, params_for())


# --- chosen on validation --------------------------------------------------------------------


def test_the_challenger_is_chosen_on_validation_even_when_the_holdout_disagrees() -> None:
    evaluation = EvaluationResult(
        metrics={"tcn": {"mase": 0.50}, "autoets": {"mase": 0.70}, "naive": {"mase": 1.0}},
        selection={"tcn": {"mase": 0.90}, "autoets": {"mase": 0.60}, "naive": {"mase": 1.0}},
        baselines=["naive"],
        report_dir="",
        title="",
        columns=["mase"],
        higher_is_better={"mase": False},
    )
    assert evaluation.best_model("mase") == "tcn"  # on the holdout
    assert evaluation.challenger("mase", ["tcn", "autoets"]) == "autoets"
    evaluation.selection = {}  # a family without validation scores: the evaluation set
    assert evaluation.challenger("mase", ["tcn", "autoets"]) == "tcn"


# --- the pipeline: registered, served, gated -------------------------------------------------


@pytest.mark.slow
def test_statistical_candidates_register_and_serve_through_mlflow(prepared_path, tmp_path):
    params = params_for(models=["autoets", "autoarima", "autotheta", "mstl"])
    params.dataset.name = str(prepared_path.parent.parent / "sales.csv")
    paths = ProjectPaths(tmp_path / "project")
    configure_environment(paths)

    result = run_family(FORECAST, params, RegisterConfig(experiment="stats"), paths)

    client = MlflowClient()
    evaluation = result.evaluation
    kinds = [*params.train.models, "ensemble"]
    assert sorted(v.model for v in result.versions) == sorted(kinds)
    members = evaluation.derived[0].hparams["members"].split(", ")
    assert len(members) >= 2 and set(members) <= set(params.train.models)
    for kind in kinds:  # each beats seasonal naive on the holdout
        assert evaluation.metrics[kind]["mase"] < evaluation.metrics["seasonal_naive"]["mase"]
        assert "coverage_80" in evaluation.metrics[kind]
    chosen = min(kinds, key=lambda k: evaluation.selection[k]["mase"])
    holder = client.get_model_version_by_alias("sales-forecaster", CHALLENGER)
    assert holder.tags["model"] == chosen
    history = pd.read_csv(params.dataset.name).groupby("store").tail(30)
    for version in result.versions:
        tags = client.get_model_version(version.name, version.version).tags
        assert tags["data_version"] == result.prepared.md5 and tags["registration"] == "complete"
        model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
        forecast = model.predict(history)
        assert len(forecast) == 2 * params.windows.horizon
        assert list(forecast["series"].unique()) == ["a", "b"]
        assert (forecast["q10"] <= forecast["prediction"]).all()
        assert (forecast["prediction"] <= forecast["q90"]).all()
        last = history.groupby("store")["y"].last()
        assert np.allclose(forecast.groupby("series")["prediction"].first(), last, rtol=0.25)
