"""Wide tables: a row per series with dates as column headers (inferred), or a column per series
beside the time column (--layout series_as_columns), are melted to long as they are read; the
prepared series equal those of the same data given long, and a bad cell is an error naming its
row and column."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.commands import run_trainyard
from tests.conftest import ROOT
from trainyard.cli import app
from trainyard.errors import ConfigError, DataError
from trainyard.tasks.forecast.config import load_params, params_from_dict
from trainyard.tasks.forecast.infer import Inference, Pins, infer_file
from trainyard.tasks.forecast.prepare import PREPARED_FILE, prepare, read_prepared

runner = CliRunner()
MONTHS = pd.date_range("2010-01-01", periods=96, freq="MS")
# The keys of a row-per-store table of MONTHS (what inference gives it), and small windows.
STORES = {
    "layout": "dates_as_columns",
    "time_column": "date",
    "target": "value",
    "series_columns": ["store"],
    "frequency": "MS",
    "season_length": 12,
}
WINDOWS = {"encoder_length": 24, "horizon": 6, "validation_length": 12, "holdout_length": 12}


def seasonal(n: int, seed: int) -> np.ndarray:
    """Returns n monthly values with a trend, a yearly season and noise."""
    steps = np.arange(n)
    noise = np.random.default_rng(seed).normal(size=n)
    return 100 + 0.5 * steps + 10 * np.sin(2 * np.pi * steps / 12) + noise


def long_panel(lengths: dict[str, int]) -> pd.DataFrame:
    """Returns a long monthly panel whose series all end in the last month."""
    pieces = [
        pd.DataFrame({"store": store, "month": MONTHS[-n:], "sales": seasonal(n, i)})
        for i, (store, n) in enumerate(lengths.items())
    ]
    return pd.concat(pieces, ignore_index=True)


def dates_as_columns(long: pd.DataFrame) -> pd.DataFrame:
    """Returns `long` as a row per store, a column per month (2010-01, ...): the cells before
    a shorter series starts are empty, as in M4-style files."""
    wide = long.pivot(index="store", columns="month", values="sales")
    wide.columns = [month.strftime("%Y-%m") for month in wide.columns]
    return wide.reset_index()


def prepared(root: Path, name: str, dataset: dict, windows: dict) -> pd.DataFrame:
    """Returns the table the prepare step writes for `name` with these keys."""
    params = params_from_dict({"dataset": {"name": name, **dataset}, "windows": windows})
    out = root / f"prepared-{Path(name).stem}"
    prepare(params, root, out)
    table, _ = read_prepared(out / PREPARED_FILE)
    return table


def infer(root: Path, frame: pd.DataFrame, pins: Pins | None = None) -> Inference:
    frame.to_csv(root / "wide.csv", index=False)
    return infer_file("wide.csv", root, pins)


# --- dates as column headers --------------------------------------------------------------------


def test_dates_as_headers_are_inferred_and_prepare_the_same_series_as_long(tmp_path: Path) -> None:
    long = long_panel({"north": 96, "south": 80, "east": 60})
    inference = infer(tmp_path, dates_as_columns(long))
    assert inference.dataset["layout"] == "dates_as_columns"
    assert inference.dataset["time_column"] == "date" and inference.dataset["target"] == "value"
    assert inference.dataset["series_columns"] == ["store"]
    assert inference.dataset["frequency"] == "MS" and inference.dataset["season_length"] == 12
    assert "headers are dates" in "\n".join(inference.lines())
    # The empty cells before a series starts are not steps: each series keeps its own length.
    from_wide = prepared(tmp_path, "wide.csv", inference.dataset, inference.windows)
    assert from_wide.groupby("series_id").size().to_dict() == {"east": 60, "north": 96, "south": 80}

    long.to_csv(tmp_path / "long.csv", index=False)
    keys = infer_file("long.csv", tmp_path)
    assert keys.windows == inference.windows
    from_long = prepared(tmp_path, "long.csv", keys.dataset, keys.windows)
    for frame, time, target in ((from_wide, "date", "value"), (from_long, "month", "sales")):
        frame.sort_values(["series_id", "time_idx"], inplace=True, ignore_index=True)
        frame.rename(columns={time: "time", target: "target"}, inplace=True)
    columns = ["series_id", "time_idx", "time", "target", "split"]
    pd.testing.assert_frame_equal(from_wide[columns], from_long[columns], check_dtype=False)


def test_year_headers_with_a_name_and_a_code_per_row(tmp_path: Path) -> None:
    years = [str(year) for year in range(1960, 2020)]
    rows = [
        {
            "Country Name": name,
            "Country Code": name[:3].upper(),
            "Indicator Name": "GDP (current US$)",  # the same on every row: not a series name
            **dict(zip(years, seasonal(len(years), i) * (i + 1), strict=True)),
        }
        for i, name in enumerate(["Aruba", "Brazil", "Chile"])
    ]
    inference = infer(tmp_path, pd.DataFrame(rows))
    assert inference.dataset["layout"] == "dates_as_columns"
    assert inference.dataset["series_columns"] == ["Country Name"]  # the code names the same rows
    assert inference.dataset["frequency"] == "YS-JAN"
    table = prepared(tmp_path, "wide.csv", inference.dataset, inference.windows)
    assert sorted(table["series_id"].unique()) == ["Aruba", "Brazil", "Chile"]
    assert table["date"].min() == pd.Timestamp("1960-01-01")
    brazil = table[table["series_id"] == "Brazil"].sort_values("time_idx")["value"].to_numpy()
    np.testing.assert_allclose(brazil, seasonal(60, 1) * 2, rtol=1e-6)


def test_rows_no_column_tells_apart_are_an_error_naming_the_columns(tmp_path: Path) -> None:
    frame = dates_as_columns(long_panel({"north": 96, "south": 96})).assign(region="west")
    with pytest.raises(DataError, match=r"no column tells the 2 rows apart.*region.*--series"):
        infer(tmp_path, frame.drop(columns="store"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda w: w.assign(
                **{"2012-03": w["2012-03"].astype(object).mask(w.index == 1, "12,5")}
            ),
            r"1 cell\(s\) are not numbers: row 2, column '2012-03': '12,5'",
            id="text-cell",
        ),
        pytest.param(
            lambda w: w.assign(**{"2013-05": w["2013-05"].mask(w.index == 0)}),
            r"1 empty cell\(s\) between a series' first and last values: series 'east': row 1, "
            r"column '2013-05'.*missing_target: gap",
            id="empty-cell",
        ),
        pytest.param(
            lambda w: pd.concat([w, w.iloc[[1]]], ignore_index=True),
            r"rows 2, 3 are the same series \(series_columns store\)",
            id="repeated-row",
        ),
        pytest.param(
            lambda w: w.assign(**{"2017-12-01": 1.0}),
            r"column headers '2017-12' and '2017-12-01' are the same time",
            id="repeated-date",
        ),
        pytest.param(
            lambda w: w.assign(**{f"2010-{m:02d}": np.nan for m in range(1, 13)}).drop(
                columns=[c for c in w.columns if c[:4].isdigit() and c[:4] != "2010"]
            ),
            r"series east, north hold no value",
            id="empty-row",
        ),
    ],
)
def test_a_bad_wide_table_is_an_error_naming_its_cells_and_writes_nothing(
    tmp_path: Path, edit, message: str
) -> None:
    wide = edit(dates_as_columns(long_panel({"east": 96, "north": 96})))
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(DataError, match=message) as caught:
        prepared(tmp_path, "wide.csv", STORES, WINDOWS)
    assert "wide.csv" in str(caught.value)
    assert not (tmp_path / "prepared-wide").exists()


def test_a_row_with_no_value_and_a_sparse_row_are_left_out_zero_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # World Bank files hold countries with no value at all, and some with a value every few
    # years: neither can be forecast, and neither should stop the other series from running.
    stores = {f"s{i}": 96 for i in range(8)}
    wide = dates_as_columns(long_panel(stores))
    dated = [name for name in wide.columns if name[:4].isdigit()]
    wide.loc[len(wide)] = {"store": "closed", **dict.fromkeys(dated, np.nan)}
    sparse = dict.fromkeys(dated, np.nan) | {name: 50.0 + i for i, name in enumerate(dated[::12])}
    wide.loc[len(wide)] = {"store": "sparse", **sparse}  # 8 values over 85 months
    inference = infer(tmp_path, wide)
    assert inference.dataset["short_series"] == "drop"
    assert inference.dataset["missing_target"] == "gap"
    text = "\n".join(inference.lines())
    assert "2 of 10 series are shorter than" in text
    assert "closed (0 steps)" in text and "sparse (8 steps)" in text
    assert inference.windows["horizon"] == 12  # fitted to the 96-month stores

    with caplog.at_level("WARNING"):
        table = prepared(tmp_path, "wide.csv", inference.dataset, inference.windows)
    assert sorted(table["series_id"].unique()) == sorted(stores)
    _, meta = read_prepared(tmp_path / "prepared-wide" / PREPARED_FILE)
    assert meta["left_out_series"] == ["closed", "sparse"]
    assert "left out 1 series with no value (dataset.short_series: drop): closed" in caplog.text
    assert "steps with a value" not in caplog.text  # counted, not refused

    with pytest.raises(DataError, match=r"series closed hold no value.*short_series: drop"):
        infer(tmp_path, wide, Pins(short_series="error"))


@pytest.mark.parametrize("short_series", ["drop", "error"])
def test_predict_leaves_out_the_histories_a_dropping_model_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, short_series: str
) -> None:
    from trainyard.tasks.forecast.family import FORECAST

    wide = dates_as_columns(long_panel({"east": 96, "north": 96, "new": 10, "gap": 96}))
    wide.loc[wide["store"] == "gap", "2017-10"] = np.nan  # inside its last 24 months
    config = {
        "params": {
            "dataset": {**STORES, "short_series": short_series},
            "windows": {**WINDOWS, "encoder_length": 24},
        }
    }
    with caplog.at_level("WARNING"):
        history = FORECAST.model_input(wide, config, tmp_path / "wide.csv")
    stores = sorted(history["store"].unique())
    if short_series == "drop":
        assert stores == ["east", "north"]
        assert "left out 2 series with fewer than the 54 values" in caplog.text
        assert caplog.text.rstrip().endswith(": gap, new")
    else:
        assert stores == ["east", "gap", "new", "north"]  # the model's own check refuses them


def test_empty_cells_within_a_series_are_gaps_when_missing_target_is_gap(tmp_path: Path) -> None:
    wide = dates_as_columns(long_panel({"east": 96, "north": 96}))
    wide.loc[0, "2013-05"] = np.nan
    wide.to_csv(tmp_path / "wide.csv", index=False)
    inference = infer_file("wide.csv", tmp_path)
    assert inference.dataset["missing_target"] == "gap"  # inferred from the empty cell
    table = prepared(tmp_path, "wide.csv", inference.dataset, inference.windows)
    east = table[table["series_id"] == "east"].set_index("date")["value"]
    assert len(east) == 96 and east.isna().sum() == 1 and np.isnan(east["2013-05-01"])


# --- a column per series ------------------------------------------------------------------------


def series_as_columns() -> pd.DataFrame:
    """Returns a column per store beside the month; 'c' starts 20 months later (empty above)."""
    frame = pd.DataFrame({"month": MONTHS.strftime("%Y-%m-%d")})
    for i, store in enumerate(["a", "b", "c"]):
        frame[store] = seasonal(len(MONTHS), i)
    frame.loc[:19, "c"] = np.nan
    return frame


def test_a_column_per_series_is_ambiguous_until_the_layout_is_pinned(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a, b, c.*--target.*--layout series_as_columns"):
        infer(tmp_path, series_as_columns())
    inference = infer(tmp_path, series_as_columns(), Pins(layout="series_as_columns"))
    assert inference.dataset["layout"] == "series_as_columns"
    assert inference.dataset["time_column"] == "month"
    assert inference.dataset["series_columns"] == ["series"]
    assert inference.dataset["target"] == "value"
    table = prepared(tmp_path, "wide.csv", inference.dataset, inference.windows)
    assert table.groupby("series_id").size().to_dict() == {"a": 96, "b": 96, "c": 76}
    first_c = table[table["series_id"] == "c"].sort_values("time_idx").iloc[0]
    assert first_c["month"] == MONTHS[20]
    assert first_c["value"] == pytest.approx(seasonal(96, 2)[20], rel=1e-6)


def test_a_column_per_series_with_a_repeated_time_names_the_rows(tmp_path: Path) -> None:
    frame = series_as_columns()
    frame.loc[30, "month"] = frame.loc[29, "month"]
    with pytest.raises(DataError, match=r"rows 30, 31 repeat the time 2012-06-01.*'month'"):
        infer(tmp_path, frame, Pins(layout="series_as_columns"))


def test_layout_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.layout must be one of long, dates_as_col"):
        params_from_dict({"dataset": {"layout": "wide"}})
    with pytest.raises(
        ConfigError, match="series_as_columns: dataset.series_columns names the one"
    ):
        params_from_dict({"dataset": {"layout": "series_as_columns", "series_columns": []}})
    with pytest.raises(ConfigError, match="'wide' \\(set by --layout\\) is not one of"):
        infer(tmp_path, series_as_columns(), Pins(layout="wide"))


# --- the command line ---------------------------------------------------------------------------


def test_init_writes_the_layout_and_prepare_reads_the_wide_file_by_it(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    dates_as_columns(long_panel({"north": 96, "south": 72})).to_csv(
        tmp_path / "stores.csv", index=False
    )
    result = runner.invoke(app, ["init", str(tmp_path / "stores.csv"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert "layout: dates_as_columns" in result.output
    loaded = load_params(params)
    assert loaded.dataset.layout == "dates_as_columns"
    assert loaded.dataset.series_columns == ["store"]
    done = runner.invoke(app, ["prepare", "--params", str(params)])
    assert done.exit_code == 0, done.output
    table = pd.read_parquet(tmp_path / "data/forecast/prepared" / PREPARED_FILE)
    assert table.groupby("series_id").size().to_dict() == {"north": 96, "south": 72}
    # A long table given with --dataset is long again, whatever params.yaml says of another.
    long_panel({"x": 96}).drop(columns="store").to_csv(tmp_path / "one.csv", index=False)
    again = runner.invoke(app, ["prepare", "--params", str(params), "--dataset", "one.csv"])
    assert again.exit_code == 0, again.output
    assert "layout: long" in again.output


# --- predicting from a wide history -------------------------------------------------------------


def test_a_model_trained_on_a_wide_file_predicts_from_a_wide_history(tmp_path: Path) -> None:
    """The whole path as a user meets it: run on a wide CSV (zero-config), then `trainyard
    predict` on the same wide file forecasts each row's series, as on its long twin."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("profiles")
    params["run"]["families"] = ["forecast"]
    params["forecast"]["train"].update(models=["autotheta"], parallel=1)
    params["forecast"]["evaluate"].update(stride=8, classical="none")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    long = long_panel({"north": 96, "south": 72})
    dates_as_columns(long).to_csv(tmp_path / "stores.csv", index=False)
    long.rename(columns={"month": "date", "sales": "value"}).to_csv(
        tmp_path / "long.csv", index=False
    )
    state = tmp_path / ".state"
    env = {
        **os.environ,
        "TRAINYARD_STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
    }
    env.pop("PREFECT_API_URL", None)
    done = run_trainyard(
        ["run", "--no-orchestrator", "--dataset", "stores.csv"], tmp_path, env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "layout: dates_as_columns" in done.stdout
    forecasts = {}
    for history in ("stores.csv", "long.csv"):
        out = tmp_path / f"forecast-{history}"
        done = run_trainyard(
            ["predict", "stores-forecaster", "--input", history, "--output", str(out)],
            tmp_path,
            env,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        forecasts[history] = pd.read_csv(out)
    wide, twin = forecasts["stores.csv"], forecasts["long.csv"]
    assert sorted(wide["series"].unique()) == ["north", "south"]
    assert len(wide) == 2 * 9  # the inferred horizon: an eighth of the shortest series (72)
    assert wide["date"].min() == "2018-01-01"  # the month after the last column
    pd.testing.assert_frame_equal(wide, twin)


def test_a_problem_found_after_melting_says_which_rows_it_counts(tmp_path: Path) -> None:
    wide = dates_as_columns(long_panel({"east": 96, "north": 96}))
    wide = wide.rename(columns={"2015-06": "2015-06-15"})  # off the month-start grid
    wide.to_csv(tmp_path / "wide.csv", index=False)
    with pytest.raises(DataError) as caught:
        prepared(tmp_path, "wide.csv", STORES, WINDOWS)
    message = str(caught.value)
    assert "times not on the MS grid" in message and "series east, north" in message
    assert "rows 66, 162" in message  # each series' 66th month, in the long table
    assert "layout is dates_as_columns: rows count the long table" in message
    assert "line N+1" not in message
    assert not (tmp_path / "prepared-wide").exists()


@pytest.mark.parametrize(
    ("layout", "keys", "message"),
    [
        ("dates_as_columns", {"target": "store"}, "target and series_columns both name 'store'"),
        ("dates_as_columns", {"target": "date"}, "time_column and target both name 'date'"),
        ("series_as_columns", {"series_columns": ["month"]}, "time_column and series_columns"),
    ],
)
def test_two_long_columns_of_one_name_are_refused(
    tmp_path: Path, layout: str, keys: dict, message: str
) -> None:
    from trainyard.tasks.forecast.config import DatasetConfig
    from trainyard.tasks.forecast.datasets import to_long

    frame = (
        dates_as_columns(long_panel({"east": 24}))
        if layout == "dates_as_columns"
        else series_as_columns()
    )
    time = "date" if layout == "dates_as_columns" else "month"
    series = ["store"] if layout == "dates_as_columns" else ["series"]
    spec = DatasetConfig(
        layout=layout, time_column=time, target="value", series_columns=series
    ).model_copy(update=keys)
    with pytest.raises(DataError, match=message):
        to_long(frame, spec, "wide.csv")
