"""Pictures of an evaluation: forecasts against actuals per series, and learning curves."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "series"


def plot_forecasts(
    forecasts: pd.DataFrame,
    names: list[str],
    horizon: int,
    stride: int,
    max_series: int,
    out_dir: Path,
) -> list[Path]:
    """Returns PNG paths, one per series (up to max_series): the holdout actuals and each
    model's forecasts from back-to-back origins (origins are `stride` steps apart; one every
    `horizon` steps is drawn), with quantile bands where there are any."""
    paths = []
    for series, part in list(forecasts.groupby("series", sort=True))[:max_series]:
        # Back-to-back origins: one every `horizon` steps of this series' holdout.
        origins = np.sort(part["origin"].unique())
        stitched = set(origins[:: max(1, horizon // stride)])
        part = part[part["origin"].isin(stitched)].sort_values("time")
        actual = (
            forecasts[forecasts["series"] == series].drop_duplicates("time").sort_values("time")
        )
        figure, axis = plt.subplots(figsize=(11, 4.5))
        axis.plot(actual["time"], actual["actual"], color="black", linewidth=1.6, label="actual")
        for name in names:
            lower, upper = f"{name}_q10", f"{name}_q90"
            if lower in part and upper in part:
                axis.fill_between(
                    part["time"], part[lower], part[upper], alpha=0.2, label=f"{name} 10-90%"
                )
            axis.plot(part["time"], part[name], linewidth=1, label=name)
        for origin in sorted(stitched):
            axis.axvline(origin, color="grey", linewidth=0.4, alpha=0.5)
        axis.set_title(f"Holdout forecasts, series {series} (a new origin at each grey line)")
        axis.set_ylabel("target")
        axis.legend(loc="upper left", fontsize=8, ncol=2)
        figure.tight_layout()
        path = out_dir / f"forecast_{_file_name(str(series))}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths
