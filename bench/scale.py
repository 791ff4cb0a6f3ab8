"""Benchmark: how each stage of the forecasting pipeline grows with the number of series.

A synthetic monthly panel (120 months per series: a level, a trend, a multiplicative yearly
season of its own phase and amplitude, and noise) is written as a long CSV (store, month,
sales) in a scratch project, and run as a user would run it with `trainyard run --dataset
panel.csv --profile quick --no-orchestrator`: the forecasting keys are inferred from the file
(zero-config CSVs), then prepare, train (the quick profile's models: LSTM, TCN, TFT and
AutoTheta), evaluate on validation and holdout, register and gate, with MLflow on SQLite.

Each stage is timed in this process:

  infer     reading the CSV and inferring time column, series, target, frequency, windows
  prepare   validation, the time grid, splits, the prepared Parquet file
  train     every model, up to one per core at once (the wall time), and each model's own
  evaluate  every model and baseline on the validation and holdout windows, the reports
  register  the ensemble's run, the evaluation's metrics, registration, gate and publishing

The peer, in the same process on the same panel: statsforecast's own parallel fit
(`StatsForecast(models=[AutoTheta(season_length=12)], freq="MS", n_jobs=<cores>).fit`) on
each series' train split, against trainyard's AutoTheta fit (the `fit` part of its train
time, the same models on the same data). The ratio says what trainyard's per-series JSON
models and its worker pool cost over the library's own path.

    .venv/bin/python bench/scale.py                          # 100, 1,000 and 10,000 series
    .venv/bin/python bench/scale.py --series 100 1000        # a shorter run

Isolation: the scratch projects, the MLflow store and the state directory live in a temporary
folder removed at exit; MLFLOW_TRACKING_URI and PREFECT_API_URL are dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
STEPS = 120  # months per series
STAGES = ("infer", "prepare", "train", "evaluate", "register")


def panel(series: int, seed: int = 0) -> pd.DataFrame:
    """Returns a long monthly panel: `series` stores of STEPS months each."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)
    level = rng.uniform(50, 500, (series, 1))
    trend = rng.normal(0, 0.3, (series, 1))
    amplitude = rng.uniform(0.05, 0.3, (series, 1))
    phase = rng.uniform(0, 2 * np.pi, (series, 1))
    season = 1 + amplitude * np.sin(2 * np.pi * t / 12 + phase)
    noise = rng.normal(0, 0.03, (series, STEPS)) * level
    sales = level * (1 + trend * t / STEPS) * season + noise
    return pd.DataFrame(
        {
            "store": np.repeat([f"s{i:05d}" for i in range(series)], STEPS),
            "month": np.tile(pd.date_range("2010-01-01", periods=STEPS, freq="MS"), series),
            "sales": sales.ravel().round(3),
        }
    )


def isolate(workdir: Path) -> None:
    """Points trainyard's state (MLflow store, runs) into `workdir`; no user server is used."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    os.environ["TRAINYARD_STATE_DIR"] = str(workdir / "state")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def timed(seconds: dict[str, float], stage: str, function: Callable[..., Any]) -> Callable:
    """Returns `function`, adding the time of each call to seconds[stage]."""

    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - started

    return call


def run_trainyard(series: int, scratch: Path, profile: str) -> dict[str, float]:
    """Returns the seconds of each stage (and of each model) of trainyard's pipeline on a
    panel of `series` series, in a project folder of its own."""
    from trainyard.config import RegisterConfig, merge, read_params_file
    from trainyard.environment import ProjectPaths, configure_environment, quiet_libraries
    from trainyard.tasks import pipeline
    from trainyard.tasks.forecast.config import params_from_dict
    from trainyard.tasks.forecast.family import FORECAST
    from trainyard.tasks.forecast.infer import infer_file

    project = scratch / f"panel-{series}"
    project.mkdir()
    csv = f"panel_{series}.csv"  # its own registered model: panel_<series>-forecaster
    panel(series).to_csv(project / csv, index=False)
    quiet_libraries()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    inference = infer_file(csv, project)
    seconds["infer"] = time.perf_counter() - started
    section = read_params_file(ROOT / "params.yaml", profile)["forecast"]
    override = {**inference.section(), "dataset": {"name": csv, **inference.dataset}}
    params = params_from_dict(merge(section, override))
    paths = ProjectPaths(project)
    configure_environment(paths)
    originals = {}
    for stage, name in (
        ("prepare", "prepare_step"),
        ("train", "for_each_model"),
        ("evaluate", "evaluate_step"),
        ("register", "derive_step"),
        ("register", "log_evaluation_step"),
        ("register", "register_step"),
        ("register", "publish_models"),
    ):
        originals[name] = getattr(pipeline, name)
        setattr(pipeline, name, timed(seconds, stage, originals[name]))
    try:
        started = time.perf_counter()
        result = pipeline.run_family(
            FORECAST, params, RegisterConfig(experiment=f"scale-{series}"), paths
        )
        seconds["total"] = seconds["infer"] + time.perf_counter() - started
    finally:
        for name, function in originals.items():
            setattr(pipeline, name, function)
    for model in result.trained:
        seconds[f"  {model.result.name}"] = model.result.seconds
    seconds["champion"] = bool(result.decision and result.decision.promoted)
    return seconds


def run_peer(series: int) -> float:
    """Returns the seconds statsforecast's parallel AutoTheta fit takes on the same train
    splits as trainyard's (the first 120 - 2 x 24 months of each series)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoTheta

    from trainyard.models.forecast.statistical import workers

    frame = panel(series).rename(columns={"store": "unique_id", "month": "ds", "sales": "y"})
    train = frame.groupby("unique_id").head(STEPS - 48)
    model = StatsForecast(models=[AutoTheta(season_length=12)], freq="MS", n_jobs=workers())
    started = time.perf_counter()
    model.fit(train)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--profile", default="quick", help="a params.yaml profile [quick]")
    args = parser.parse_args()

    import statsforecast
    import torch

    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as folder:
        isolate(Path(folder))
        for series in args.series:
            print(f"--- {series} series", flush=True)
            rows[series] = run_trainyard(series, Path(folder), args.profile)
            rows[series]["peer autotheta fit"] = run_peer(series)
    print()
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}, statsforecast "
        f"{statsforecast.__version__}, Python {sys.version.split()[0]}; profile {args.profile}; "
        f"{STEPS} months per series"
    )
    names = [*STAGES, "total"]
    names += sorted({key for row in rows.values() for key in row if key.startswith("  ")})
    names += ["peer autotheta fit"]
    print(f"{'seconds':<20}" + "".join(f"{n:>12,}" for n in rows))
    for name in names:
        print(
            f"{name:<20}"
            + "".join(f"{row.get(name, float('nan')):>12.1f}" for row in rows.values())
        )
    print(
        f"{'ms per series':<20}"
        + "".join(f"{1000 * r['total'] / n:>12.1f}" for n, r in rows.items())
    )
    for n, row in rows.items():
        ours = row.get("  autotheta", float("nan"))
        within = "within" if row["total"] <= 600 else "over"
        print(
            f"{n:,} series: total {row['total']:.0f} s ({within} "
            f"10 min); trainyard's AutoTheta fit {ours:.1f} s vs statsforecast's "
            f"{row['peer autotheta fit']:.1f} s (ratio {ours / row['peer autotheta fit']:.2f}); "
            f"champion promoted: {bool(row['champion'])}"
        )


if __name__ == "__main__":
    main()
