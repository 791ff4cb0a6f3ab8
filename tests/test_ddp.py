"""Data-parallel training (DDP, gloo on CPU) from params: train.devices processes train one
forecaster together, each on its share of the windows, and the pipeline logs one MLflow run
for it."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainyard.config import ConfigError
from trainyard.errors import DivergedError
from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.training import processes, train_model


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Returns (params, prepared file): a small LSTM over every training window."""
    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm"]
    params.train.max_epochs = 3
    params.train.patience = 3
    params.train.limit_train_batches = 0
    # Stopped on validation, as when the one-process score this compares with was measured.
    params.train.stop_on, params.train.refit = "validation", False
    summary = FORECAST.prepare(params, ROOT, tmp_path_factory.mktemp("ddp") / "prepared")
    return params, Path(summary.path)


def _children() -> set[int]:
    return {child.pid for child in multiprocessing.active_children()}


@pytest.mark.slow
def test_two_gloo_processes_train_one_forecaster_each_on_half_the_windows(prepared, tmp_path: Path):
    params, path = prepared
    alone = train_model(FORECAST, "lstm", path, params, tmp_path / "alone", threads=2)
    params = params.model_copy(deep=True)
    params.train.devices = 2
    before = _children()
    together = train_model(FORECAST, "lstm", path, params, tmp_path / "ddp", threads=2)

    assert alone.processes == 1 and together.processes == 2
    # Each process ran its half of the windows (rounded up), one process all of them.
    windows = len(FORECAST.setup("lstm", path, params).train_loader.index)
    size = params.train.batch_size
    assert alone.train_batches == math.ceil(windows / size)
    assert together.train_batches == math.ceil(math.ceil(windows / 2) / size)
    losses = [epoch["val/loss"] for epoch in together.history]
    assert len(losses) == params.train.max_epochs and losses[-1] < losses[0]  # it learned
    # Same data and steps per sample seen: about as good as one process on the whole data.
    assert together.best_score < 1.5 * alone.best_score
    assert (tmp_path / "ddp" / "lstm" / "best.ckpt").exists()
    assert _children() <= before  # no DDP process outlives the training


@pytest.mark.slow
def test_a_ddp_training_is_not_refitted_and_says_so(
    prepared, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params, path = prepared
    params = params.model_copy(deep=True)
    params.train.devices, params.train.max_epochs = 2, 1
    params.train.stop_on, params.train.refit = "train", True

    with caplog.at_level("WARNING"):
        result = train_model(FORECAST, "lstm", path, params, tmp_path / "ddp", threads=2)

    assert result.processes == 2 and "refit_steps" not in result.hparams
    assert "train.refit is skipped for a model trained in 2 DDP processes" in caplog.text


@pytest.mark.slow
def test_a_diverging_ddp_training_stops_every_process_and_keeps_nothing(prepared, tmp_path: Path):
    params, path = prepared
    params = params.model_copy(deep=True)
    params.train.devices = 2
    params.train.learning_rate = 1e30  # the first Adam step sends every weight to ~1e30
    before = _children()
    with pytest.raises(DivergedError, match=r"lstm: training diverged in epoch 1"):
        train_model(FORECAST, "lstm", path, params, tmp_path / "models", threads=2)
    assert list((tmp_path / "models").iterdir()) == []
    assert _children() <= before


def test_kinds_a_family_cannot_shard_train_in_one_process(quick_params):
    quick_params.train.devices = 2
    quick_params.train.num_nodes = 2
    assert processes(FORECAST, "lstm", quick_params) == 4
    assert processes(FORECAST, "tft", quick_params) == 1  # pytorch-forecasting's own loader


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"devices": 0}, "devices must be at least 1"),
        ({"num_nodes": 0}, "num_nodes must be at least 1"),
        ({"strategy": "fsdp"}, "'fsdp' is not available; trainyard trains on CPU with ddp"),
    ],
)
def test_ddp_settings_are_checked_when_the_params_load(tmp_path: Path, values, message):
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["forecast"]["train"].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")


@pytest.mark.slow
def test_the_pipeline_logs_one_mlflow_run_for_a_model_trained_by_two_processes(
    tmp_path: Path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from trainyard.config import RegisterConfig
    from trainyard.environment import ProjectPaths, configure_environment
    from trainyard.tasks import pipeline

    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm"]
    params.train.devices = 2
    params.evaluate.classical = "none"
    paths = ProjectPaths(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    configure_environment(paths)
    result = pipeline.run_family(FORECAST, params, RegisterConfig(experiment="ddp"), paths)

    assert [model.result.processes for model in result.trained] == [2]
    client = MlflowClient()
    experiment = client.get_experiment_by_name("ddp")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["forecast-pipeline", "lstm"]
    lstm = next(run for run in runs if run.info.run_name == "lstm")
    assert lstm.info.status == "FINISHED"
    assert lstm.data.params["train.processes"] == "2"
    assert lstm.data.metrics["train/epochs"] >= 1
    assert [version.model for version in result.versions] == ["lstm"]
