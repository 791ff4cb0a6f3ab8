"""Returns raw tables: built-in datasets shipped inside dependencies, or a user's CSV/Parquet,
read as one row per series and time (a wide table is melted as it is read)."""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.forecast import periods
from trainyard.tasks.forecast.config import LAYOUTS, DatasetConfig
from trainyard.tasks.forecast.validate import (
    DataValidationError,
    day_first,
    is_year,
    read_times,
    series_labels,
)
from trainyard.tasks.prepared import decode_utf8, read_bytes, read_csv_text, table_suffix

LONG, DATES_AS_COLUMNS, SERIES_AS_COLUMNS, PERIODS_AS_COLUMNS = LAYOUTS  # dataset.layout
log = logging.getLogger(__name__)

SHOWN_CELLS = 5  # offending cells quoted per problem
# The attrs key of a melted table listing the series with no value it left out (short_series).
EMPTY_SERIES = "empty_series"
YEAR = re.compile(r"^[12][0-9]{3}$")  # a header such as 1960 reads as that year


class DatasetError(DataError):
    """The dataset named in params.yaml cannot be read."""


def co2_weekly() -> pd.DataFrame:
    """Returns Mauna Loa weekly CO2 (ppm), 1958-2001, with its 59 real missing weeks."""
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    return frame.rename_axis("date").reset_index()


def macro_panel() -> pd.DataFrame:
    """Returns US quarterly macro data (1959-2009) as a long panel, one series per variable."""
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    frame["date"] = (
        pd.PeriodIndex.from_fields(
            year=frame["year"].astype(int), quarter=frame["quarter"].astype(int), freq="Q"
        )
        .to_timestamp(how="end")
        .normalize()
    )
    variables = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "m1"]
    return frame.melt(id_vars="date", value_vars=variables, var_name="series", value_name="value")


# Built-in name -> (loader, the params.yaml dataset keys that describe its table).
BUILTIN_DATASETS: dict[str, tuple[Callable[[], pd.DataFrame], dict[str, object]]] = {
    "co2": (
        co2_weekly,
        {"time_column": "date", "target": "co2", "frequency": "W-SAT", "season_length": 52},
    ),
    "macro_panel": (
        macro_panel,
        {
            "time_column": "date",
            "target": "value",
            "series_columns": ["series"],
            "frequency": "QE-DEC",
            "season_length": 4,
        },
    ),
}


def read_table(
    name: str, root: Path, spec: DatasetConfig | None = None
) -> tuple[pd.DataFrame, str]:
    """Returns the raw table named by `name` (built-in or path) and a label for messages; a
    wide table (`spec.layout`) is melted to one row per series and time first (to_long)."""
    frame, source = _read_file(name, root)
    if spec is not None and spec.layout != LONG and name not in BUILTIN_DATASETS:
        frame = to_long(frame, spec, source)
    return frame, source


def _read_file(name: str, root: Path) -> tuple[pd.DataFrame, str]:
    if name in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[name][0](), f"built-in dataset {name!r}"
    path = Path(name)
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        builtins = ", ".join(BUILTIN_DATASETS)
        raise DatasetError(
            f"{path}: no such file, and {name!r} is not a built-in dataset ({builtins}). "
            "Set dataset.name in params.yaml to a CSV/Parquet path or a built-in name."
        )
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty. Export the table again with a header row.")
    suffix = table_suffix(path)
    try:
        if suffix == ".csv":
            frame = read_csv_text(decode_utf8(path), str(path))
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(io.BytesIO(read_bytes(path)))
        else:
            raise DatasetError(
                f"{path}: unsupported file type {suffix!r}; use .csv or .parquet (either may be "
                "compressed: .csv.gz, .bz2, .xz, .zip)"
            )
    except pd.errors.EmptyDataError as error:
        raise DatasetError(f"{path}: the file has no header and no rows.") from error
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DatasetError(f"{path}: cannot be read as {suffix[1:]}: {error}") from error
    return frame, str(path)


def builtin_overrides(name: str) -> dict[str, object]:
    """Returns the dataset keys that describe built-in `name`'s table (empty for a path)."""
    return dict(BUILTIN_DATASETS.get(name, (None, {}))[1])


# --- wide tables ---------------------------------------------------------------------------


def header_times(columns: list[str], source: str) -> dict[str, pd.Timestamp]:
    """Returns the column headers that read as dates/times, with their times: text with digits
    that pandas parses (2024-01-31, 2024-01, 31/01/2024 10:00), a period code (2024 Q1,
    2024M01: periods.period_codes) or a year alone (1960)."""
    texts = pd.Series([str(name).strip() for name in columns], dtype=object)
    dayfirst, problem = day_first(texts, "(the headers)", pd.Series("", index=texts.index))
    if problem is not None:
        raise DatasetError(f"{source}: column headers: {problem.what}; {problem.fix}")
    times = {}
    for name in columns:
        text = str(name).strip()
        if YEAR.match(text):
            times[name] = pd.Timestamp(year=int(text), month=1, day=1)
            continue
        if not re.search(r"\d", text) or _is_number(text):
            continue  # no digits, or a number alone: not a date
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas guessing a day-first format
                stamp = pd.to_datetime(text, dayfirst=dayfirst)
        except (TypeError, ValueError, OverflowError):
            code = periods.period_codes(pd.Series([text], dtype=object))
            if code is not None:  # 2020 Q1, 2020M01, 2020-W05 (pandas reads 2020Q1 itself)
                times[name] = code[0].iloc[0]
            continue
        if not pd.isna(stamp):
            times[name] = stamp.tz_localize(None) if stamp.tzinfo else stamp
    return times


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_long(frame: pd.DataFrame, spec: DatasetConfig, source: str) -> pd.DataFrame:
    """Returns wide `frame` as one row per series and time, in the columns `spec` names:
    its time_column, target and series_columns. "dates_as_columns": every other column
    names the series of its row; "series_as_columns": every column but spec.time_column is
    a series named after its header. A series starts at its first value and ends at its
    last (series of different lengths leave cells empty); an empty cell between them is a
    missing value (an error unless missing_target is gap). Raises DataError naming the row
    and column of a cell that is not a number, a repeated series or time, or a name clash."""
    frame = frame.rename(columns=str)
    _no_clash(spec, source)
    if spec.layout == DATES_AS_COLUMNS:
        long, empty = _dates_as_columns(frame, spec, source)
    elif spec.layout == PERIODS_AS_COLUMNS:
        long, empty = _periods_as_columns(frame, spec, source)
    else:
        long, empty = _series_as_columns(frame, spec, source)
    if empty:
        log.warning(
            "%s: left out %d series with no value (dataset.short_series: drop): %s",
            source,
            len(empty),
            _names(empty),
        )
    long.attrs[EMPTY_SERIES] = empty
    return long


def _dates_as_columns(
    frame: pd.DataFrame, spec: DatasetConfig, source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Returns the long table of a row per series, and the series with no value it left out."""
    times = header_times(list(frame.columns), source)
    layout = f"forecast.dataset.layout is {DATES_AS_COLUMNS}"
    if len(times) < 2:
        raise DatasetError(
            f"{source}: {layout}, but {len(times)} column header(s) read as dates (columns: "
            f"{_names(list(frame.columns))}); give the dates as headers (2024-01-31, 2024-01 or "
            f"a year), or set forecast.dataset.layout to {LONG} or {SERIES_AS_COLUMNS}"
        )
    ids = [name for name in frame.columns if name not in times]
    unknown = [name for name in spec.series_columns if name not in ids]
    if unknown:
        raise DatasetError(
            f"{source}: series_columns {_names(unknown)} are not columns of the table; with "
            f"{layout} they are among its columns that are not dates: {_names(ids) or 'none'}"
        )
    _no_repeated_times(times, source)
    dates = sorted(times, key=times.__getitem__)
    labels = series_labels(frame, spec.series_columns)
    repeated = np.flatnonzero(labels.duplicated(keep=False).to_numpy())
    if len(repeated):
        rows = ", ".join(str(r + 1) for r in repeated[:SHOWN_CELLS])
        by = (
            f"series_columns {_names(spec.series_columns)}"
            if spec.series_columns
            else "no series_columns: one series"
        )
        raise DatasetError(
            f"{source}: rows {rows} are the same series ({by}); with {layout} each row is "
            "one series: merge or drop the repeats, or set forecast.dataset.series_columns "
            "to the columns that tell the rows apart"
        )
    values = _numbers(frame[dates], source)
    stamps = pd.DatetimeIndex([times[name] for name in dates])
    cells = values.to_numpy(dtype=np.float64)
    keep = _spans(cells, spec, source, lambda i, j: (i, dates[j]), labels.tolist())
    series, steps = np.nonzero(keep)
    long = frame[spec.series_columns].iloc[series].reset_index(drop=True)
    long[spec.time_column] = stamps[steps]
    long[spec.target] = cells[series, steps]
    return long, _without_rows(labels.tolist(), keep)


def _series_as_columns(
    frame: pd.DataFrame, spec: DatasetConfig, source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Returns the long table of a column per series, and the series with no value it left
    out."""
    layout = f"forecast.dataset.layout is {SERIES_AS_COLUMNS}"
    if spec.time_column not in frame.columns:
        raise DatasetError(
            f"{source}: {layout}, but there is no column {spec.time_column!r} (time_column); "
            f"the columns are {_names(list(frame.columns))}"
        )
    columns = [name for name in frame.columns if name not in (spec.time_column, spec.period_column)]
    if not columns:
        raise DatasetError(f"{source}: {layout}, but no column besides the time holds a series")
    single = DatasetConfig(
        time_column=spec.time_column,
        period_column=spec.period_column,
        frequency=spec.frequency,
        series_columns=[],
    )
    times, problems = read_times(frame, single)
    if problems:
        raise DataValidationError(source, problems)
    repeats = np.flatnonzero(times.duplicated(keep=False).to_numpy())
    if len(repeats):
        rows = ", ".join(str(r + 1) for r in repeats[:SHOWN_CELLS])
        raise DatasetError(
            f"{source}: rows {rows} repeat the time {times.iloc[repeats[0]]} in column "
            f"{spec.time_column!r}; with {layout} each row is one time: merge or drop repeats"
        )
    values = _numbers(frame[columns], source)
    cells = values.to_numpy(dtype=np.float64).T  # one row per series
    keep = _spans(cells, spec, source, lambda i, j: (j, columns[i]), columns)
    series, steps = np.nonzero(keep)
    long = pd.DataFrame({spec.time_column: times.to_numpy()[steps]})
    long[spec.series_columns[0]] = np.asarray(columns, dtype=object)[series]
    long[spec.target] = cells[series, steps]
    return long, _without_rows(columns, keep)


def period_headers(columns: list[str]) -> tuple[list[str], str | None]:
    """Returns the column headers that name a month (Jan, JAN, January, M01) or a quarter (Q1),
    in the year's order, and their kind; none when they are not all of one year's months or
    quarters, each once (a table of years by months: NOAA's, BLS's; other headers such as
    Annual may sit beside them)."""
    names = pd.Series([str(name) for name in columns], dtype=object)
    words = names[pd.to_numeric(names, errors="coerce").isna()]  # 1-12 alone are no months
    parts, kind = periods.period_parts(words, None)
    named = ~np.isnan(parts)
    found = pd.Series(parts[named].astype(int), index=words.index[named])
    if kind not in periods.PER_YEAR or found.duplicated().any():
        return [], None
    if len(found) != periods.PER_YEAR[kind]:
        return [], None
    return [columns[i] for i in found.sort_values().index], kind


def _periods_as_columns(
    frame: pd.DataFrame, spec: DatasetConfig, source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Returns the long table of a row per year (per series) and a column per month or quarter:
    a series runs through its rows in year order, from its first value to its last (_spans,
    on each series' cells laid end to end)."""
    layout = f"forecast.dataset.layout is {PERIODS_AS_COLUMNS}"
    headers, kind = period_headers(list(frame.columns))
    if kind is None:
        raise DatasetError(
            f"{source}: {layout}, but the column headers are not a year's months (Jan-Dec or "
            f"M01-M12) or quarters (Q1-Q4), each once: {_names(list(frame.columns))}"
        )
    if spec.time_column not in frame.columns:
        raise DatasetError(
            f"{source}: {layout}, but there is no column {spec.time_column!r} (time_column, the "
            f"years); the columns are {_names(list(frame.columns))}"
        )
    years = pd.to_numeric(frame[spec.time_column], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~is_year(years))
    if len(bad):
        raise DatasetError(
            f"{source}: rows {', '.join(str(r + 1) for r in bad[:SHOWN_CELLS])} of column "
            f"{spec.time_column!r} hold no year ({frame[spec.time_column].iloc[bad[0]]!r}); with "
            f"{layout} each row is a year (1000-2999) of its series: fill or drop those rows"
        )
    labels = series_labels(frame, spec.series_columns)
    repeated = np.flatnonzero(
        pd.DataFrame({"s": labels, "y": years}).duplicated(keep=False).to_numpy()
    )
    if len(repeated):
        raise DatasetError(
            f"{source}: rows {', '.join(str(r + 1) for r in repeated[:SHOWN_CELLS])} repeat a "
            f"year of one series; with {layout} each row is one year of its series: merge or "
            "drop the repeats, or set forecast.dataset.series_columns to the columns that tell "
            "the series apart"
        )
    cells = _numbers(frame[headers], source).to_numpy(dtype=np.float64)
    codes, names = pd.factorize(labels)
    # One row per series: its file rows in year order, their cells laid end to end (shorter
    # series padded with empty cells after their end, which _spans leaves out).
    order = np.lexsort((years, codes))
    rank = pd.Series(codes[order]).groupby(codes[order]).cumcount().to_numpy()
    rows_of = np.full((len(names), rank.max() + 1), -1)
    rows_of[codes[order], rank] = order
    count = len(headers)
    matrix = np.where(rows_of[..., None] >= 0, cells[rows_of], np.nan).reshape(len(names), -1)
    keep = _spans(
        matrix,
        spec,
        source,
        lambda i, j: (rows_of[i, j // count], headers[j % count]),
        [str(name) for name in names],
    )
    series, steps = np.nonzero(keep)
    rows = rows_of[series, steps // count]
    long = frame[spec.series_columns].iloc[rows].reset_index(drop=True)
    long[spec.time_column] = periods.starts(years[rows], steps % count + 1, kind)
    long[spec.target] = matrix[series, steps]
    return long, _without_rows([str(name) for name in names], keep)


def _without_rows(labels: list[str], keep: np.ndarray) -> list[str]:
    """Returns the series of `labels` (one per row of `keep`, _spans) with no cell kept: those
    with no value, which short_series: drop leaves out of the long table."""
    return [labels[i] for i in np.flatnonzero(~keep.any(axis=1))]


def _no_clash(spec: DatasetConfig, source: str) -> None:
    """Raises DatasetError when two of the long table's columns would have one name."""
    keys = [
        ("time_column", spec.time_column),
        ("target", spec.target),
        *(("series_columns", name) for name in spec.series_columns),
    ]
    for i, (key, name) in enumerate(keys):
        for other, same in keys[i + 1 :]:
            if name == same:
                raise DatasetError(
                    f"{source}: forecast.dataset.{key} and {other} both name {name!r}, but the "
                    f"long table a {spec.layout} file is read as needs a column for each; "
                    "name one of them otherwise"
                )


def _no_repeated_times(times: dict[str, pd.Timestamp], source: str) -> None:
    seen: dict[pd.Timestamp, str] = {}
    for name, stamp in times.items():
        if stamp in seen:
            raise DatasetError(
                f"{source}: column headers {seen[stamp]!r} and {name!r} are the same time "
                f"({stamp}); keep one column per time"
            )
        seen[stamp] = name


def _numbers(cells: pd.DataFrame, source: str) -> pd.DataFrame:
    """Returns `cells` as numbers; raises DatasetError naming cells that hold something else."""
    numbers = cells.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().to_numpy() & cells.notna().to_numpy()
    for r, c in np.argwhere(bad):
        bad[r, c] = str(cells.iat[r, c]).strip() != ""  # a blank cell is an empty one
    if bad.any():
        rows, columns = np.nonzero(bad)
        shown = "; ".join(
            f"row {r + 1}, column {cells.columns[c]!r}: {cells.iat[r, c]!r}"
            for r, c in list(zip(rows, columns, strict=True))[:SHOWN_CELLS]
        )
        more = f" and {len(rows) - SHOWN_CELLS} more" if len(rows) > SHOWN_CELLS else ""
        raise DatasetError(
            f"{source}: {len(rows)} cell(s) are not numbers: {shown}{more} (rows count data "
            "rows from 1; in a CSV, row N is on line N+1). Make them numbers or leave them empty"
        )
    return numbers


def _spans(
    cells: np.ndarray, spec: DatasetConfig, source: str, where: Callable, labels: list[str]
) -> np.ndarray:
    """Returns which cells of `cells` (one row per series, one column per time) belong to
    their series: from its first value to its last. Raises DatasetError for a series with no
    value, and for empty cells within a series unless missing_target is gap; `where(i, j)`
    returns the (0-based row, column header) of cell i, j in the file."""
    present = ~np.isnan(cells)
    empty = np.flatnonzero(~present.any(axis=1))
    if len(empty) and spec.short_series != "drop":
        raise DatasetError(
            f"{source}: series {_names([labels[i] for i in empty])} hold no value; drop them, "
            "or set forecast.dataset.short_series: drop to leave them out"
        )
    steps = np.arange(cells.shape[1])
    first = np.argmax(present, axis=1)
    last = cells.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    keep = (steps >= first[:, None]) & (steps <= last[:, None])
    keep[empty] = False  # short_series: drop leaves a series with no value out
    holes = np.argwhere(keep & ~present)
    if len(holes) and spec.missing_target != "gap":
        shown = "; ".join(
            f"series {labels[i]!r}: row {where(i, j)[0] + 1}, column {where(i, j)[1]!r}"
            for i, j in holes[:SHOWN_CELLS]
        )
        more = f" and {len(holes) - SHOWN_CELLS} more" if len(holes) > SHOWN_CELLS else ""
        raise DatasetError(
            f"{source}: {len(holes)} empty cell(s) between a series' first and last values: "
            f"{shown}{more}. Fill them from the source, or set forecast.dataset.missing_target: "
            "gap to treat them as missing steps (windows touching them are skipped)"
        )
    return keep


def _names(names: list[str]) -> str:
    shown = ", ".join(map(str, names[:8]))
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")
