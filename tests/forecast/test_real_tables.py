"""Real tables that ship inside statsmodels, written as users get them, read zero-config:
inferred keys and the prepared series (no training: fast). They are the cases a sweep of real
files found failing: a World Bank wide file with empty and sparse countries (and its raw
download's preamble), a long panel with float years, and a target named by a dotted code."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest

from trainyard.tasks.forecast.config import params_from_dict
from trainyard.tasks.forecast.infer import Pins, infer_file
from trainyard.tasks.forecast.prepare import PREPARED_FILE, prepare, read_prepared


def dataset(name: str) -> pd.DataFrame:
    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


def prepared(root: Path, name: str, inference) -> tuple[pd.DataFrame, dict]:
    params = params_from_dict(
        {"dataset": {"name": name, **inference.dataset}, "windows": inference.windows}
    )
    prepare(params, root, root / "prepared")
    return read_prepared(root / "prepared" / PREPARED_FILE)


@pytest.fixture(scope="module")
def fertility() -> pd.DataFrame:
    return dataset("fertility")


@pytest.mark.parametrize("raw_download", [False, True])
def test_world_bank_fertility_runs_zero_config(
    tmp_path: Path, fertility: pd.DataFrame, raw_download: bool
) -> None:
    text = fertility.to_csv(index=False)
    if raw_download:  # as data.worldbank.org serves it: four lines above, a comma ending each
        lines = [line + "," for line in text.splitlines()]
        text = (
            '"Data Source","World Development Indicators",\n\n"Last Updated Date","2024-06-28",\n\n'
        )
        text += "\n".join(lines) + "\n"
    (tmp_path / "fertility.csv").write_text(text)

    inference = infer_file("fertility.csv", tmp_path)

    assert inference.dataset["layout"] == "dates_as_columns"
    assert inference.dataset["series_columns"] == ["Country Name"]
    assert inference.dataset["frequency"] == "YS-JAN"
    assert inference.dataset["missing_target"] == "gap"
    assert inference.dataset["short_series"] == "drop"
    table, meta = prepared(tmp_path, "fertility.csv", inference)
    empty = fertility.set_index("Country Name").iloc[:, 3:].isna().all(axis=1)
    left_out = set(meta["left_out_series"])
    assert set(empty.index[empty]) <= left_out  # no value at all
    assert "Isle of Man" in left_out  # three values over 42 years
    assert table["series_id"].nunique() == len(fertility) - len(left_out) > 150
    aruba = table[table["series_id"] == "Aruba"].sort_values("date")
    assert aruba["date"].iloc[0] == pd.Timestamp("1960-01-01")
    assert aruba["value"].iloc[0] == pytest.approx(4.82)


def test_grunfeld_panel_of_float_years_runs_with_its_target_named(tmp_path: Path) -> None:
    dataset("grunfeld").to_csv(tmp_path / "grunfeld.csv", index=False)  # year as 1935.0

    inference = infer_file("grunfeld.csv", tmp_path, Pins(target="invest"))

    assert inference.dataset["time_column"] == "year"
    assert inference.dataset["series_columns"] == ["firm"]
    assert inference.dataset["frequency"] == "YS-JAN"
    table, _ = prepared(tmp_path, "grunfeld.csv", inference)
    assert table["series_id"].nunique() == 11 and len(table) == 220
    assert table["year"].min() == pd.Timestamp("1935-01-01")


def test_elec_equip_with_a_dotted_target_name_prepares(tmp_path: Path) -> None:
    frame = dataset("elec_equip")
    frame.index.name = "month"
    frame.reset_index().to_csv(tmp_path / "elec_equip.csv", index=False)

    inference = infer_file("elec_equip.csv", tmp_path)

    assert inference.dataset["target"] == "STS.M.I7.W.TOVT.NS0016.4.000"
    assert inference.dataset["frequency"] == "MS" and inference.dataset["season_length"] == 12
    assert inference.windows["horizon"] == 12
    table, _ = prepared(tmp_path, "elec_equip.csv", inference)
    assert len(table) == len(frame)
