"""A model whose training loss or weights stop being finite is stopped with an error naming
it and the epoch, and nothing of it is kept."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import ROOT
from trainyard.errors import DivergedError
from trainyard.tasks.forecast.config import load_params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.training import DivergenceGuard, train_model


def test_a_model_whose_loss_overflows_is_stopped_and_nothing_of_it_is_kept(tmp_path: Path):
    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm"]
    params.train.learning_rate = 1e30  # the first Adam step sends every weight to ~1e30
    params.train.gradient_clip = 1.0
    prepared = FORECAST.prepare(params, ROOT, tmp_path / "prepared")
    models = tmp_path / "models"
    with pytest.raises(DivergedError, match=r"lstm: training diverged in epoch 1 \(step \d+\)"):
        train_model(FORECAST, "lstm", Path(prepared.path), params, models, threads=1)
    assert list(models.iterdir()) == []  # no model folder, no half-written temporary one


def test_non_finite_weights_at_an_epoch_end_are_named():
    network = torch.nn.Linear(2, 1)
    with torch.no_grad():
        network.weight[0, 1] = float("nan")
    trainer = SimpleNamespace(current_epoch=2, global_step=30)
    with pytest.raises(DivergedError, match=r"tcn: training diverged in epoch 3: weights weight"):
        DivergenceGuard("tcn").on_train_epoch_end(trainer, network)


def test_finite_steps_pass():
    trainer = SimpleNamespace(current_epoch=0, global_step=1)
    guard = DivergenceGuard("lstm")
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.5)}, None, 0)
    guard.on_train_batch_end(trainer, None, None, None, 0)  # a step that returned nothing
    with pytest.raises(DivergedError, match="the training loss is inf"):
        guard.on_train_batch_end(trainer, None, torch.tensor(float("inf")), None, 0)


def test_a_diverged_model_is_dropped_and_the_others_go_on():
    from trainyard.tasks.pipeline import keep_trained

    diverged = DivergedError("lstm: training diverged in epoch 2 (step 17): the loss is nan")
    assert keep_trained({"lstm": diverged, "tcn": "tcn-result"}) == ["tcn-result"]
    with pytest.raises(DivergedError, match="every model diverged: lstm"):
        keep_trained({"lstm": diverged})
    with pytest.raises(KeyError):  # any other failure is a bug or bad input: raised
        keep_trained({"lstm": diverged, "tcn": KeyError("boom")})


@pytest.mark.slow
def test_the_pipeline_registers_the_models_that_did_not_diverge(tmp_path: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from trainyard.config import RegisterConfig
    from trainyard.environment import ProjectPaths, configure_environment
    from trainyard.tasks import pipeline

    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm", "tcn"]
    params.evaluate.classical = "none"
    paths = ProjectPaths(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    configure_environment(paths)
    train = pipeline.train_in_subprocess

    def lstm_diverges(family, name, *args, **kwargs):
        # Fault injection: the LSTM's training process reports a divergence.
        if name == "lstm":
            raise DivergedError("lstm: training diverged in epoch 1 (step 3): the loss is inf")
        return train(family, name, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_in_subprocess", lstm_diverges)
    result = pipeline.run_family(FORECAST, params, RegisterConfig(experiment="diverge"), paths)

    assert [model.result.name for model in result.trained] == ["tcn"]
    assert "lstm" not in result.evaluation.metrics and "tcn" in result.evaluation.metrics
    assert [version.model for version in result.versions] == ["tcn"]
    client = MlflowClient()
    experiment = client.get_experiment_by_name("diverge")
    runs = {r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])}
    assert runs == {"forecast-pipeline": "FINISHED", "lstm": "FAILED", "tcn": "FINISHED"}
