"""Report files every family writes: a staged folder swapped in whole, and learning curves."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


@contextlib.contextmanager
def staged_reports(report_dir: Path) -> Iterator[Path]:
    """Yields an empty folder to write reports into; on success its entries replace those of
    report_dir one by one (report_dir also holds files that are not ours, e.g. .gitignore).
    On failure report_dir is left as it was."""
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=report_dir.parent, prefix=f".{report_dir.name}-"))
    try:
        yield work
        report_dir.mkdir(parents=True, exist_ok=True)
        for entry in work.iterdir():
            target = report_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def learning_curves(histories: dict[str, list[dict[str, float]]]) -> pd.DataFrame:
    """Returns one row per model and epoch with every metric recorded for that epoch."""
    return pd.DataFrame(
        [{"model": name, **row} for name, rows in histories.items() for row in rows]
    )


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Returns path after writing the figure there as a PNG and closing it."""
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_learning_curves(
    curves: pd.DataFrame, out_dir: Path, columns: list[str], log_scale: bool
) -> Path:
    """Returns the PNG path of `columns` per epoch, one panel per model."""
    models = list(curves["model"].unique())
    figure, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 3.6), squeeze=False)
    for axis, model in zip(axes[0], models, strict=True):
        part = curves[curves["model"] == model]
        for column in columns:
            if column in part:
                axis.plot(part["epoch"], part[column], marker="o", markersize=3, label=column)
        axis.set_title(model)
        axis.set_xlabel("epoch")
        if log_scale:
            axis.set_yscale("log")
        axis.legend(fontsize=8)
    return save_figure(figure, out_dir / "learning_curves.png")
