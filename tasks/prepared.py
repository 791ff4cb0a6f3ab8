"""Prepared-data files every family writes: atomic Parquet with metadata, md5, param checks;
and the reading of the users' text and CSV files they are prepared from."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainyard.errors import DataError, MissingStepError

log = logging.getLogger(__name__)

META_KEY = b"trainyard"  # the Parquet schema metadata key holding how a file was prepared


def file_md5(path: Path) -> str:
    """Returns the md5 hex digest of a file's bytes (as DVC hashes a file output)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Compressed files read as the file inside them (sales.csv.gz is a CSV): suffix -> opener.
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")


def table_suffix(path: Path) -> str:
    """Returns a file's type suffix, lower case, behind a compression suffix: .csv for
    sales.csv.gz as for sales.csv."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if len(suffixes) > 1 and suffixes[-1] in COMPRESSIONS:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def read_bytes(path: Path) -> bytes:
    """Returns a file's bytes, decompressed when its name ends in a compression suffix (a .zip
    must hold one file); raises DataError naming the file when that fails."""
    import bz2
    import gzip
    import lzma
    import zipfile

    suffix = path.suffix.lower()
    if suffix not in COMPRESSIONS:
        return path.read_bytes()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [info for info in archive.infolist() if not info.is_dir()]
                if len(members) != 1:
                    raise DataError(
                        f"{path}: a .zip holding {len(members)} files; give a .zip of one table "
                        "(or unpack it and give the table)"
                    )
                return archive.read(members[0])
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: cannot be decompressed as {suffix[1:]} ({error}); the file is damaged or "
            "not of that kind: compress it again, or give the table uncompressed"
        ) from None


def decode_utf8(path: Path) -> str:
    """Returns a text file's contents (decompressed: read_bytes), raising DataError naming the
    file, the byte offset and the line when it is binary or not UTF-8 (a UTF-8 byte-order mark
    is dropped)."""
    data = read_bytes(path)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path}: binary file (NUL byte at byte offset {nul}); expected "
            "UTF-8 text: remove it or point the params at text files"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 at byte offset {error.start} (line {line}: byte "
            f"0x{data[error.start]:02x}); save the file as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`"
        ) from None


SEPARATORS = (";", "\t", "|")  # besides the comma, what spreadsheets separate cells with
SNIFFED_LINES = 100  # lines read to find the header below a preamble


def read_csv_text(text: str, source: str = "CSV") -> pd.DataFrame:
    """Returns the table in CSV `text` as spreadsheets and pandas write it: separated by
    commas, or by semicolons, tabs or pipes when the header holds no comma; in a comma file, a
    column of quoted numbers with thousands separators (1,234.5) is read as numbers, and in a
    semicolon, tab or pipe file one of decimal commas (1.234,5) is; a first column without a
    header that counts the rows from 0 or 1 (a saved pandas index) is left out (one holding
    anything else, such as the dates of a DatetimeIndex, is named index), and so are
    rows of empty cells at the end (",,"), a last column with neither header nor value (every
    line ending in a separator) and spaces around headers; a column of digits some of which
    start with 0 (SKU 007) is text. Lines above the header that hold
    another number of cells than the table's rows (a download's title and dates, as World Bank
    files have) are skipped, and logged with `source`."""
    lines = _first_lines(text, 2 * SNIFFED_LINES)
    header, separator = _header_line(lines)
    if header:
        log.warning(
            "%s: skipped %d line(s) above the header on line %d (they do not hold as many cells "
            "as the table's rows)",
            source,
            header,
            header + 1,
        )
    padded = _zero_padded(lines[header : header + SNIFFED_LINES], separator)
    frame = pd.read_csv(
        io.StringIO(text), sep=separator, skiprows=header, dtype=dict.fromkeys(padded, str)
    )
    filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    frame = frame.iloc[: filled[-1] + 1 if len(filled) else 0]  # rows of empty cells at the end
    last = frame.columns[-1] if len(frame.columns) > 1 else None
    if last is not None and str(last).startswith("Unnamed: ") and frame[last].isna().all():
        frame = frame.drop(columns=last)  # every line ended in a separator
    first = frame.columns[0] if len(frame.columns) > 1 else None
    if first is not None and (first == "" or str(first).startswith("Unnamed: ")):
        values = frame[first]
        if (
            pd.api.types.is_integer_dtype(values.dtype)
            and len(values)
            and (
                np.array_equal(values, np.arange(len(values)))
                or np.array_equal(values, np.arange(1, len(values) + 1))
            )
        ):
            frame = frame.drop(columns=first)
        elif "index" not in frame.columns:
            frame = frame.rename(columns={first: "index"})  # a saved index of dates or labels
    stripped = [str(name).strip() for name in frame.columns]
    if len(set(stripped)) == len(stripped):
        frame.columns = stripped
    codes = {str(name).strip() for name in padded}
    for name in frame.columns:
        if frame[name].dtype == object and name not in codes:  # codes stay as written
            values = _without_missing_marks(frame[name], separator, f"{source}: column {name!r}")
            frame[name] = _locale_numbers(values, separator)
    return frame


# Cells statistics offices write for a missing number (FRED ".", Eurostat ":", "-", "..");
# pandas' own NA markers (NA, N/A, null, #N/A, ...) are read as empty already.
MISSING_MARKS = frozenset({".", "..", "...", "-", "--", "\u2013", "\u2014", ":", "n.a.", "N.A."})


def _without_missing_marks(values: pd.Series, separator: str, where: str) -> pd.Series:
    """Returns a text column with its missing-number marks (MISSING_MARKS) emptied when every
    other cell is a number (so the column reads as numbers with gaps), logging how many; else
    the column as it was (a "-" in a column of names stays a name)."""
    marks = values.isin(MISSING_MARKS).to_numpy()  # as written: no copy of a large column
    if not marks.any():
        return values
    numbers = _locale_numbers(values[~marks], separator)
    present = numbers.dropna()
    if present.empty or pd.to_numeric(present.astype(str), errors="coerce").isna().any():
        return values
    shown = ", ".join(repr(mark) for mark in sorted(set(values[marks])))
    rows = np.flatnonzero(marks)[:5] + 1
    log.warning(
        "%s: read %d cell(s) holding %s as empty (a missing number; rows %s%s)",
        where,
        int(marks.sum()),
        shown,
        ", ".join(map(str, rows)),
        " ..." if marks.sum() > 5 else "",
    )
    return values.mask(marks)


def _first_lines(text: str, count: int) -> list[str]:
    """Returns the first `count` lines of `text`, without splitting (or copying) the rest:
    the header is among the first SNIFFED_LINES, and the zero-padded sample the SNIFFED_LINES
    from it."""
    end = 0
    for _ in range(count):
        end = text.find("\n", end) + 1
        if end == 0:
            end = len(text)
            break
    return text[:end].splitlines()


def _header_line(lines: list[str]) -> tuple[int, str]:
    """Returns the index of the header line and the separator. The separator is the one that
    splits the first SNIFFED_LINES into the most cells on most lines, then on the most lines
    (the comma first, then SEPARATORS, where they tie);
    the header is the first line that is not blank, unless it holds another number of cells
    than most lines (a preamble): then the first line that holds as many. A first line of
    two or more cells, one fewer than the line right below it, is R's write.table header (row
    names in a first column without header, which pandas reads as the index), not a
    preamble."""
    sample = lines[:SNIFFED_LINES]
    filled = [i for i, line in enumerate(sample) if line.strip()]
    if not filled:
        return 0, ","
    best: tuple[tuple[int, int], str, dict[int, int]] | None = None
    for separator in (",", *SEPARATORS):
        counts = {i: _cells(sample[i], separator) for i in filled}
        values = list(counts.values())
        usual = max(set(values), key=values.count)
        score = (usual, values.count(usual))  # most cells, then on most lines
        if best is None or score > best[0]:
            best = (score, separator, counts)
    (usual, _), separator, counts = best
    header = filled[0]
    if counts[header] != usual:
        full = next(i for i in filled if counts[i] == usual)
        if not (counts[header] == usual - 1 >= 2 and full == header + 1):
            header = full
    return header, separator


def _zero_padded(lines: list[str], separator: str) -> list[str]:
    """Returns the columns (by header) whose cells in `lines` (the header first) are all
    digits with a leading zero in some (SKUs and store codes such as 007), empty cells and
    missing-number marks aside: text, which pandas would read as numbers and lose the zeros
    of."""
    rows = [row for row in csv.reader(lines, delimiter=separator) if row]
    if len(rows) < 2:
        return []
    padded = []
    for position, name in enumerate(rows[0]):
        cells = [row[position].strip() for row in rows[1:] if position < len(row)]
        cells = [cell for cell in cells if cell and cell not in MISSING_MARKS]
        if (
            cells
            and all(cell.isdigit() for cell in cells)
            and any(len(cell) > 1 and cell.startswith("0") for cell in cells)
        ):
            padded.append(name)
    return padded


def _cells(line: str, separator: str) -> int:
    return len(next(csv.reader([line], delimiter=separator), []))


THOUSANDS = r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?|[-+]?\d+(\.\d+)?"  # 1,234.5 (comma files)
DECIMAL_COMMA = r"[-+]?\d{1,3}(\.\d{3})+(,\d+)?|[-+]?\d+(,\d+)?"  # 1.234,5 (the others)


def _locale_numbers(values: pd.Series, separator: str) -> pd.Series:
    """Returns a text column as numbers when every cell is a number written with a comma
    (thousands in a comma file, decimals in the others); else the column as it was."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty or not text.str.contains(",", regex=False).any():
        return values
    if separator == ",":
        if not text.str.fullmatch(THOUSANDS).all():
            return values
        plain = text.str.replace(",", "", regex=False)
    else:
        if not text.str.fullmatch(DECIMAL_COMMA).all():
            return values
        plain = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    numbers = pd.Series(np.nan, index=values.index)
    numbers[plain.index] = plain.astype(float)
    return numbers


def write_table(frame: pd.DataFrame, meta: dict[str, Any], path: Path) -> None:
    """Writes frame + metadata to path via a temporary file: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), META_KEY: json.dumps(meta, sort_keys=True).encode()}
    )
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(handle)
    try:
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: Path, family: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Returns a prepared table and the metadata its prepare step stored with it."""
    if not path.exists():
        raise MissingStepError(
            f"{path}: no prepared data; run `trainyard prepare --family {family}` first"
        )
    again = (
        f"run `trainyard prepare --family {family}` again to rewrite it, or restore the "
        "version DVC recorded with `dvc checkout`"
    )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the prepared file is empty (0 bytes); {again}")
    try:
        arrow = pq.read_table(path)
        frame = arrow.to_pandas()
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"{path}: the prepared file cannot be read, it is truncated or damaged ({reason}); "
            f"{again}"
        ) from None
    try:
        meta = json.loads((arrow.schema.metadata or {})[META_KEY])
    except (KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict) or "source" not in meta:
        raise DataError(
            f"{path}: holds no record of how it was prepared, so it is not a file "
            f"`trainyard prepare --family {family}` wrote; {again}"
        )
    return frame, meta


def check_prepared_with(
    meta: dict[str, Any], sections: dict[str, dict[str, Any]], path: Path, family: str
) -> None:
    """Raises MissingStepError if the file was prepared with other values of `sections`
    (a model trained or scored on other data would be compared wrongly)."""
    differ = [
        f"{section}.{key}"
        for section, current in sections.items()
        for key, value in current.items()
        if meta.get(section, {}).get(key) != value
    ]
    if differ:
        raise MissingStepError(
            f"{path} was prepared with other parameters ({', '.join(differ)} differ): run "
            f"`trainyard prepare --family {family}` with these parameters first"
        )


def is_current(path: Path, md5: str) -> bool:
    """Returns whether the file at path is still there with this md5."""
    return path.exists() and file_md5(path) == md5
