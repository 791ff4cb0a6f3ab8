"""Fault cases of the skeleton every family shares: error kinds, the CLI's handling of them,
retry-safe evaluation logging and the registration rollback (real MLflow on SQLite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from trainyard.config import RegisterConfig
from trainyard.environment import ProjectPaths, configure_environment
from trainyard.errors import ConfigError, DataError, MissingStepError, UserError, is_transient
from trainyard.tasks.family import EvaluationResult, TrainResult
from trainyard.tasks.forecast.config import Params
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.pipeline import TrainedModel, log_evaluation_step, register_step
from trainyard.tasks.registry import CHALLENGER, CHAMPION, registered_model_name

# --- error kinds ---------------------------------------------------------------------------


def _caused_by(cause: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("wrapped") from cause
    except RuntimeError as error:
        return error


@pytest.mark.parametrize(
    "error",
    [
        OSError("disk hiccup"),
        ConnectionError("refused"),
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
        httpx.ConnectTimeout("connect timeout"),
        httpx.ReadTimeout("read timeout"),
        requests.exceptions.ConnectionError("no route"),
        requests.exceptions.Timeout("slow"),
        MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE),  # HTTP 503
        _caused_by(ConnectionError("refused")),
    ],
    ids=repr,
)
def test_passing_io_and_network_faults_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        UserError("fix this"),
        ConfigError("bad key"),
        DataError("bad row"),
        MissingStepError("train first"),
        ValueError("a bug"),
        KeyError("missing"),
        TypeError("a bug"),
        FileNotFoundError("no such file"),
        MlflowException("bad request", error_code=INVALID_PARAMETER_VALUE),  # HTTP 400
        MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST),  # HTTP 404
        _caused_by(ValueError("a bug")),
    ],
    ids=repr,
)
def test_user_errors_and_bugs_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_a_user_error_caused_by_an_io_fault_is_still_the_users() -> None:
    try:
        raise DataError("sales.csv: cannot be read") from OSError("disk hiccup")
    except DataError as error:
        assert not is_transient(error)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionError("refused"), True),
        (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), True),
        (DataError("bad row"), False),
        (ValueError("a bug"), False),
        (KeyError("missing"), False),
    ],
    ids=repr,
)
def test_flow_tasks_retry_only_transient_failures(error: BaseException, retried: bool) -> None:
    from prefect.states import Completed, Failed

    from trainyard.flows.family import _retry_transient

    assert _retry_transient(None, None, Failed(data=error)) is retried
    assert _retry_transient(None, None, Completed(data=1)) is False


# --- the command line: a user's error without traceback, a bug with it ----------------------

RAISING_CLI = """
import sys
import trainyard.cli as cli
from trainyard.errors import DataError

def load_sections(*args, **kwargs):
    raise {error}

cli.load_sections = load_sections
sys.argv = ["trainyard", "prepare"]
cli.main()
"""


@pytest.mark.parametrize(
    ("error", "code", "traceback"),
    [
        ("DataError('sales.csv row 66: units is not a number')", 2, False),
        ("ValueError('a bug in product code')", 1, True),
    ],
)
def test_cli_shows_user_errors_plainly_and_bugs_with_their_traceback(
    tmp_path: Path, error: str, code: int, traceback: bool
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RAISING_CLI.format(error=error)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert ("Traceback" in output) is traceback, output
    message = error.split("'")[1]
    assert message in output
    if not traceback:
        assert "error:" in output


def test_user_errors_exit_wrapper_only_catches_user_errors() -> None:
    import typer

    from trainyard.cli import _user_errors_exit

    @_user_errors_exit
    def refuses() -> None:
        raise MissingStepError("data/forecast/models/training.json: no trained models")

    @_user_errors_exit
    def breaks() -> None:
        raise ValueError("a bug")

    with pytest.raises(typer.Exit) as exited:
        refuses()
    assert exited.value.exit_code == 2
    with pytest.raises(ValueError, match="a bug"):
        breaks()


# --- retry-safe evaluation logging and the registration rollback ----------------------------


@pytest.fixture
def own_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """Returns a client of a fresh SQLite MLflow store in tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    configure_environment(ProjectPaths(tmp_path))
    return MlflowClient()


def _evaluation(report_dir: Path, scores: dict[str, float]) -> EvaluationResult:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text("{}")
    metrics = {name: {"mase": value, "mae": value * 2} for name, value in scores.items()}
    metrics["seasonal_naive"] = {"mase": 1.0, "mae": 2.0}
    return EvaluationResult(
        metrics=metrics,
        baselines=["seasonal_naive"],
        report_dir=str(report_dir),
        title="Holdout",
        columns=["mase", "mae"],
        higher_is_better={"mase": False, "mae": False},
    )


def _trained(client: MlflowClient, experiment_id: str, name: str, model_dir: Path) -> TrainedModel:
    run = client.create_run(experiment_id, run_name=name)
    result = TrainResult(name, str(model_dir), 1, 0.1, "val/loss", 1.0, 10)
    return TrainedModel(result, run.info.run_id)


def test_a_retried_evaluation_log_logs_every_metric_once(own_mlflow, tmp_path):
    client = own_mlflow
    experiment = client.create_experiment("retry", (tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="forecast-pipeline").info.run_id
    trained = [_trained(client, experiment, name, tmp_path / name) for name in ("lstm", "tcn")]
    evaluation = _evaluation(tmp_path / "reports", {"lstm": 0.5, "tcn": 0.4})

    log_evaluation_step(evaluation, trained, parent)
    log_evaluation_step(evaluation, trained, parent)  # a retry after a passing fault

    for model in trained:
        logged = client.get_run(model.run_id).data.metrics
        assert set(logged) == {"eval/mase", "eval/mae"}
        for key in logged:
            assert len(client.get_metric_history(model.run_id, key)) == 1, key
    logged = client.get_run(parent).data.metrics
    assert len(logged) == 6
    for key in logged:
        assert len(client.get_metric_history(parent, key)) == 1, key


@pytest.fixture(scope="module")
def prepared_co2(tmp_path_factory):
    """Returns (quick params, what prepare wrote) for co2 in a temporary folder."""
    from trainyard.tasks.forecast.config import load_params

    params = load_params(ROOT / "params.yaml", "quick")
    params.train.models = ["lstm", "tcn"]
    return params, FORECAST.prepare(params, ROOT, tmp_path_factory.mktemp("prepared"))


class DeleteFailed(Exception):
    """The registry refused to delete a version while the rollback ran."""


@pytest.fixture
def registry_with_challenger(own_mlflow, tmp_path, prepared_co2, monkeypatch):
    """Returns (client, name, v1, register_step arguments): `challenger` is on v1, and
    deleting a model version fails."""
    client = own_mlflow
    params, prepared = prepared_co2
    name = registered_model_name(FORECAST, FORECAST.label(params))
    client.create_registered_model(name)
    v1 = client.create_model_version(name, source="file:///nonexistent").version
    client.set_registered_model_alias(name, CHALLENGER, v1)
    experiment = client.create_experiment("rollback", (tmp_path / "artifacts").as_uri())
    models = tmp_path / "models"
    for kind in params.train.models:
        (models / kind).mkdir(parents=True)
        (models / kind / "best.ckpt").write_bytes(b"not a real checkpoint")
    trained = [_trained(client, experiment, kind, models / kind) for kind in params.train.models]
    evaluation = _evaluation(tmp_path / "reports", {"lstm": 0.5, "tcn": 0.4})

    def delete_fails(self, *args, **kwargs):
        raise DeleteFailed("registry refused the delete")

    monkeypatch.setattr(MlflowClient, "delete_model_version", delete_fails)
    arguments = (FORECAST, trained, evaluation, prepared, params, ProjectPaths(tmp_path))
    return client, name, str(v1), arguments


def _challenger(client: MlflowClient, name: str) -> str:
    return str(client.get_registered_model(name).aliases[CHALLENGER])


@pytest.mark.slow
def test_failed_pyfunc_logging_keeps_the_error_and_the_previous_challenger(
    registry_with_challenger, monkeypatch, caplog
):
    client, name, v1, arguments = registry_with_challenger
    trained = arguments[1]
    # The second model's folder is gone: logging its pyfunc fails after v2 was registered.
    missing = Path(trained[1].result.model_dir)
    for file in missing.iterdir():
        file.unlink()
    missing.rmdir()

    with pytest.raises(Exception) as raised:  # noqa: B017 - the type is the library's
        register_step(*arguments)

    assert not isinstance(raised.value, DeleteFailed)
    # The rollback tried to delete the version registered before the failure (v2).
    assert f"could not delete {name} v2" in caplog.text
    monkeypatch.undo()
    assert _challenger(client, name) == v1
    assert CHAMPION not in client.get_registered_model(name).aliases


@pytest.mark.slow
def test_failed_gate_keeps_the_error_and_gives_challenger_back(
    registry_with_challenger, monkeypatch, caplog
):
    client, name, v1, arguments = registry_with_challenger
    read_alias = MlflowClient.get_model_version_by_alias

    def champion_unreadable(self, model, alias):
        if alias == CHAMPION:
            raise MlflowException("boom", error_code=INTERNAL_ERROR)
        return read_alias(self, model, alias)

    # Fails after both versions were registered and `challenger` moved to the best of them.
    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", champion_unreadable)
    with pytest.raises(MlflowException, match="boom"):
        register_step(*arguments)

    assert f"could not delete {name} v2" in caplog.text
    assert f"could not delete {name} v3" in caplog.text
    monkeypatch.undo()
    assert _challenger(client, name) == v1
    assert CHAMPION not in client.get_registered_model(name).aliases


def test_register_config_is_shared_by_every_family() -> None:
    register = RegisterConfig()
    assert register.enabled and register.experiment == ""
    assert "register" not in Params.model_fields
