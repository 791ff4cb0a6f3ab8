"""Returns raw tables: built-in datasets shipped inside dependencies, or a user's CSV/Parquet."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from trainyard.errors import DataError
from trainyard.tasks.prepared import decode_utf8


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


def read_table(name: str, root: Path) -> tuple[pd.DataFrame, str]:
    """Returns the raw table named by `name` (built-in or path) and a label for messages."""
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
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.StringIO(decode_utf8(path)))
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DatasetError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
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
