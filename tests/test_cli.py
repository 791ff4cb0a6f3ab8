"""The `trainyard` command line: help, user errors without tracebacks, the models listing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from trainyard.cli import app
from trainyard.environment import ProjectPaths, configure_environment, free_port

runner = CliRunner()
PREPARED = "data/forecast/prepared/series.parquet"


def _forecast_section() -> dict:
    return {
        "dataset": {
            "name": "sales.csv",
            "time_column": "day",
            "target": "units",
            "series_columns": ["store"],
            "frequency": "D",
            "season_length": 7,
        },
        "windows": {
            "encoder_length": 8,
            "horizon": 4,
            "validation_length": 8,
            "holdout_length": 8,
        },
    }


def _project(tmp_path: Path, table: pd.DataFrame) -> Path:
    table.to_csv(tmp_path / "sales.csv", index=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"forecast": _forecast_section()}))
    return path


def _sales(days: int = 60) -> pd.DataFrame:
    frames = []
    for store in ("north", "south"):
        frames.append(
            pd.DataFrame(
                {
                    "day": pd.date_range("2024-01-01", periods=days, freq="D"),
                    "store": store,
                    "units": [10.0 + (i % 7) + 0.01 * i for i in range(days)],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = result.output[result.output.index("Commands") :]
    listed = {line.strip("│ ").split(" ")[0] for line in commands.splitlines()}
    assert {"run", "prepare", "train", "evaluate", "models", "datasets"} <= listed


def test_prepare_writes_the_prepared_panel(tmp_path: Path):
    params = _project(tmp_path, _sales())
    result = runner.invoke(app, ["prepare", "--family", "forecast", "--params", str(params)])
    assert result.exit_code == 0, result.output
    prepared = pd.read_parquet(tmp_path / PREPARED)
    assert sorted(prepared["series_id"].unique()) == ["north", "south"]
    assert (prepared.groupby("series_id")["split"].value_counts().loc[("north", "holdout")]) == 8


def test_bad_row_gives_a_clear_error_and_exit_code_2(tmp_path: Path):
    table = _sales().astype({"units": object})
    table.loc[65, "units"] = "n/a"  # data row 66: the south store's 6th day
    params = _project(tmp_path, table)
    result = runner.invoke(app, ["prepare", "--params", str(params)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "'units'" in result.output and "rows 66" in result.output
    assert "south" in result.output
    assert not (tmp_path / PREPARED).exists()


def test_unknown_profile_is_a_user_error(tmp_path: Path):
    params = _project(tmp_path, _sales())
    result = runner.invoke(app, ["prepare", "--params", str(params), "--profile", "nope"])
    assert result.exit_code == 2
    assert "no profile 'nope'" in result.output


def test_old_top_level_forecast_keys_are_a_user_error(tmp_path: Path):
    _sales().to_csv(tmp_path / "sales.csv", index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_forecast_section()))  # dataset: and windows: at the top
    result = runner.invoke(app, ["prepare", "--params", str(params)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "unknown section(s) dataset, windows" in result.output
    assert "go under forecast:" in result.output


def test_unknown_family_is_a_user_error(tmp_path: Path):
    params = _project(tmp_path, _sales())
    result = runner.invoke(app, ["prepare", "--params", str(params), "--family", "audio"])
    assert result.exit_code == 2
    assert "unknown family 'audio'" in result.output


def test_evaluate_before_train_names_the_missing_step(tmp_path: Path):
    params = _project(tmp_path, _sales())
    result = runner.invoke(app, ["evaluate", "--params", str(params), "--family", "forecast"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "trainyard train --family forecast" in result.output


@pytest.fixture
def fresh_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    configure_environment(ProjectPaths(tmp_path))
    return MlflowClient()


def test_models_lists_versions_aliases_and_data_version(
    fresh_registry: MlflowClient, tmp_path: Path
):
    params = _project(tmp_path, _sales())
    empty = runner.invoke(app, ["models", "--params", str(params)])
    assert "No registered models yet" in empty.output
    fresh_registry.create_registered_model("sales-forecaster")
    fresh_registry.create_model_version(
        "sales-forecaster",
        "file:///nowhere",
        tags={"model": "tcn", "eval_mase": "0.4321", "data_version": "abcdef1234567890"},
    )
    fresh_registry.set_registered_model_alias("sales-forecaster", "champion", "1")
    result = runner.invoke(app, ["models", "--params", str(params)])
    assert result.exit_code == 0, result.output
    for text in ("sales-forecaster", "champion", "tcn", "0.4321", "abcdef123456"):
        assert text in result.output


@pytest.mark.slow
@pytest.mark.parametrize("orchestrator", [[], ["--no-orchestrator"]])
def test_run_with_bad_input_prints_only_the_error(tmp_path: Path, orchestrator: list[str]):
    import os
    import subprocess

    table = _sales()
    table.loc[[3, 4], "day"] = table.loc[2, "day"]  # rows 3-5 share a day
    params = _project(tmp_path, table)
    env = {**os.environ, "TRAINYARD_STATE_DIR": str(tmp_path / "state")}
    env.pop("PREFECT_HOME")  # the run must place it under its own state directory
    done = subprocess.run(
        ["trainyard", "run", "--params", str(params), "--family", "forecast", *orchestrator],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "duplicate (series, time) rows" in output and "rows 3, 4, 5" in output
    assert "Traceback" not in output and "CancelledError" not in output
    assert not (tmp_path / PREPARED).exists()
    if not orchestrator:  # under Prefect, its home stayed in the project's state directory
        assert (tmp_path / "state/prefect").is_dir()


@pytest.mark.parametrize(
    "variable, args, message",
    [
        ("MLFLOW_TRACKING_URI", [], "no MLflow tracking server answers"),
        ("PREFECT_API_URL", [], "no Prefect server answers"),
        ("MLFLOW_TRACKING_URI", ["--no-orchestrator"], "no MLflow tracking server answers"),
    ],
)
def test_a_dead_server_is_one_clear_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, args: list[str], message: str
):
    params = _project(tmp_path, _sales())
    url = f"http://127.0.0.1:{free_port()}" + ("/api" if variable == "PREFECT_API_URL" else "")
    monkeypatch.setenv(variable, url)
    result = runner.invoke(
        app, ["run", "--params", str(params), "--family", "forecast", *args], env={variable: url}
    )
    assert result.exit_code == 2, result.output
    folded = " ".join(result.output.split())
    assert f"{variable}={url}: {message}" in folded and "Traceback" not in folded
    assert not (tmp_path / "data").exists()  # nothing prepared


def test_the_prefect_server_is_not_needed_without_the_orchestrator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from trainyard.environment import check_servers

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_servers(prefect=False)  # no error: the run would not call Prefect
