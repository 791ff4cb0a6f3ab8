"""Runs whose process died are closed as KILLED by the next run of the experiment: on this
host by their PID, on other hosts by a heartbeat that stopped (a real SQLite MLflow store)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from trainyard.tasks.registry import REGISTRATION_TAG
from trainyard.tasks.tracking import HEARTBEAT_TAG, close_dead_runs, heartbeat, owner_tags


@pytest.fixture
def client(tmp_path: Path, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _run_of(client: MlflowClient, experiment: str, host: str, beat_age: float, parent=None):
    """Returns the id of a RUNNING run owned by a process on `host`, last heard of
    `beat_age` seconds ago."""
    tags = {
        **owner_tags(),
        "trainyard.host": host,
        "trainyard.pid": "1",
        "trainyard.pid_start": "never",
        HEARTBEAT_TAG: str(int(time.time() - beat_age)),
    }
    if parent:
        tags["mlflow.parentRunId"] = parent
        del tags[HEARTBEAT_TAG]  # a model run lives as long as its pipeline run beats
    return client.create_run(experiment, tags=tags).info.run_id


def test_a_silent_run_of_another_host_is_closed_and_a_beating_one_is_left(client):
    experiment = client.create_experiment("dead")
    silent = _run_of(client, experiment, "node-7", beat_age=3600)
    silent_model = _run_of(client, experiment, "node-7", 0, parent=silent)
    client.create_registered_model("agent")
    unfinished = client.create_model_version("agent", "runs:/x/model", run_id=silent_model)
    beating = _run_of(client, experiment, "node-8", beat_age=5)
    beating_model = _run_of(client, experiment, "node-8", 0, parent=beating)
    stranger = client.create_run(experiment).info.run_id  # no trainyard tags: not ours

    closed = close_dead_runs(experiment)

    assert sorted(closed) == sorted([silent, silent_model])
    status = {run_id: client.get_run(run_id).info.status for run_id in closed}
    assert set(status.values()) == {"KILLED"}
    for run_id in (beating, beating_model, stranger):
        assert client.get_run(run_id).info.status == "RUNNING"
    remaining = client.search_model_versions("name = 'agent'")
    assert str(unfinished.version) not in [str(version.version) for version in remaining]


def test_a_finished_version_of_a_dead_run_is_kept(client):
    experiment = client.create_experiment("kept")
    silent = _run_of(client, experiment, "node-7", beat_age=3600)
    client.create_registered_model("agent")
    version = client.create_model_version("agent", "runs:/x/model", run_id=silent)
    client.set_model_version_tag("agent", version.version, REGISTRATION_TAG, "complete")
    assert close_dead_runs(experiment) == [silent]
    assert [str(v.version) for v in client.search_model_versions("name = 'agent'")] == ["1"]


def test_a_dead_process_on_this_host_is_closed_whatever_its_heartbeat(client):
    import socket

    experiment = client.create_experiment("here")
    dead_here = _run_of(client, experiment, socket.gethostname(), beat_age=0)
    assert close_dead_runs(experiment) == [dead_here]  # PID 1 with another start time


def test_the_heartbeat_keeps_the_tag_fresh_while_the_block_runs(client, monkeypatch):
    monkeypatch.setenv("TRAINYARD_HEARTBEAT_SECONDS", "0.2")
    experiment = client.create_experiment("beat")
    run_id = client.create_run(experiment, tags={HEARTBEAT_TAG: "0"}).info.run_id
    with heartbeat(run_id):
        deadline = time.monotonic() + 20
        while client.get_run(run_id).data.tags[HEARTBEAT_TAG] == "0":
            assert time.monotonic() < deadline, "no heartbeat was written"
            time.sleep(0.1)
    last = client.get_run(run_id).data.tags[HEARTBEAT_TAG]
    assert abs(float(last) - time.time()) < 10
    time.sleep(0.6)
    assert client.get_run(run_id).data.tags[HEARTBEAT_TAG] == last  # stopped with the block
