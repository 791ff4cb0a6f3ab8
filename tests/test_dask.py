"""`trainyard run --runner dask`: the trainings run on Dask workers through prefect-dask (a
LocalCluster started for the run, or a running scheduler), and bad Dask options fail before
anything is written."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.commands import group_ends, start_trainyard
from tests.conftest import ROOT
from tests.test_faults import NAME, _client, _project
from trainyard.cli import app
from trainyard.environment import free_port

runner = CliRunner()


@pytest.mark.slow
def test_two_models_train_on_two_dask_workers_and_both_register(tmp_path: Path):
    env = _project(tmp_path)
    run = start_trainyard(
        ["run", "--family", "rl", "--runner", "dask"], tmp_path, env, own_group=True
    )
    try:
        output = run.communicate(timeout=900)[0]
        assert run.returncode == 0, output[-3000:]
        # The LocalCluster (scheduler, nannies, workers) and the Prefect server it reported
        # to were all started in the run's process group: none may outlive the run.
        assert group_ends(run.pid), "processes of the finished run still run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    client = _client(env)
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert sorted(version.tags["model"] for version in versions) == ["a2c", "dqn"]
    workers = {
        version.tags["model"]: client.get_run(version.run_id).data.tags.get("dask_worker")
        for version in versions
    }
    assert all(address and address.startswith("tcp://") for address in workers.values()), workers
    assert workers["dqn"] != workers["a2c"], "both models trained on one Dask worker"


def _rl_project(folder: Path) -> Path:
    path = folder / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    return path


def _run(params: Path, *options: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", "--params", str(params), "--family", "rl", *options])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    "options, message",
    [
        (["--dask-address", "tcp://127.0.0.1:8786"], "--dask-address needs --runner dask"),
        (["--dask-workers", "3"], "--dask-workers needs --runner dask"),
        (["--runner", "dask", "--no-orchestrator"], "drop --no-orchestrator"),
    ],
)
def test_dask_options_that_do_not_go_together_are_a_user_error(
    tmp_path: Path, options: list[str], message: str
):
    code, output = _run(_rl_project(tmp_path), *options)
    assert code == 2 and message in output and "Traceback" not in output, output


def test_a_running_cluster_refuses_a_tracking_store_on_this_machine(tmp_path: Path):
    address = f"tcp://127.0.0.1:{free_port()}"
    code, output = _run(_rl_project(tmp_path), "--runner", "dask", "--dask-address", address)
    assert code == 2, output
    assert f"--dask-address {address}: MLFLOW_TRACKING_URI=sqlite:" in output
    assert "the Dask workers cannot log to" in output
    assert not (tmp_path / "data").exists()  # nothing prepared


def test_an_unreachable_scheduler_fails_fast_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Servers the workers could share (never asked: the scheduler is checked first).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, output = _run(_rl_project(tmp_path), "--runner", "dask", "--dask-address", address)
    seconds = time.monotonic() - started
    assert code == 2, output
    assert f"--dask-address {address}: no Dask scheduler answers" in output, output
    assert "Traceback" not in output
    assert seconds < 30, f"took {seconds:.0f} s"
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_running_cluster_is_checked_for_workers_that_can_train_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import dask
    from distributed import LocalCluster

    from trainyard.config import ConfigError
    from trainyard.environment import ProjectPaths
    from trainyard.flows.pipeline import DaskCluster, check_dask_cluster

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    _rl_project(tmp_path)
    paths = ProjectPaths(tmp_path)
    # Dask's default: daemonic workers, which may not start the process a model trains in.
    with LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster:
        with pytest.raises(ConfigError, match="DASK_DISTRIBUTED__WORKER__DAEMON=False"):
            check_dask_cluster(DaskCluster(cluster.scheduler_address), paths)
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster,
    ):
        check_dask_cluster(DaskCluster(cluster.scheduler_address), paths)
        with pytest.raises(ConfigError, match="must be on a filesystem they share"):
            check_dask_cluster(DaskCluster(cluster.scheduler_address), ProjectPaths(tmp_path / "x"))
        # The workers took the environment they started with; this run now logs elsewhere.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://other.example:5000")
        with pytest.raises(ConfigError, match="has MLFLOW_TRACKING_URI=http://mlflow.example"):
            check_dask_cluster(DaskCluster(cluster.scheduler_address), paths)
