"""Reads times written as periods rather than dates: codes such as 1959Q1, 1959 Q1, Q1 1959,
1959-Q1, 1959M01, 1959m1 or 2020-W05 (statistics offices', Stata's and EViews' exports), and
a column of years beside a column of quarters or months (statsmodels' macrodata). A period is
read as the day it starts (an ISO week as its Monday); the grid check then places it on the
dataset's frequency (a quarter-end frequency moves it to the quarter's last day)."""

from __future__ import annotations

import calendar
import re

import numpy as np
import pandas as pd

QUARTER, MONTH, WEEK = "quarter", "month", "week"
PER_YEAR = {QUARTER: 4, MONTH: 12}

# One pattern per way of writing a period code; each names the year and the part of the year.
CODES = [
    (QUARTER, r"(?P<year>\d{4})\s*[-/ ]?\s*Q(?P<part>\d)"),
    (QUARTER, r"Q(?P<part>\d)\s*[-/ ]?\s*(?P<year>\d{4})"),
    (MONTH, r"(?P<year>\d{4})\s*[-/ ]?\s*M(?P<part>\d{1,2})"),
    (WEEK, r"(?P<year>\d{4})\s*-?\s*W(?P<part>\d{1,2})"),
]
MONTH_NAMES = {
    name.lower(): number
    for names in (calendar.month_name, calendar.month_abbr)
    for number, name in enumerate(names)
    if name
} | {"sept": 9}


def starts(years: np.ndarray, parts: np.ndarray, kind: str) -> pd.DatetimeIndex:
    """Returns the day each (year, part) period starts; NaT where the part is not one of the
    year's (quarter 5, month 13, week 53 of a 52-week year)."""
    years = np.asarray(years, dtype=np.int64)
    parts = np.asarray(parts, dtype=np.int64)
    if kind == WEEK:
        text = pd.Series([f"{y:04d}-W{p:02d}-1" for y, p in zip(years, parts, strict=True)])
        return pd.DatetimeIndex(pd.to_datetime(text, format="%G-W%V-%u", errors="coerce"))
    valid = (parts >= 1) & (parts <= PER_YEAR[kind])
    months = np.where(valid, (parts - 1) * (3 if kind == QUARTER else 1) + 1, 1)
    stamps = pd.to_datetime(pd.DataFrame({"year": years, "month": months, "day": 1}))
    return pd.DatetimeIndex(stamps.where(valid))


def period_codes(values: pd.Series) -> tuple[pd.Series, str] | None:
    """Returns a text column whose every value is a period code of one kind (CODES) read as
    the day each period starts, and the kind; None when a value is no such code (empty cells
    stay NaT)."""
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return None
    present = values.dropna()
    if present.empty or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return None
    distinct = pd.Series(present.unique())  # a panel repeats its periods: read each once
    text = distinct.astype(str).str.strip()
    for kind, pattern in CODES:
        parts = text.str.extract(f"^(?:{pattern})$", flags=re.IGNORECASE)
        if parts.isna().any(axis=None):
            continue
        read = starts(parts["year"].astype(int).to_numpy(), parts["part"].astype(int), kind)
        if read.isna().any():
            continue
        times = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        times[present.index] = present.map(dict(zip(distinct, read, strict=True))).to_numpy()
        return times, kind
    return None


def period_parts(values: pd.Series, kind: str | None) -> tuple[np.ndarray, str | None]:
    """Returns the part of the year each value of a quarter or month column names (NaN where
    it names none: empty, or not a period) and the kind the values show: Q1-Q4 are quarters;
    M01, Jan, January are months; plain numbers 1-12 are `kind`'s (months when None and one
    exceeds 4, quarters when none does)."""
    text = values.astype("string").str.strip().str.lower().str.rstrip(".")
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    whole = np.isfinite(numbers) & (numbers == np.round(numbers))
    quarters = (
        text.str.extract(r"^q(\d)$")[0].astype("Float64").to_numpy(np.float64, na_value=np.nan)
    )
    coded = text.str.extract(r"^m(\d{1,2})$")[0].astype("Float64")
    named = text.map(MONTH_NAMES).astype("Float64")
    months = coded.fillna(named).to_numpy(np.float64, na_value=np.nan)
    shown = QUARTER if np.isfinite(quarters).any() else MONTH if np.isfinite(months).any() else None
    if shown is None:
        present = numbers[whole]
        shown = kind or (
            None if not len(present) else MONTH if present.max() > PER_YEAR[QUARTER] else QUARTER
        )
    parts = np.where(whole, numbers, quarters if shown == QUARTER else months)
    if shown is not None:
        parts = np.where((parts >= 1) & (parts <= PER_YEAR.get(shown, 53)), parts, np.nan)
    return parts, shown


def kind_of(offset: pd.DateOffset) -> str | None:
    """Returns the period kind of a quarterly or monthly frequency; None for any other."""
    if isinstance(offset, pd.offsets.QuarterBegin | pd.offsets.QuarterEnd):
        return QUARTER
    if isinstance(offset, pd.offsets.MonthBegin | pd.offsets.MonthEnd):
        return MONTH
    return None


def on_grid(times: pd.Series, offset: pd.DateOffset) -> pd.Series:
    """Returns period starts moved to the frequency's own day of their period (a month or
    quarter end for ME, QE-DEC); as they are for a frequency of another kind, whose grid check
    then reports them."""
    if kind_of(offset) is None:
        return times
    distinct = times.dropna().unique()
    moved = {stamp: offset.rollforward(stamp) for stamp in distinct}
    return times.map(moved).astype(times.dtype)
