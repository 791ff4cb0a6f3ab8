"""`trainyard server start|up|status|stop` and `trainyard schedule`: real servers on free ports
of 127.0.0.1, state in temporary folders, and a scheduled deployment run end to end. Every
process a test starts is stopped by its PID at the end, whatever happened."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.commands import BIN, group_alive, run_trainyard
from tests.conftest import ROOT
from tests.test_servers import _stop_group
from trainyard.cli import app
from trainyard.environment import free_port

runner = CliRunner()


def _env(state: Path) -> dict[str, str]:
    """Returns the environment of a command whose servers live in `state`."""
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "PREFECT_SERVER_UI_ENABLED": "false",  # starts faster; the API is what is tested
    }
    env.pop("PREFECT_API_URL", None)
    return env


def _alive(pid: int) -> bool:
    """Returns whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@contextlib.contextmanager
def _recorded_servers_stopped(state: Path) -> Iterator[None]:
    """Kills, at the end, every server still recorded in `state` (by its recorded PID, whose
    process group holds its workers): the safety net behind `trainyard server stop`."""
    try:
        yield
    finally:
        for record in (state / "servers").glob("*.json"):
            pid = json.loads(record.read_text())["pid"]
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                deadline = time.monotonic() + wait
                while group_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.3)
            assert not group_alive(pid), f"server group {pid} still runs"


def _folded(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_server_start_status_stop(tmp_path: Path):
    state, port = tmp_path / "state", free_port()
    env = _env(state)
    url = f"http://127.0.0.1:{port}/api"
    with _recorded_servers_stopped(state):
        started = run_trainyard(["server", "start", "--port", str(port)], tmp_path, env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export PREFECT_API_URL={url}" in started.stdout
        record = json.loads((state / "servers" / "prefect.json").read_text())
        assert (record["url"], record["port"]) == (url, port)
        assert (state / "prefect" / "prefect.db").exists()  # its database is in the state dir
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200

        status = run_trainyard(["server", "status", "--which", "prefect"], tmp_path, env)
        assert status.returncode == 0, status.stdout
        assert f"prefect: running at {url} (PID {record['pid']}" in status.stdout

        again = run_trainyard(["server", "start", "--port", str(port)], tmp_path, env)
        assert f"prefect: already running at {url} (PID {record['pid']}" in again.stdout

        stopped = run_trainyard(["server", "stop"], tmp_path, env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"prefect: stopped (PID {record['pid']}" in stopped.stdout
        assert "mlflow: no server recorded" in stopped.stdout
        assert not _alive(record["pid"]) and not group_alive(record["pid"])
        assert not (state / "servers" / "prefect.json").exists()

        after = run_trainyard(["server", "status"], tmp_path, env)
        assert after.returncode == 3 and "prefect: not running" in after.stdout


def test_stop_leaves_alone_a_pid_that_is_no_longer_the_server(tmp_path: Path):
    state = tmp_path / "state"
    (state / "servers").mkdir(parents=True)
    other = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", "9"]
        record = {
            "name": "prefect",
            "pid": other.pid,
            "host": "127.0.0.1",
            "port": 9,
            "url": "http://127.0.0.1:9/api",
            "health": "http://127.0.0.1:9/api/health",
            "command": command,
            "log": str(state / "servers" / "prefect.log"),
            "started": "2024-01-01T00:00:00+00:00",
        }
        (state / "servers" / "prefect.json").write_text(json.dumps(record))
        result = runner.invoke(
            app, ["server", "stop", "--which", "prefect"], env={"TRAINYARD_STATE_DIR": str(state)}
        )
        assert result.exit_code == 0, result.output
        assert f"PID {other.pid} now runs another program" in _folded(result.output)
        assert other.poll() is None  # not signalled
        assert not (state / "servers" / "prefect.json").exists()
    finally:
        other.kill()
        other.wait(timeout=10)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (None, "--basic-auth needs the MLflow admin password and there is no default"),
        ("short-pass", "MLFLOW_AUTH_ADMIN_PASSWORD has 10 characters; MLflow requires at least"),
    ],
)
def test_basic_auth_without_a_usable_password_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str | None, message: str
):
    state = tmp_path / "state"
    monkeypatch.setenv("TRAINYARD_STATE_DIR", str(state))
    monkeypatch.delenv("MLFLOW_AUTH_CONFIG_PATH", raising=False)
    if password is None:
        monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    ports = ["--prefect-port", str(free_port()), "--mlflow-port", str(free_port())]
    result = runner.invoke(app, ["server", "up", "--basic-auth", *ports])
    assert result.exit_code == 2, result.output
    folded = _folded(result.output)
    assert message in folded and "Nothing was started" in folded and "Traceback" not in folded
    assert not (state / "servers").exists()


@pytest.mark.parametrize("cron", ["61 * * * *", "every night", "0 2 * *"])
def test_a_bad_cron_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cron: str
):
    state = tmp_path / "state"
    monkeypatch.setenv("TRAINYARD_STATE_DIR", str(state))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, ["schedule", "--cron", cron, "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 2, result.output
    folded = _folded(result.output)
    assert f'--cron "{cron}": not a valid cron expression' in folded
    assert "Traceback" not in folded
    assert not state.exists()  # no server started, nothing written


def test_prefect_yaml_deploys_the_pipeline_flow_with_its_parameters(
    monkeypatch: pytest.MonkeyPatch,
):
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    text = (ROOT / "prefect.yaml").read_text()
    spec = yaml.safe_load(text)
    (deployment,) = spec["deployments"]
    monkeypatch.chdir(ROOT)  # `prefect deploy` runs from the repository root
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow) and flow.name == "trainyard-from-params"
    assert flow.validate_parameters(deployment["parameters"]) == deployment["parameters"]
    assert deployment["work_pool"]["name"] == "trainyard"
    (pull,) = spec["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ $TRAINYARD_ROOT }}"
    )
    assert '#   - cron: "0 2 * * *"' in text  # the schedule is there, commented out


@dataclass
class Team:
    root: Path
    state: Path
    env: dict[str, str]
    exports: dict[str, str]  # what `server up` told a teammate to set


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """Runs `trainyard server up` for the module's tests; stops both servers at the end."""
    root = tmp_path_factory.mktemp("team")
    state = root / "state"
    env = _env(state)
    ports = ["--prefect-port", str(free_port()), "--mlflow-port", str(free_port())]
    with _recorded_servers_stopped(state):
        done = run_trainyard(["server", "up", *ports], root, env)
        assert done.returncode == 0, done.stdout + done.stderr
        exports = dict(re.findall(r"export (\w+)=(\S+)", done.stdout))
        yield Team(root, state, env, exports)
        run_trainyard(["server", "stop"], root, env)


@pytest.mark.slow
def test_up_serves_prefect_and_mlflow_to_a_teammate(team: Team, tmp_path: Path):
    api, uri = team.exports["PREFECT_API_URL"], team.exports["MLFLOW_TRACKING_URI"]
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200
    status = run_trainyard(["server", "status"], team.root, team.env)
    assert status.returncode == 0, status.stdout
    assert f"prefect: running at {api}" in status.stdout
    assert f"mlflow: running at {uri}" in status.stdout

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("teammate")
    run = client.create_run(experiment)
    (tmp_path / "notes.txt").write_text("from a teammate")
    client.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
    client.set_terminated(run.info.run_id)
    # Uploaded through the server's proxy into the state directory, not the client's disk.
    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")
    (stored,) = (team.state / "team" / "artifacts").rglob("notes.txt")
    assert stored.read_text() == "from a teammate"
    assert (team.state / "team" / "mlflow.db").exists()

    # Only loopback names are allowed hosts: a foreign Host header (DNS rebinding) is refused.
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search, timeout=10).status_code == 200
    assert httpx.get(search, headers={"Host": "evil.example"}, timeout=10).status_code == 403


def _tiny_rl_params(path: Path) -> Path:
    """Writes params.yaml whose quick profile trains one small RL agent for a few seconds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"]["experiment"] = "scheduled"
    params["rl"]["train"]["models"] = ["a2c"]
    params["profiles"]["quick"]["rl"] = {
        "env": {"size": 5, "max_steps": 30},
        "scenarios": {"episodes": 8},
        "train": {
            "max_epochs": 1,
            "steps_per_epoch": 30,
            "num_envs": 4,
            "validation_episodes": 4,
        },
        "evaluate": {"gif_episodes": 0},
    }
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_a_scheduled_deployment_runs_and_registers_a_model_version(team: Team, tmp_path: Path):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = team.exports["PREFECT_API_URL"]
    params = _tiny_rl_params(tmp_path / "params.yaml")
    tracking = os.environ["MLFLOW_TRACKING_URI"]  # the session's SQLite store (conftest)
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)

    def agent_versions() -> list:
        if not any(m.name == "treasure-hunt-agent" for m in client.search_registered_models()):
            return []
        return client.search_model_versions("name='treasure-hunt-agent'")

    before = {v.version for v in agent_versions()}
    log = tmp_path / "schedule.log"
    command = [
        str(BIN / "trainyard"),
        "schedule",
        "--cron",
        "0 2 * * *",
        "--family",
        "rl",
        "--profile",
        "quick",
        "--params",
        str(params),
        "--name",
        "nightly",
    ]
    with open(log, "w") as out:
        serving = subprocess.Popen(
            command,
            cwd=tmp_path,
            env={**team.env, "MLFLOW_TRACKING_URI": tracking},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deployment = f"{api}/deployments/name/trainyard-from-params/nightly"
        deadline = time.monotonic() + 120
        while httpx.get(deployment, timeout=5).status_code != 200:
            assert serving.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        served = _folded(log.read_text())
        assert "using the recorded Prefect server" in served  # PREFECT_API_URL was unset
        assert "Deployment: trainyard-from-params/nightly, cron 0 2 * * * (UTC)" in served
        assert re.search(r"Next runs: \d{4}-\d\d-\d\d 02:00 UTC", served), served
        assert httpx.get(deployment, timeout=5).json()["parameters"] == {
            "families": ["rl"],
            "profile": "quick",
            "params_file": str(params),
        }

        with temporary_settings(updates={PREFECT_API_URL: api}):
            flow_run = run_deployment("trainyard-from-params/nightly", timeout=240, poll_interval=2)
        assert flow_run.state.is_completed(), log.read_text()[-3000:]
        new = [v for v in agent_versions() if v.version not in before]
        assert [v.tags["model"] for v in new] == ["a2c"]
        assert new[0].tags["family"] == "rl"
    finally:
        _stop_group(serving)  # SIGTERM: serving pauses the schedule and exits
