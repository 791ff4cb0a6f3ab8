"""Predicting with registered models: `trainyard predict` on files, and `mlflow models serve`
answering HTTP requests, for a real registered version of every family; and the errors a
user meets (a missing column, a file that is not UTF-8, a bad value) named where they are."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.commands import BIN, run_trainyard
from tests.conftest import ROOT
from tests.test_servers import _serve
from trainyard.cli import _write_predictions
from trainyard.environment import free_port
from trainyard.errors import DataError, UserError
from trainyard.tasks.family import read_input_table
from trainyard.tasks.forecast.datasets import co2_weekly
from trainyard.tasks.rl.treasure_hunt import Action
from trainyard.tasks.text.family import TEXT

FORECASTER, AGENT, LANGUAGE_MODEL = "co2-forecaster", "treasure-hunt-agent", "python-docs-lm"
HORIZON = 12  # params.yaml's forecast windows.horizon
OBSERVATIONS = [f"agent{a}_obs{d}" for a in range(2) for d in range(4)]


def _tiny_params() -> dict[str, Any]:
    """Returns params.yaml with one model per family and the smallest budgets that train."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("profiles")
    params["register"]["experiment"] = ""
    forecast, rl, text = params["forecast"], params["rl"], params["text"]
    forecast["train"].update(
        models=["lstm"], max_epochs=1, min_steps=0, limit_train_batches=2, parallel=1
    )
    forecast["evaluate"].update(stride=8, classical="none")
    rl["scenarios"]["episodes"] = 16
    rl["train"].update(
        models=["dqn"],
        max_epochs=1,
        steps_per_epoch=20,
        num_envs=4,
        validation_episodes=4,
        parallel=1,
    )
    rl["train"]["dqn"].update(learning_starts=64, batch_size=16)
    text["train"].update(
        models=["lstm"], max_epochs=1, limit_train_batches=2, batch_size=8, bptt=32, parallel=1
    )
    text["train"]["lstm"].update(embedding_size=32, hidden_size=32, num_layers=1)
    text["evaluate"].update(max_ngram_order=2, sample_length=10)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Returns (root, env) of a project whose registry holds one tiny version of every family,
    each holding `champion` (set here: the gate rightly refuses such small models)."""
    root = tmp_path_factory.mktemp("predict")
    (root / "params.yaml").write_text(yaml.safe_dump(_tiny_params()))
    state = root / ".state"
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # uvicorn for `mlflow models serve`
    }
    env.pop("PREFECT_API_URL", None)
    done = run_trainyard(["run", "--no-orchestrator"], root, env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    uri = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in (FORECASTER, AGENT, LANGUAGE_MODEL):
        version = client.get_model_version_by_alias(name, "challenger").version
        client.set_registered_model_alias(name, "champion", version)
    return root, env


def _predict(project, *args: str) -> subprocess.CompletedProcess:
    root, env = project
    return run_trainyard(["predict", *args], root, env)


def _refused(done: subprocess.CompletedProcess) -> str:
    """Returns the one-line error of a `trainyard predict` that failed as a user error
    (exit 2, no traceback)."""
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    return " ".join(done.stdout.split())


def _history() -> pd.DataFrame:
    """Returns the last 60 weeks of the co2 table, as a user's history table holds them."""
    history = co2_weekly().tail(60).reset_index(drop=True)
    assert history["co2"].tail(48).notna().all()  # a complete encoder window
    return history


def _states() -> pd.DataFrame:
    """Returns three treasure-hunt observations: own cell and nearest treasure, in [0, 1]."""
    rows = [[0.0, 0.0, 0.0, 1 / 7, 1.0, 1.0, 1.0, 6 / 7], [0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    return pd.DataFrame([*rows, rows[0]], columns=OBSERVATIONS)


@pytest.mark.slow
def test_predict_forecasts_horizon_steps_of_every_series_from_a_history_csv(project, tmp_path):
    history = _history()
    history.to_csv(tmp_path / "history.csv", index=False)
    done = _predict(
        project,
        f"{FORECASTER}@champion",
        "--input",
        str(tmp_path / "history.csv"),
        "--output",
        str(tmp_path / "out" / "forecast.csv"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{FORECASTER} v1" in done.stdout
    forecast = pd.read_csv(tmp_path / "out" / "forecast.csv", parse_dates=["date"])
    # The LSTM's conformal 80% interval as its outer quantiles.
    assert list(forecast.columns) == ["series", "date", "step", "prediction", "q10", "q50", "q90"]
    assert (forecast["q10"] <= forecast["prediction"]).all()
    assert (forecast["prediction"] <= forecast["q90"]).all()
    assert len(forecast) == HORIZON and forecast["series"].nunique() == 1
    assert list(forecast["step"]) == list(range(1, HORIZON + 1))
    weeks = pd.date_range(history["date"].iloc[-1], periods=HORIZON + 1, freq="W-SAT")[1:]
    assert list(forecast["date"]) == list(weeks)
    assert np.isfinite(forecast["prediction"]).all()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["forecast.csv"]  # no temp file


@pytest.mark.slow
def test_predict_prints_every_agents_action_per_observation_row(project, tmp_path):
    _states().to_csv(tmp_path / "states.csv", index=False)
    done = _predict(project, f"{AGENT}@champion", "--input", str(tmp_path / "states.csv"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent0_action" in done.stdout and "agent1_action" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    actions = [[int(cell) for cell in line.strip("│ ").split("│")] for line in rows]
    assert len(actions) == 3 and all(a in range(len(Action)) for row in actions for a in row)
    assert actions[0] == actions[2]  # greedy: the same state, the same actions


@pytest.mark.slow
def test_predict_continues_prompts_of_a_text_file_with_params(project, tmp_path):
    (tmp_path / "prompts.txt").write_text("The \ndef \n\nA list \n", encoding="utf-8")
    done = _predict(
        project,
        f"{LANGUAGE_MODEL}@champion",
        "--input",
        str(tmp_path / "prompts.txt"),
        "--output",
        str(tmp_path / "continued.json"),
        "--param",
        "length=25",
        "--param",
        "temperature=0",  # greedy; "0" is converted to the double the model declares
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = json.loads((tmp_path / "continued.json").read_text(encoding="utf-8"))
    assert [r["prompt"] for r in records] == ["The ", "def ", "A list "]
    assert [len(r["continuation"]) for r in records] == [25, 25, 25]


@pytest.mark.slow
def test_a_missing_column_is_named_with_the_columns_the_model_reads(project, tmp_path):
    _history().rename(columns={"co2": "CO2"}).to_csv(tmp_path / "history.csv", index=False)
    done = _predict(
        project,
        f"{FORECASTER}@champion",
        "--input",
        str(tmp_path / "history.csv"),
        "--output",
        str(tmp_path / "forecast.csv"),
    )
    message = _refused(done)
    assert f"{tmp_path / 'history.csv'}: no column 'co2'" in message
    assert "the model reads date (datetime), co2 (double)" in message
    assert "the file has date, CO2" in message
    assert not (tmp_path / "forecast.csv").exists()


@pytest.mark.slow
def test_a_csv_that_is_not_utf8_is_named_with_the_byte_and_line(project, tmp_path):
    (tmp_path / "prompts.csv").write_bytes("prompt\nThe caf\xe9 \n".encode("latin-1"))
    done = _predict(project, f"{LANGUAGE_MODEL}@champion", "--input", str(tmp_path / "prompts.csv"))
    message = _refused(done)
    assert f"{tmp_path / 'prompts.csv'}: not UTF-8 at byte offset 14 (line 2: byte 0xe9)" in message


@pytest.mark.slow
def test_a_value_that_is_no_number_is_named_by_column_and_line(project, tmp_path):
    states = _states().astype(object)
    states.loc[1, "agent0_obs1"] = "far"
    states.to_csv(tmp_path / "states.csv", index=False)
    done = _predict(
        project,
        f"{AGENT}@champion",
        "--input",
        str(tmp_path / "states.csv"),
        "--output",
        str(tmp_path / "actions.parquet"),
    )
    message = _refused(done)
    assert f"{tmp_path / 'states.csv'}: column 'agent0_obs1', line 3: 'far' is not a double" in (
        message
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states.csv"]


def _history_split() -> dict[str, Any]:
    history = _history()
    history["date"] = history["date"].dt.strftime("%Y-%m-%d")
    return {"dataframe_split": json.loads(history.to_json(orient="split", index=False))}


# name, request body, check of the "predictions" answered
SERVED = {
    FORECASTER: (
        _history_split,
        lambda out: (
            len(out) == HORIZON and [row["step"] for row in out] == list(range(1, HORIZON + 1))
        ),
    ),
    AGENT: (
        lambda: {"dataframe_records": _states().to_dict(orient="records")},
        lambda out: (
            len(out) == 3
            and all(set(row) == {"agent0_action", "agent1_action"} for row in out)
            and all(a in range(len(Action)) for row in out for a in row.values())
        ),
    ),
    LANGUAGE_MODEL: (
        lambda: {
            "dataframe_split": {"columns": ["prompt"], "data": [["The "], ["def "]]},
            "params": {"length": 15, "temperature": 0.0},
        },
        lambda out: [len(row["continuation"]) for row in out] == [15, 15],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SERVED))
def test_mlflow_models_serve_answers_invocations_of_the_champion(project, tmp_path, name):
    _, env = project
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{name}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    body, check = SERVED[name]
    with _serve(command, f"{url}/ping", env, tmp_path / "serve.log"):
        answer = httpx.post(f"{url}/invocations", json=body(), timeout=120)
        assert answer.status_code == 200, answer.text
        assert check(answer.json()["predictions"]), answer.text
        wrong = httpx.post(
            f"{url}/invocations", json={"dataframe_records": [{"nothing": 1}]}, timeout=120
        )
        assert wrong.status_code == 400 and "missing inputs" in wrong.text


def test_read_input_takes_csv_parquet_json_records_and_serving_bodies(tmp_path):
    frame = pd.DataFrame({"date": ["2001-01-06", "2001-01-13"], "co2": [370.1, 370.4]})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    (tmp_path / "records.json").write_text(frame.to_json(orient="records"))
    (tmp_path / "columns.json").write_text(json.dumps(frame.to_dict(orient="list")))
    split = json.loads(frame.to_json(orient="split", index=False))
    (tmp_path / "split.json").write_text(json.dumps({"dataframe_split": split}))
    body = {"dataframe_records": frame.to_dict(orient="records"), "params": {"x": 1}}
    (tmp_path / "body.json").write_text(json.dumps(body))
    names = ["a.csv", "a.parquet", "a.jsonl", "records.json", "columns.json", "split.json"]
    for name in [*names, "body.json"]:
        read = read_input_table(tmp_path / name)
        assert list(read.columns) == ["date", "co2"], name
        assert list(read["co2"]) == [370.1, 370.4], name
        assert [str(v)[:10] for v in read["date"]] == ["2001-01-06", "2001-01-13"], name


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: no such file"),
        ("empty.csv", b"", "empty.csv: the file is empty"),
        ("table.xlsx", b"PK", "table.xlsx: cannot read .xlsx as model input"),
        ("scalar.json", b"42", "scalar.json: not a table (the file holds a JSON int)"),
        ("broken.json", b'[{"a": 1', "broken.json: cannot be read as json"),
        ("latin.csv", "a\n\xe9\n".encode("latin-1"), "latin.csv: not UTF-8 at byte offset 2"),
    ],
)
def test_read_input_names_the_file_it_cannot_read(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)):
        read_input_table(tmp_path / name)


def test_the_text_family_reads_one_prompt_per_line_or_a_prompt_column_as_text(tmp_path):
    (tmp_path / "prompts.txt").write_text("The \r\n\ndef \nNA\n", encoding="utf-8")
    assert list(TEXT.read_input(tmp_path / "prompts.txt")["prompt"]) == ["The ", "def ", "NA"]
    (tmp_path / "prompts.csv").write_text("prompt\nNA\n42\n", encoding="utf-8")
    assert list(TEXT.read_input(tmp_path / "prompts.csv")["prompt"]) == ["NA", "42"]
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="blank.txt: no prompts"):
        TEXT.read_input(tmp_path / "blank.txt")
    with pytest.raises(DataError, match=r"notes.md: cannot read .md as prompts; give a .txt"):
        TEXT.read_input(tmp_path / "notes.md")


def test_a_failed_write_leaves_the_output_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "forecast.parquet"
    target.write_text("yesterday's forecast")
    unwritable = pd.DataFrame({"prediction": [1.5, "n/a"]})  # Parquet refuses mixed types
    with pytest.raises(UserError, match="forecast.parquet: cannot write the predictions"):
        _write_predictions(unwritable, target)
    assert target.read_text() == "yesterday's forecast"
    assert [p.name for p in tmp_path.iterdir()] == ["forecast.parquet"]


def test_fitting_the_input_to_the_signature_raises_no_pandas_warning(tmp_path: Path) -> None:
    # MLflow assigns into the frame it converts: given a column slice, pandas warned the user
    # (SettingWithCopyWarning) on every `trainyard predict`.
    import warnings

    import pandas as pd
    from mlflow.types.schema import ColSpec, Schema

    from trainyard.cli import _fit_signature

    frame = pd.DataFrame({"date": ["2024-01-01", "2024-02-01"], "value": ["1.5", "2"]})
    schema = Schema([ColSpec("datetime", "date"), ColSpec("double", "value")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = _fit_signature(frame, schema, tmp_path / "history.csv")
    assert fitted["value"].tolist() == [1.5, 2.0]
    assert str(fitted["date"].dtype).startswith("datetime64")
