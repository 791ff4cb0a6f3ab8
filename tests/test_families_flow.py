"""Every family through the real command line: the quick profile under Prefect registers
versions of each with aliases and lineage; `--family rl` runs RL alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# Every registered version's lineage (the list): code, data, params, runs, evaluation.
LINEAGE = (
    "family",
    "git_commit",
    "git_dirty",
    "params_hash",
    "params",
    "data_version",
    "data_path",
    "mlflow_run_id",
    "prefect_flow_run_id",
    "evaluation_key",
    "gate_metric",
    "best_baseline",
    "train_finite",
    "libraries",
)


def _trainyard(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "trainyard"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """Returns (root, env) of a project that ran `trainyard run --profile quick` once."""
    root = tmp_path_factory.mktemp("families")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["register"]["experiment"] = ""
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    state = root / ".state"
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "PREFECT_HOME": str(state / "prefect"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
    }
    env.pop("PREFECT_API_URL", None)
    output = _trainyard(["run", "--profile", "quick"], root, env)
    return root, env, output


def test_quick_profile_registers_every_family_with_aliases_and_lineage(project):
    root, env, output = project
    assert "Traceback" not in output
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    for name, kinds in (
        ("co2-forecaster", {"lstm", "tcn", "tft", "autotheta", "ensemble"}),
        ("treasure-hunt-agent", {"dqn", "a2c"}),
        ("python-docs-lm", {"lstm"}),
    ):
        model = client.get_registered_model(name)
        assert "challenger" in model.aliases
        versions = client.search_model_versions(f"name='{name}'")
        assert {v.tags["model"] for v in versions} == kinds
        for version in versions:
            assert all(version.tags.get(tag) for tag in LINEAGE), version.tags
            assert version.tags["mlflow_run_id"] == version.run_id
            assert version.tags[f"eval_{version.tags['gate_metric']}"]
            assert {"torch", "lightning", "mlflow"} <= set(json.loads(version.tags["libraries"]))
            assert json.loads(version.tags["params"])["train"]["models"]
            assert client.get_run(version.run_id).info.status == "FINISHED"
    assert (root / "data/rl/reports/plots/dqn_scenario0.gif").stat().st_size > 0
    assert (root / "data/forecast/reports/metrics.json").exists()
    assert (root / "data/text/reports/samples.txt").stat().st_size > 0


def test_a_registered_language_model_loads_as_a_pyfunc_and_continues_prompts(project):
    _, env, _ = project
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/python-docs-lm@challenger")
    prompts = pd.DataFrame({"prompt": ["The ", "def "]})
    out = model.predict(prompts, params={"length": 30, "temperature": 0.5, "seed": 3})
    assert list(out.columns) == ["prompt", "continuation"]
    assert [len(text) for text in out["continuation"]] == [30, 30]
    again = model.predict(prompts, params={"length": 30, "temperature": 0.5, "seed": 3})
    assert again.equals(out)  # seeded sampling is reproducible
    greedy = model.predict(prompts.head(1), params={"length": 12, "temperature": 0.0})
    assert len(greedy["continuation"][0]) == 12
    with pytest.raises(Exception, match="prompt"):
        model.predict(pd.DataFrame({"text": ["x"]}))


def test_a_registered_agent_loads_as_a_pyfunc_and_acts(project):
    _, env, _ = project
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/treasure-hunt-agent@challenger")
    # Two agents, four numbers each: own cell and nearest treasure, scaled to [0, 1].
    states = pd.DataFrame(
        [[0.0, 0.0, 0.0, 1 / 7, 1.0, 1.0, 1.0, 6 / 7]] * 3,
        columns=[f"agent{a}_obs{d}" for a in range(2) for d in range(4)],
    )
    actions = model.predict(states)
    assert list(actions.columns) == ["agent0_action", "agent1_action"]
    assert len(actions) == 3 and actions.isin(range(5)).all().all()


def test_family_option_runs_one_family_only(project):
    root, env, _ = project
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = MlflowClient()
    before = {
        name: len(client.search_model_versions(f"name='{name}'"))
        for name in ("co2-forecaster", "treasure-hunt-agent")
    }
    output = _trainyard(["run", "--profile", "quick", "--family", "rl"], root, env)
    # The scenario set is reused (rich may wrap the line: compare with spaces folded).
    assert "cached: inputs unchanged, skipped" in " ".join(output.split())
    after = {
        name: len(client.search_model_versions(f"name='{name}'"))
        for name in ("co2-forecaster", "treasure-hunt-agent")
    }
    assert after["co2-forecaster"] == before["co2-forecaster"]
    assert after["treasure-hunt-agent"] == before["treasure-hunt-agent"] + 2
