"""Validation and preparation of raw tables: every defect is reported with its column, its
1-based data rows and its series, and nothing is written when the table is invalid."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainyard.errors import DataError
from trainyard.tasks.forecast.config import ConfigError, Params, params_from_dict
from trainyard.tasks.forecast.datasets import DatasetError
from trainyard.tasks.forecast.prepare import PREPARED_FILE, file_md5, prepare, read_prepared
from trainyard.tasks.forecast.validate import (
    SINGLE_SERIES,
    DataValidationError,
    series_grid,
    validate_table,
)

# Small windows: a series needs 8 + 4 + 8 + 8 = 28 steps.
WINDOWS = {"encoder_length": 8, "horizon": 4, "validation_length": 8, "holdout_length": 8}
NEEDED = 28


def make_params(name: str = "data.csv", **dataset: object) -> Params:
    values = {
        "name": name,
        "time_column": "date",
        "target": "y",
        "frequency": "D",
        "season_length": 7,
        "missing_target": "error",
        **dataset,
    }
    return params_from_dict({"dataset": values, "windows": WINDOWS})


def daily(n: int = 40, start: str = "2024-01-01", **columns: object) -> pd.DataFrame:
    """Returns a daily table: date as ISO text, y = 0..n-1, plus any extra columns."""
    frame = pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"),
            "y": np.arange(n, dtype=float),
        }
    )
    for name, value in columns.items():
        frame[name] = value
    return frame


def panel(lengths: dict[str, int], start: str = "2024-01-01") -> pd.DataFrame:
    """Returns a long daily panel with a `store` id column, sorted by store then date."""
    pieces = [daily(n, start).assign(store=store) for store, n in lengths.items()]
    return pd.concat(pieces, ignore_index=True)


def write_csv(root: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = root / name
    frame.to_csv(path, index=False)
    return path


def prepare_fails(params: Params, root: Path) -> DataValidationError:
    """Returns the validation error of prepare(), checking that nothing was written."""
    out_dir = root / "prepared"
    with pytest.raises(DataValidationError) as caught:
        prepare(params, root, out_dir)
    assert not out_dir.exists(), "a failed prepare must not write (or create) anything"
    return caught.value


def only_problem(error: DataValidationError):
    assert len(error.problems) == 1, error
    return error.problems[0]


# --- one test per defect -----------------------------------------------------------------------


def test_nan_target_is_an_error_naming_rows_and_the_gap_option(tmp_path: Path) -> None:
    frame = daily()
    frame.loc[[3, 10], "y"] = np.nan  # data rows 4 and 11
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(), tmp_path)

    problem = only_problem(error)
    assert problem.column == "y"
    assert problem.rows == [4, 11]
    assert problem.series == [SINGLE_SERIES]
    assert "missing_target: gap" in problem.fix
    message = str(error)
    assert "column 'y': empty (NaN) values" in message
    assert "rows 4, 11" in message
    assert str(tmp_path / "data.csv") in message


def test_many_bad_rows_quote_the_first_five(tmp_path: Path) -> None:
    frame = daily()
    bad = [2, 5, 6, 9, 12, 20, 30]
    frame.loc[bad, "y"] = np.nan
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(), tmp_path)

    assert only_problem(error).rows == [r + 1 for r in bad]  # every row is kept on the problem
    assert "rows 3, 6, 7, 10, 13 and 2 more" in str(error)  # the message quotes the first five


def test_infinite_target_names_both_signs(tmp_path: Path) -> None:
    frame = daily()
    frame.loc[4, "y"] = np.inf
    frame.loc[7, "y"] = -np.inf
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(), tmp_path))

    assert problem.column == "y"
    assert problem.what == "infinite values"
    assert problem.rows == [5, 8]


def test_values_too_large_for_float32_training_name_their_rows(tmp_path: Path) -> None:
    frame = daily()
    frame.loc[3, "y"] = 1e30
    frame.loc[9, "y"] = -2e20
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(), tmp_path)
    problem = only_problem(error)

    assert (problem.column, problem.what, problem.rows) == ("y", "values beyond +-1e19", [4, 10])
    assert "rescale the column" in str(error)


def test_duplicate_series_time_rows_name_the_series(tmp_path: Path) -> None:
    frame = panel({"a": 30, "b": 30})
    # Repeat b's 6th row right after it: data rows 36 and 37 share (b, 2024-01-06).
    frame = pd.concat([frame.iloc[:36], frame.iloc[[35]], frame.iloc[36:]], ignore_index=True)
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(series_columns=["store"]), tmp_path)

    problem = only_problem(error)
    assert problem.column == "date"
    assert problem.what == "duplicate (series, time) rows"
    assert problem.rows == [36, 37]
    assert problem.series == ["b"]


def test_rows_out_of_time_order_are_read_in_time_order(tmp_path: Path) -> None:
    frame = panel({"a": 30, "b": 30})
    write_csv(tmp_path, frame)
    ordered = prepare(make_params(series_columns=["store"]), tmp_path, tmp_path / "ordered")
    # b newest first, as many exports write it, and a's rows after b's.
    shuffled = pd.concat([frame.iloc[30:].iloc[::-1], frame.iloc[:30]], ignore_index=True)
    write_csv(tmp_path, shuffled)

    summary = prepare(make_params(series_columns=["store"]), tmp_path, tmp_path / "shuffled")

    pd.testing.assert_frame_equal(
        read_prepared(tmp_path / "shuffled" / PREPARED_FILE)[0],
        read_prepared(tmp_path / "ordered" / PREPARED_FILE)[0],
    )
    assert summary.rows == ordered.rows == 60


def test_unparseable_times(tmp_path: Path) -> None:
    frame = daily()
    frame.loc[4, "date"] = "not a date"
    frame.loc[9, "date"] = "2024-13-45"
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(), tmp_path))

    assert problem.column == "date"
    assert problem.what == "values that cannot be read as dates/times"
    assert problem.rows == [5, 10]


def test_text_in_numeric_target(tmp_path: Path) -> None:
    frame = daily()
    frame["y"] = frame["y"].astype(object)
    frame.loc[2, "y"] = "12 ppm"
    frame.loc[6, "y"] = "1,204"
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(), tmp_path))

    assert problem.column == "y"
    assert problem.what == "values that are not numbers (such as '12 ppm', '1,204')"
    assert problem.rows == [3, 7]
    assert "numeric" in problem.fix


def test_text_in_covariate_column_of_a_parquet_file(tmp_path: Path) -> None:
    frame = daily(price=[f"{i}.5" for i in range(40)])
    frame.loc[11, "price"] = "n/a"
    frame.to_parquet(tmp_path / "data.parquet", index=False)

    params = make_params("data.parquet", known_covariates=["price"])
    problem = only_problem(prepare_fails(params, tmp_path))

    assert problem.column == "price"
    assert problem.what == "values that are not numbers (such as 'n/a')"
    assert problem.rows == [12]


def test_every_problem_is_listed_in_one_error(tmp_path: Path) -> None:
    frame = daily(temp=np.arange(40, dtype=float))
    frame.loc[1, "y"] = np.nan
    frame.loc[3, "temp"] = np.inf
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(unknown_covariates=["temp"]), tmp_path)

    found = {(p.column, p.what, tuple(p.rows)) for p in error.problems}
    assert found == {("y", "empty (NaN) values", (2,)), ("temp", "infinite values", (4,))}
    assert "2 problem(s) found" in str(error)


def test_series_too_short_names_the_short_series(tmp_path: Path) -> None:
    frame = panel({"a": 40, "b": NEEDED - 3, "c": NEEDED})
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(series_columns=["store"]), tmp_path))

    assert problem.column == "date"
    assert problem.series == ["b"]
    assert f"at least {NEEDED} steps" in problem.what
    assert f"shortest has {NEEDED - 3}" in problem.what
    assert "encoder 8 + horizon 4 + validation 8 + holdout 8" in problem.what
    assert "short_series: drop" in problem.fix


def test_a_series_long_enough_but_with_too_few_values_is_too_short(tmp_path: Path) -> None:
    frame = panel({"a": 40, "b": NEEDED + 2})
    b = frame.index[frame["store"] == "b"]
    frame.loc[b[10:15], "y"] = np.nan  # five gaps: NEEDED - 3 steps with a value
    write_csv(tmp_path, frame)

    params = make_params(series_columns=["store"], missing_target="gap")
    problem = only_problem(prepare_fails(params, tmp_path))

    assert problem.series == ["b"]
    assert f"shortest has {NEEDED - 3} steps with a value" in problem.what


def test_short_series_drop_leaves_out_the_short_series_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path, panel({"a": 40, "b": NEEDED - 3, "c": NEEDED}))
    params = make_params(series_columns=["store"], short_series="drop")

    with caplog.at_level("WARNING"):
        summary = prepare(params, tmp_path, tmp_path / "prepared")

    table, meta = read_prepared(tmp_path / "prepared" / PREPARED_FILE)
    assert sorted(table["store"].unique()) == ["a", "c"]
    assert summary.series == 2 and summary.rows == 40 + NEEDED
    assert summary.left_out_series == 1 and meta["left_out_series"] == ["b"]
    assert "1 series too short left out" in summary.description
    assert f"left out 1 series shorter than the {NEEDED} steps" in caplog.text
    assert caplog.text.rstrip().endswith(": b")


def test_short_series_drop_with_every_series_too_short_is_still_an_error(tmp_path: Path) -> None:
    write_csv(tmp_path, panel({"a": NEEDED - 1, "b": NEEDED - 3}))
    params = make_params(series_columns=["store"], short_series="drop")

    problem = only_problem(prepare_fails(params, tmp_path))

    assert problem.what.startswith("every series is too short")
    assert problem.series == ["a", "b"]
    assert problem.fix == "shorten windows.* in params.yaml"


def test_a_served_history_too_short_is_refused_even_under_short_series_drop() -> None:
    # What the pyfunc checks its input with: no validation or holdout, a forecast from the end.
    params = make_params(series_columns=["store"], short_series="drop")
    windows = params.windows.model_copy(
        update={"horizon": 0, "validation_length": 0, "holdout_length": 0}
    )
    spec = params.dataset.model_copy(update={"short_series": "error"})
    with pytest.raises(DataValidationError) as caught:
        validate_table(panel({"a": 20, "b": 5}), spec, windows, "model input")
    problem = only_problem(caught.value)
    assert problem.series == ["b"]
    assert (
        problem.fix
        == f"give each series at least {windows.encoder_length} steps of history, or leave it out"
    )


def test_unknown_short_series_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="short_series must be 'error' or 'drop'"):
        make_params(short_series="skip")


def test_a_series_of_exactly_the_needed_length_is_accepted(tmp_path: Path) -> None:
    write_csv(tmp_path, daily(NEEDED))

    summary = prepare(make_params(), tmp_path, tmp_path / "prepared")

    assert summary.rows == NEEDED


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(b"")

    with pytest.raises(DatasetError, match="the file is empty"):
        prepare(make_params(), tmp_path, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_header_only_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("date,y\n")

    problem = only_problem(prepare_fails(make_params(), tmp_path))

    assert "no rows" in problem.what


def test_missing_columns_are_each_named_with_the_columns_present(tmp_path: Path) -> None:
    write_csv(tmp_path, daily().rename(columns={"y": "value"}))

    error = prepare_fails(make_params(known_covariates=["price"]), tmp_path)

    assert [p.column for p in error.problems] == ["y", "price"]
    assert all(p.what == "column is missing" for p in error.problems)
    assert "date, value" in error.problems[0].fix


@pytest.mark.parametrize(
    ("frequency", "start", "bad_time", "row"),
    [
        # Midday in a daily table: a row prepare's grid would otherwise drop silently.
        ("D", "2024-01-01", "2024-01-06 12:00:00", 6),
        ("W-SAT", "2024-01-06", "2024-03-13", 11),  # a Wednesday in a Saturday-weekly table
        ("W-SAT", "2024-01-06", "2024-03-16 06:00:00", 11),  # the right day, the wrong hour
        ("MS", "2020-01-01", "2021-10-15", 22),  # mid-month in a month-start table
    ],
)
def test_times_off_the_frequency_grid(
    tmp_path: Path, frequency: str, start: str, bad_time: str, row: int
) -> None:
    dates = pd.date_range(start, periods=40, freq=frequency).strftime("%Y-%m-%d %H:%M:%S")
    frame = pd.DataFrame({"date": dates, "y": np.arange(40.0)})
    frame.loc[row - 1, "date"] = bad_time
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(frequency=frequency), tmp_path))

    assert problem.column == "date"
    assert problem.what == f"times not on the {frequency} grid"
    assert problem.rows == [row]


def test_unknown_frequency_alias(tmp_path: Path) -> None:
    write_csv(tmp_path, daily())

    problem = only_problem(prepare_fails(make_params(frequency="fortnightly"), tmp_path))

    assert "not a pandas frequency" in problem.what


def test_unknown_missing_target_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dataset.missing_target must be 'error' or 'gap'"):
        make_params(missing_target="drop")


def test_failed_prepare_keeps_the_previous_prepared_file(tmp_path: Path) -> None:
    out_dir = tmp_path / "prepared"
    write_csv(tmp_path, daily())
    good = prepare(make_params(), tmp_path, out_dir)
    frame = daily()
    frame["y"] = frame["y"].astype(object)
    frame.loc[5, "y"] = "oops"
    write_csv(tmp_path, frame)

    with pytest.raises(DataValidationError):
        prepare(make_params(), tmp_path, out_dir)

    assert sorted(p.name for p in out_dir.iterdir()) == [PREPARED_FILE]  # no temporary left
    assert file_md5(out_dir / PREPARED_FILE) == good.md5


# --- what passes, and what the gap policy does ------------------------------------------------


def test_validate_table_returns_typed_columns() -> None:
    frame = panel({"a": 30, "b": 30})
    frame["store"] = frame["store"].map({"a": 1, "b": 2})
    frame["y"] = frame["y"].astype(int)
    spec = make_params(series_columns=["store"]).dataset

    typed, _ = validate_table(frame, spec, make_params().windows, "test")

    assert pd.api.types.is_datetime64_any_dtype(typed["date"])
    assert typed["y"].dtype == np.float64
    assert typed["store"].tolist() == ["1"] * 30 + ["2"] * 30
    assert list(typed.columns) == ["date", "y", "store"]


def test_gap_policy_accepts_and_counts_nan_targets(tmp_path: Path) -> None:
    frame = daily()
    frame.loc[[3, 10, 11], "y"] = np.nan
    write_csv(tmp_path, frame)

    summary = prepare(make_params(missing_target="gap"), tmp_path, tmp_path / "prepared")

    assert (summary.rows, summary.inserted_steps, summary.missing_target) == (40, 0, 3)
    table, meta = read_prepared(Path(summary.path))
    assert np.flatnonzero(table["y"].isna().to_numpy()).tolist() == [3, 10, 11]
    assert meta["missing_target"] == 3


def test_time_gaps_are_reindexed_covariates_filled_target_left_missing(
    tmp_path: Path,
) -> None:
    # Covariates are linear in time: interpolating the known one must reproduce it exactly,
    # the unknown one carries its last earlier value forward (no look-ahead).
    frame = daily(price=np.arange(40) * 2.0, temp=100.0 - np.arange(40))
    frame.loc[15, "y"] = np.nan  # an empty target cell
    frame.loc[20, "temp"] = np.nan  # an empty covariate cell
    frame = frame.drop(index=[5, 6, 30])  # three missing days
    write_csv(tmp_path, frame)
    params = make_params(
        missing_target="gap", known_covariates=["price"], unknown_covariates=["temp"]
    )

    summary = prepare(params, tmp_path, tmp_path / "prepared")

    assert summary.series == 1
    assert summary.rows == 40
    assert summary.inserted_steps == 3
    assert summary.missing_target == 4  # 3 inserted steps + 1 empty target cell
    assert summary.interpolated_covariates == 3  # price on the inserted steps
    assert summary.forward_filled_covariates == 3 + 1  # temp on them, and its empty cell
    table, _ = read_prepared(Path(summary.path))
    assert table["time_idx"].tolist() == list(range(40))
    assert table["date"].tolist() == list(pd.date_range("2024-01-01", periods=40, freq="D"))
    assert np.flatnonzero(table["y"].isna().to_numpy()).tolist() == [5, 6, 15, 30]
    observed = table["y"].notna()
    np.testing.assert_array_equal(table.loc[observed, "y"], np.flatnonzero(observed))
    np.testing.assert_allclose(table["price"], np.arange(40) * 2.0)
    carried = {5: 4, 6: 4, 20: 19, 30: 29}  # step -> the step whose temp it carries
    expected = [100.0 - carried.get(step, step) for step in range(40)]
    np.testing.assert_allclose(table["temp"], expected)


def test_covariate_gaps_at_the_ends_are_filled_from_the_nearest_value(tmp_path: Path) -> None:
    frame = daily(price=np.arange(40, dtype=float))
    frame.loc[[0, 1], "price"] = np.nan
    frame.loc[39, "price"] = np.nan
    write_csv(tmp_path, frame)

    summary = prepare(make_params(known_covariates=["price"]), tmp_path, tmp_path / "prepared")

    table, _ = read_prepared(Path(summary.path))
    assert summary.interpolated_covariates == 3
    assert table["price"].iloc[:3].tolist() == [2.0, 2.0, 2.0]
    assert table["price"].iloc[-1] == 38.0


def test_panel_prepares_each_series_on_its_own_grid(tmp_path: Path) -> None:
    lengths = {"north": 40, "south": 30, "west": 35}
    frame = pd.concat(
        [
            daily(40, "2024-01-01").assign(store="north"),
            daily(30, "2024-01-11").assign(store="south"),
            daily(35, "2024-01-06").assign(store="west"),
        ],
        ignore_index=True,
    )
    frame = frame.sample(frac=1.0, random_state=0)  # row order across series does not matter
    frame = frame.sort_values(["store", "date"], kind="stable")
    frame = frame.drop(index=frame.index[frame["store"].eq("west")][10])  # one gap in west
    write_csv(tmp_path, frame)

    summary = prepare(
        make_params(series_columns=["store"], missing_target="gap"), tmp_path, tmp_path / "out"
    )

    assert summary.series == 3
    assert summary.rows == sum(lengths.values())
    assert (summary.inserted_steps, summary.missing_target) == (1, 1)
    table, _ = read_prepared(Path(summary.path))
    for store, n in lengths.items():
        part = table[table["series_id"] == store]
        assert part["store"].eq(store).all()
        assert part["time_idx"].tolist() == list(range(n))
        splits = part["split"].tolist()
        assert splits == ["train"] * (n - 16) + ["validation"] * 8 + ["holdout"] * 8
    west = table[table["series_id"] == "west"]
    assert west["y"].isna().to_numpy().nonzero()[0].tolist() == [10]


def test_panel_with_two_id_columns_labels_series_by_both(tmp_path: Path) -> None:
    frame = pd.concat(
        [
            daily(30).assign(store=store, item=item)
            for store in ("s1", "s2")
            for item in ("apples", "pears")
        ],
        ignore_index=True,
    )
    frame.loc[frame.index[-1], "y"] = np.nan  # last row of s2/pears
    write_csv(tmp_path, frame)

    params = make_params(series_columns=["store", "item"])
    problem = only_problem(prepare_fails(params, tmp_path))
    assert problem.series == ["s2/pears"]
    assert problem.rows == [120]

    summary = prepare(
        make_params(series_columns=["store", "item"], missing_target="gap"),
        tmp_path,
        tmp_path / "prepared",
    )
    table, _ = read_prepared(Path(summary.path))
    assert summary.series == 4
    assert sorted(table["series_id"].unique()) == ["s1/apples", "s1/pears", "s2/apples", "s2/pears"]


def test_parquet_table_with_native_timestamps_prepares(tmp_path: Path) -> None:
    frame = daily()
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(tmp_path / "data.parquet", index=False)

    summary = prepare(make_params("data.parquet"), tmp_path, tmp_path / "prepared")

    assert (summary.rows, summary.missing_target) == (40, 0)


def test_builtin_co2_prepares_with_its_missing_weeks(tmp_path: Path) -> None:
    params = params_from_dict({"dataset": {"name": "co2", "missing_target": "gap"}, "windows": {}})

    summary = prepare(params, tmp_path, tmp_path)

    assert summary.series == 1
    assert summary.rows == 2284
    assert summary.missing_target == 59
    assert summary.inserted_steps == 0
    table, meta = read_prepared(Path(summary.path))
    assert table["co2"].isna().sum() == 59
    assert table["split"].value_counts().to_dict() == {
        "train": 2284 - 208,
        "validation": 104,
        "holdout": 104,
    }
    assert meta["source"] == "built-in dataset 'co2'"


def test_builtin_co2_with_missing_target_error_names_the_missing_weeks(tmp_path: Path) -> None:
    params = params_from_dict({"dataset": {"name": "co2", "missing_target": "error"}})

    problem = only_problem(prepare_fails(params, tmp_path))

    assert problem.column == "co2"
    assert len(problem.rows) == 59


def test_covariate_empty_for_a_whole_series_names_the_series(tmp_path: Path) -> None:
    frame = panel({"a": 40, "b": 40}).assign(price=1.0)
    frame.loc[frame["store"] == "b", "price"] = np.nan
    write_csv(tmp_path, frame)
    params = make_params(series_columns=["store"], known_covariates=["price"])

    problem = only_problem(prepare_fails(params, tmp_path))

    assert problem.column == "price"
    assert "empty for a whole series" in problem.what
    assert problem.series == ["b"]


def test_seasonal_naive_needs_a_season_before_the_holdout(tmp_path: Path) -> None:
    write_csv(tmp_path, daily(NEEDED + 2))  # long enough for the windows, not for a season
    params = make_params(season_length=30)  # needs 30 + holdout 8 = 38 steps

    problem = only_problem(prepare_fails(params, tmp_path))

    assert "season_length 30 + holdout 8" in problem.what
    assert "needs at least 38 steps" in problem.what


def test_a_series_constant_over_its_training_part_is_named_before_training(
    tmp_path: Path,
) -> None:
    frame = panel({"a": 40, "b": 40})
    frame.loc[frame["store"] == "b", "y"] = 5.0
    write_csv(tmp_path, frame)
    params = make_params(series_columns=["store"])
    with pytest.raises(DataError) as caught:
        prepare(params, tmp_path, tmp_path / "prepared")
    message = str(caught.value)
    assert "y is constant or repeats exactly every season (7 steps)" in message
    assert "training part of series b:" in message and "drop these series" in message
    assert not (tmp_path / "prepared").exists()


def test_a_latin1_csv_names_the_file_line_and_says_save_as_utf8(tmp_path: Path) -> None:
    text = "date,y,city\n2024-01-01,1.0,Paris\n2024-01-02,2.0,Bogot\xe1\n"
    (tmp_path / "data.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError) as caught:
        prepare(make_params(), tmp_path, tmp_path / "prepared")
    message = str(caught.value)
    assert "data.csv: not UTF-8 at byte offset 53 (line 3: byte 0xe1)" in message
    assert "save the file as UTF-8" in message
    assert not (tmp_path / "prepared").exists()


def test_a_binary_file_named_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00 zipped workbook")
    with pytest.raises(DataError, match=r"data\.csv: binary file \(NUL byte at byte offset 5\)"):
        prepare(make_params(), tmp_path, tmp_path / "prepared")


# --- time zones and numbers in the time column -------------------------------------------------


@pytest.mark.parametrize(
    ("first_offset", "later_offset", "seen"),
    [
        ("+01:00", "+02:00", ["+01:00 (first in row 1)", "+02:00 (first in row 21)"]),
        ("", "+01:00", ["no offset (first in row 1)", "+01:00 (first in row 21)"]),
    ],
)
def test_times_with_different_utc_offsets_name_the_rows_and_ask_for_one_zone(
    tmp_path: Path, first_offset: str, later_offset: str, seen: list[str]
) -> None:
    frame = daily()
    times = frame["date"] + "T00:00:00"
    frame["date"] = times + first_offset
    frame.loc[20:, "date"] = times[20:] + later_offset  # data rows 21..40
    write_csv(tmp_path, frame)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' own FutureWarning about offsets stays unseen
        error = prepare_fails(make_params(), tmp_path)

    problem = only_problem(error)
    assert problem.column == "date"
    assert problem.rows == list(range(21, 41))
    assert problem.series == [SINGLE_SERIES]
    for text in seen:
        assert text in problem.what
    assert "one time zone" in problem.what
    assert "pd.to_datetime(df['date'], utc=True)" in problem.fix
    assert "local times without an offset" in problem.fix
    assert "rows 21, 22, 23, 24, 25 and 15 more" in str(error)


def test_mixed_offsets_and_unreadable_times_are_reported_together(tmp_path: Path) -> None:
    frame = daily()
    frame["date"] = frame["date"] + "T00:00:00+01:00"
    frame.loc[30, "date"] = "2024-01-31T00:00:00+02:00"
    frame.loc[4, "date"] = "not a date"
    write_csv(tmp_path, frame)

    error = prepare_fails(make_params(), tmp_path)

    found = {(p.what.split(":")[0], tuple(p.rows)) for p in error.problems}
    assert found == {
        ("times with different UTC offsets", (31,)),
        ("values that cannot be read as dates/times", (5,)),
    }


@pytest.mark.parametrize("written", ["csv +01:00", "csv Z", "parquet Europe/Paris"])
def test_times_in_one_zone_keep_their_local_clock_time(tmp_path: Path, written: str) -> None:
    # 2024-03-31 is a daylight-saving change in Paris: daily local times stay on the D grid.
    frame = daily(start="2024-03-10")
    dates = pd.to_datetime(frame["date"])
    if written == "csv +01:00":
        frame["date"] = dates.dt.strftime("%Y-%m-%dT%H:%M:%S+01:00")
    elif written == "csv Z":
        frame["date"] = dates.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        frame["date"] = dates.dt.tz_localize("Europe/Paris")
    name = "data.parquet" if written.startswith("parquet") else "data.csv"
    if name.endswith(".parquet"):
        frame.to_parquet(tmp_path / name, index=False)
    else:
        write_csv(tmp_path, frame)

    summary = prepare(make_params(name), tmp_path, tmp_path / "prepared")

    table, _ = read_prepared(Path(summary.path))
    # Naive datetimes, as from a table without zones (an MLflow signature takes them as is).
    assert pd.api.types.is_datetime64_dtype(table["date"])
    assert not isinstance(table["date"].dtype, pd.DatetimeTZDtype)
    assert table["date"].tolist() == dates.tolist()


def test_hourly_times_across_a_daylight_saving_change_ask_for_utc(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-30", periods=60, freq="h", tz="Europe/Paris")
    frame = pd.DataFrame({"date": times, "y": np.arange(60.0)})
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    change = times.get_loc(pd.Timestamp("2024-03-31 03:00", tz="Europe/Paris"))  # after 01:00

    problem = only_problem(prepare_fails(make_params("data.parquet", frequency="h"), tmp_path))

    assert problem.column == "date"
    assert "zone Europe/Paris change UTC offset (daylight saving)" in problem.what
    assert problem.rows == [change + 1]
    assert "df['date'] = df['date'].dt.tz_convert('UTC')" in problem.fix


@pytest.mark.parametrize(
    ("unit", "divisor", "first", "fix"),
    [
        ("seconds", 10**6, 1704067200, "pd.to_datetime(df['date'], unit='s')"),
        ("milliseconds", 10**3, 1704067200000, "pd.to_datetime(df['date'], unit='ms')"),
    ],
)
def test_epoch_numbers_in_the_time_column_are_refused_with_the_conversion(
    tmp_path: Path, unit: str, divisor: int, first: int, fix: str
) -> None:
    frame = daily()
    micros = pd.to_datetime(frame["date"]).astype("datetime64[us]").astype("int64")
    frame["date"] = micros // divisor
    frame.to_parquet(tmp_path / "data.parquet", index=False)

    error = prepare_fails(make_params("data.parquet"), tmp_path)

    problem = only_problem(error)
    assert problem.column == "date"
    assert problem.what == f"numbers instead of dates/times (row 1 holds {first})"
    assert fix in problem.fix
    assert f"counts {unit} since 1970-01-01 UTC ({first} would be 2024-01-01 00:00:00)" in str(
        error
    )


@pytest.mark.parametrize("kind", ["int", "float"])  # a CSV column with an empty cell is float
def test_yyyymmdd_numbers_in_a_csv_time_column_are_read_as_dates(tmp_path: Path, kind) -> None:
    frame = daily()
    expected = pd.to_datetime(frame["date"])
    frame["date"] = frame["date"].str.replace("-", "").astype(kind)
    write_csv(tmp_path, frame)

    prepare(make_params(), tmp_path, tmp_path / "prepared")

    table, _ = read_prepared(tmp_path / "prepared" / PREPARED_FILE)
    assert table["date"].tolist() == expected.tolist()


def test_years_as_numbers_are_read_as_the_first_of_january(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": np.arange(1960.0, 2000.0), "y": np.arange(40.0) % 7})
    write_csv(tmp_path, frame)

    prepare(make_params(frequency="YS", season_length=1), tmp_path, tmp_path / "prepared")

    table, _ = read_prepared(tmp_path / "prepared" / PREPARED_FILE)
    assert table["date"].iloc[0] == pd.Timestamp("1960-01-01")
    assert table["date"].iloc[-1] == pd.Timestamp("1999-01-01")


@pytest.mark.parametrize(
    ("values", "first"),
    [
        pytest.param([1999, 2000, 20010101], 1999, id="years-and-a-yyyymmdd"),
        pytest.param([20240131, 20240230, 20240331], 20240131, id="no-30-february"),
        pytest.param([2001.5, 2002.5, 2003.5], 2001.5, id="fractions"),
    ],
)
def test_numbers_that_are_not_all_years_or_all_dates_are_refused(
    tmp_path: Path, values: list, first: object
) -> None:
    frame = daily(len(values))
    frame["date"] = values
    write_csv(tmp_path, frame)

    problem = only_problem(prepare_fails(make_params(), tmp_path))

    assert problem.what == f"numbers instead of dates/times (row 1 holds {first})"


# --- nearly constant series ----------------------------------------------------------------------


@pytest.mark.parametrize("change", ["one tiny step", "float64 noise"])
def test_a_nearly_constant_series_is_named_before_training(tmp_path: Path, change: str) -> None:
    frame = panel({"a": 40, "b": 40})
    b = frame["store"] == "b"
    if change == "one tiny step":
        frame.loc[b, "y"] = 5.0
        frame.loc[frame.index[b][10], "y"] = 5.0 + 1e-9
    else:
        noise = np.random.default_rng(0).normal(0.0, 1e-9, int(b.sum()))
        frame.loc[b, "y"] = 1000.0 + noise
    write_csv(tmp_path, frame)

    with pytest.raises(DataError) as caught:
        prepare(make_params(series_columns=["store"]), tmp_path, tmp_path / "prepared")

    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'data.csv'}: y is nearly constant")
    assert "training part of series b (seasonal naive MAE" in message
    assert "series a" not in message
    assert "float32's resolution" in message and "drop these series" in message
    assert not (tmp_path / "prepared").exists()


def test_a_series_of_small_values_is_not_called_constant(tmp_path: Path) -> None:
    frame = daily()
    frame["y"] = 1e-6 * np.sin(np.arange(40) / 3.0)  # tiny units, but it varies at its level
    write_csv(tmp_path, frame)

    summary = prepare(make_params(), tmp_path, tmp_path / "prepared")

    assert summary.rows == 40


def test_builtin_macro_panel_prepares(tmp_path: Path) -> None:
    params = params_from_dict(
        {
            "dataset": {
                "name": "macro_panel",
                "time_column": "date",
                "target": "value",
                "series_columns": ["series"],
                "frequency": "QE-DEC",
                "season_length": 4,
            },
            "windows": {
                "encoder_length": 16,
                "horizon": 4,
                "validation_length": 16,
                "holdout_length": 16,
            },
        }
    )

    summary = prepare(params, tmp_path, tmp_path)

    assert (summary.series, summary.rows) == (6, 6 * 203)


def test_series_grid_places_rows_as_a_date_range_per_series_would() -> None:
    rng = np.random.default_rng(0)
    parts = []
    for i in range(40):  # monthly series starting in different months, with gaps
        times = pd.date_range(f"2020-{1 + i % 12:02d}-01", periods=30 + i, freq="MS")
        keep = rng.random(len(times)) > 0.2
        keep[[0, -1]] = True
        parts.append(pd.DataFrame({"s": f"s{i}", "t": times[keep]}))
    frame = pd.concat(parts).sample(frac=1, random_state=0).reset_index(drop=True)
    frame.loc[len(frame)] = ["s3", pd.Timestamp("2020-07-15")]  # off the grid

    grid = series_grid(frame["t"], frame["s"], pd.tseries.frequencies.to_offset("MS"))

    for code, label in enumerate(grid.labels):
        rows = np.flatnonzero(grid.codes == code)
        times = frame["t"].iloc[rows]
        expected = pd.date_range(times.min(), times.max(), freq="MS")
        on = times.isin(expected).to_numpy()
        assert grid.lengths[code] == len(expected), label
        assert (grid.steps[rows][~on] == -1).all()
        assert (expected[grid.steps[rows][on]] == times[on]).all()
    assert grid.steps[-1] == -1 and (grid.steps[:-1] >= 0).all()
    whole = grid.times(np.array([1, 0]))
    assert len(whole) == grid.lengths[1] + grid.lengths[0]


def test_series_grid_keeps_a_time_zone_and_an_odd_start_of_hourly_data() -> None:
    times = pd.date_range("2021-03-27 10:30", periods=60, freq="h", tz="Europe/Berlin")
    kept = pd.Series(times.delete([5, 6, 40]))

    grid = series_grid(
        kept, pd.Series("a", index=kept.index), pd.tseries.frequencies.to_offset("h")
    )

    assert grid.lengths.tolist() == [60] and (grid.steps >= 0).all()
    assert grid.times(np.array([0])).equals(times)  # across the DST change, in its zone
