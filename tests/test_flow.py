"""Flow smoke tests: the quick profile end to end under a Prefect test harness, real MLflow."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.forecast import run_forecast_flow
from tasks.datasets import co2_weekly
from tasks.pipeline import run_pipeline
from tasks.register import CHALLENGER, CHAMPION
from tasks.validate import DataValidationError
from trainyard.environment import ProjectPaths, configure_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flow_run(harness, tmp_path_factory):
    """Runs the quick-profile flow twice in one project; returns (paths, params, results)."""
    from tests.conftest import ROOT
    from trainyard.config import load_params

    params = load_params(ROOT / "params.yaml", "quick")
    params.register.experiment = "flow-smoke"
    paths = ProjectPaths(tmp_path_factory.mktemp("project"))
    configure_environment(paths)
    first = run_forecast_flow(params, paths)
    second = run_forecast_flow(params, paths)
    return paths, params, first, second


def test_flow_registers_a_version_per_model_with_lineage(flow_run):
    paths, params, first, second = flow_run
    client = MlflowClient()
    name = "co2-forecaster"
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{name}'")}
    ours = [versions[v.version] for v in first.versions]
    assert sorted(v.tags["model"] for v in ours) == ["lstm", "tcn", "tft"]
    for version in ours:
        assert version.tags["data_version"] == first.prepare.md5
        assert version.tags["params_hash"] == params.section_hash()
        assert version.tags["git_commit"]
        assert float(version.tags["holdout_mase"]) > 0
        run = client.get_run(version.run_id)
        assert run.data.tags["mlflow.parentRunId"] == first.run_id
        assert run.info.status == "FINISHED"
        # Per-epoch history: one val/loss point per epoch run.
        history = client.get_metric_history(version.run_id, "val/loss")
        epochs = int(run.data.metrics["train/epochs"])
        assert sorted(m.step for m in history) == list(range(epochs))
    # The challenger alias sits on the latest run's best model by holdout MASE.
    best = min(second.versions, key=lambda v: v.metric)
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == best.version
    pipeline_run = client.get_run(first.run_id)
    dataset_inputs = pipeline_run.inputs.dataset_inputs
    assert dataset_inputs[0].dataset.digest == first.prepare.md5


def test_champion_gate_compares_on_same_holdout(flow_run):
    _, _, first, second = flow_run
    client = MlflowClient()
    seasonal = first.evaluation.metrics["seasonal_naive"]["mase"]
    best = min(first.versions, key=lambda v: v.metric)
    champion = client.get_model_version_by_alias("co2-forecaster", CHAMPION)
    # Even the quick profile's models beat seasonal naive on co2 (tcn ~0.39 vs ~1.03 MASE).
    assert best.metric < seasonal
    assert first.decision.promoted
    assert str(champion.version) == best.version
    # The second run trains the same seeded models on the same holdout: it cannot win.
    assert not second.decision.promoted
    assert client.get_model_version_by_alias("co2-forecaster", CHAMPION).version == champion.version


def test_second_run_skips_preparation(flow_run):
    _, _, first, second = flow_run
    assert not first.prepare_cached
    assert second.prepare_cached
    assert second.prepare.md5 == first.prepare.md5


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
        if version.model == "tft":
            assert (forecast["q10"] <= forecast["q90"]).all()


def test_bad_input_stops_flow_and_leaves_nothing(harness, tmp_path, quick_params):
    table = co2_weekly()
    table.loc[1500, "co2"] = float("inf")
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    quick_params.dataset.name = str(path)
    quick_params.register.experiment = "bad-input"
    paths = ProjectPaths(tmp_path / "project")
    configure_environment(paths)
    client = MlflowClient()
    before = len(client.search_model_versions("name='bad-forecaster'"))
    with pytest.raises(DataValidationError, match=r"co2[\s\S]*infinite[\s\S]*rows 1501"):
        run_forecast_flow(quick_params, paths)
    assert len(client.search_model_versions("name='bad-forecaster'")) == before
    experiment = client.get_experiment_by_name("bad-input")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    assert not paths.prepared.exists() or not any(paths.prepared.iterdir())


def test_pipeline_without_prefect_gives_the_flows_results(flow_run, tmp_path, quick_params):
    _, _, first, _ = flow_run
    quick_params.train.models = ["tcn"]
    quick_params.train.parallel = 2  # the flow's setting: one torch thread per training process
    quick_params.register.experiment = "no-orchestrator"
    paths = ProjectPaths(tmp_path)
    configure_environment(paths)
    result = run_pipeline(quick_params, paths)
    assert [model.result.name for model in result.trained] == ["tcn"]
    assert MlflowClient().get_run(result.run_id).info.status == "FINISHED"
    # Same data, seed and code: the same model and the same holdout scores as under Prefect.
    assert result.prepare.md5 == first.prepare.md5
    for name in ("tcn", "naive", "seasonal_naive", "ets"):
        assert result.evaluation.metrics[name] == pytest.approx(
            first.evaluation.metrics[name], rel=1e-6
        ), name
    written = json.loads((paths.reports / "metrics.json").read_text())
    assert written.keys() == result.evaluation.metrics.keys()
    for name, scores in written.items():
        assert scores == pytest.approx(result.evaluation.metrics[name]), name


def test_training_failure_leaves_no_running_run_and_no_version(harness, tmp_path, quick_params):
    quick_params.train.models = ["lstm", "tcn"]
    quick_params.train.tcn.dilations = [1]  # receptive field 5 < encoder 48: TCN refuses
    quick_params.register.experiment = "training-failure"
    paths = ProjectPaths(tmp_path)
    configure_environment(paths)
    client = MlflowClient()
    versions_before = len(client.search_model_versions("name='co2-forecaster'"))
    with pytest.raises(ValueError, match="receptive field 5 is shorter than encoder_length 48"):
        run_forecast_flow(quick_params, paths)
    experiment = client.get_experiment_by_name("training-failure")
    runs = client.search_runs([experiment.experiment_id])
    statuses = {run.info.run_name: run.info.status for run in runs}
    assert statuses["pipeline"] == "FAILED"
    assert statuses["tcn"] == "FAILED"
    assert "RUNNING" not in statuses.values()
    assert len(client.search_model_versions("name='co2-forecaster'")) == versions_before
    assert not (paths.models / "tcn").exists()
    assert not (paths.reports / "metrics.json").exists()


def test_champion_is_rescored_on_a_new_holdout(flow_run, tmp_path):
    from tasks.evaluate import load_holdout, model_forecast, score
    from tasks.prepare import prepare
    from tasks.register import rescore_on_holdout

    paths, params, first, _ = flow_run
    params = copy.deepcopy(params)
    client = MlflowClient()
    version = client.get_model_version("co2-forecaster", first.versions[0].version)
    params.windows.holdout_length = 52  # another holdout, same windows: comparable
    summary = prepare(params, paths.root, tmp_path)
    holdout = load_holdout(Path(summary.path), params)
    rescored = rescore_on_holdout(version, holdout, params)
    local = Path(first.trained[0].result.model_dir)
    direct = score(
        holdout.actual, model_forecast(version.tags["model"], local, holdout, params), holdout.scale
    )["mase"]
    assert rescored == pytest.approx(direct, rel=1e-6)
    params.windows.horizon = 6  # other windows: the champion cannot forecast them
    assert rescore_on_holdout(version, holdout, params) is None
