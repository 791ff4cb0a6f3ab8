"""The pipeline against real servers on 127.0.0.1: a Prefect server and an MLflow server,
each started by the test, reached through PREFECT_API_URL and MLFLOW_TRACKING_URI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.commands import BIN, group_alive
from tests.conftest import ROOT
from trainyard.environment import free_port

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _serve(command: list[str], health: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """Runs a server until the block ends, once `health` answers 200 (within 120 s).

    The server runs in its own process group (its workers are children), and the whole group
    is stopped at the end: nothing it started outlives the test.
    """
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, f"{command[0]} exited:\n{log.read_text()[-2000:]}"
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"{command[0]} did not start:\n{log.read_text()[-2000:]}")
        yield
    finally:
        _stop_group(server)


def _stop_group(server: subprocess.Popen) -> None:
    """Stops the server's process group (its id is the server's PID): SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and group_alive(server.pid):
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=20)
    time.sleep(0.5)
    assert not group_alive(server.pid), f"processes of group {server.pid} still run"


@contextlib.contextmanager
def serve_mlflow(folder: Path, workers: int = 1) -> Iterator[str]:
    """Yields the URL of a real `mlflow server` on 127.0.0.1 (SQLite store and artifacts in
    `folder`), stopped with its whole process group at the end."""
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    url = f"http://127.0.0.1:{port}"
    with _serve(command, f"{url}/health", dict(os.environ), folder / "server.log"):
        yield url


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    with serve_mlflow(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    command = [
        str(BIN / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-ui",
        "--analytics-off",
    ]
    url = f"http://127.0.0.1:{port}/api"
    with _serve(command, f"{url}/health", env, folder / "server.log"):
        yield url


def test_run_against_real_prefect_and_mlflow_servers(mlflow_server, prefect_server, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    quick = params.pop("profiles")["quick"]["forecast"]
    section = params["forecast"]
    section["train"].update(quick["train"], models=["tcn"])
    section["evaluate"].update(quick["evaluate"])
    params["register"]["experiment"] = "on-servers"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "TRAINYARD_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("PREFECT_HOME", None)
    done = subprocess.run(
        [
            str(BIN / "trainyard"),
            "run",
            "--params",
            str(tmp_path / "params.yaml"),
            "--family",
            "forecast",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"Prefect: {prefect_server}" in output and f"MLflow:  {mlflow_server}" in output
    assert "Registered co2-forecaster: tcn=v1" in output and "Champion gate: " in output

    # The pipeline flow run and the forecast family's subflow run are recorded by the Prefect
    # server, completed.
    runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={}, timeout=10).json()
    assert [run["state_type"] for run in runs] == ["COMPLETED", "COMPLETED"]
    flows = httpx.post(f"{prefect_server}/flows/filter", json={}, timeout=10).json()
    assert sorted(flow["name"] for flow in flows) == ["forecast", "trainyard"]
    assert not (tmp_path / "state" / "prefect").exists()  # no embedded server was started

    # The MLflow server holds the runs and the registered model; its artifacts are served.
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("on-servers")
    statuses = {
        r.info.run_name: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses == {"forecast-pipeline": "FINISHED", "tcn": "FINISHED"}
    version = client.get_model_version_by_alias("co2-forecaster", "challenger")
    mlflow.set_tracking_uri(mlflow_server)
    try:
        model = mlflow.pyfunc.load_model(f"models:/co2-forecaster/{version.version}")
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    from trainyard.tasks.forecast.datasets import co2_weekly

    forecast = model.predict(co2_weekly().dropna().tail(60))
    assert len(forecast) == section["windows"]["horizon"]
