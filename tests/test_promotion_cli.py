"""`trainyard promote | rollback | history | models show` against a real `mlflow server` on
127.0.0.1, from separate state directories (two teammates' machines), including two promotions
racing for the same alias from two real processes."""

from __future__ import annotations

import os

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.commands import run_trainyard, start_trainyard
from tests.conftest import ROOT
from tests.test_servers import serve_mlflow
from trainyard.tasks.promotion import audit_records, is_lock
from trainyard.tasks.rl.config import Params
from trainyard.tasks.rl.family import RL

pytestmark = pytest.mark.slow
NAME = "treasure-hunt-agent"
SOURCE = "s3://no-bucket/never-loaded"  # no weights: these versions are never loaded


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> str:
    # Two workers: the racing clients' requests are served at the same time.
    with serve_mlflow(tmp_path_factory.mktemp("tracking"), workers=2) as url:
        yield url


@pytest.fixture(scope="module")
def project(tmp_path_factory, tracking_server):
    """Returns (project folder, env maker, the current evaluation key): RL data prepared."""
    folder = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["rl"]["scenarios"]["episodes"] = 16
    (folder / "params.yaml").write_text(yaml.safe_dump(params))

    def env(state: str) -> dict[str, str]:
        values = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_server,
            "TRAINYARD_STATE_DIR": str(folder / state),
            "TRAINYARD_USER": state,
            "COLUMNS": "250",  # rich wraps tables to 80 columns without a terminal
        }
        values.pop("PREFECT_HOME", None)
        return values

    done = run_trainyard(["prepare", "--family", "rl"], folder, env("alice"))
    assert done.returncode == 0, done.stdout + done.stderr
    section = Params.from_dict(params["rl"])
    prepared = RL.prepared(section, folder / "data" / "rl" / "prepared")
    return folder, env, RL.evaluation_key(prepared, section)


def _version(client: MlflowClient, key: str, mean_return: float, **tags: str) -> str:
    """Registers a version with full lineage, evaluated on `key` (no weights: never loaded)."""
    lineage = {
        "family": "rl",
        "model": "dqn",
        "git_commit": "0" * 40,
        "git_dirty": "false",
        "params_hash": "p",
        "data_version": "d" * 32,
        "evaluation_key": key,
        "train_finite": "true",
        "gate_metric": "mean_return",
        "eval_mean_return": str(mean_return),
        **tags,
    }
    return str(client.create_model_version(NAME, SOURCE, tags=lineage).version)


def test_promote_rollback_and_history_across_state_directories(project, tracking_server):
    folder, env, key = project
    client = MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)
    client.create_registered_model(NAME)
    v1, v2, v3 = (_version(client, key, value) for value in (10.0, 8.0, 12.0))

    alice = env("alice")
    first = run_trainyard(["promote", NAME, "--version", v1], folder, alice)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"champion -> v{v1}" in first.stdout

    worse = run_trainyard(["promote", NAME, "--version", v2], folder, alice)
    assert worse.returncode == 1
    assert "is not beaten" in worse.stdout and "10.0000" in worse.stdout

    unexplained = run_trainyard(["promote", NAME, "--version", v2, "--force"], folder, alice)
    assert unexplained.returncode == 2 and "--reason" in unexplained.stdout
    forced = run_trainyard(
        ["promote", NAME, "--version", v2, "--force", "--reason", "demo needs v2"],
        folder,
        alice,
    )
    assert forced.returncode == 0, forced.stdout
    assert client.get_model_version_by_alias(NAME, "champion").version == v2

    # Bob has his own state directory: the history and the rollback come from the server.
    bob = env("bob")
    back = run_trainyard(["rollback", NAME, "--reason", "v2 misbehaves"], folder, bob)
    assert back.returncode == 0, back.stdout + back.stderr
    assert client.get_model_version_by_alias(NAME, "champion").version == v1
    better = run_trainyard(["promote", NAME, "--alias", "challenger"], folder, bob)
    assert better.returncode == 2 and "holds @challenger" in better.stdout
    assert run_trainyard(["promote", NAME, "--version", v3], folder, bob).returncode == 0

    shown = run_trainyard(["history", NAME], folder, bob)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "│" in line]
    actions = [
        a for line in lines for a in ("promote", "refused", "force", "rollback") if a in line
    ]
    assert actions == ["promote", "rollback", "force", "refused", "promote"]  # newest first
    assert "alice" in shown.stdout and "bob" in shown.stdout and "demo needs v2" in shown.stdout

    records = audit_records(client, NAME)
    assert [(r["action"], r["from"], r["to"], r["actor"]) for r in records] == [
        ("promote", None, v1, "alice"),
        ("refused", v1, v2, "alice"),
        ("force", v1, v2, "alice"),
        ("rollback", v2, v1, "bob"),
        ("promote", v1, v3, "bob"),
    ]

    show = run_trainyard(["models", "show", f"{NAME}@champion"], folder, bob)
    assert show.returncode == 0, show.stdout + show.stderr
    assert f"v{v3}" in show.stdout and "git checkout " + "0" * 40 in show.stdout
    assert "data_version" in show.stdout and "stage.champion" in show.stdout
    assert "aliases      champion" in show.stdout
    listed = run_trainyard(["models"], folder, bob)
    assert listed.returncode == 0 and "trainyard-lock" not in listed.stdout


def test_two_processes_racing_for_champion_leave_the_better_one(project, tracking_server):
    folder, env, key = project
    client = MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)
    name = NAME
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    before = len(audit_records(client, name))
    good, best = _version(client, key, 20.0), _version(client, key, 25.0)
    racers = [
        start_trainyard(["promote", name, "--version", version], folder, env(who))
        for version, who in ((good, "carol"), (best, "dave"))
    ]
    outputs = [racer.communicate(timeout=300)[0] for racer in racers]
    codes = [racer.returncode for racer in racers]
    assert all(code in (0, 1) for code in codes), outputs
    assert client.get_model_version_by_alias(name, "champion").version == best
    records = audit_records(client, name)[before:]
    assert sorted(r["to"] for r in records) == sorted([good, best])
    seqs = [r["seq"] for r in audit_records(client, name)]
    assert seqs == list(range(1, len(seqs) + 1))
    # Replaying the trail gives the alias as it is: the record that put `best` there is last
    # among the promotions, and nothing was overwritten unseen.
    promoted = [r for r in records if r["action"] == "promote"]
    assert promoted[-1]["to"] == best
    if len(promoted) == 2:
        assert promoted[1]["from"] == good
    assert not [m for m in client.search_registered_models() if is_lock(m.name)]


def test_bad_references_name_the_fix_and_record_nothing(project, tracking_server):
    folder, env, _ = project
    client = MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    before = audit_records(client, NAME)
    missing = run_trainyard(["promote", "no-such-model"], folder, env("alice"))
    assert missing.returncode == 2 and "no registered model 'no-such-model'" in missing.stdout
    assert NAME in missing.stdout and "trainyard-lock" not in missing.stdout
    stage = run_trainyard(["promote", NAME, "--version", "1", "--to", "prod"], folder, env("alice"))
    assert stage.returncode == 2 and "register.stages" in stage.stdout
    assert audit_records(client, NAME) == before  # a refused request is not a decision
