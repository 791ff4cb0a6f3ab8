"""Times written as periods: a column of years beside one of quarters or months, and period
codes (1959 Q1, 1959M01, 2020-W05) read with no params, the same way in prepare and predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from typer.testing import CliRunner

from tests.forecast.test_infer import _project, infer, prepared_with, seasonal, write
from trainyard.cli import app
from trainyard.errors import ConfigError, DataError
from trainyard.tasks.forecast.config import (
    DatasetConfig,
    WindowConfig,
    load_params,
    params_from_dict,
)
from trainyard.tasks.forecast.datasets import to_long
from trainyard.tasks.forecast.family import FORECAST
from trainyard.tasks.forecast.infer import Pins, infer_file
from trainyard.tasks.forecast.prepare import PREPARED_FILE, prepare, read_prepared
from trainyard.tasks.forecast.validate import DataValidationError, validate_table

runner = CliRunner()
WINDOWS = WindowConfig(encoder_length=8, horizon=4, validation_length=8, holdout_length=8)


def macrodata() -> pd.DataFrame:
    """Returns statsmodels' macrodata as it ships: year and quarter columns (floats), then
    twelve quarterly US series, 1959-2009."""
    return sm.datasets.macrodata.load_pandas().data


def _spec(**keys) -> DatasetConfig:
    return DatasetConfig(
        **{
            "time_column": "year",
            "period_column": "quarter",
            "target": "realgdp",
            "frequency": "QS-OCT",
            "season_length": 4,
            **keys,
        }
    )


def _served(spec: DatasetConfig) -> dict:
    """Returns the model_config a registered forecaster of `spec` carries."""
    return {"params": {"dataset": spec.model_dump(), "windows": WINDOWS.model_dump()}}


def test_year_and_quarter_columns_are_one_quarterly_time(tmp_path: Path) -> None:
    inference = infer(tmp_path, macrodata(), Pins(target="realgdp"))
    dataset = inference.dataset
    assert dataset["time_column"] == "year"
    assert dataset["period_column"] == "quarter"
    assert dataset["series_columns"] == []  # the quarter is no series id
    assert dataset["frequency"] == "QS-OCT"
    assert dataset["season_length"] == 4
    assert "period_column: quarter" in "\n".join(inference.lines())
    table = prepared_with(tmp_path, inference)
    assert len(table) == 203
    assert table["year"].iloc[0] == pd.Timestamp("1959-01-01")
    assert table["year"].iloc[-1] == pd.Timestamp("2009-07-01")
    assert "quarter" not in table.columns
    np.testing.assert_allclose(table["realgdp"], macrodata()["realgdp"])


def test_a_panel_of_years_and_month_names_runs_zero_config(tmp_path: Path) -> None:
    pieces = []
    for i, country in enumerate(["Chad", "Peru"]):
        months = pd.date_range("2010-01-01", periods=96, freq="MS")
        pieces.append(
            pd.DataFrame(
                {
                    "country": country,
                    "Year": months.year,
                    "Month": months.strftime("%b"),  # Jan, Feb, ...
                    "visitors": seasonal(96, 12, i),
                }
            )
        )
    inference = infer(tmp_path, pd.concat(pieces, ignore_index=True))
    assert inference.dataset["period_column"] == "Month"
    assert inference.dataset["series_columns"] == ["country"]
    assert inference.dataset["frequency"] == "MS"
    assert inference.dataset["season_length"] == 12
    table = prepared_with(tmp_path, inference)
    assert table.groupby("series_id")["Year"].max().tolist() == [pd.Timestamp("2017-12-01")] * 2


@pytest.mark.parametrize(
    ("codes", "frequency", "first"),
    [
        (lambda p: p.strftime("%Y") + " Q" + p.quarter.astype(str), "QS-OCT", "2000-01-01"),
        (lambda p: "Q" + p.quarter.astype(str) + " " + p.strftime("%Y"), "QS-OCT", "2000-01-01"),
        (lambda p: p.strftime("%Y") + "-Q" + p.quarter.astype(str), "QS-OCT", "2000-01-01"),
        (lambda p: p.strftime("%YM%m"), "MS", "2000-01-01"),  # Eurostat, IMF
        (lambda p: p.strftime("%Y") + "m" + p.month.astype(str), "MS", "2000-01-01"),  # Stata
        (lambda p: p.strftime("%G-W%V"), "W-MON", "1999-12-27"),  # ISO weeks, Mondays
    ],
    ids=["year-space-q", "q-space-year", "year-dash-q", "year-M-month", "stata-m", "iso-week"],
)
def test_period_codes_in_one_column_are_read_as_times(
    tmp_path: Path, codes, frequency: str, first: str
) -> None:
    step = {"QS-OCT": "QS", "MS": "MS", "W-MON": "W-MON"}[frequency]
    start = "1999-12-27" if step == "W-MON" else "2000-01-01"
    stamps = pd.date_range(start, periods=120, freq=step)
    season = {"QS-OCT": 4, "MS": 12, "W-MON": 52}[frequency]
    frame = pd.DataFrame({"period": codes(stamps), "value": seasonal(120, season)})
    inference = infer(tmp_path, frame)
    assert inference.dataset["time_column"] == "period"
    assert "period_column" not in inference.dataset
    assert inference.dataset["frequency"] == frequency
    table = prepared_with(tmp_path, inference)
    assert table["period"].iloc[0] == pd.Timestamp(first)
    assert len(table) == 120  # no step lost or inserted


def test_a_quarter_end_frequency_puts_each_quarter_on_its_last_day() -> None:
    spec = _spec(frequency="QE-DEC")
    typed, _ = validate_table(macrodata(), spec, WINDOWS, "macrodata")
    assert typed["year"].iloc[:2].tolist() == [
        pd.Timestamp("1959-03-31"),
        pd.Timestamp("1959-06-30"),
    ]
    assert list(typed.columns) == ["year", "realgdp"]


# --- bad input ---------------------------------------------------------------------------------


def test_a_value_naming_no_quarter_is_an_error_naming_its_row() -> None:
    frame = macrodata()
    frame.loc[6, "quarter"] = 5
    frame.loc[9, "year"] = 59
    with pytest.raises(DataValidationError) as caught:
        validate_table(frame, _spec(), WINDOWS, "macro.csv")
    message = str(caught.value)
    assert "column 'quarter': values that name no quarter or month (such as 5)" in message
    assert "rows 7\n" in message
    assert "column 'year': values that are not years (such as 59)" in message
    assert "rows 10\n" in message
    assert "Q1-Q4" in message


def test_years_without_their_period_column_are_an_error_naming_it() -> None:
    frame = macrodata().drop(columns=["quarter"])
    with pytest.raises(DataValidationError, match="column 'quarter': column is missing"):
        validate_table(frame, _spec(), WINDOWS, "macro.csv")


def test_a_repeated_year_and_quarter_is_a_duplicate_row() -> None:
    frame = macrodata()
    frame.loc[5, "quarter"] = 1  # 1960 Q1 twice (row 5 is Q2)
    with pytest.raises(DataValidationError, match=r"duplicate \(series, time\) rows"):
        validate_table(frame, _spec(), WINDOWS, "macro.csv")


def test_two_columns_that_could_hold_the_quarter_need_a_pin(tmp_path: Path) -> None:
    frame = macrodata().assign(qtr=lambda f: f["quarter"])
    with pytest.raises(ConfigError, match=r"quarter, qtr.*forecast\.dataset\.period_column"):
        infer(tmp_path, frame, Pins(target="realgdp"))
    pinned = infer(tmp_path, frame, Pins(target="realgdp", period_column="qtr"))
    assert pinned.dataset["period_column"] == "qtr"


def test_a_column_of_years_alone_stays_yearly(tmp_path: Path) -> None:
    frame = pd.DataFrame({"year": np.arange(1950, 2020), "month_count": 12, "v": seasonal(70, 5)})
    inference = infer(tmp_path, frame, Pins(target="v"))
    assert "period_column" not in inference.dataset  # constant 12: no column of months
    assert inference.dataset["frequency"] == "YS-JAN"


# --- serving and params ------------------------------------------------------------------------


def test_predict_reads_a_history_of_years_and_quarters(tmp_path: Path) -> None:
    history = macrodata().head(40)
    config = _served(_spec())
    read = FORECAST.model_input(history, config, tmp_path / "history.csv")
    assert list(read.columns) == ["year", "realgdp"]  # the other series are not the model's
    assert read["year"].iloc[-1] == pd.Timestamp("1968-10-01")
    bad = history.assign(quarter=history["quarter"].where(history.index != 3, 9))
    with pytest.raises(DataError, match=r"(?s)history\.csv.*such as 9"):
        FORECAST.model_input(bad, config, tmp_path / "history.csv")


def test_series_as_columns_beside_year_and_quarter(tmp_path: Path) -> None:
    frame = macrodata()[["year", "quarter", "realgdp", "realcons", "unemp"]]
    inference = infer(tmp_path, frame, Pins(layout="series_as_columns"))
    assert inference.dataset["period_column"] == "quarter"
    assert inference.dataset["frequency"] == "QS-OCT"
    table = prepared_with(tmp_path, inference)
    assert sorted(table["series_id"].unique()) == ["realcons", "realgdp", "unemp"]
    assert len(table) == 3 * 203


def test_init_writes_the_period_column_and_a_later_table_drops_it(tmp_path: Path) -> None:
    params = _project(tmp_path)
    write(tmp_path, macrodata()[["year", "quarter", "realgdp"]], "macro.csv")
    done = runner.invoke(app, ["init", str(tmp_path / "macro.csv"), "--params", str(params)])
    assert done.exit_code == 0, done.output
    assert load_params(params).dataset.period_column == "quarter"
    prepared = runner.invoke(app, ["prepare", "--params", str(params)])
    assert prepared.exit_code == 0, prepared.output
    write(
        tmp_path,
        pd.DataFrame(
            {
                "day": pd.date_range("2024-01-01", periods=200).strftime("%Y-%m-%d"),
                "units": seasonal(200, 7),
            }
        ),
        "daily.csv",
    )
    again = runner.invoke(app, ["init", str(tmp_path / "daily.csv"), "--params", str(params)])
    assert again.exit_code == 0, again.output
    assert load_params(params).dataset.period_column == ""


def test_period_codes_as_headers_of_a_wide_table(tmp_path: Path) -> None:
    # Eurostat's wide exports: a row per country, a column per month coded 2015M01.
    months = pd.date_range("2015-01-01", periods=72, freq="MS")
    rows = {f"{m:%Y}M{m:%m}": seasonal(72, 12, 0)[i] for i, m in enumerate(months)}
    frame = pd.DataFrame([{"geo": geo, **rows} for geo in ("AT", "BE")])
    inference = infer(tmp_path, frame)
    assert inference.dataset["layout"] == "dates_as_columns"
    assert inference.dataset["frequency"] == "MS"
    table = prepared_with(tmp_path, inference)
    assert table["date"].min() == pd.Timestamp("2015-01-01") and len(table) == 144


# --- a row per year, a column per month or quarter (layout periods_as_columns) ---------------


def test_a_table_of_years_by_months_is_one_monthly_series(tmp_path: Path) -> None:
    elnino = sm.datasets.elnino.load_pandas().data  # YEAR, JAN ... DEC, as it ships
    inference = infer(tmp_path, elnino)
    assert inference.dataset["layout"] == "periods_as_columns"
    assert inference.dataset["time_column"] == "YEAR"
    assert inference.dataset["series_columns"] == []
    assert inference.dataset["frequency"] == "MS"
    assert inference.dataset["season_length"] == 12
    table = prepared_with(tmp_path, inference)
    assert len(table) == 61 * 12
    assert table["YEAR"].iloc[13] == pd.Timestamp("1951-02-01")
    np.testing.assert_allclose(table["value"], elnino.drop(columns="YEAR").to_numpy().reshape(-1))


def _bls_panel(quarters: bool = False) -> pd.DataFrame:
    """Returns a BLS-style table: a series id, Year, a column per month (or quarter) and an
    Annual column; the last year is only partly published (empty cells at its end)."""
    headers = (
        ["Q1", "Q2", "Q3", "Q4"]
        if quarters
        else list(pd.date_range("2000-01-01", periods=12, freq="MS").strftime("%b"))
    )
    rows = []
    for i, series in enumerate(["CUUR0000SA0", "LNS14000000"]):
        values = seasonal(12 * len(headers), len(headers), i)
        for y in range(12):
            cells = dict(
                zip(headers, values[y * len(headers) : (y + 1) * len(headers)], strict=True)
            )
            rows.append({"Series ID": series, "Year": 2010 + y, **cells, "Annual": 1.0})
    frame = pd.DataFrame(rows)
    frame.loc[frame["Year"] == 2021, headers[-2:]] = np.nan  # not yet published
    return frame.sample(frac=1.0, random_state=0)  # rows in any order


@pytest.mark.parametrize("quarters", [False, True], ids=["months", "quarters"])
def test_a_panel_of_years_by_periods_ends_at_each_series_last_value(
    tmp_path: Path, quarters: bool
) -> None:
    inference = infer(tmp_path, _bls_panel(quarters))
    assert inference.dataset["layout"] == "periods_as_columns"
    assert inference.dataset["series_columns"] == ["Series ID"]
    assert inference.dataset["frequency"] == ("QS-OCT" if quarters else "MS")
    table = prepared_with(tmp_path, inference)
    per_year = 4 if quarters else 12
    assert table.groupby("series_id").size().tolist() == [12 * per_year - 2] * 2
    last = pd.Timestamp("2021-04-01" if quarters else "2021-10-01")
    assert table.groupby("series_id")["Year"].max().tolist() == [last, last]


def test_years_by_periods_errors_name_the_row_and_column(tmp_path: Path) -> None:
    frame = sm.datasets.elnino.load_pandas().data
    spec = DatasetConfig(layout="periods_as_columns", time_column="YEAR", target="value")
    hole = frame.copy()
    hole.loc[3, "MAR"] = np.nan
    with pytest.raises(DataError, match=r"row 4, column 'MAR'.*missing_target: gap"):
        to_long(hole, spec, "elnino.csv")
    assert (
        to_long(hole, spec.model_copy(update={"missing_target": "gap"}), "x")["value"].isna().sum()
        == 1
    )
    repeat = frame.copy()
    repeat.loc[5, "YEAR"] = repeat.loc[4, "YEAR"]
    with pytest.raises(DataError, match=r"rows 5, 6 repeat a year"):
        to_long(repeat, spec, "elnino.csv")
    text = frame.astype({"YEAR": object})
    text.loc[2, "YEAR"] = "total"
    with pytest.raises(DataError, match=r"rows 3 of column 'YEAR' hold no year \('total'\)"):
        to_long(text, spec, "elnino.csv")
    with pytest.raises(DataError, match="not a year's months"):
        to_long(frame.drop(columns=["DEC"]), spec, "elnino.csv")


def test_predict_melts_a_history_of_years_by_months(tmp_path: Path) -> None:
    elnino = sm.datasets.elnino.load_pandas().data
    spec = DatasetConfig(
        layout="periods_as_columns",
        time_column="YEAR",
        target="value",
        frequency="MS",
        season_length=12,
    )
    read = FORECAST.model_input(elnino.tail(5), _served(spec), tmp_path / "history.csv")
    assert list(read.columns) == ["YEAR", "value"]
    assert len(read) == 60 and read["YEAR"].iloc[-1] == pd.Timestamp("2010-12-01")


@pytest.mark.parametrize(("freq", "inferred"), [("M", "MS"), ("Q-DEC", "QS-OCT")])
def test_a_parquet_column_of_pandas_periods_is_read_as_times(
    tmp_path: Path, freq: str, inferred: str
) -> None:
    stamps = pd.period_range("2001-01", periods=80, freq=freq)
    frame = pd.DataFrame({"period": stamps, "sales": seasonal(80, 12 if freq == "M" else 4)})
    frame.to_parquet(tmp_path / "data.parquet")
    inference = infer_file("data.parquet", tmp_path)
    assert inference.dataset["frequency"] == inferred
    dataset = {"name": "data.parquet", **inference.dataset}

    prepare(
        params_from_dict({"dataset": dataset, "windows": inference.windows}),
        tmp_path,
        tmp_path / "p",
    )
    table, _ = read_prepared(tmp_path / "p" / PREPARED_FILE)
    assert table["period"].iloc[0] == pd.Timestamp("2001-01-01") and len(table) == 80


def test_an_empty_quarter_cell_is_an_error_naming_its_row(tmp_path: Path) -> None:
    frame = macrodata()
    frame.loc[7, "quarter"] = np.nan
    with pytest.raises(DataValidationError) as caught:
        validate_table(frame, _spec(), WINDOWS, "macro.csv")
    assert "column 'quarter': empty (NaN) values\n    rows 8\n" in str(caught.value)
    with pytest.raises(DataValidationError, match=r"column 'quarter': empty"):
        infer(tmp_path, frame, Pins(target="realgdp"))
