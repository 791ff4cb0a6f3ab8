"""Returns a validated, typed time-series table, or raises one error listing every problem."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from trainyard.errors import DataError
from trainyard.tasks.forecast import periods
from trainyard.tasks.forecast.config import DatasetConfig, WindowConfig

log = logging.getLogger(__name__)

SHOWN_ROWS = 5  # offending rows quoted per problem
SINGLE_SERIES = "(single series)"


@dataclass
class Problem:
    """One kind of defect in one column, with where it occurs and how to fix it."""

    column: str
    what: str
    fix: str
    rows: list[int] = field(default_factory=list)  # 1-based data rows (the header is not a row)
    series: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Returns the problem as indented lines for an error message."""
        lines = [f"  - column {self.column!r}: {self.what}"]
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:SHOWN_ROWS])
            more = f" and {len(self.rows) - SHOWN_ROWS} more" if len(self.rows) > SHOWN_ROWS else ""
            lines.append(f"    rows {shown}{more}")
        if self.series:
            shown = ", ".join(self.series[:SHOWN_ROWS])
            more = (
                f" and {len(self.series) - SHOWN_ROWS} more"
                if len(self.series) > SHOWN_ROWS
                else ""
            )
            lines.append(f"    series {shown}{more}")
        lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


class DataValidationError(DataError):
    """The input table cannot be used; the message lists every problem found."""

    ROWS = "rows count data rows from 1; in a CSV, row N is on line N+1"

    def __init__(self, source: str, problems: list[Problem], rows: str = ROWS):
        self.source = source
        self.problems = problems
        body = "\n".join(problem.describe() for problem in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) found; nothing was trained or written.\n"
            f"{body}\n  ({rows})"
        )


def series_labels(frame: pd.DataFrame, series_columns: list[str]) -> pd.Series:
    """Returns one readable series label per row ("a/b" for multi-column ids)."""
    if not series_columns:
        return pd.Series(SINGLE_SERIES, index=frame.index)
    first, *others = (frame[name].astype(str) for name in series_columns)
    return first.str.cat(others, sep="/") if others else first


@dataclass
class SeriesGrid:
    """Where the rows of a table lie on their series' time grids: every step of the frequency
    from a series' first time to its last (the grid prepare reindexes each series to)."""

    labels: np.ndarray  # the series, in order of first appearance
    codes: np.ndarray  # per row: its series' position in `labels`
    steps: np.ndarray  # per row: its step on its series' grid, -1 when off the grid
    lengths: np.ndarray  # per series: steps on its grid, first time to last
    grid_of: np.ndarray  # per series: its grid in `grids` (series starting together share one)
    grids: list[pd.DatetimeIndex]

    def times(self, series: np.ndarray) -> pd.DatetimeIndex:
        """Returns the whole grid of each of `series` (positions in `labels`), one after another."""
        points = np.concatenate([grid.asi8 for grid in self.grids] or [np.array([], np.int64)])
        first = np.concatenate([[0], np.cumsum([len(grid) for grid in self.grids])[:-1]])
        lengths = self.lengths[series]
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        within = np.arange(int(lengths.sum())) - starts
        picked = points[np.repeat(first[self.grid_of[series]], lengths) + within]
        tz = self.grids[0].tz if self.grids else None
        times = pd.DatetimeIndex(picked.astype("datetime64[ns]"))
        return times.tz_localize("UTC").tz_convert(tz) if tz is not None else times


def _stamp(nanoseconds: int, tz: object) -> pd.Timestamp:
    """Returns the time of an int64 from DatetimeIndex.asi8 (UTC nanoseconds when tz-aware)."""
    stamp = pd.Timestamp(int(nanoseconds))
    return stamp.tz_localize("UTC").tz_convert(tz) if tz is not None else stamp


def series_grid(times: pd.Series, labels: pd.Series, offset: pd.DateOffset) -> SeriesGrid:
    """Returns where each time lies on its series' grid of `offset` steps.

    One grid is built per distinct first time and shared by the series that start then (a
    panel's series mostly start together), and rows are placed on it by binary search, so the
    cost grows with the rows, not with a date_range per series.
    """
    codes, uniques = pd.factorize(labels)
    index = pd.DatetimeIndex(times).as_unit("ns")
    moments = index.asi8
    spans = pd.Series(moments).groupby(codes, sort=True).agg(["min", "max"])
    firsts, grid_of = np.unique(spans["min"].to_numpy(), return_inverse=True)
    grid_of = grid_of.reshape(-1)
    steps = np.full(len(moments), -1, dtype=np.int64)
    lengths = np.zeros(len(uniques), dtype=np.int64)
    grids = []
    row_grid = grid_of[codes]
    order = np.argsort(row_grid, kind="stable")
    bounds = np.searchsorted(row_grid[order], np.arange(len(firsts) + 1))
    lasts = spans["max"].to_numpy()
    by_grid = np.argsort(grid_of, kind="stable")
    member_bounds = np.searchsorted(grid_of[by_grid], np.arange(len(firsts) + 1))
    for number, first in enumerate(firsts):
        members = by_grid[member_bounds[number] : member_bounds[number + 1]]
        end = lasts[members].max()
        grid = pd.date_range(_stamp(first, index.tz), _stamp(end, index.tz), freq=offset)
        grid = grid.as_unit("ns")
        grids.append(grid)
        points = grid.asi8
        rows = order[bounds[number] : bounds[number + 1]]
        found = np.searchsorted(points, moments[rows])
        hit = found < len(points)
        hit[hit] = points[found[hit]] == moments[rows][hit]
        steps[rows] = np.where(hit, found, -1)
        lengths[members] = np.searchsorted(points, lasts[members], side="right")
    return SeriesGrid(np.asarray(uniques), codes, steps, lengths, grid_of, grids)


def _is_number(values: pd.Series) -> pd.Series:
    return values.isna() | pd.to_numeric(values, errors="coerce").notna()


def _is_finite(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.Series(~np.isinf(numbers.to_numpy()), index=values.index)


# Beyond this magnitude float32 training overflows: the square of the value (losses, variances)
# exceeds float32's largest number, 3.4e38.
MAX_MAGNITUDE = 1e19


def _is_trainable(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    huge = np.isfinite(numbers) & (np.abs(numbers) > MAX_MAGNITUDE)  # inf has its own check
    return pd.Series(~huge, index=values.index)


def _schema(spec: DatasetConfig, columns_read: list[str]) -> pa.DataFrameSchema:
    numeric = [
        pa.Check(_is_number, error="not a number"),
        pa.Check(_is_finite, error="infinite value"),
        pa.Check(_is_trainable, error="too large"),
    ]
    columns = {
        # Whether the times can be read is checked by read_times, which parses them once.
        spec.time_column: pa.Column(nullable=False),
        spec.target: pa.Column(nullable=spec.missing_target == "gap", checks=numeric),
    }
    for name in spec.series_columns:
        columns[name] = pa.Column(nullable=False)
    for name in spec.known_covariates + spec.unknown_covariates:
        columns[name] = pa.Column(nullable=True, checks=numeric)
    period = [spec.period_column] if spec.period_column in columns_read else []
    return pa.DataFrameSchema(columns, unique=[*spec.series_columns, spec.time_column, *period])


FIXES = {
    "not a number": "make every value numeric (no text, units or thousands separators)",
    "infinite value": "replace inf/-inf with a real value, or leave the cell empty if unknown",
    "too large": "correct the value, or rescale the column (e.g. to thousands or millions): "
    "float32 training squares values and overflows beyond 1e19",
    "not_nullable": "fill the empty cells, or drop those rows",
    "not a date/time": "write times as ISO dates, e.g. 2001-12-29 or 2001-12-29 00:00:00",
    "multiple_fields_uniqueness": "keep one row per series and time (aggregate or drop repeats)",
}
WHAT = {
    "not a number": "values that are not numbers",
    "infinite value": "infinite values",
    "too large": "values beyond +-1e19",
    "not_nullable": "empty (NaN) values",
    "not a date/time": "values that cannot be read as dates/times",
    "multiple_fields_uniqueness": "duplicate (series, time) rows",
}
TARGET_NAN_FIX = (
    "fill the target from its source, drop those rows, or set dataset.missing_target: gap "
    "to treat them as missing steps (windows touching them are skipped; the target is never filled)"
)


def _schema_problems(
    frame: pd.DataFrame, spec: DatasetConfig, error: SchemaErrors
) -> list[Problem]:
    labels = series_labels(frame, spec.series_columns)
    cases = error.failure_cases
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        check = str(check)
        if check == "multiple_fields_uniqueness":
            if column != spec.time_column:
                continue  # reported once, on the time column
        rows = sorted({int(i) for i in group["index"].dropna()})
        fix = FIXES.get(check, "correct these values")
        if check == "not_nullable" and column == spec.target:
            fix = TARGET_NAN_FIX
        what = WHAT.get(check, check)
        if check == "not a number" and rows:
            shown = list(dict.fromkeys(str(frame.at[row, column]) for row in rows))[:3]
            what += f" (such as {', '.join(map(repr, shown))})"
        problems.append(
            Problem(
                column=str(column),
                what=what,
                fix=fix,
                rows=[r + 1 for r in rows],
                series=sorted(labels.loc[rows].unique().tolist()) if rows else [],
            )
        )
    return problems


NUMBER_KINDS = ("integer", "floating", "mixed-integer-float", "decimal")
EPOCH_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _holds_numbers(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values.dtype):
        return False
    if pd.api.types.is_numeric_dtype(values.dtype):
        return True
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in NUMBER_KINDS


def is_year(numbers: np.ndarray) -> np.ndarray:
    """Returns which numbers are years: whole numbers from 1000 to 2999 (NaN is none)."""
    return (numbers >= 1000) & (numbers <= 2999) & (numbers == np.round(numbers))


def number_times(values: pd.Series) -> tuple[pd.Series, str] | None:
    """Returns a time column of numbers read as dates, and what they were, when every number
    is a year (a whole number from 1000 to 2999: 1 January of it) or every one a YYYYMMDD date
    (20240131); None otherwise (epoch counts are ambiguous in their unit, so refused). Empty
    cells stay NaT."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    present = numbers.dropna()
    if present.empty or not np.all(present == np.round(present)):
        return None
    text = numbers.astype("Int64").astype("string")
    if is_year(present.to_numpy()).all():
        return pd.to_datetime(text, format="%Y"), "years"
    if present.between(10**7, 10**8 - 1).all():
        times = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
        if times.notna().sum() == len(present):
            return times, "YYYYMMDD dates"
    return None


def _numbers_fix(value: float, column: str) -> str:
    """Returns how to turn a time column of numbers like `value` into dates, guessing its kind."""
    cells = f"df[{column!r}]"
    whole = float(value).is_integer()
    if whole and 1000 <= value <= 9999:
        how = (
            f"{cells} = pd.to_datetime({cells}.astype(int).astype(str), format='%Y') if it "
            "holds years"
        )
    elif (
        whole
        and 10**7 <= value < 10**8
        and pd.notna(pd.to_datetime(str(int(value)), format="%Y%m%d", errors="coerce"))
    ):
        how = (
            f"{cells} = pd.to_datetime({cells}.astype(int).astype(str), format='%Y%m%d') "
            "(YYYYMMDD dates)"
        )
    else:
        size = abs(value)
        unit = "s" if size < 1e11 else "ms" if size < 1e14 else "us" if size < 1e17 else "ns"
        try:
            when = f" ({value} would be {pd.to_datetime(value, unit=unit)})"
        except (ValueError, OverflowError):  # beyond the dates pandas can hold
            when = ""
        how = (
            f"{cells} = pd.to_datetime({cells}, unit={unit!r}) if it counts {EPOCH_UNITS[unit]} "
            f"since 1970-01-01 UTC{when}"
        )
    return f"convert the column to dates and save the table again, e.g. with pandas: {how}"


def _offset_label(value: object) -> str | None:
    """Returns a time's UTC offset as "+01:00", "no offset" when it has none, None if unreadable."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(stamp):
        return None
    offset = stamp.utcoffset()
    if offset is None:
        return "no offset"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _mixed_offsets_problem(
    values: pd.Series, column: str, labels: pd.Series
) -> tuple[Problem | None, pd.Series]:
    """Returns the problem of times with different UTC offsets (None when they share one) and
    each value's offset label (None where a value cannot be read)."""
    offsets = values.map(_offset_label, na_action="ignore").where(values.notna(), None)
    known = offsets.dropna()
    if known.nunique() < 2:
        return None, offsets
    firsts = known.drop_duplicates()
    seen = ", ".join(f"{label} (first in row {row + 1})" for row, label in firsts.iloc[:4].items())
    more = f" and {len(firsts) - 4} more" if len(firsts) > 4 else ""
    rows = np.flatnonzero((offsets.notna() & offsets.ne(known.iloc[0])).to_numpy())
    return (
        Problem(
            column=column,
            what=f"times with different UTC offsets: {seen}{more}; a table needs one time zone",
            fix=(
                "write every time in one zone: all in UTC (with pandas, "
                f"pd.to_datetime(df[{column!r}], utc=True)), or all as local times without an "
                "offset; daylight saving gives one zone two offsets, so use UTC for hourly data"
            ),
            rows=[int(r) + 1 for r in rows],
            series=sorted(labels.iloc[rows].unique().tolist()),
        ),
        offsets,
    )


def _daylight_saving_problems(
    times: pd.Series, spec: DatasetConfig, labels: pd.Series
) -> list[Problem]:
    """Returns a problem when times finer than a day lie in a zone whose UTC offset changes:
    as local times an hour would repeat (autumn) or go missing (spring)."""
    try:
        offset = pd.tseries.frequencies.to_offset(spec.frequency)
    except ValueError:
        return []  # the grid check reports the unknown frequency
    if not isinstance(offset, pd.offsets.Tick) or pd.Timedelta(offset) >= pd.Timedelta(days=1):
        return []
    utc_offsets = (times.dt.tz_localize(None) - times.dt.tz_convert("UTC").dt.tz_localize(None))[
        times.notna()
    ]
    changes = utc_offsets.index[utc_offsets.ne(utc_offsets.shift())][1:]
    if changes.empty:
        return []
    rows = np.asarray(changes, dtype=int)
    return [
        Problem(
            column=spec.time_column,
            what=(
                f"times in zone {times.dt.tz} change UTC offset (daylight saving): as local "
                f"{spec.frequency} times an hour would repeat or go missing"
            ),
            fix=(
                "convert the column to UTC and save the table again, e.g. with pandas: "
                f"df[{spec.time_column!r}] = df[{spec.time_column!r}].dt.tz_convert('UTC')"
            ),
            rows=[int(r) + 1 for r in rows],
            series=sorted(labels.iloc[rows].unique().tolist()),
        )
    ]


def _parse_times(
    values: pd.Series, column: str, labels: pd.Series
) -> tuple[pd.Series | None, list[Problem]]:
    """Returns text or datetime objects parsed to datetimes (tz-aware when they carry one
    offset), or None and the problems: unreadable values, or different UTC offsets."""
    present = values.notna()
    dayfirst, problem = day_first(values, column, labels)
    if problem is not None:
        return None, [problem]
    try:
        with warnings.catch_warnings():
            # pandas 2 warns that mixed offsets will raise; they are reported below either way.
            warnings.filterwarnings("ignore", "In a future version of pandas, parsing datetimes")
            times = pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=dayfirst)
        unread = present & times.isna()
        if not pd.api.types.is_datetime64_any_dtype(times):  # pandas 2: offsets mixed, as objects
            times, unread = None, present
    except ValueError:  # pandas 3 refuses text mixing UTC offsets, or offsets and none
        times, unread = None, present
    if not unread.any():
        return times, []
    # Unreadable, or in another zone: pandas raised, or (Timestamp objects) coerced it to NaT.
    mixed, offsets = _mixed_offsets_problem(values, column, labels)
    if mixed is not None:
        unreadable = np.flatnonzero((present & offsets.isna()).to_numpy())
        if len(unreadable):
            return None, [mixed, _unreadable_problem(column, unreadable, labels)]
        return None, [mixed]
    if times is None:  # one offset written two ways ("Z" and "+00:00")
        times = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
        first = pd.Timestamp(values[present].iloc[0]).utcoffset()
        times = times.dt.tz_localize(None) + first  # the local clock time of that offset
        unread = present & times.isna()
    if unread.any():
        return None, [_unreadable_problem(column, np.flatnonzero(unread.to_numpy()), labels)]
    return times, []


def read_times(frame: pd.DataFrame, spec: DatasetConfig) -> tuple[pd.Series, list[Problem]]:
    """Returns the time column as naive datetimes and its problems (when there are any, the
    times are NaT). Numbers are times when number_times reads them (years, YYYYMMDD).

    Times with a zone keep their local clock time and lose the zone: 2024-01-01T00:00:00+01:00
    becomes 2024-01-01 00:00:00. Local times keep daily and coarser grids (W-SAT, MS) and the
    calendar on the dates the data names; converting to UTC would move such a midnight to the
    day before. The table must therefore use one UTC offset (or none), and times finer than a
    day must not cross a daylight-saving change (their local clock repeats an hour).
    """
    column = spec.time_column
    values = frame[column]
    labels = series_labels(frame, spec.series_columns)
    unset = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if spec.period_column and _holds_numbers(values):
        return _year_and_period(frame, spec, labels, unset)
    if isinstance(values.dtype, pd.PeriodDtype):  # pandas periods (a Parquet file keeps them)
        return _on_frequency_grid(values.dt.to_timestamp().astype("datetime64[ns]"), spec), []
    codes = periods.period_codes(values)
    if codes is not None:
        return _on_frequency_grid(codes[0], spec), []
    if _holds_numbers(values):
        present = values.notna().to_numpy()
        if not present.any():
            return unset, []  # the schema reports the empty cells
        read = number_times(values)
        if read is not None:
            return read[0], []
        row = int(np.argmax(present))
        first = values.iloc[row]
        first = int(first) if float(first).is_integer() and abs(first) < 1e18 else float(first)
        what = f"numbers instead of dates/times (row {row + 1} holds {first})"
        return unset, [Problem(column, what, _numbers_fix(first, column))]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        times = values
    else:
        times, problems = _parse_times(values, column, labels)
        if times is None:
            return unset, problems
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        problems = _daylight_saving_problems(times, spec, labels)
        return (unset if problems else times.dt.tz_localize(None)), problems
    return times, []


def _on_frequency_grid(times: pd.Series, spec: DatasetConfig) -> pd.Series:
    """Returns period starts on the frequency's day of their period (periods.on_grid)."""
    try:
        offset = pd.tseries.frequencies.to_offset(spec.frequency)
    except ValueError:
        return times  # the grid check reports the unknown frequency
    return periods.on_grid(times, offset)


def _year_and_period(
    frame: pd.DataFrame, spec: DatasetConfig, labels: pd.Series, unset: pd.Series
) -> tuple[pd.Series, list[Problem]]:
    """Returns the times of a column of years and dataset.period_column's quarters or months
    (periods.period_parts), or their problems."""
    column, period = spec.time_column, spec.period_column
    if period not in frame.columns:
        return unset, [
            Problem(
                period,
                "column is missing (dataset.period_column): the years in column "
                f"{column!r} do not say which quarter or month a row is",
                f"add the column, or write the times as dates in column {column!r}",
            )
        ]
    years = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    problems = []
    not_years = frame[column].notna().to_numpy() & ~is_year(years)
    if not_years.any():
        rows = np.flatnonzero(not_years)
        problems.append(
            Problem(
                column,
                f"values that are not years (such as {_cell(frame[column].iloc[rows[0]])}); with "
                f"dataset.period_column {period!r} this column holds the year",
                "write whole years from 1000 to 2999, or leave dataset.period_column empty",
                rows=[int(r) + 1 for r in rows],
                series=sorted(labels.iloc[rows].unique().tolist()),
            )
        )
    try:
        kind = periods.kind_of(pd.tseries.frequencies.to_offset(spec.frequency))
    except ValueError:
        kind = None
    parts, shown = periods.period_parts(frame[period], kind)
    empty = frame[period].isna().to_numpy() & frame[column].notna().to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)
        problems.append(
            Problem(
                period,
                WHAT["not_nullable"],
                "fill the quarter or month of these rows, or drop them",
                rows=[int(r) + 1 for r in rows],
                series=sorted(labels.iloc[rows].unique().tolist()),
            )
        )
    unread = frame[period].notna().to_numpy() & np.isnan(parts)
    if unread.any() or shown not in periods.PER_YEAR:
        rows = np.flatnonzero(unread)
        problems.append(
            Problem(
                period,
                "values that name no quarter or month"
                + (f" (such as {_cell(frame[period].iloc[rows[0]])})" if len(rows) else ""),
                "write quarters as 1-4 or Q1-Q4, months as 1-12, M01-M12 or Jan-Dec",
                rows=[int(r) + 1 for r in rows],
                series=sorted(labels.iloc[rows].unique().tolist()),
            )
        )
    if problems:
        return unset, problems
    present = ~np.isnan(years) & ~np.isnan(parts)  # the schema reports empty cells
    times = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    times[present] = periods.starts(years[present], parts[present], shown)
    return _on_frequency_grid(times, spec), []


def _cell(value: object) -> str:
    """Returns a cell's value as a message quotes it: 7 for 7.0, '7a' for text."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float | np.number) else repr(str(value))


# A date with the year last: 01/02/2015, 1.2.15, 01-02-2015 10:00 (day and month in either order).
YEAR_LAST = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(?:\d{4}|\d{2})(?:$|[\sT])")
ISO_FIX = "write every date one way, best as ISO 2015-02-01 (year, month, day)"


def day_first(values: pd.Series, column: str, labels: pd.Series) -> tuple[bool, Problem | None]:
    """Returns whether the column's dates written with the year last put the day first,
    decided once for the whole column (pandas would decide date by date, reading 01/02/2015 as
    2 January and 13/02/2015 as 13 February): day first where a first field exceeds 12, month
    first where a second one does, day first for dotted dates (1.2.2015) and where the first
    field never changes (01/02, 01/03: the first of each month), month first where the second
    never changes. A Problem when the dates take both orders, or when nothing decides."""
    if values.dtype != object:
        return False, None
    text = pd.Series(values.dropna().astype(str).unique())  # a panel repeats its dates
    parts = text.str.extract(YEAR_LAST)
    matched = parts[0].notna()
    if not matched.any():
        return False, None
    first, mark, second = (parts.loc[matched, i] for i in (0, 1, 2))
    first, second = first.astype(int), second.astype(int)
    days_first, months_first = first > 12, second > 12
    example = text[matched].iloc[0]
    if days_first.any() and months_first.any():
        shown = [text[days_first.idxmax()], text[months_first.idxmax()]]
        rows = [int(np.flatnonzero((values == value).to_numpy())[0]) for value in shown]
        return False, Problem(
            column,
            f"dates written day first ({shown[0]}) and month first ({shown[1]})",
            ISO_FIX,
            rows=[row + 1 for row in rows],
            series=sorted(labels.iloc[rows].unique().tolist()),
        )
    if days_first.any() or (not months_first.any() and (mark == ".").all()):
        return True, None
    if months_first.any():
        return False, None
    if first.nunique() == 1 and second.nunique() > 1:
        return True, None
    if second.nunique() == 1 and first.nunique() > 1:
        return False, None
    return False, Problem(
        column,
        f"dates such as {example} read as day/month as well as month/day (no day above 12 "
        "tells which)",
        ISO_FIX,
    )


def _unreadable_problem(column: str, rows: np.ndarray, labels: pd.Series) -> Problem:
    return Problem(
        column=column,
        what=WHAT["not a date/time"],
        fix=FIXES["not a date/time"],
        rows=[int(r) + 1 for r in rows],
        series=sorted(labels.iloc[rows].unique().tolist()),
    )


def _order_problems(
    frame: pd.DataFrame, times: pd.Series, spec: DatasetConfig, windows: WindowConfig
) -> tuple[list[Problem], list[str]]:
    """Returns the problems of the times' order and grid, and the series too short for the
    windows that dataset.short_series: drop leaves out (those are problems otherwise)."""
    labels = series_labels(frame, spec.series_columns)
    problems = []
    # Rows in another order (newest first, as many exports write them) are read in time order:
    # every row is placed by its time on its series' grid.
    backwards = (times.groupby(labels, sort=False).diff() < pd.Timedelta(0)).to_numpy()
    if backwards.any():
        log.info(
            "rows of series %s are not in time order; they are read in time order",
            ", ".join(sorted(labels[backwards].unique().tolist())[:8]),
        )
    try:
        offset = pd.tseries.frequencies.to_offset(spec.frequency)
    except ValueError:
        problems.append(
            Problem(
                column=spec.time_column,
                what=f"dataset.frequency {spec.frequency!r} is not a pandas frequency",
                fix="use a pandas offset alias such as D, h, W-SAT, MS or QE-DEC",
            )
        )
        return problems, []
    # Each time must lie on its series' grid, the grid prepare reindexes to (it would drop
    # such a row silently). A first time off the offset (the 15th for MS) is off its grid too.
    grid = series_grid(times, labels, offset)
    off_grid = grid.steps < 0
    if off_grid.any():
        rows = np.flatnonzero(off_grid)
        problems.append(
            Problem(
                column=spec.time_column,
                what=f"times not on the {spec.frequency} grid",
                fix="set dataset.frequency to the data's real frequency, or resample the data",
                rows=[int(r) + 1 for r in rows],
                series=sorted(labels.iloc[rows].unique().tolist()),
            )
        )
        return problems, []
    # A series' length is its steps with a value: gaps and empty targets hold no windows.
    observed = observed_steps(grid, frame[spec.target])
    too_short = observed < steps_needed(windows, spec.season_length)[0]
    if spec.short_series != "drop" or too_short.all():
        return problems + _too_short_problems(grid, observed, too_short, spec, windows), []
    return problems, [str(label) for label in grid.labels[too_short]]


def observed_steps(grid: SeriesGrid, target: pd.Series) -> np.ndarray:
    """Returns each series' number of rows with a target value (in grid.labels' order)."""
    present = pd.to_numeric(target, errors="coerce").notna().to_numpy()
    return np.bincount(grid.codes[present], minlength=len(grid.labels))


def steps_needed(windows: WindowConfig, season_length: int) -> tuple[int, str]:
    """Returns the fewest steps a series needs for these windows, and what they add up to."""
    needed = (
        windows.encoder_length
        + windows.horizon
        + windows.validation_length
        + windows.holdout_length
    )
    parts = (
        f"encoder {windows.encoder_length} + horizon {windows.horizon} + validation "
        f"{windows.validation_length} + holdout {windows.holdout_length}"
    )
    if windows.holdout_length and season_length + windows.holdout_length > needed:
        # Seasonal naive forecasts the first holdout step from one season before it.
        needed = season_length + windows.holdout_length
        parts = f"season_length {season_length} + holdout {windows.holdout_length}"
    return needed, parts


def _too_short_problems(
    grid: SeriesGrid,
    observed: np.ndarray,
    too_short: np.ndarray,
    spec: DatasetConfig,
    windows: WindowConfig,
) -> list[Problem]:
    short = sorted(map(str, grid.labels[too_short]))
    if not short:
        return []
    needed, parts = steps_needed(windows, spec.season_length)
    every = too_short.all() and len(short) > 1
    return [
        Problem(
            column=spec.time_column,
            what=(
                f"{'every series is' if every else 'series'} too short: each needs at least "
                f"{needed} steps ({parts}); shortest has {observed[too_short].min()} steps "
                "with a value"
            ),
            fix=(
                f"give each series at least {needed} steps of history, or leave it out"
                if not windows.holdout_length  # a served model's input: the history to forecast
                else "shorten windows.* in params.yaml"
                if every
                else "drop these series, set dataset.short_series: drop to leave them out, or "
                "shorten windows.* in params.yaml"
            ),
            series=short,
        )
    ]


def _empty_covariate_problems(frame: pd.DataFrame, spec: DatasetConfig) -> list[Problem]:
    labels = series_labels(frame, spec.series_columns)
    problems = []
    for name in spec.known_covariates + spec.unknown_covariates:
        empty = frame[name].isna().groupby(labels, sort=True).all()
        if empty.any():
            problems.append(
                Problem(
                    column=name,
                    what="empty for a whole series: there is nothing to interpolate from",
                    fix="fill the covariate for these series, or drop them",
                    series=empty.index[empty].tolist(),
                )
            )
    return problems


def validate_table(
    frame: pd.DataFrame, spec: DatasetConfig, windows: WindowConfig, source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Returns the table with parsed times and float columns, and the series left out as too
    short for the windows (dataset.short_series: drop; else they are an error); or raises
    DataValidationError."""
    if frame.empty:
        raise DataValidationError(
            source, [Problem("(all)", "the table has no rows", "export the data again")]
        )
    required = spec.columns
    missing = [name for name in required if name not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns))
        raise DataValidationError(
            source,
            [
                Problem(
                    name,
                    "column is missing",
                    f"add it, or point dataset.* in params.yaml at one of: {present}",
                )
                for name in missing
            ],
        )
    period = spec.period_column
    if period and not _holds_numbers(frame[spec.time_column]):
        spec = spec.model_copy(update={"period_column": ""})  # dates need no quarter or month
    elif period in frame.columns:
        required = [*required, period]  # read with the years, then left out
    frame = frame[required].reset_index(drop=True)
    times, problems = read_times(frame, spec)
    try:
        _schema(spec, required).validate(frame, lazy=True)
    except SchemaErrors as error:
        problems += _schema_problems(frame, spec, error)
    if problems:
        raise DataValidationError(source, problems)
    problems, short = _order_problems(frame, times, spec, windows)
    problems += _empty_covariate_problems(frame, spec)
    if problems:
        raise DataValidationError(source, problems)
    typed = frame[spec.columns].copy()
    typed[spec.time_column] = times
    for name in [spec.target, *spec.known_covariates, *spec.unknown_covariates]:
        typed[name] = pd.to_numeric(typed[name]).astype("float64")
    for name in spec.series_columns:
        typed[name] = typed[name].astype(str)
    if short:
        kept = ~series_labels(frame, spec.series_columns).isin(short).to_numpy()
        typed = typed[kept].reset_index(drop=True)
    return typed, short
