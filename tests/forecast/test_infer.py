"""Zero-config tables: the forecast keys of a CSV are inferred (time column, target, series
columns, frequency, season length, windows), pins override inference, ambiguity is an error
naming the candidates and the flag, and the inferred keys pass the prepare step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import ROOT
from trainyard.cli import app
from trainyard.config import read_params_file
from trainyard.errors import ConfigError, DataError
from trainyard.tasks.forecast.config import load_params, params_from_dict
from trainyard.tasks.forecast.infer import Inference, Pins, infer_file, pins_from_section
from trainyard.tasks.forecast.prepare import PREPARED_FILE, prepare, read_prepared

runner = CliRunner()


def seasonal(n: int, period: int, seed: int = 0) -> np.ndarray:
    """Returns n values with a trend, a season of `period` steps and noise (never constant)."""
    steps = np.arange(n)
    noise = np.random.default_rng(seed).normal(size=n)
    return 100 + 0.3 * steps + 10 * np.sin(2 * np.pi * steps / period) + noise


def monthly(n: int = 120) -> pd.DataFrame:
    """Returns one monthly series: month-start dates as ISO text and sales."""
    return pd.DataFrame(
        {
            "month": pd.date_range("2015-01-01", periods=n, freq="MS").strftime("%Y-%m-%d"),
            "sales": seasonal(n, 12),
        }
    )


def daily_panel(lengths: dict[str, int]) -> pd.DataFrame:
    """Returns a long daily panel, one series per store, all ending on the same day."""
    pieces = []
    for i, (store, n) in enumerate(lengths.items()):
        days = pd.date_range(end="2024-06-30", periods=n, freq="D")
        pieces.append(
            pd.DataFrame(
                {"day": days.strftime("%Y-%m-%d"), "store": store, "units": seasonal(n, 7, i)}
            )
        )
    return pd.concat(pieces, ignore_index=True)


def write(root: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = root / name
    frame.to_csv(path, index=False)
    return path


def infer(root: Path, frame: pd.DataFrame, pins: Pins | None = None) -> Inference:
    return infer_file(str(write(root, frame)), root, pins)


def prepared_with(root: Path, inference: Inference) -> pd.DataFrame:
    """Returns the table the prepare step writes with the inferred keys (it raises if they do
    not fit the data)."""
    dataset = {"name": "data.csv", "missing_target": "gap", **inference.dataset}
    params = params_from_dict({"dataset": dataset, "windows": inference.windows})
    prepare(params, root, root / "prepared")
    table, _ = read_prepared(root / "prepared" / PREPARED_FILE)
    return table


# --- what is inferred --------------------------------------------------------------------------


def test_a_single_monthly_series_is_inferred_exactly(tmp_path: Path) -> None:
    inference = infer(tmp_path, monthly(120))
    assert inference.dataset == {
        "layout": "long",
        "time_column": "month",
        "target": "sales",
        "series_columns": [],
        "known_covariates": [],
        "unknown_covariates": [],
        "frequency": "MS",
        "season_length": 12,
        "missing_target": "error",  # no empty target cell
        "short_series": "error",  # one series, and it holds the windows
        "flat_series": "error",  # it is not constant
    }
    # Horizon 12 (a year of months); encoder max(2 x 12, 12); validation and holdout a fifth
    # of 120 steps at most, 2 x horizon at least wanted.
    assert inference.windows == {
        "encoder_length": 24,
        "shorter_encoders": [],  # 72 train steps hold no year of 48-step windows (docs/data.md)
        "horizon": 12,
        "validation_length": 24,
        "holdout_length": 24,
    }
    text = "\n".join(inference.lines())
    for flag in ("--time-column", "--target", "--frequency", "--season-length", "--horizon"):
        assert flag in text


def test_a_long_panel_gets_its_id_column(tmp_path: Path) -> None:
    frame = daily_panel({"north": 200, "south": 150}).assign(store_number=0)
    frame.loc[frame["store"] == "south", "store_number"] = 1  # constant per series: not a target
    inference = infer(tmp_path, frame)
    assert inference.dataset["series_columns"] == ["store"]
    assert inference.dataset["target"] == "units"
    assert inference.dataset["frequency"] == "D"
    assert inference.dataset["season_length"] == 7
    # The shortest series (150 steps) bounds the windows: horizon 14 is kept (<= 150 / 8).
    assert inference.windows["horizon"] == 14
    assert "shortest series, south, has 150 steps" in "\n".join(inference.lines())


def test_empty_target_cells_make_missing_target_gap(tmp_path: Path) -> None:
    frame = daily_panel({"north": 120, "south": 100})
    frame.loc[[5, 130], "units"] = np.nan  # one in each series
    inference = infer(tmp_path, frame)
    assert inference.dataset["missing_target"] == "gap"
    assert "2 empty target cell(s), the first at 2024-03-08 00:00:00 in series north" in "\n".join(
        inference.lines()
    )
    table = prepared_with(tmp_path, inference)
    assert table["units"].isna().sum() == 2  # missing steps, never filled
    pinned = infer(tmp_path, frame, Pins(missing_target="error"))
    assert pinned.dataset["missing_target"] == "error"


def test_gaps_keep_the_frequency_of_the_most_common_step(tmp_path: Path) -> None:
    frame = monthly(120).drop(index=[7, 40, 41, 90]).reset_index(drop=True)
    inference = infer(tmp_path, frame)
    assert inference.dataset["frequency"] == "MS"
    table = prepared_with(tmp_path, inference)
    assert len(table) == 120 and table["sales"].isna().sum() == 4  # gaps are missing steps


def test_a_parquet_table_with_millisecond_times_and_gaps_is_daily(tmp_path: Path) -> None:
    days = pd.date_range("2024-01-01", periods=200, freq="D").astype("datetime64[ms]")
    frame = pd.DataFrame({"when": days, "visits": seasonal(200, 7)}).drop(index=[3, 50, 51])
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    inference = infer_file("data.parquet", tmp_path)
    assert inference.dataset["frequency"] == "D"
    assert inference.dataset["season_length"] == 7


def test_a_short_series_gets_a_shorter_horizon_and_no_season(tmp_path: Path) -> None:
    weeks = pd.date_range("2021-01-02", periods=100, freq="W-SAT")
    frame = pd.DataFrame({"week": weeks, "demand": seasonal(100, 52)})
    inference = infer(tmp_path, frame)
    assert inference.dataset["frequency"] == "W-SAT"
    # 100 weeks leave fewer than two 52-week seasons for training: season 1, with the reason.
    assert inference.dataset["season_length"] == 1
    assert "fewer than two seasons" in "\n".join(inference.lines())
    assert inference.windows["horizon"] == 12


# --- series too short for the usual windows ---------------------------------------------------


def test_a_few_short_series_are_left_out_rather_than_cutting_every_window(
    tmp_path: Path,
) -> None:
    # Seven stores of 200 days and one opened 20 days ago: fitting the windows to the new store
    # would cut the horizon to 2 days and drop the weekly season for all eight.
    lengths = {f"store{i}": 200 for i in range(7)} | {"new": 20}
    inference = infer(tmp_path, daily_panel(lengths))
    assert inference.dataset["short_series"] == "drop"
    assert inference.dataset["season_length"] == 7
    assert inference.windows["horizon"] == 14
    text = "\n".join(inference.lines())
    assert "1 of 8 series is shorter than the" in text and "new (20 steps)" in text
    assert "shortest series kept, store0, has 200 steps" in text

    table = prepared_with(tmp_path, inference)
    assert sorted(table["store"].unique()) == [f"store{i}" for i in range(7)]
    _, meta = read_prepared(tmp_path / "prepared" / PREPARED_FILE)
    assert meta["left_out_series"] == ["new"]

    # Pinned to error, the windows fit the shortest series as before.
    fitted = infer(tmp_path, daily_panel(lengths), Pins(short_series="error"))
    assert fitted.dataset["short_series"] == "error"
    assert fitted.windows["horizon"] == 2 and fitted.dataset["season_length"] == 1


def test_many_short_series_cut_the_windows_instead(tmp_path: Path) -> None:
    # Two of four short (more than MAX_LEFT_OUT): nothing is left out, the windows fit 40 days.
    lengths = {"a": 200, "b": 200, "c": 40, "d": 45}
    inference = infer(tmp_path, daily_panel(lengths))
    assert inference.dataset["short_series"] == "error"
    assert inference.windows["horizon"] == 5  # 40 // 8
    assert len(prepared_with(tmp_path, inference)["store"].unique()) == 4
    # Pinned to drop, the two short ones go and the usual windows stay.
    dropped = infer(tmp_path, daily_panel(lengths), Pins(short_series="drop"))
    assert dropped.windows["horizon"] == 14
    assert sorted(prepared_with(tmp_path, dropped)["store"].unique()) == ["a", "b"]


def test_a_few_series_flat_over_their_training_part_are_left_out(tmp_path: Path) -> None:
    # A retail panel: one product never sold until the last weeks (zeros over its whole
    # training part), which MASE cannot score; seven others sell.
    frame = daily_panel({f"store{i}": 200 for i in range(8)})
    zero = frame["store"] == "store3"
    frame.loc[zero, "units"] = np.where(np.arange(200) < 180, 0.0, 5.0)
    inference = infer(tmp_path, frame)
    assert inference.dataset["flat_series"] == "drop"
    assert "1 of 8 series holds one value over its training part" in "\n".join(inference.lines())
    table = prepared_with(tmp_path, inference)
    assert sorted(table["store"].unique()) == [f"store{i}" for i in range(8) if i != 3]
    _, meta = read_prepared(tmp_path / "prepared" / PREPARED_FILE)
    assert meta["left_out_series"] == ["store3"]

    # Pinned to error, prepare refuses the table naming the series and the way out, and
    # writes nothing.
    root = tmp_path / "pinned"
    root.mkdir()
    pinned = infer(root, frame, Pins(flat_series="error"))
    with pytest.raises(DataError, match=r"(?s)store3.*flat_series: drop"):
        prepared_with(root, pinned)
    assert not (root / "prepared" / PREPARED_FILE).exists()


def test_every_series_flat_is_an_error_even_under_drop(tmp_path: Path) -> None:
    frame = daily_panel({"a": 200, "b": 200})
    frame["units"] = np.where(np.arange(len(frame)) % 200 < 180, 0.0, frame["units"])
    inference = infer(tmp_path, frame, Pins(flat_series="drop"))
    with pytest.raises(DataError, match=r"constant or repeats exactly.*series a, b"):
        prepared_with(tmp_path, inference)


# --- pins --------------------------------------------------------------------------------------


def test_pins_override_inference(tmp_path: Path) -> None:
    frame = monthly(120).assign(price=seasonal(120, 5, seed=3))
    inference = infer(tmp_path, frame, Pins(target="sales", horizon=6, season_length=4))
    assert inference.dataset["target"] == "sales"
    assert inference.dataset["season_length"] == 4
    assert inference.windows["horizon"] == 6
    assert "price" in "\n".join(inference.lines())  # named as a numeric column left out


def test_params_naming_the_same_file_pin_its_keys(tmp_path: Path) -> None:
    write(tmp_path, monthly(120))
    section = {
        "dataset": {"name": "data.csv", "target": "sales", "season_length": 6},
        "windows": {"encoder_length": 30, "horizon": 6, "validation_length": 18},
    }
    configured = pins_from_section(section, str(tmp_path / "data.csv"), tmp_path, "params.yaml")
    assert configured.season_length == 6 and configured.origin("target") == "params.yaml"
    inference = infer_file("data.csv", tmp_path, Pins.given({}, configured))
    assert inference.dataset["season_length"] == 6
    assert inference.windows == {
        "encoder_length": 30,
        "shorter_encoders": [],  # a pinned encoder is the only one
        "horizon": 6,
        "validation_length": 18,
        "holdout_length": 12,  # inferred: max(2 x horizon, season), within a fifth of 120
    }
    # Another file's keys describe that file: they pin nothing.
    assert pins_from_section(section, "other.csv", tmp_path, "params.yaml") == Pins()
    # A horizon on the command line refits the windows params.yaml sized for its own.
    refit = infer_file("data.csv", tmp_path, Pins.given({"horizon": 3}, configured))
    assert refit.windows["horizon"] == 3
    assert refit.windows["encoder_length"] == 12 and refit.windows["shorter_encoders"] == [6]


# --- ambiguity and unreadable tables -----------------------------------------------------------


def test_two_numeric_columns_need_a_target(tmp_path: Path) -> None:
    frame = monthly(60).assign(price=seasonal(60, 5, seed=3))
    with pytest.raises(ConfigError) as caught:
        infer(tmp_path, frame)
    message = str(caught.value)
    assert "data.csv" in message
    assert "sales" in message and "price" in message and "--target" in message


def test_two_date_columns_need_a_time_column(tmp_path: Path) -> None:
    frame = monthly(60)
    frame["shipped"] = pd.to_datetime(frame["month"]) + pd.Timedelta(days=3)
    with pytest.raises(ConfigError) as caught:
        infer(tmp_path, frame)
    message = str(caught.value)
    assert "month" in message and "shipped" in message and "--time-column" in message
    assert infer(tmp_path, frame, Pins(time_column="month")).dataset["frequency"] == "MS"


def test_two_id_columns_that_each_tell_series_apart_need_a_series_column(tmp_path: Path) -> None:
    frame = daily_panel({"north": 60, "south": 60})
    frame["code"] = frame["store"].str[:1].str.upper()
    with pytest.raises(ConfigError) as caught:
        infer(tmp_path, frame)
    message = str(caught.value)
    assert "store" in message and "code" in message and "--series-column" in message
    pinned = infer(tmp_path, frame, Pins(series_columns=["code"]))
    assert pinned.dataset["series_columns"] == ["code"]


def test_no_column_of_dates_is_a_data_error(tmp_path: Path) -> None:
    # Numbers that could be years, in a column not named so, are not taken for times.
    frame = pd.DataFrame({"obs": range(1960, 2020), "rain": seasonal(60, 4)})
    with pytest.raises(DataError, match="no column holds dates.*--time-column: years"):
        infer(tmp_path, frame)
    pinned = infer(tmp_path, frame, Pins(time_column="obs"))
    assert pinned.dataset["frequency"] == "YS-JAN"


def test_a_long_panel_of_years_as_numbers_runs_zero_config(tmp_path: Path) -> None:
    # World Bank's long format: country, year, value; a float year (1960.0) as a CSV with
    # empty cells elsewhere writes it.
    frame = pd.concat(
        [
            pd.DataFrame(
                {"Country": name, "Year": np.arange(1960.0, 2020.0), "gdp": seasonal(60, 5, i)}
            )
            for i, name in enumerate(["Chad", "Peru", "Laos"])
        ]
    )
    inference = infer(tmp_path, frame)
    assert inference.dataset["time_column"] == "Year"
    assert inference.dataset["series_columns"] == ["Country"]
    assert inference.dataset["frequency"] == "YS-JAN"
    assert "numbers named as times" in "\n".join(inference.lines())
    table = prepared_with(tmp_path, inference)
    assert table["Year"].min() == pd.Timestamp("1960-01-01") and len(table) == 180


def test_yyyymmdd_numbers_in_a_date_column_are_inferred(tmp_path: Path) -> None:
    frame = monthly(120)
    frame["month"] = frame["month"].str.replace("-", "").astype(int)
    inference = infer(tmp_path, frame.rename(columns={"month": "order_date"}))
    assert inference.dataset["time_column"] == "order_date"
    assert inference.dataset["frequency"] == "MS"


def test_a_series_too_short_for_any_windows_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has 8 steps, too few"):
        infer(tmp_path, monthly(8))


# --- the inferred keys pass prepare ------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(monthly(120), id="monthly"),
        pytest.param(monthly(30), id="short-monthly"),
        pytest.param(monthly(300), id="long-monthly"),  # encoder 48, shorter_encoders [24]
        pytest.param(daily_panel({"north": 400, "south": 90, "east": 45}), id="daily-panel"),
        pytest.param(
            pd.DataFrame(
                {
                    "time": pd.date_range("2024-01-01", periods=24 * 21, freq="h"),
                    "load": seasonal(24 * 21, 24),
                }
            ),
            id="hourly",
        ),
        pytest.param(
            pd.DataFrame(
                {
                    "quarter": pd.date_range("1990-03-31", periods=40, freq="QE-DEC"),
                    "gdp": seasonal(40, 4),
                }
            ),
            id="quarterly",
        ),
    ],
)
def test_inferred_windows_pass_prepare(tmp_path: Path, frame: pd.DataFrame) -> None:
    inference = infer(tmp_path, frame)
    table = prepared_with(tmp_path, inference)
    windows = inference.windows
    assert windows["encoder_length"] >= 1
    for split in ("validation", "holdout"):
        per_series = table[table["split"] == split].groupby("series_id").size()
        assert (per_series >= windows["horizon"] + 2).all()  # at least 3 rolling origins


# --- the command line --------------------------------------------------------------------------


def _project(tmp_path: Path) -> Path:
    """Returns a copy of the repo's params.yaml (forecasting co2) in tmp_path."""
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    return params


def test_prepare_runs_on_a_csv_given_with_dataset(tmp_path: Path) -> None:
    params = _project(tmp_path)
    csv = write(tmp_path, daily_panel({"north": 120, "south": 100}), "sales.csv")
    result = runner.invoke(
        app, ["prepare", "--params", str(params), "--dataset", str(csv), "--horizon", "7"]
    )
    assert result.exit_code == 0, result.output
    assert "series_columns: store" in result.output and "[pin: --series-column]" in result.output
    assert "horizon: 7 (set by --horizon)" in result.output
    prepared = pd.read_parquet(tmp_path / "data/forecast/prepared" / PREPARED_FILE)
    assert sorted(prepared["series_id"].unique()) == ["north", "south"]
    assert params.read_text() == (ROOT / "params.yaml").read_text()  # no edits


def test_pins_without_a_table_are_refused(tmp_path: Path) -> None:
    params = _project(tmp_path)
    result = runner.invoke(app, ["prepare", "--params", str(params), "--target", "units"])
    assert result.exit_code == 2
    assert "--target" in result.output and "--dataset FILE.csv" in result.output
    assert "Traceback" not in result.output


def test_an_ambiguous_table_is_one_error_naming_the_flag(tmp_path: Path) -> None:
    params = _project(tmp_path)
    frame = monthly(60).assign(price=seasonal(60, 5, seed=3))
    csv = write(tmp_path, frame, "sales.csv")
    result = runner.invoke(app, ["prepare", "--params", str(params), "--dataset", str(csv)])
    assert result.exit_code == 2
    assert "--target" in result.output and "price" in result.output
    assert not (tmp_path / "data").exists()


def test_init_writes_the_choices_into_params_and_keeps_the_rest(tmp_path: Path) -> None:
    params = _project(tmp_path)
    write(tmp_path, daily_panel({"north": 120, "south": 100}), "sales.csv")
    before = read_params_file(params)
    result = runner.invoke(
        app, ["init", str(tmp_path / "sales.csv"), "--params", str(params), "--horizon", "7"]
    )
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output
    loaded = load_params(params)
    assert loaded.dataset.name == "sales.csv"  # relative to the project root
    assert loaded.dataset.time_column == "day"
    assert loaded.dataset.target == "units"
    assert loaded.dataset.series_columns == ["store"]
    assert loaded.dataset.frequency == "D"
    assert loaded.dataset.season_length == 7
    assert loaded.windows.horizon == 7
    inference = infer_file("sales.csv", tmp_path, Pins(horizon=7))
    assert loaded.windows.model_dump() == inference.windows
    after = read_params_file(params)
    for section in ("run", "register", "rl", "text"):
        assert after[section] == before[section]
    assert after["forecast"]["train"] == before["forecast"]["train"]
    assert "# pandas offset alias of the time grid" in params.read_text()  # comments kept
    # The stage reads it as it is: prepare without --dataset.
    done = runner.invoke(app, ["prepare", "--params", str(params)])
    assert done.exit_code == 0, done.output


def test_init_creates_a_params_file_for_forecasting_only(tmp_path: Path) -> None:
    write(tmp_path, monthly(120), "sales.csv")
    params = tmp_path / "params.yaml"
    result = runner.invoke(app, ["init", str(tmp_path / "sales.csv"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(params.read_text())
    assert written["run"] == {"families": ["forecast"]}
    assert written["forecast"]["dataset"]["frequency"] == "MS"
    assert written["forecast"]["windows"]["horizon"] == 12


# --- spreadsheet exports -------------------------------------------------------------------------


def _export(frame: pd.DataFrame, separator: str, number: str) -> str:
    """Returns `frame` as CSV text the way a spreadsheet of that locale writes it."""
    lines = [separator.join(frame.columns)]
    for month, sales in frame.itertuples(index=False):
        lines.append(f"{month}{separator}{number.format(sales)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "scale", "rounding"),
    [
        pytest.param(
            lambda f: _export(f, ";", "{:.2f}").replace(".", ","), 1, 2, id="semicolon-dec-comma"
        ),
        pytest.param(lambda f: _export(f, ";", "{:.3f}"), 1, 3, id="semicolon-dec-point"),
        pytest.param(lambda f: _export(f, "\t", "{:.3f}"), 1, 3, id="tab"),
        pytest.param(lambda f: _export(f, "|", "{:.3f}"), 1, 3, id="pipe"),
        pytest.param(
            lambda f: _export(f.assign(sales=f["sales"] * 1000), ",", '"{:,.1f}"'),
            1000,
            1,
            id="comma-thousands",
        ),
        pytest.param(lambda f: f.to_csv(), 1, 6, id="saved-pandas-index"),
        pytest.param(lambda f: f.to_csv(index=False, lineterminator="\r\n"), 1, 6, id="crlf"),
        pytest.param(lambda f: f.to_csv(index=False) + ",\n,\n", 1, 6, id="trailing-empty-rows"),
        pytest.param(
            lambda f: (
                '"Data Source","Sales DB",\n\n"Last Updated","2024-06-28",\n\n'
                + f.to_csv(index=False)
            ),
            1,
            6,
            id="preamble",  # World Bank downloads start so
        ),
        pytest.param(
            lambda f: "Sales export\n" + _export(f, ";", "{:.2f}").replace(".", ","),
            1,
            2,
            id="title-line-semicolon",
        ),
        pytest.param(
            lambda f: "".join(line + ",\n" for line in f.to_csv(index=False).splitlines()),
            1,
            6,
            id="trailing-separator",  # an empty column without header
        ),
        pytest.param(
            lambda f: f.to_csv(index=False).replace("month,sales", " month , sales "),
            1,
            6,
            id="spaces-around-headers",
        ),
        pytest.param(
            lambda f: f.to_csv().replace(",month,sales", "month,sales"),
            1,
            6,
            id="r-write-table",  # row names without a header cell: pandas' index
        ),
    ],
)
def test_spreadsheet_exports_read_as_the_same_series(
    tmp_path: Path, text, scale: int, rounding: int
) -> None:
    frame = monthly(60)
    (tmp_path / "data.csv").write_text(text(frame), encoding="utf-8-sig")  # with a BOM
    inference = infer_file("data.csv", tmp_path)
    assert inference.dataset["time_column"] == "month" and inference.dataset["target"] == "sales"
    assert inference.dataset["frequency"] == "MS"
    table = prepared_with(tmp_path, inference)
    expected = (frame["sales"] * scale).round(rounding)
    np.testing.assert_allclose(table["sales"], expected, rtol=1e-6)


def test_zero_padded_codes_stay_text(tmp_path: Path) -> None:
    frame = daily_panel({"007": 60, "010": 60, "100": 60})
    inference = infer(tmp_path, frame)
    assert inference.dataset["series_columns"] == ["store"]
    assert "the only text column" in "\n".join(inference.lines())
    table = prepared_with(tmp_path, inference)
    assert sorted(table["store"].unique()) == ["007", "010", "100"]


def test_day_first_dates_are_read_day_first_for_the_whole_column(tmp_path: Path) -> None:
    frame = monthly(60)
    months = pd.to_datetime(frame["month"])
    # The first of each month, day first: pandas alone reads 01/02/2015 as 2 January.
    first_of_month = frame.assign(month=months.dt.strftime("%d/%m/%Y"))
    inference = infer(tmp_path, first_of_month)
    assert inference.dataset["frequency"] == "MS"
    table = prepared_with(tmp_path, inference)
    assert table["month"].tolist() == months.tolist()
    # Daily, day first: 13/01/2020 decides it, and 01/02/2020 is then 1 February.
    days = pd.date_range("2020-01-01", periods=90, freq="D")
    daily = pd.DataFrame({"day": days.strftime("%d/%m/%Y"), "units": seasonal(90, 7)})
    inference = infer(tmp_path, daily)
    assert inference.dataset["frequency"] == "D"
    assert prepared_with(tmp_path, inference)["day"].tolist() == days.tolist()
    # The first of each month written month first (the day is the constant field).
    american = frame.assign(month=months.dt.strftime("%m/%d/%Y"))
    assert prepared_with(tmp_path, infer(tmp_path, american))["month"].tolist() == months.tolist()


def test_dates_written_both_ways_or_undecidable_are_errors(tmp_path: Path) -> None:
    days = pd.date_range("2020-01-01", periods=40, freq="D")
    mixed = pd.DataFrame({"day": days.strftime("%d/%m/%Y"), "units": seasonal(40, 7)})
    mixed.loc[30, "day"] = days[30].strftime("%m/%d/%Y")  # 01/31/2020 among day-first dates
    with pytest.raises(DataError) as caught:
        infer(tmp_path, mixed)
    message = str(caught.value)
    assert "day first (13/01/2020) and month first (01/31/2020)" in message
    assert "rows 13, 31" in message and "ISO" in message
    undecided = pd.DataFrame(
        {"day": ["02/03/2020", "03/04/2020", "04/05/2020"], "units": [1, 2, 3]}
    )
    with pytest.raises(DataError, match="02/03/2020 read as day/month as well as month/day"):
        infer(tmp_path, undecided)


def test_model_input_csvs_are_read_the_same_way(tmp_path: Path) -> None:
    from trainyard.tasks.family import read_input_table

    frame = monthly(24)
    (tmp_path / "plain.csv").write_text(frame.to_csv(index=False))
    (tmp_path / "local.csv").write_text(_export(frame, ";", "{:.6f}").replace(".", ","))
    plain, local = (
        read_input_table(tmp_path / "plain.csv"),
        read_input_table(tmp_path / "local.csv"),
    )
    assert list(local.columns) == ["month", "sales"]
    np.testing.assert_allclose(local["sales"], plain["sales"].round(6), rtol=1e-9)


def test_a_series_saved_with_its_unnamed_date_index_runs_zero_config(tmp_path: Path) -> None:
    # pandas' Series.to_csv() of a DatetimeIndex without a name: the first header is empty.
    frame = monthly(120)
    series = pd.Series(frame["sales"].to_numpy(), index=pd.to_datetime(frame["month"]))
    series.rename_axis(None).rename("sales").to_csv(tmp_path / "data.csv")
    assert (tmp_path / "data.csv").read_text().startswith(",sales\n")
    inference = infer_file("data.csv", tmp_path)
    assert inference.dataset["time_column"] == "index"  # not pandas' "Unnamed: 0"
    assert inference.dataset["frequency"] == "MS"
    assert prepared_with(tmp_path, inference)["index"].iloc[0] == pd.Timestamp("2015-01-01")


def test_a_pinned_season_no_series_can_hold_is_an_error_naming_it(tmp_path: Path) -> None:
    # Seasonal naive needs a season before the holdout: 200 + holdout steps of a 100-step series.
    with pytest.raises(DataError, match=r"season_length 200 \(--season-length\) set") as caught:
        infer(tmp_path, monthly(100), Pins(season_length=200))
    assert "the longest has 100" in str(caught.value)


# --- compressed tables -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_a_compressed_csv_reads_as_the_csv_inside(tmp_path: Path, suffix: str) -> None:
    from trainyard.tasks.family import read_input_table

    frame = daily_panel({"north": 120, "south": 100})
    plain = infer(tmp_path, frame)
    frame.to_csv(tmp_path / f"sales.csv{suffix}", index=False)  # pandas compresses by suffix
    packed = infer_file(f"sales.csv{suffix}", tmp_path)
    assert packed.dataset == plain.dataset and packed.windows == plain.windows
    history = read_input_table(tmp_path / f"sales.csv{suffix}")
    assert history.shape == frame.shape


def test_a_damaged_or_ambiguous_archive_is_an_error_naming_it(tmp_path: Path) -> None:
    import zipfile

    (tmp_path / "sales.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"sales\.csv\.gz: cannot be decompressed as gz"):
        infer_file("sales.csv.gz", tmp_path)
    with zipfile.ZipFile(tmp_path / "two.csv.zip", "w") as archive:
        archive.writestr("a.csv", "day,units\n")
        archive.writestr("b.csv", "day,units\n")
    with pytest.raises(DataError, match=r"two\.csv\.zip: a \.zip holding 2 files"):
        infer_file("two.csv.zip", tmp_path)


@pytest.mark.parametrize("mark", [".", ":", "-", ".."])
def test_missing_number_marks_of_statistics_offices_are_empty_cells(
    tmp_path: Path, mark: str
) -> None:
    # FRED writes "." for a missing observation, Eurostat ":", others "-" or "..".
    frame = monthly(120).astype({"sales": object})
    frame.loc[[40, 41], "sales"] = mark
    inference = infer(tmp_path, frame)
    assert inference.dataset["target"] == "sales"
    assert inference.dataset["missing_target"] == "gap"
    table = prepared_with(tmp_path, inference)
    assert table["sales"].isna().sum() == 2 and len(table) == 120


def test_a_mark_among_names_stays_a_name(tmp_path: Path) -> None:
    from trainyard.tasks.prepared import read_csv_text

    read = read_csv_text("store,units\n-,1\nnorth,2\n")
    assert read["store"].tolist() == ["-", "north"]
    mixed = read_csv_text("v\n1.5\n.\nabc\n")  # not a column of numbers: left as it is
    assert mixed["v"].tolist() == ["1.5", ".", "abc"]


def test_zero_padded_codes_keep_a_dash_code() -> None:
    from trainyard.tasks.prepared import read_csv_text

    read = read_csv_text("sku,units\n007,1\n-,2\n012,3\n")
    assert read["sku"].tolist() == ["007", "-", "012"]
