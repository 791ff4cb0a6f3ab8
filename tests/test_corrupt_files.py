"""A prepared file that was cut short, emptied or replaced is refused by the stage reading it
with one paragraph naming the file and how to restore it, never a pyarrow traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from trainyard.cli import app
from trainyard.errors import DataError
from trainyard.tasks.families import get_family
from trainyard.tasks.prepared import write_table

runner = CliRunner()
PREPARED_FILES = {
    "forecast": "series.parquet",
    "rl": "scenarios.parquet",
    "text": "corpus.parquet",
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign(path: Path) -> None:
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)  # Parquet, but not from `trainyard prepare`


DAMAGE = {"truncated": _truncate, "empty": _empty, "foreign": _foreign}
SAYS = {
    "truncated": "the prepared file cannot be read, it is truncated or damaged",
    "empty": "the prepared file is empty (0 bytes)",
    "foreign": "holds no record of how it was prepared",
}


def _assert_advice(message: str, path: Path, family: str, damage: str) -> None:
    assert message.startswith(f"{path}: {SAYS[damage]}")
    assert f"run `trainyard prepare --family {family}` again to rewrite it" in message
    assert "`dvc checkout`" in message
    assert "\n" not in message.strip()  # one paragraph


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("family", PREPARED_FILES)
def test_a_damaged_prepared_file_names_itself_and_the_prepare_command(
    tmp_path: Path, family: str, damage: str
) -> None:
    path = tmp_path / PREPARED_FILES[family]
    write_table(pd.DataFrame({"x": np.arange(1000)}), {"source": "test"}, path)
    DAMAGE[damage](path)
    chosen = get_family(family)

    with pytest.raises(DataError) as caught:
        chosen.prepared(chosen.section.from_dict({}), tmp_path)

    _assert_advice(str(caught.value), path, family, damage)


def _forecast_project(root: Path) -> Path:
    days = 60
    table = pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=days, freq="D"),
            "units": [10.0 + (i % 7) + 0.01 * i for i in range(days)],
        }
    )
    table.to_csv(root / "sales.csv", index=False)
    section = {
        "dataset": {
            "name": "sales.csv",
            "time_column": "day",
            "target": "units",
            "frequency": "D",
            "season_length": 7,
        },
        "windows": {
            "encoder_length": 8,
            "horizon": 4,
            "validation_length": 8,
            "holdout_length": 8,
        },
        "train": {"models": ["lstm"], "max_epochs": 1},
    }
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"forecast": section}))
    return params


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_train_and_evaluate_on_a_damaged_prepared_file_are_one_clear_error(
    tmp_path: Path, damage: str
) -> None:
    params = _forecast_project(tmp_path)
    prepared = runner.invoke(app, ["prepare", "--family", "forecast", "--params", str(params)])
    assert prepared.exit_code == 0, prepared.output
    path = tmp_path / "data" / "forecast" / "prepared" / "series.parquet"
    DAMAGE[damage](path)
    models = tmp_path / "data" / "forecast" / "models"

    trained = runner.invoke(app, ["train", "--family", "forecast", "--params", str(params)])

    assert trained.exit_code == 2, trained.output
    assert "Traceback" not in trained.output
    message = " ".join(trained.output.replace("error:", "", 1).split())
    _assert_advice(message, path, "forecast", damage)
    assert not any(models.glob("*/*")), "no model may be trained on a damaged file"

    models.mkdir(parents=True, exist_ok=True)
    (models / "training.json").write_text("[]")  # as if a training had finished
    evaluated = runner.invoke(app, ["evaluate", "--family", "forecast", "--params", str(params)])

    assert evaluated.exit_code == 2, evaluated.output
    assert "Traceback" not in evaluated.output
    assert SAYS[damage] in " ".join(evaluated.output.split())
