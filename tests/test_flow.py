"""Flow smoke tests: the quick profile end to end under a Prefect test harness, real MLflow."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainyard.config import RegisterConfig
from trainyard.environment import ProjectPaths, configure_environment
from trainyard.errors import ConfigError
from trainyard.flows.forecast import forecast_flow
from trainyard.tasks.forecast.datasets import co2_weekly
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.validate import DataValidationError
from trainyard.tasks.pipeline import run_family
from trainyard.tasks.registry import CHALLENGER, CHAMPION, rescore_registered

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_run(harness, tmp_path_factory):
    """Runs the quick-profile flow twice in one project; returns (paths, params, results)."""
    from tests.conftest import ROOT
    from trainyard.tasks.forecast.config import load_params

    params = load_params(ROOT / "params.yaml", "quick")
    assert params.evaluate.classical == "none"  # baselines: naive and seasonal naive
    register = RegisterConfig(experiment="flow-smoke")
    paths = ProjectPaths(tmp_path_factory.mktemp("project"))
    configure_environment(paths)
    first = forecast_flow(params, register, paths)
    second = forecast_flow(params, register, paths)
    return paths, params, first, second


def test_flow_registers_a_version_per_model_with_lineage(flow_run):
    paths, params, first, second = flow_run
    client = MlflowClient()
    name = "co2-forecaster"
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    ours = [versions[v.version] for v in first.versions]
    kinds = ["autotheta", "ensemble", "lstm", "tcn", "tft"]
    assert sorted(v.tags["model"] for v in ours) == kinds
    for version in ours:
        assert version.tags["family"] == "forecast"
        assert version.tags["data_version"] == first.prepared.md5
        assert version.tags["params_hash"] == params.section_hash()
        assert version.tags["evaluation_key"] == FORECAST.evaluation_key(first.prepared, params)
        assert version.tags["git_commit"]
        assert float(version.tags["eval_mase"]) > 0
        run = client.get_run(version.run_id)
        assert run.data.tags["mlflow.parentRunId"] == first.run_id
        assert run.info.status == "FINISHED"
        assert run.data.metrics["select/mase"] > 0  # its validation score
        epochs = int(run.data.metrics["train/epochs"])
        if version.tags["model"] in ("autotheta", "ensemble"):  # not trained by epochs
            assert epochs == 0 and run.data.metrics["best/val_mase"] > 0
            continue
        # Per-epoch history: one val/loss point per epoch run.
        history = client.get_metric_history(version.run_id, "val/loss")
        assert sorted(m.step for m in history) == list(range(epochs))
    # The challenger alias sits on the latest run's best model by validation MASE.
    selection = second.evaluation.selection
    chosen = min((v.model for v in second.versions), key=lambda kind: selection[kind]["mase"])
    holder = client.get_model_version_by_alias(name, CHALLENGER)
    assert holder.tags["model"] == chosen
    assert str(holder.version) in {v.version for v in second.versions}
    pipeline_run = client.get_run(first.run_id)
    dataset_inputs = pipeline_run.inputs.dataset_inputs
    assert dataset_inputs[0].dataset.digest == first.prepared.md5


def test_evaluation_metrics_are_logged_once_per_run(flow_run):
    _, _, first, _ = flow_run
    client = MlflowClient()
    for model in first.trained:
        history = client.get_metric_history(model.run_id, "eval/mase")
        assert [m.value for m in history] == [
            pytest.approx(first.evaluation.metrics[model.result.name]["mase"])
        ]
    assert len(client.get_metric_history(first.run_id, "eval/seasonal_naive/mase")) == 1


def test_champion_gate_compares_on_same_holdout(flow_run):
    _, _, first, second = flow_run
    client = MlflowClient()
    assert first.evaluation.baselines == ["naive", "seasonal_naive"]
    baseline = min(first.evaluation.metrics[name]["mase"] for name in first.evaluation.baselines)
    selection = first.evaluation.selection
    best = min(first.versions, key=lambda v: selection[v.model]["mase"])
    # The chosen model beats both naive baselines on co2's holdout (autotheta ~0.28 MASE).
    assert best.metric < baseline
    assert first.decision.promoted, first.decision.reason
    champion = client.get_model_version_by_alias("co2-forecaster", CHAMPION)
    assert str(champion.version) == best.version
    # The second run trains the same seeded models on the same holdout: it cannot win.
    assert not second.decision.promoted
    assert client.get_model_version_by_alias("co2-forecaster", CHAMPION).version == champion.version


def test_second_run_skips_preparation(flow_run):
    _, _, first, second = flow_run
    assert not first.prepare_cached
    assert second.prepare_cached
    assert second.prepared.md5 == first.prepared.md5


def test_registered_model_loads_and_forecasts(flow_run):
    _, params, first, _ = flow_run
    history = co2_weekly().dropna().tail(100)
    for version in first.versions:
        model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
        forecast = model.predict(history)
        assert len(forecast) == params.windows.horizon
        assert forecast["step"].tolist() == list(range(1, params.windows.horizon + 1))
        assert forecast["date"].iloc[0] == history["date"].iloc[-1] + pd.Timedelta(weeks=1)
        # co2 moves < 10 ppm in 12 weeks: a forecast far from the last level is broken.
        assert (forecast["prediction"] - history["co2"].iloc[-1]).abs().max() < 10
        if version.model in ("tft", "autotheta"):
            assert (forecast["q10"] <= forecast["q90"]).all()


def test_bad_input_stops_flow_and_leaves_nothing(harness, tmp_path, quick_params):
    table = co2_weekly()
    table.loc[1500, "co2"] = float("inf")
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    quick_params.dataset.name = str(path)
    paths = ProjectPaths(tmp_path / "project")
    configure_environment(paths)
    client = MlflowClient()
    before = len(client.search_model_versions("name='bad-forecaster'"))
    with pytest.raises(DataValidationError, match=r"co2[\s\S]*infinite[\s\S]*rows 1501"):
        forecast_flow(quick_params, RegisterConfig(experiment="bad-input"), paths)
    assert len(client.search_model_versions("name='bad-forecaster'")) == before
    experiment = client.get_experiment_by_name("bad-input")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    prepared = paths.family("forecast").prepared
    assert not prepared.exists() or not any(prepared.iterdir())


def test_pipeline_without_prefect_gives_the_flows_results(flow_run, tmp_path, quick_params):
    _, _, first, _ = flow_run
    quick_params.train.models = ["tcn"]
    quick_params.train.parallel = 2  # the flow's setting: one torch thread per training process
    quick_params.evaluate.classical = "ets"  # statsmodels' Holt-Winters as a third baseline
    paths = ProjectPaths(tmp_path)
    configure_environment(paths)
    result = run_family(FORECAST, quick_params, RegisterConfig(experiment="no-orchestrator"), paths)
    assert [model.result.name for model in result.trained] == ["tcn"]
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    # Same data, seed and code: the same model and the same holdout scores as under Prefect.
    assert result.prepared.md5 == first.prepared.md5
    for name in ("tcn", "naive", "seasonal_naive"):
        assert result.evaluation.metrics[name] == pytest.approx(
            first.evaluation.metrics[name], rel=1e-6
        ), name
    reports = paths.family("forecast").reports
    written = json.loads((reports / "metrics.json").read_text())
    assert written.keys() == result.evaluation.metrics.keys()
    for name, scores in written.items():
        assert scores == pytest.approx(result.evaluation.metrics[name]), name
    # With ETS among the baselines, the gate asks the model to beat the best one: ETS.
    assert result.evaluation.best_baseline("mase") == "ets"
    assert not result.decision.promoted
    assert "does not beat the best baseline, ets" in result.decision.reason


def test_training_failure_leaves_no_running_run_and_no_version(harness, tmp_path, quick_params):
    quick_params.train.models = ["lstm", "tcn"]
    quick_params.train.tcn.dilations = [1]  # receptive field 5 < encoder 48: TCN refuses
    paths = ProjectPaths(tmp_path)
    configure_environment(paths)
    client = MlflowClient()
    versions_before = len(client.search_model_versions("name='co2-forecaster'"))
    with pytest.raises(ConfigError, match="receptive field 5 is shorter than encoder_length 48"):
        forecast_flow(quick_params, RegisterConfig(experiment="training-failure"), paths)
    experiment = client.get_experiment_by_name("training-failure")
    runs = client.search_runs([experiment.experiment_id])
    statuses = {run.info.run_name: run.info.status for run in runs}
    assert statuses["forecast-pipeline"] == "FAILED"
    assert statuses["tcn"] == "FAILED"
    assert "RUNNING" not in statuses.values()
    assert len(client.search_model_versions("name='co2-forecaster'")) == versions_before
    folders = paths.family("forecast")
    assert not (folders.models / "tcn").exists()
    assert not (folders.reports / "metrics.json").exists()


def test_champion_is_rescored_on_a_new_holdout(flow_run, tmp_path):
    from trainyard.tasks.forecast.evaluate import load_holdout, model_forecast, score
    from trainyard.tasks.forecast.prepare import prepare

    paths, params, first, _ = flow_run
    params = copy.deepcopy(params)
    client = MlflowClient()
    version = client.get_model_version("co2-forecaster", first.versions[0].version)
    params.windows.holdout_length = 52  # another holdout, same windows: comparable
    summary = prepare(params, paths.root, tmp_path)

    def rescore(params):
        return rescore_registered(
            version,
            FORECAST,
            lambda config, artifacts: FORECAST.rescore(config, artifacts, summary, params),
        )

    holdout = load_holdout(Path(summary.path), params)
    local = Path(first.trained[0].result.model_dir)
    direct = score(
        holdout.actual, model_forecast(version.tags["model"], local, holdout, params), holdout.scale
    )["mase"]
    assert rescore(params) == pytest.approx(direct, rel=1e-6)
    params.windows.horizon = 6  # other windows: the champion cannot forecast them
    assert rescore(params) is None
