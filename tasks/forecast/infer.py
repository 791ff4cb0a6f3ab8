"""Returns the forecast dataset and windows keys of a table, inferred where the user set none.

What is inferred from a long-format table (one row per series and time):

- time_column: the only column whose values read as dates/times;
- series_columns: none when every time occurs once (one series); else the one text column
  (failing that, the one whole-number column) that makes (series, time) unique;
- target: the only numeric column, besides those, that varies within a series;
- missing_target: gap when the target has empty cells, else error;
- frequency: pandas' infer_freq, or the most common step between times when there are gaps,
  checked like the prepare step checks it (every time on one grid per series);
- season_length: from the frequency (h 24, D 7, B 5, W 52, M 12, Q 4, Y 1), 1 when the
  shortest series' training part cannot hold two seasons;
- windows: a horizon by frequency (h 24, D 14, W 12, M 12, Q 8, Y 3), capped to an eighth of the
  shortest series, with validation and holdout parts of at least MIN_ORIGINS rolling origins
  and an encoder of max(2 x horizon, season_length) steps where the series are long enough.

What is inferred first is the layout: a table with no column of times and at least two column
headers that are dates (2024-01-31, 2024-01, a year alone) holds a series per row
("dates_as_columns": its other columns name the series), and is melted to long with a "date"
and a "value" column; else the table is long. A table with a column per series beside one time
column is read so when --layout series_as_columns says so (a table with several numeric
columns is otherwise ambiguous: a target and its covariates, or many series). Ambiguity raises
ConfigError naming the file, the candidates and the flag that settles it; a table no choice can
fix raises DataError.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainyard.config import section_from_dict
from trainyard.errors import ConfigError, DataError
from trainyard.tasks.forecast import periods
from trainyard.tasks.forecast.config import LAYOUTS, DatasetConfig, WindowConfig
from trainyard.tasks.forecast.datasets import (
    BUILTIN_DATASETS,
    DATES_AS_COLUMNS,
    EMPTY_SERIES,
    LONG,
    PERIODS_AS_COLUMNS,
    SERIES_AS_COLUMNS,
    header_times,
    period_headers,
    read_table,
    to_long,
)
from trainyard.tasks.forecast.validate import (
    SINGLE_SERIES,
    DataValidationError,
    SeriesGrid,
    number_times,
    read_times,
    series_grid,
    series_labels,
    steps_needed,
)

MIN_ORIGINS = 3  # rolling forecast origins the validation and holdout parts each hold at least
MAX_ENCODER = 120  # the default TCN sees 125 past steps (train.tcn); a longer encoder fails it
DATE_SAMPLE = 200  # distinct values read to decide whether a column holds dates
SHOWN = 8  # candidates or columns named in one message
# At most this share of a panel's series is left out (short_series: drop) as too short for the
# frequency's usual windows; with more, the windows are cut to fit the shortest series.
MAX_LEFT_OUT = 0.25

# The flag that pins each key on the command line (the others are params.yaml keys only).
FLAGS = {
    "layout": "--layout",
    "time_column": "--time-column",
    "target": "--target",
    "series_columns": "--series-column",
    "frequency": "--frequency",
    "season_length": "--season-length",
    "horizon": "--horizon",
}
DATASET_KEYS = (
    "layout",
    "time_column",
    "period_column",
    "target",
    "series_columns",
    "known_covariates",
    "unknown_covariates",
    "frequency",
    "season_length",
    "missing_target",
    "short_series",
    "flat_series",
)
WINDOW_KEYS = (
    "encoder_length",
    "shorter_encoders",
    "horizon",
    "validation_length",
    "holdout_length",
)


@dataclass
class Pins:
    """Keys the user fixed (None: infer it), and where each was fixed, for messages."""

    layout: str | None = None  # LAYOUTS
    time_column: str | None = None
    period_column: str | None = None  # "" when the time column alone holds the times
    target: str | None = None
    series_columns: list[str] | None = None
    known_covariates: list[str] | None = None
    unknown_covariates: list[str] | None = None
    frequency: str | None = None
    season_length: int | None = None  # steps per season
    missing_target: str | None = None  # "error" or "gap"
    short_series: str | None = None  # "error" or "drop"
    flat_series: str | None = None  # "error" or "drop"
    horizon: int | None = None  # steps forecast
    encoder_length: int | None = None  # steps a model sees
    shorter_encoders: list[int] | None = None  # encoders LSTM/TCN also train a network on
    validation_length: int | None = None  # steps before the holdout, for early stopping
    holdout_length: int | None = None  # last steps of every series, for the evaluation
    origins: dict[str, str] = field(default_factory=dict)  # key -> "--target", "params.yaml"

    def origin(self, key: str) -> str:
        """Returns where `key` was pinned: its flag unless told otherwise."""
        return self.origins.get(key, FLAGS.get(key, "pinned"))

    @classmethod
    def given(cls, command_line: dict[str, Any], configured: Pins) -> Pins:
        """Returns the keys given on the command line over those params.yaml sets for the same
        table; a horizon given there refits the windows params.yaml sized for its own."""
        if "horizon" in command_line:
            configured = replace(
                configured,
                encoder_length=None,
                shorter_encoders=None,
                validation_length=None,
                holdout_length=None,
            )
        pins = cls(**command_line)
        values = {
            f.name: getattr(configured, f.name)
            if getattr(pins, f.name) is None
            else getattr(pins, f.name)
            for f in fields(cls)
            if f.name != "origins"
        }
        origins = {
            key: configured.origins[key] for key in configured.origins if key not in command_line
        }
        return cls(**values, origins=origins)


def pins_from_section(section: dict[str, Any], table: str, root: Path, where: str) -> Pins:
    """Returns the dataset and windows keys a params.yaml section sets, as pins, when its
    dataset.name is the file `table` (both relative to `root`); no pins otherwise (they
    describe another table). Raises ConfigError naming a key of the wrong kind."""
    dataset = section.get("dataset") if isinstance(section.get("dataset"), dict) else {}
    name = dataset.get("name")
    if not isinstance(name, str) or name in BUILTIN_DATASETS:
        return Pins()
    if _resolved(name, root) != _resolved(table, root):
        return Pins()
    windows = section.get("windows") if isinstance(section.get("windows"), dict) else {}
    values = {}
    for config, given, keys, prefix in (
        (DatasetConfig, dataset, DATASET_KEYS, "dataset"),
        (WindowConfig, windows, WINDOW_KEYS, "windows"),
    ):
        present = {key: given[key] for key in keys if key in given}
        typed = section_from_dict(config, present, f"{where}: forecast.{prefix}")
        values.update({key: getattr(typed, key) for key in present})
    return Pins(**values, origins=dict.fromkeys(values, where))


def _resolved(name: str, root: Path) -> Path:
    path = Path(name).expanduser()
    return (path if path.is_absolute() else root / path).resolve()


@dataclass
class Choice:
    """One inferred or pinned key: its value and how it came about."""

    key: str
    value: Any
    how: str  # why this value, in a few words
    pinned: bool = False

    def line(self) -> str:
        """Returns the choice as one line for the console."""
        value = (
            ", ".join(map(str, self.value)) or "none"
            if isinstance(self.value, list)
            else self.value
            if self.value != ""
            else "none"
        )
        flag = FLAGS.get(self.key)
        pin = "" if self.pinned or flag is None else f"  [pin: {flag}]"
        return f"{self.key}: {value} ({self.how}){pin}"


@dataclass
class Inference:
    """The forecast dataset and windows keys of one table, and how each was settled."""

    source: str  # the table, for messages
    dataset: dict[str, Any]  # the DATASET_KEYS
    windows: dict[str, Any]  # the WINDOW_KEYS
    choices: list[Choice]

    def section(self) -> dict[str, Any]:
        """Returns the keys as raw forecast-section values: {"dataset": ..., "windows": ...}."""
        return {"dataset": dict(self.dataset), "windows": dict(self.windows)}

    def lines(self) -> list[str]:
        """Returns one line per key, for the console."""
        return [choice.line() for choice in self.choices]


def infer_file(name: str, root: Path, pins: Pins | None = None) -> Inference:
    """Returns the keys of the CSV/Parquet table `name` (relative to `root`), inferred where
    `pins` leaves them open."""
    frame, source = read_table(name, root)
    return infer_keys(frame, source, pins or Pins())


def infer_keys(frame: pd.DataFrame, source: str, pins: Pins) -> Inference:
    """Returns the keys of `frame`, inferred where `pins` leaves them open; raises ConfigError
    when a choice is ambiguous (naming the candidates and the flag), DataError when the table
    cannot be read as time series at all. A wide table is melted first (the layout)."""
    if frame.empty:
        raise DataError(f"{source}: the table has no rows; export the data again")
    frame = frame.rename(columns=str)
    layout, how = _layout_of(frame, source, pins)
    empty: list[str] = []
    period = ("", "")
    if layout != LONG:
        frame, pins, period = _melted(frame, source, layout, pins)
        empty = list(frame.attrs.get(EMPTY_SERIES, []))
    inference = _long_keys(frame, source, pins, empty)
    inference.dataset = {"layout": layout, **inference.dataset}
    inference.choices.insert(0, Choice("layout", layout, how, pins.layout is not None))
    if layout == SERIES_AS_COLUMNS and (period[0] or pins.period_column is not None):
        # the melt read the years' quarters or months: the long table's times are dates
        inference.dataset["period_column"] = period[0]
        pinned = pins.period_column is not None
        inference.choices.insert(2, Choice("period_column", period[0], period[1], pinned))
    return inference


def _long_keys(frame: pd.DataFrame, source: str, pins: Pins, empty: list[str]) -> Inference:
    """Returns the keys of long `frame` (infer_keys); `empty` names the series a wide table
    held no value for (series of no steps, left out under short_series: drop)."""
    choices: list[Choice] = []
    covariates = [*(pins.known_covariates or []), *(pins.unknown_covariates or [])]
    for key in ("known_covariates", "unknown_covariates"):
        for name in getattr(pins, key) or []:
            _require_column(frame, name, key, pins, source)

    time_column, how = _time_column(frame, source, pins, covariates)
    choices.append(Choice("time_column", time_column, how, pins.time_column is not None))
    period, how = _period_column(frame, time_column, source, pins, covariates)
    if period or pins.period_column is not None:
        choices.append(Choice("period_column", period, how, pins.period_column is not None))
    times = _read_times(frame, time_column, source, period)
    covariates = [*covariates, *([period] if period else [])]  # taken

    series, how = _series_columns(frame, times, time_column, source, pins, covariates)
    choices.append(Choice("series_columns", series, how, pins.series_columns is not None))
    labels = series_labels(frame, series)

    target, how = _target(frame, labels, source, pins, [time_column, *series, *covariates])
    choices.append(Choice("target", target, how, pins.target is not None))
    missing, how = _missing_target(frame[target], times, labels, pins)
    choices.append(Choice("missing_target", missing, how, pins.missing_target is not None))

    steps = _series_times(times, labels)
    frequency, how = _frequency(steps, source, time_column, pins)
    choices.append(Choice("frequency", frequency, how, pins.frequency is not None))
    offset = pd.tseries.frequencies.to_offset(frequency)
    grid = _grid(steps, offset)
    # A series' length is its steps with a value (what prepare's check counts), at most its
    # span on the grid; a wide table's series with no value have none.
    observed = (
        pd.to_numeric(frame[target], errors="coerce").notna().groupby(labels.to_numpy()).sum()
    )
    lengths = {str(label): int(observed.get(label, 0)) for label in grid.labels}
    lengths |= dict.fromkeys(empty, 0)
    kept = _kept_length(lengths, frequency, offset, source, pins)
    if kept == 0:
        raise DataError(
            f"{source}: series {_names(empty)} hold no value, too many to leave out unasked "
            f"({len(empty)} of {len(lengths)}); drop them, or set forecast.dataset.short_series: "
            "drop in params.yaml"
        )
    kept_label = min(
        (label for label, length in lengths.items() if length >= kept), key=lengths.__getitem__
    )
    where = (
        f"the shortest series{' kept' if kept > min(lengths.values()) else ''}, {kept_label}, "
        f"has {kept} steps"
        if len(lengths) > 1
        else f"the series has {kept} steps"
    )

    windows, season, window_choices = _windows(frequency, offset, kept, where, source, pins)
    short, how = _short_series(lengths, windows, season, frequency, pins, source)
    choices.append(Choice("short_series", short, how, pins.short_series is not None))
    flat, how = _flat_series(frame[target], times, labels, windows, offset, pins)
    choices.append(Choice("flat_series", flat, how, pins.flat_series is not None))
    choices += window_choices
    dataset = {
        "time_column": time_column,
        **({"period_column": period} if period else {}),
        "target": target,
        "series_columns": series,
        "known_covariates": list(pins.known_covariates or []),
        "unknown_covariates": list(pins.unknown_covariates or []),
        "frequency": frequency,
        "season_length": season,
        "missing_target": missing,
        "short_series": short,
        "flat_series": flat,
    }
    unused = [
        name
        for name in frame.columns
        if name not in (time_column, target, *series, *covariates) and _holds_numbers(frame[name])
    ]
    if unused:
        choices.append(
            Choice(
                "not used",
                unused,
                "numeric; list under forecast.dataset.known_covariates or unknown_covariates "
                "to use as covariates",
                pinned=True,
            )
        )
    return Inference(source, dataset, windows, choices)


# --- layout --------------------------------------------------------------------------------


def _layout_of(frame: pd.DataFrame, source: str, pins: Pins) -> tuple[str, str]:
    if pins.layout is not None:
        if pins.layout not in LAYOUTS:
            raise ConfigError(
                f"{source}: layout {pins.layout!r} (set by {pins.origin('layout')}) is not one "
                f"of {', '.join(LAYOUTS)}"
            )
        return pins.layout, f"set by {pins.origin('layout')}"
    months, kind = period_headers(list(frame.columns))
    if kind is not None and any(
        _named_times(frame[name]) for name in frame.columns if name not in months
    ):
        return PERIODS_AS_COLUMNS, (
            f"a column of years and a column per {kind} ({months[0]}-{months[-1]}): a row per year"
        )
    if pins.time_column is None:
        headers = header_times(list(frame.columns), source)
        if len(headers) >= 2 and not any(
            _holds_dates(frame[name]) for name in frame.columns if name not in headers
        ):
            return DATES_AS_COLUMNS, (
                f"no column holds times and {len(headers)} column headers are dates: a row "
                "per series"
            )
    return LONG, "a row per series and time"


def _melted(
    frame: pd.DataFrame, source: str, layout: str, pins: Pins
) -> tuple[pd.DataFrame, Pins, tuple[str, str]]:
    """Returns wide `frame` melted to long, the pins naming its columns: the time and target
    columns it gets (date and value unless pinned) and its series columns; and the column of
    quarters or months completing a time column of years (series_as_columns), and why."""
    if pins.known_covariates or pins.unknown_covariates:
        raise ConfigError(
            f"{source}: covariates need a long table (a column each); a {layout} table holds "
            "only the series' values"
        )
    why = f"the {layout} layout"
    period = ("", "")
    if layout == DATES_AS_COLUMNS:
        dates = header_times(list(frame.columns), source)
        ids = [name for name in frame.columns if name not in dates]
        if pins.series_columns is not None:
            series, how = list(pins.series_columns), f"set by {pins.origin('series_columns')}"
        else:
            series, how = _row_names(frame, ids, source)
            how = f"{why}: {how}"
        named = f"{why}: the name the header dates get"
        time_column = pins.time_column or _free("date", series)
        target = pins.target or _free("value", [*series, time_column])
    elif layout == PERIODS_AS_COLUMNS:
        months, _ = period_headers(list(frame.columns))
        time_column, named = _time_column(frame, source, pins, months)
        named = f"{why}: {named}"
        others = [name for name in frame.columns if name not in (time_column, *months)]
        texts = [name for name in others if not _holds_numbers(frame[name])]
        series = list(pins.series_columns if pins.series_columns is not None else texts)
        how = (
            f"set by {pins.origin('series_columns')}"
            if pins.series_columns is not None
            else f"{why}: its text columns name the series"
            if texts
            else f"{why}: no text column: one series"
        )
        target = pins.target or _free("value", [time_column, *series])
    else:
        time_column, named = _time_column(frame, source, pins, [])
        named = f"{why}: {named}"
        period = _period_column(frame, time_column, source, pins, [])
        if pins.series_columns is not None and len(pins.series_columns) != 1:
            raise ConfigError(
                f"{source}: with {SERIES_AS_COLUMNS} the series' headers go to one column; "
                f"{pins.origin('series_columns')} names {pins.series_columns}"
            )
        series = list(pins.series_columns or [_free("series", [time_column])])
        how = (
            f"set by {pins.origin('series_columns')}"
            if pins.series_columns is not None
            else f"{why}: the column headers besides {time_column!r}"
            + (f" and {period[0]!r}" if period[0] else "")
            + " name the series"
        )
        target = pins.target or _free("value", [time_column, *series])
    spec = DatasetConfig(
        layout=layout,
        time_column=time_column,
        period_column=period[0],
        target=target,
        series_columns=series,
        missing_target="gap",  # prepare checks empty cells with the user's missing_target
        # Series with no value are left out, and counted as short series by _long_keys.
        short_series=pins.short_series or "drop",
    )
    long = to_long(frame, spec, source)
    origins = {
        **pins.origins,
        "time_column": pins.origin("time_column") if pins.time_column else named,
        "target": pins.origin("target") if pins.target else f"{why}: the cells' values",
        "series_columns": how.removeprefix("set by "),
    }
    melted = replace(
        pins,
        time_column=time_column,
        period_column=None,  # the long table's times are dates
        target=target,
        series_columns=series,
        origins=origins,
    )
    return long, melted, period


def _free(name: str, taken: list[str]) -> str:
    """Returns `name`, or `name` with a number after it, whichever `taken` does not hold."""
    number = 2
    chosen = name
    while chosen in taken:
        chosen, number = f"{name}_{number}", number + 1
    return chosen


def _row_names(frame: pd.DataFrame, ids: list[str], source: str) -> tuple[list[str], str]:
    """Returns the columns that name the series of a dates_as_columns table's rows, and why:
    one row needs none; else the text column (failing that, any column) whose values differ
    on every row (several such columns name the same rows: the first is taken); else every
    column whose values vary, when together they tell the rows apart."""
    if len(frame) == 1:
        return [], "one row: one series"
    unique = [name for name in ids if not frame[name].duplicated().any()]
    texts = [name for name in unique if not _holds_numbers(frame[name])]
    if unique:
        chosen = (texts or unique)[0]
        others = [name for name in unique if name != chosen]
        also = f"; {_names(others)} too, row for row" if others else ""
        return [chosen], f"its values name every row's series{also}"
    varying = [name for name in ids if frame[name].nunique(dropna=False) > 1]
    if varying and not frame[varying].duplicated().any():
        return varying, "together they name every row's series"
    raise DataError(
        f"{source}: the column headers are dates (a row per series), but no column tells the "
        f"{len(frame)} rows apart (columns besides the dates: {_names(ids) or 'none'}); add a "
        f"column naming each row's series, or name them with {_pin_hint('series_columns')}"
    )


# --- columns -------------------------------------------------------------------------------


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _pin_hint(key: str) -> str:
    flag = FLAGS.get(key)
    setting = f"forecast.dataset.{key} in params.yaml"
    return f"{flag} (or {setting})" if flag else setting


def _require_column(frame: pd.DataFrame, name: str, key: str, pins: Pins, source: str) -> None:
    if name not in frame.columns:
        raise ConfigError(
            f"{source}: no column {name!r} (given by {pins.origin(key)} as {key}); the columns "
            f"are {_names(list(frame.columns))}"
        )


def _holds_dates(values: pd.Series) -> bool:
    """Returns whether a column's values read as dates/times: datetimes, or text with digits
    that pandas parses (numbers alone, such as 2024 or 20240131, are not read as dates)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or isinstance(
        values.dtype, pd.PeriodDtype
    ):
        return bool(values.notna().any())
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return False
    sample = pd.Series(values.dropna().unique()[:DATE_SAMPLE])
    if sample.empty:
        return False
    text = sample.astype(str)
    if not text.str.contains(r"\d").all() or pd.to_numeric(text, errors="coerce").notna().all():
        return False
    if periods.period_codes(sample) is not None:
        return True  # 1959 Q1, 1959M01, 2020-W05
    try:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed", utc=True)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(parsed.notna().all())


def _holds_numbers(values: pd.Series) -> bool:
    """Returns whether a column holds numbers, or text that is mostly numbers (a target with a
    stray "n/a" is still the target; the prepare step reports the stray cells)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return False
    if pd.api.types.is_numeric_dtype(values.dtype):
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    if present.empty or present.map(lambda v: isinstance(v, bool)).any():
        return False
    if present.astype(str).str.fullmatch(r"0\d+").any():
        return False  # zero-padded codes (SKU 007) are names, not numbers
    return bool(pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5)


def _time_column(
    frame: pd.DataFrame, source: str, pins: Pins, covariates: list[str]
) -> tuple[str, str]:
    if pins.time_column is not None:
        _require_column(frame, pins.time_column, "time_column", pins, source)
        return pins.time_column, f"set by {pins.origin('time_column')}"
    taken = {pins.target, *(pins.series_columns or []), *covariates}
    candidates = [name for name in frame.columns if name not in taken and _holds_dates(frame[name])]
    how = "the only column of dates/times"
    if not candidates:
        # Numbers read as times (validate.number_times) where the header says so: a column named
        # like year of whole numbers 1000-2999, or like date/day of YYYYMMDD numbers.
        candidates = [
            name for name in frame.columns if name not in taken and _named_times(frame[name])
        ]
        how = "the only column of numbers named as times: years, or YYYYMMDD dates"
    if len(candidates) == 1:
        return candidates[0], how
    if candidates:
        raise ConfigError(
            f"{source}: several columns hold dates/times: {_names(candidates)}; name the time "
            f"column with {_pin_hint('time_column')}"
        )
    headers = header_times(list(frame.columns), source)
    if len(headers) >= 2:
        raise DataError(
            f"{source}: no column holds times, but {len(headers)} column headers are dates "
            f"({_names(list(headers))}): read it as a row per series with {FLAGS['layout']} "
            f"{DATES_AS_COLUMNS}"
        )
    raise DataError(
        f"{source}: no column holds dates or times (columns: {_names(list(frame.columns))}). "
        "Add a column of ISO dates such as 2024-01-31; if a column of numbers holds the times, "
        "name it with --time-column: years (1000-2999) and YYYYMMDD numbers are read as dates, "
        "and for other numbers (epoch seconds) the error shows how to convert them"
    )


def _named_times(values: pd.Series) -> bool:
    """Returns whether a column of numbers holds times its name announces: years in a column
    named like year, YYYYMMDD dates in one named like date or day."""
    name = str(values.name).lower()
    if not _holds_numbers(values) or not ("year" in name or "date" in name or "day" in name):
        return False
    read = number_times(values)
    return read is not None and (read[1] == "years") == ("year" in name)


def _read_times(frame: pd.DataFrame, column: str, source: str, period: str = "") -> pd.Series:
    """Returns the time column (with `period`'s quarters or months: dataset.period_column)
    parsed as the prepare step parses it (naive datetimes)."""
    times, problems = read_times(frame, DatasetConfig(time_column=column, period_column=period))
    if problems:
        raise DataValidationError(source, problems)
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise DataError(
            f"{source}: column {column!r} is empty in row {row + 1} (and maybe others): every "
            "row needs its time; fill those cells or drop those rows"
        )
    return times


# Headers that announce a column of quarters or months (the part of the year a row is).
PERIOD_NAME = re.compile(r"quarter|qtr|month|^(q|m|mo|mon|mth|period|per)$")


def _period_column(
    frame: pd.DataFrame, time_column: str, source: str, pins: Pins, taken: list[str]
) -> tuple[str, str]:
    """Returns the column of quarters or months that completes a time column of years (none
    for any other time column): the one column named like quarter or month whose every value
    names one (periods.period_parts)."""
    if pins.period_column is not None:
        if pins.period_column:
            _require_column(frame, pins.period_column, "period_column", pins, source)
        return pins.period_column, f"set by {pins.origin('period_column')}"
    values = frame[time_column]
    # A column of years is numbers as read (a CSV's, a Parquet's); a column of dates is text,
    # which _holds_numbers would scan row by row.
    read = number_times(values) if pd.api.types.is_numeric_dtype(values.dtype) else None
    if read is None or read[1] != "years" or not values.duplicated().any():
        return "", ""  # no years, or each year once: a yearly series
    candidates = []
    for name in frame.columns:
        if name in (time_column, pins.target, *taken) or not PERIOD_NAME.search(
            str(name).strip().lower()
        ):
            continue
        hint = next(
            (kind for kind in periods.PER_YEAR if kind in str(name).lower()),
            periods.QUARTER if str(name).strip().lower() in ("q", "qtr") else None,
        )
        parts, kind = periods.period_parts(frame[name], hint)
        present = frame[name].notna().to_numpy()
        if (
            kind in periods.PER_YEAR
            and not np.isnan(parts[present]).any()
            and (frame[name].nunique() > 1)
        ):
            candidates.append(name)
    if len(candidates) > 1:
        raise ConfigError(
            f"{source}: column {time_column!r} holds years, and several columns could hold "
            f"their quarters or months: {_names(candidates)}; name one with "
            f"{_pin_hint('period_column')}"
        )
    if not candidates:
        return "", ""
    return candidates[0], (
        f"{time_column!r} holds years; the only column named like quarters or months beside it"
    )


def _is_unique(frame: pd.DataFrame, times: pd.Series, columns: list[str]) -> bool:
    keys = frame[columns].assign(_time=times.to_numpy()) if columns else times.to_frame()
    return not keys.duplicated().any()


def _series_columns(
    frame: pd.DataFrame,
    times: pd.Series,
    time_column: str,
    source: str,
    pins: Pins,
    covariates: list[str],
) -> tuple[list[str], str]:
    if pins.series_columns is not None:
        for name in pins.series_columns:
            _require_column(frame, name, "series_columns", pins, source)
        return list(pins.series_columns), f"set by {pins.origin('series_columns')}"
    if _is_unique(frame, times, []):
        return [], "every time occurs once: one series"
    taken = {time_column, pins.target, *covariates}
    texts = [
        name
        for name in frame.columns
        if name not in taken
        and not _holds_numbers(frame[name])
        and not pd.api.types.is_bool_dtype(frame[name].dtype)
    ]
    unique = [name for name in texts if _is_unique(frame, times, [name])]
    kind = "text column"
    if not unique and 2 <= len(texts) <= 6:
        pairs = [[a, b] for i, a in enumerate(texts) for b in texts[i + 1 :]]
        unique = [pair for pair in pairs if _is_unique(frame, times, pair)]
        kind = "pair of text columns"
    if not unique and not texts:
        wholes = [
            name
            for name in frame.columns
            if name not in taken and _whole_numbers(frame[name]) and frame[name].nunique() > 1
        ]
        unique = [name for name in wholes if _is_unique(frame, times, [name])]
        kind = "whole-number column"
    if len(unique) == 1:
        chosen = unique[0] if isinstance(unique[0], list) else [unique[0]]
        key = ", ".join([*chosen, time_column])
        return chosen, f"times repeat; the only {kind} that makes ({key}) unique"
    if unique:
        shown = [" + ".join(c) if isinstance(c, list) else c for c in unique]
        raise ConfigError(
            f"{source}: times repeat (several series), and several columns could name the "
            f"series: {_names(shown)}; name them with {_pin_hint('series_columns')} (repeatable)"
        )
    repeated = int(frame.assign(_time=times).duplicated(subset=["_time", *texts]).sum())
    raise DataError(
        f"{source}: times repeat in column {time_column!r}, and no column tells the series "
        f"apart ({repeated} rows repeat a (series, time) even with every text column "
        f"{_names(texts) if texts else '(there is none)'}). Name the columns of a series with "
        f"{_pin_hint('series_columns')}, or keep one row per series and time"
    )


def _missing_target(
    values: pd.Series, times: pd.Series, labels: pd.Series, pins: Pins
) -> tuple[str, str]:
    """Returns missing_target: "gap" when the target has empty cells (they become missing
    steps, never filled), else "error" (an empty cell in later data is refused)."""
    if pins.missing_target is not None:
        return pins.missing_target, f"set by {pins.origin('missing_target')}"
    empty = np.flatnonzero(values.isna().to_numpy())
    if len(empty) == 0:
        return "error", "the target has no empty cell; one in later data is an error"
    first = empty[0]
    where = (
        f"{times.iloc[first]}"
        if (labels == labels.iloc[0]).all()
        else (f"{times.iloc[first]} in series {labels.iloc[first]}")
    )
    return "gap", (
        f"{len(empty)} empty target cell(s), the first at {where}: missing steps, never "
        "filled; windows touching them are skipped"
    )


def _full_windows(
    n: int, frequency: str, offset: pd.DateOffset, source: str, pins: Pins
) -> tuple[dict[str, Any], int] | None:
    """Returns the windows and season series of n steps get when those hold the frequency's
    horizon and season (or the pinned ones) uncut; None when they must be cut or cannot fit."""
    try:
        windows, season, _ = _windows(frequency, offset, n, "", source, pins)
    except (ConfigError, DataError):
        return None
    horizon = pins.horizon or default_horizon(offset)
    wanted = pins.season_length or season_of(offset)[0]
    return (windows, season) if (windows["horizon"], season) == (horizon, wanted) else None


def _kept_length(
    lengths: dict[str, int], frequency: str, offset: pd.DateOffset, source: str, pins: Pins
) -> int:
    """Returns the series length the windows are fitted to: the shortest series', unless it
    is too short for the frequency's usual horizon and season while the series that are long
    enough make up all but at most MAX_LEFT_OUT of the panel (short_series: drop pinned: any
    share); then the shortest of those, and prepare leaves the others out."""
    ordered = sorted(set(lengths.values()))
    if pins.short_series == "error" or _full_windows(ordered[0], frequency, offset, source, pins):
        return ordered[0]
    for n in ordered[1:]:
        full = _full_windows(n, frequency, offset, source, pins)
        if full is None:
            continue
        needed = steps_needed(WindowConfig.model_validate(full[0]), full[1])[0]
        short = sum(length < needed for length in lengths.values())
        if pins.short_series == "drop" or short <= MAX_LEFT_OUT * len(lengths):
            return n
        break
    return ordered[0]


def _short_series(
    lengths: dict[str, int],
    windows: dict[str, Any],
    season: int,
    frequency: str,
    pins: Pins,
    source: str,
) -> tuple[str, str]:
    """Returns short_series and how: "drop" when series are shorter than `windows` need (they
    were too short for the frequency's usual windows, and few), else "error". Raises
    DataError when every series is (pinned keys the series cannot hold)."""
    needed, parts = steps_needed(WindowConfig.model_validate(windows), season)
    short = sorted((length, label) for label, length in lengths.items() if length < needed)
    if len(short) == len(lengths):
        pinned = [
            f"{key} {getattr(pins, key)} ({pins.origin(key)})"
            for key in ("season_length", "horizon", *WINDOW_KEYS)
            if getattr(pins, key, None) is not None and key != "shorter_encoders"
        ]
        raise DataError(
            f"{source}: {'every series is' if len(lengths) > 1 else 'the series is'} shorter "
            f"than the {needed} steps these windows need ({parts}; the longest has "
            f"{short[-1][0]})"
            + (f", which {', '.join(pinned)} set" if pinned else "")
            + "; pin shorter ones, or give the series more history"
        )
    if pins.short_series is not None:
        how = f"set by {pins.origin('short_series')}"
        if short:
            how += f"; {len(short)} series shorter than the {needed} steps the windows need"
        return pins.short_series, how
    if not short:
        return "error", (
            "every series holds the windows; a shorter one in later data is an error unless "
            "short_series: drop"
        )
    shown = ", ".join(f"{label} ({length} steps)" for length, label in short[:SHOWN])
    more = f" and {len(short) - SHOWN} more" if len(short) > SHOWN else ""
    return "drop", (
        f"{len(short)} of {len(lengths)} series {'is' if len(short) == 1 else 'are'} shorter "
        f"than the {needed} steps the "
        f"{frequency} windows below need, and {'is' if len(short) == 1 else 'are'} left out: "
        f"{shown}{more}; "
        "short_series: error in params.yaml fits the windows to the shortest series instead"
    )


def _flat_series(
    target: pd.Series,
    times: pd.Series,
    labels: pd.Series,
    windows: dict[str, Any],
    offset: pd.DateOffset,
    pins: Pins,
) -> tuple[str, str]:
    """Returns flat_series and how: "drop" when a few series (at most MAX_LEFT_OUT of them)
    hold one value over their training part (all zeros: a product that never sold), which MASE
    cannot score, else "error". The training part is what precedes a series' last
    validation + holdout steps; prepare's own check (check_scales) also finds exactly seasonal
    ones."""
    if pins.flat_series is not None:
        return pins.flat_series, f"set by {pins.origin('flat_series')}"
    values = pd.to_numeric(target, errors="coerce")
    held = windows["validation_length"] + windows["holdout_length"]
    last = times.groupby(labels).transform("max")
    cutoff = {stamp: stamp - held * offset for stamp in last.unique()}
    train = (times <= last.map(cutoff)) & values.notna()
    distinct = values[train].groupby(labels[train]).nunique()
    flat = sorted(map(str, distinct.index[distinct <= 1]))
    count = labels.nunique()
    if not flat:
        return "error", (
            "no series holds one value over its training part; one that does in later data is "
            "an error unless flat_series: drop"
        )
    if len(flat) > MAX_LEFT_OUT * count:
        return "error", (
            f"{len(flat)} of {count} series hold one value over their training part "
            f"({_names(flat)}), too many to leave out unasked: prepare names them; "
            "flat_series: drop in params.yaml leaves them out"
        )
    return "drop", (
        f"{len(flat)} of {count} series {'holds' if len(flat) == 1 else 'hold'} one value "
        f"over {'its' if len(flat) == 1 else 'their'} training part, which MASE cannot score, "
        f"and {'is' if len(flat) == 1 else 'are'} left out: {_names(flat)}"
    )


def _whole_numbers(values: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return False
    present = values.dropna().to_numpy(dtype="float64")
    return bool(len(present)) and bool(np.all(present == np.round(present)))


def _target(
    frame: pd.DataFrame, labels: pd.Series, source: str, pins: Pins, taken: list[str]
) -> tuple[str, str]:
    if pins.target is not None:
        _require_column(frame, pins.target, "target", pins, source)
        if pins.target in taken:
            raise ConfigError(
                f"{source}: the target ({pins.target!r}, {pins.origin('target')}) is also the "
                "time, a series or a covariate column; pick another"
            )
        return pins.target, f"set by {pins.origin('target')}"
    numeric = [name for name in frame.columns if name not in taken and _holds_numbers(frame[name])]
    varying = [
        name
        for name in numeric
        if pd.to_numeric(frame[name], errors="coerce").groupby(labels).nunique().max() > 1
    ]
    constant = [name for name in numeric if name not in varying]
    if len(varying) == 1:
        left = f"; {_names(constant)} constant per series" if constant else ""
        return varying[0], f"the only numeric column that varies{left}"
    if varying:
        raise ConfigError(
            f"{source}: several numeric columns could be the target: {_names(varying)}; name "
            f"the one to forecast with {_pin_hint('target')} (the others can be covariates), "
            f"or, if each column is a series of its own, read the table with {FLAGS['layout']} "
            f"{SERIES_AS_COLUMNS}"
        )
    if constant:
        raise DataError(
            f"{source}: no numeric column varies within a series ({_names(constant)} are "
            "constant): there is nothing to forecast"
        )
    texts = [name for name in frame.columns if name not in taken]
    samples = "; ".join(
        f"{name!r} holds {', '.join(repr(str(v)) for v in frame[name].dropna().unique()[:2])}"
        for name in texts[:SHOWN]
        if frame[name].notna().any()
    )
    raise DataError(
        f"{source}: no numeric column to forecast (columns: {_names(list(frame.columns))}"
        f"{'; ' + samples if samples else ''}); the target must hold numbers: write it without "
        "currency signs, units or percent signs (12.5, not $12.50 or 12.5%)"
    )


# --- time grid -----------------------------------------------------------------------------


def _series_times(times: pd.Series, labels: pd.Series) -> dict[str, pd.DatetimeIndex]:
    """Returns each series' distinct times, sorted, in nanoseconds (Parquet may hold others)."""
    return {
        str(label): pd.DatetimeIndex(part.unique()).as_unit("ns").sort_values()
        for label, part in times.groupby(labels, sort=True)
    }


def _off_grid(steps: dict[str, pd.DatetimeIndex], offset: pd.DateOffset) -> tuple[str, Any] | None:
    """Returns (series, time) of the first time off its series' grid (None when all are on it),
    the grid the prepare step reindexes to: every `offset` from the series' first time."""
    grid = _grid(steps, offset)
    off = np.flatnonzero(grid.steps < 0)
    if not len(off):
        return None
    return str(grid.labels[grid.codes[off[0]]]), pd.DatetimeIndex(_flat_times(steps))[off[0]]


def _flat_times(steps: dict[str, pd.DatetimeIndex]) -> np.ndarray:
    return np.concatenate([index.asi8 for index in steps.values()]).astype("datetime64[ns]")


def _grid(steps: dict[str, pd.DatetimeIndex], offset: pd.DateOffset) -> SeriesGrid:
    """Returns the series' times placed on their grids (series_grid over `steps`)."""
    labels = np.repeat(list(steps), [len(index) for index in steps.values()])
    tz = next(iter(steps.values())).tz
    times = pd.DatetimeIndex(_flat_times(steps))
    if tz is not None:
        times = times.tz_localize("UTC").tz_convert(tz)
    return series_grid(pd.Series(times), pd.Series(labels), offset)


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def _aliases_for(step: pd.Timedelta, everything: pd.DatetimeIndex) -> list[str]:
    """Returns the offset aliases a most common step between times may stand for."""
    day = pd.Timedelta(days=1)
    if step < day or step % day != pd.Timedelta(0):
        return [pd.tseries.frequencies.to_offset(step).freqstr]
    days = step // day
    if days == 1:
        weekdays_only = not (everything.dayofweek >= 5).any()
        return ["B", "D"] if weekdays_only and len(everything) >= 10 else ["D"]
    if days == 7:
        weekday = int(pd.Series(everything.dayofweek).mode().iloc[0])
        return [f"W-{DAYS[weekday]}"]
    if 28 <= days <= 31:
        return ["MS", "ME"]
    if 89 <= days <= 92:
        return ["QS-JAN", "QS-FEB", "QS-MAR", "QE-DEC", "QE-NOV", "QE-OCT"]
    if 365 <= days <= 366:
        return [
            "YS-JAN",
            "YE-DEC",
            *(f"YS-{m}" for m in MONTHS[1:]),
            *(f"YE-{m}" for m in MONTHS[:-1]),
        ]
    return [f"{days}D"]


def _frequency(
    steps: dict[str, pd.DatetimeIndex], source: str, time_column: str, pins: Pins
) -> tuple[str, str]:
    if pins.frequency is not None:
        try:
            pd.tseries.frequencies.to_offset(pins.frequency)
        except ValueError:
            raise ConfigError(
                f"{pins.origin('frequency')} {pins.frequency!r} is not a pandas frequency; use "
                "an offset alias such as D, h, W-SUN, MS or QE-DEC"
            ) from None
        return pins.frequency, f"set by {pins.origin('frequency')}"
    long_enough = sorted((s for s in steps.values() if len(s) >= 3), key=len, reverse=True)
    inferred = {pd.infer_freq(s) for s in long_enough[:50]}
    if len(inferred) == 1 and None not in inferred:
        alias = inferred.pop()
        if _off_grid(steps, pd.tseries.frequencies.to_offset(alias)) is None:
            return alias, "pandas infer_freq on the times"
    gaps = np.concatenate([np.diff(s.asi8) for s in steps.values() if len(s) > 1] or [[]])
    if not len(gaps):
        raise DataError(f"{source}: every series has one time only: there is no time grid")
    values, counts = np.unique(gaps, return_counts=True)
    step = pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")
    everything = pd.DatetimeIndex(np.concatenate([s.asi8 for s in steps.values()]))
    for alias in _aliases_for(step, everything):
        if _off_grid(steps, pd.tseries.frequencies.to_offset(alias)) is None:
            return (
                alias,
                f"most steps between times are {_duration(step)}; gaps become missing steps",
            )
    label, when = _off_grid(
        steps, pd.tseries.frequencies.to_offset(_aliases_for(step, everything)[0])
    )
    series = "" if label == SINGLE_SERIES else f" of series {label}"
    raise DataError(
        f"{source}: the times in column {time_column!r} are not on one regular grid: most steps "
        f"are {_duration(step)}, but {when}{series} falls off the grid that step gives. "
        f"Resample the data to one step, or name its frequency with {_pin_hint('frequency')}"
    )


def _duration(step: pd.Timedelta) -> str:
    """Returns a step as people write it: 1 day, 7 days, 1:00:00."""
    day = pd.Timedelta(days=1)
    if step >= day and step % day == pd.Timedelta(0):
        days = step // day
        return f"{days} day{'s' if days > 1 else ''}"
    return str(step).removeprefix("0 days ")


# --- season and windows --------------------------------------------------------------------


def _steps_in(span: pd.Timedelta, offset: pd.DateOffset) -> int | None:
    """Returns how many steps of a fixed-length offset make `span` (None if not a whole number)."""
    step = pd.Timedelta(offset)
    count = span / step
    return int(count) if count >= 1 and float(count).is_integer() else None


def season_of(offset: pd.DateOffset) -> tuple[int, str]:
    """Returns the steps per season of a frequency and what that season is."""
    n = offset.n
    if isinstance(offset, pd.offsets.Tick):
        day = pd.Timedelta(days=1)
        if pd.Timedelta(offset) >= day:
            per_week = _steps_in(pd.Timedelta(days=7), offset)
            return (per_week, "a week") if per_week else (1, "no whole number of steps a week")
        per_day = _steps_in(day, offset)
        if per_day and per_day <= 288:
            return per_day, "a day"
        per_hour = _steps_in(pd.Timedelta(hours=1), offset)
        return (per_hour, "an hour") if per_hour else (1, "no whole number of steps a day")
    yearly = [
        ((pd.offsets.Week,), 52),
        ((pd.offsets.SemiMonthBegin, pd.offsets.SemiMonthEnd), 24),
        ((pd.offsets.MonthBegin, pd.offsets.MonthEnd), 12),
        ((pd.offsets.BusinessMonthBegin, pd.offsets.BusinessMonthEnd), 12),
        ((pd.offsets.QuarterBegin, pd.offsets.QuarterEnd), 4),
        ((pd.offsets.BQuarterBegin, pd.offsets.BQuarterEnd), 4),
    ]
    for kinds, per_year in yearly:
        if isinstance(offset, kinds):
            if per_year % n == 0 and per_year // n > 1:
                return per_year // n, "a year"
            return 1, "no whole number of steps a year"
    if isinstance(offset, pd.offsets.BusinessDay) and n == 1:
        return 5, "a business week"
    return 1, "a yearly or irregular step"


def default_horizon(offset: pd.DateOffset) -> int:
    """Returns the steps forecast by default at a frequency (before fitting the series)."""
    n = offset.n
    if isinstance(offset, pd.offsets.Tick):
        if pd.Timedelta(offset) < pd.Timedelta(days=1):
            per_day = _steps_in(pd.Timedelta(days=1), offset)
            return min(per_day, 48) if per_day else 24
        return max(1, 14 // (pd.Timedelta(offset) // pd.Timedelta(days=1)))
    if isinstance(offset, pd.offsets.BusinessDay):
        return 10
    if isinstance(offset, pd.offsets.Week):
        return max(1, 12 // n)
    if isinstance(offset, (pd.offsets.QuarterBegin, pd.offsets.QuarterEnd)):
        return 8
    if isinstance(offset, (pd.offsets.YearBegin, pd.offsets.YearEnd)):
        return 3
    return 12  # months and anything else


def _layout(n: int, horizon: int, season: int, pins: Pins) -> dict[str, Any] | None:
    """Returns windows for series of n steps (None when they cannot fit): validation and
    holdout of max(2 x horizon, season) steps each, at most a fifth of the series and at least
    MIN_ORIGINS origins; an encoder of as much of max(2 x horizon, season) as leaves MIN_ORIGINS
    training windows. Where the series are long enough, the neural models also try an encoder
    twice as long (_longer_encoder), and LSTM/TCN average networks of both
    (windows.shorter_encoders)."""
    least = horizon + MIN_ORIGINS - 1
    wanted = max(least, min(max(2 * horizon, season), n // 5))
    for split in (wanted, least):
        validation = pins.validation_length or split
        holdout = pins.holdout_length or split
        room = n - validation - holdout - horizon - (MIN_ORIGINS - 1)
        encoder = pins.encoder_length or min(max(2 * horizon, season), MAX_ENCODER, room)
        if 1 <= encoder <= room + MIN_ORIGINS - 1:
            shorter = pins.shorter_encoders
            if shorter is None:
                shorter = []
                if pins.encoder_length is None:
                    longer = _longer_encoder(
                        n - validation - holdout, encoder, horizon, season, validation
                    )
                    if longer:
                        encoder, shorter = longer, [encoder]
            return {
                "encoder_length": encoder,
                "shorter_encoders": list(shorter),
                "horizon": horizon,
                "validation_length": validation,
                "holdout_length": holdout,
            }
    return None


def _longer_encoder(train: int, encoder: int, horizon: int, season: int, stop: int) -> int | None:
    """Returns an encoder twice as long as `encoder` (at most MAX_ENCODER) when a train split
    of `train` steps still holds a season's worth (and MIN_ORIGINS) of training windows before
    the `stop` steps the neural models stop early on (train.stop_on: train); else None."""
    longer = min(2 * encoder, MAX_ENCODER)
    windows = train - stop - longer - horizon + 1
    return longer if longer > encoder and windows >= max(season, MIN_ORIGINS) else None


def _windows(
    frequency: str,
    offset: pd.DateOffset,
    n: int,
    where: str,
    source: str,
    pins: Pins,
) -> tuple[dict[str, int], int, list[Choice]]:
    """Returns the windows, the season length and their choices for series of at least n
    steps."""
    choices = []
    if pins.season_length is not None:
        season, season_how = pins.season_length, f"set by {pins.origin('season_length')}"
    else:
        season, what = season_of(offset)
        season_how = f"{what} of {frequency} steps" if season > 1 else what
    if pins.horizon is not None:
        horizon, horizon_how = pins.horizon, f"set by {pins.origin('horizon')}"
    else:
        usual = default_horizon(offset)
        horizon = max(1, min(usual, n // 8))
        horizon_how = f"the default for {frequency} data"
        if horizon < usual:
            horizon_how = f"{usual} for {frequency} data, cut to an eighth of the shortest series"
    windows = _layout(n, horizon, season, pins)
    while windows is None and pins.horizon is None and horizon > 1:
        horizon -= 1
        horizon_how = f"the longest that fits: {where}"
        windows = _layout(n, horizon, season, pins)
    if windows is None:
        least = horizon + MIN_ORIGINS - 1
        needed = (
            (pins.encoder_length or 1)
            + horizon
            + (pins.validation_length or least)
            + (pins.holdout_length or least)
            + MIN_ORIGINS
            - 1
        )
        pinned = [key for key in WINDOW_KEYS if getattr(pins, key) is not None]
        fix = (
            f"shorten {', '.join(f'{key} ({pins.origin(key)})' for key in pinned)}"
            if pinned
            else "drop the shortest series, or give longer ones"
        )
        raise (ConfigError if pinned else DataError)(
            f"{source}: {where}, too few for a horizon of {horizon} with validation and "
            f"holdout parts of {MIN_ORIGINS} rolling origins each and an encoder (at least "
            f"{needed} steps); {fix}"
        )
    training = n - windows["validation_length"] - windows["holdout_length"]
    if pins.season_length is None and season > 1 and training < 2 * season:
        season_how = (
            f"{season_how} is {season} steps, but the training part of the shortest series "
            f"({training} steps) holds fewer than two seasons: no seasonal lag"
        )
        season = 1
        windows = _layout(n, horizon, season, pins) or windows
    choices.append(Choice("season_length", season, season_how, pins.season_length is not None))
    choices.append(Choice("horizon", horizon, horizon_how, pins.horizon is not None))
    origins = min(windows["validation_length"], windows["holdout_length"]) - horizon + 1
    layout = ", ".join(
        f"{key} {windows[key]}"
        for key in WINDOW_KEYS
        if key != "horizon" and (key != "shorter_encoders" or windows[key])
    )
    encoder_how = "encoder up to max(2 x horizon, season_length)"
    if windows["shorter_encoders"] and pins.shorter_encoders is None:
        encoder_how = (
            f"encoder {windows['encoder_length']}, twice max(2 x horizon, season_length): LSTM "
            f"and TCN average a network of each length, the TFT reads "
            f"{windows['shorter_encoders'][0]}"
        )
    choices.append(
        Choice(
            "windows",
            layout,
            f"{where}; validation and holdout hold {origins}+ rolling origins each; {encoder_how}",
            pinned=True,
        )
    )
    return windows, season, choices


# --- params.yaml ---------------------------------------------------------------------------


def write_params(path: Path, name: str, inference: Inference) -> None:
    """Writes table `name` and its inferred keys into params.yaml's forecast section (a new file
    holds that section only, and runs only forecasting), keeping the rest of the file and its
    comments; the file is replaced whole or not at all."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a line
    yaml.indent(mapping=2, sequence=4, offset=2)
    existed = path.exists()
    data = yaml.load(path.read_text()) if existed else None
    if data is None:
        data = CommentedMap()
        if not existed:
            data["run"] = CommentedMap(families=_flow(["forecast"]))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(data).__name__}")
    forecast = data.setdefault("forecast", CommentedMap())
    for key, values in (
        ("dataset", {"name": name, **inference.dataset}),
        ("windows", inference.windows),
    ):
        section = forecast.get(key)
        if not isinstance(section, dict):
            section = forecast[key] = CommentedMap()
        for item, value in values.items():
            section[item] = _flow(value) if isinstance(value, list) else value
    if "period_column" not in inference.dataset and forecast["dataset"].get("period_column"):
        forecast["dataset"]["period_column"] = ""  # an earlier table's
    text = io.StringIO()
    yaml.dump(data, text)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text.getvalue())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _flow(values: list[Any]) -> Any:
    """Returns a list that YAML writes on one line, [a, b], as params.yaml writes lists."""
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq
