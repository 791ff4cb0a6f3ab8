"""Runs that survive faults, with real processes: a `trainyard run` SIGKILLed mid-training
leaves nothing running and is closed by the next run; two runs at once in one project (and a
fresh state directory) each register their own weights."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.commands import group_ends, run_trainyard, start_trainyard
from tests.conftest import ROOT
from trainyard.tasks.registry import REGISTRATION_TAG

pytestmark = pytest.mark.slow
NAME = "treasure-hunt-agent"


def _project(folder: Path) -> dict[str, str]:
    """Writes a small RL project into `folder`; returns its environment (own state dir)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["run"]["families"] = ["rl"]
    params["rl"]["scenarios"]["episodes"] = 16
    params["rl"]["train"].update(validation_episodes=8, steps_per_epoch=60, max_epochs=2)
    params["profiles"] = {
        # Long enough to be killed while it trains.
        "long": {"rl": {"train": {"max_epochs": 40, "patience": 40, "steps_per_epoch": 400}}},
        "seed1": {"rl": {"train": {"seed": 1}}},
        "seed2": {"rl": {"train": {"seed": 2}}},
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    state = folder / ".state"
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "PREFECT_HOME": str(state / "prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "COLUMNS": "200",
    }
    env.pop("PREFECT_API_URL", None)
    return env


def _client(env: dict[str, str]) -> MlflowClient:
    uri = env["MLFLOW_TRACKING_URI"]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_a_killed_run_leaves_nothing_running_and_the_next_run_closes_it(tmp_path):
    env = _project(tmp_path)
    run = start_trainyard(["run", "--profile", "long"], tmp_path, env, own_group=True)
    try:
        deadline = time.monotonic() + 300
        runs = tmp_path / ".state" / "runs"
        while time.monotonic() < deadline and not list(runs.glob("rl-*/models")):
            assert run.poll() is None, run.stdout.read()
            time.sleep(0.5)
        assert list(runs.glob("rl-*/models")), "training never started"
        time.sleep(3)  # the models' processes are training now
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        # The Prefect server, the progress manager and the training processes it started are
        # all in its process group: the watchdog stops them.
        assert group_ends(run.pid), "processes of the killed run still run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    client = _client(env)
    experiment = client.get_experiment_by_name("trainyard-treasure-hunt")
    killed = client.search_runs([experiment.experiment_id])
    assert killed and all(r.info.status == "RUNNING" for r in killed)

    again = run_trainyard(["run", "--no-orchestrator"], tmp_path, env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    statuses = {
        r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert {statuses[r.info.run_id] for r in killed} == {"KILLED"}
    assert "RUNNING" not in statuses.values()
    for version in client.search_model_versions(f"name = '{NAME}'"):
        assert statuses[version.run_id] == "FINISHED"
        assert version.tags[REGISTRATION_TAG] == "complete"
    assert not list(runs.glob("*")), "a finished run leaves no private folder"


def test_two_runs_at_once_register_their_own_weights(tmp_path):
    env = _project(tmp_path)  # a fresh state directory: both create the MLflow store
    runs = [
        start_trainyard(
            ["run", "--no-orchestrator", "--profile", profile], tmp_path, env, own_group=True
        )
        for profile in ("seed1", "seed2")
    ]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
    client = _client(env)
    digests: dict[str, set[str]] = {}
    for version in client.search_model_versions(f"name = '{NAME}'"):
        weights = json.loads(version.tags["artifact_digests"])["model_dir/best.ckpt"]
        digests.setdefault(version.tags["model"], set()).add(weights)
        seed = json.loads(version.tags["params"])["train"]["seed"]
        assert seed in (1, 2)
    # Different seeds train different weights: two versions of one kind sharing a checkpoint
    # would mean one run registered the other's model.
    assert {kind: len(found) for kind, found in digests.items()} == {"dqn": 2, "a2c": 2}
