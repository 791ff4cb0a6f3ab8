"""Benchmark: trainyard's forecasters against statsforecast's on seven real series, scored on
the same rolling-origin holdout windows with the same MASE and sMAPE.

The series ship inside installed packages (nothing is downloaded):

  co2_monthly   statsmodels.datasets.co2: Mauna Loa weekly CO2 (ppm) averaged per month,
                1965-2001 (444 months; the years before hold months without any reading)
  elnino        statsmodels.datasets.elnino: monthly sea surface temperature (deg C) of the
                Nino region, 1950-2010, melted from its 61 x 12 table (732 months)
  airpassengers statsforecast.utils.AirPassengersDF: monthly airline passengers (thousands),
                1949-1960 (144 months)
  realgdp       statsmodels.datasets.macrodata: US real GDP, quarterly, 1959-2009 (203)
  unemp         statsmodels.datasets.macrodata: US unemployment rate (%), quarterly (203)
  sunspots      statsmodels.datasets.sunspots: yearly sunspot activity, 1700-2008 (309)
  nile          statsmodels.datasets.nile: yearly Nile flow at Aswan, 1871-1970 (100)

For each series, as a user would: the series is written as a CSV in a scratch project, its
forecasting keys (frequency, season length, horizon, encoder, validation and holdout) are
inferred by trainyard.tasks.forecast.infer (zero-config CSVs), with validation and holdout
lengthened where needed to give at least --origins rolling origins each, and the whole
forecasting pipeline runs without an orchestrator (`run_family`: prepare, train every model
in --models, evaluate on the holdout, register, gate). Trainyard's models are fitted on the
train split (the neural ones early-stopped on validation); its statistical candidates are
applied at every origin without refitting; the evaluation adds its ensemble candidate (the
best few on validation, combined); the challenger is chosen on validation, and the gate makes
it champion when it beats the best baseline.

The peer, in the same process: statsforecast's AutoETS, AutoARIMA and AutoTheta with their
default settings and the inferred season length, on the raw float64 series (not trainyard's
prepared float32 copy), forecasting from every holdout origin trainyard scores (same origins,
same horizon). How the peer is fitted is --peer-fit (one or more):

  train             fitted once on the train split, as trainyard's models (the default);
                    applied at each origin with `forward` (parameters kept, states run on);
  train+validation  fitted once on train and validation (more data than trainyard's models);
  every-origin      refitted at every origin on all history before it (`forecast`), as
                    statsforecast's cross_validation(refit=True) does: the usual backtest,
                    and the most data of all.

Both sides are scored by trainyard's own `score` (tasks/forecast/evaluate.py) on one
`Windows` object (`load_windows(prepared, params, "holdout")`): the same actuals and the same
MASE scale (the series' seasonal naive MAE on its train split). Printed: one table, a column
per series, MASE and sMAPE (%) of trainyard's chosen model, every trainyard model, the
baselines and the peers, with wall times; then a line per series comparing trainyard's choice
with the best statsforecast row (over every --peer-fit run). Run from the project root:

    .venv/bin/python bench/backtest.py                 # the base profile, ~17 min on 2 cores
    .venv/bin/python bench/backtest.py --peer-fit train train+validation    # as documented
    .venv/bin/python bench/backtest.py --quick --series nile sunspots      # a smoke run
    .venv/bin/python bench/backtest.py --peer-fit train --dump /tmp/f.npz   # then:
    .venv/bin/python bench/ensemble_rules.py /tmp/f.npz   # ensemble rules on those forecasts
    .venv/bin/python bench/backtest.py --models autoets tcn --peer-fit train every-origin
                                    # every-origin refits AutoARIMA 20 times: elnino ~10 min

Isolation: the scratch projects, the MLflow store and the state directory live in a temporary
folder removed at exit; MLFLOW_TRACKING_URI and PREFECT_API_URL are dropped.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("AutoETS", "AutoARIMA", "AutoTheta")  # statsforecast.models classes
PEER_FITS = ("train", "train+validation", "every-origin")


# --- the series ------------------------------------------------------------------------------


def co2_monthly() -> pd.Series:
    """Returns Mauna Loa CO2 (ppm), monthly means of the weekly readings, 1965-2001."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean().loc["1965-01-01":]


def elnino() -> pd.Series:
    """Returns the Nino sea surface temperature (deg C), one value per month, 1950-2010."""
    from statsmodels.datasets import elnino as source

    table = source.load_pandas().data
    long = table.melt(id_vars="YEAR", var_name="month", value_name="value")
    month = pd.to_datetime(long["month"], format="%b").dt.month
    long.index = pd.to_datetime({"year": long["YEAR"].astype(int), "month": month, "day": 1})
    return long["value"].sort_index()


def airpassengers() -> pd.Series:
    """Returns monthly international airline passengers (thousands), 1949-1960."""
    from statsforecast.utils import AirPassengersDF

    return AirPassengersDF.set_index("ds")["y"].astype(float)


def _macro(column: str) -> pd.Series:
    from statsmodels.datasets import macrodata

    table = macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(
        year=table["year"].astype(int), quarter=table["quarter"].astype(int), freq="Q"
    )
    return pd.Series(table[column].to_numpy(), index=quarters.to_timestamp(how="end").normalize())


def _yearly(module: str, year: str, column: str) -> Callable[[], pd.Series]:
    def load() -> pd.Series:
        import importlib

        table = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
        index = pd.to_datetime(table[year].astype(int).astype(str), format="%Y")
        return pd.Series(table[column].to_numpy(dtype=float), index=index)

    return load


SERIES: dict[str, Callable[[], pd.Series]] = {
    "co2_monthly": co2_monthly,
    "elnino": elnino,
    "airpassengers": airpassengers,
    "realgdp": lambda: _macro("realgdp"),
    "unemp": lambda: _macro("unemp"),
    "sunspots": _yearly("sunspots", "YEAR", "SUNACTIVITY"),
    "nile": _yearly("nile", "year", "volume"),
}


# --- trainyard ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One series' results on both sides."""

    name: str
    length: int
    keys: str = ""  # frequency, season, windows, origins: one line
    seconds: float = float("nan")  # trainyard's whole run_family
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> metric -> value
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # what chose
    fit_seconds: dict[str, float] = field(default_factory=dict)  # row -> seconds
    candidates: list[str] = field(default_factory=list)  # trained and derived (ensemble)
    notes: list[str] = field(default_factory=list)  # e.g. the ensemble's members
    chosen: str = ""  # trainyard's challenger (chosen on validation)
    promoted: bool = False  # whether the gate made it champion
    gate: str = ""  # the gate's reason
    error: str = ""  # what failed, if anything did


def isolate(workdir: Path) -> None:
    """Points trainyard's state (MLflow store, runs) into `workdir`; no user server is used."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL"):
        os.environ.pop(name, None)
    os.environ["TRAINYARD_STATE_DIR"] = str(workdir / "state")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # The `trainyard` command and helpers must come from this interpreter's environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def forecast_params(csv: str, project: Path, args: argparse.Namespace) -> tuple[Any, str]:
    """Returns the forecast params for `csv` in `project` (params.yaml with the profile, the
    inferred dataset and windows keys, --models, --stride) and the inferred keys as a line."""
    from trainyard.config import merge, read_params_file
    from trainyard.tasks.forecast.config import params_from_dict
    from trainyard.tasks.forecast.infer import Pins, infer_file

    inference = infer_file(csv, project)
    windows = inference.windows
    horizon = windows["horizon"]
    wanted = horizon + args.origins - 1  # steps that hold args.origins origins at stride 1
    if min(windows["validation_length"], windows["holdout_length"]) < wanted:
        pinned = ("horizon", "validation_length", "holdout_length")
        pins = Pins(
            horizon=horizon,
            validation_length=wanted,
            holdout_length=wanted,
            origins=dict.fromkeys(pinned, "bench --origins"),
        )
        inference = infer_file(csv, project, pins)
    section = read_params_file(ROOT / "params.yaml", args.profile)["forecast"]
    override: dict[str, Any] = {
        **inference.section(),
        "dataset": {"name": csv, **inference.dataset, "missing_target": "error"},
    }
    for section_name, settings in (("train", args.train), ("windows", args.windows)):
        for setting in settings:
            key, _, value = setting.partition("=")
            override.setdefault(section_name, {})[key] = yaml.safe_load(value)
    if args.models:
        override.setdefault("train", {})["models"] = args.models
    if args.stride:
        override["evaluate"] = {"stride": args.stride}
    params = params_from_dict(merge(section, override))
    w, d = params.windows, params.dataset
    encoders = "/".join(map(str, [*w.shorter_encoders, w.encoder_length]))
    keys = (
        f"{d.frequency}, season {d.season_length}, horizon {w.horizon}, encoder "
        f"{encoders}, validation {w.validation_length}, holdout {w.holdout_length}, "
        f"stride {params.evaluate.stride}"
        + "".join(
            f", {name}.{s.partition('=')[0]} {s.partition('=')[2]}"
            for name, given in (("train", args.train), ("windows", args.windows))
            for s in given
        )
    )
    return params, keys


def run_trainyard(
    name: str, series: pd.Series, scratch: Path, args: argparse.Namespace
) -> tuple[Any, str, Any, float]:
    """Returns (params, the inferred keys as a line, FamilyResult, seconds) of trainyard's
    whole pipeline on `series`, written as <name>.csv in a project folder of its own."""
    from trainyard.config import RegisterConfig
    from trainyard.environment import ProjectPaths, configure_environment
    from trainyard.tasks.forecast.family import FORECAST
    from trainyard.tasks.pipeline import run_family

    project = scratch / name
    project.mkdir()
    frame = pd.DataFrame({"date": series.index.strftime("%Y-%m-%d"), name: series.to_numpy()})
    frame.to_csv(project / f"{name}.csv", index=False)
    params, keys = forecast_params(f"{name}.csv", project, args)
    paths = ProjectPaths(project)
    configure_environment(paths)
    started = time.perf_counter()
    result = run_family(FORECAST, params, RegisterConfig(experiment=f"backtest-{name}"), paths)
    return params, keys, result, time.perf_counter() - started


# --- statsforecast ------------------------------------------------------------------------------


def window_origins(windows: Any, params: Any, series: pd.Series) -> np.ndarray:
    """Returns each window's origin as a position in `series` (its first forecast
    step), after checking that trainyard's prepared copy is the same series."""
    arrays = windows.arrays
    assert len(arrays.series_ids) == 1, "one series per project"
    times = pd.DatetimeIndex(arrays.times)
    if not times.equals(pd.DatetimeIndex(series.index)):
        raise RuntimeError("trainyard's prepared times differ from the raw series'")
    np.testing.assert_allclose(arrays.target.numpy(), series.to_numpy(), rtol=1e-6)
    origins = windows.index.starts.numpy() + params.windows.encoder_length
    steps = origins[:, None] + np.arange(params.windows.horizon)
    np.testing.assert_allclose(windows.actual, series.to_numpy()[steps], rtol=1e-6)
    return origins


def peer_forecasts(
    values: np.ndarray,
    origins: np.ndarray,
    fit_end: int | None,
    horizon: int,
    season: int,
) -> dict[str, tuple[np.ndarray, float]]:
    """Returns each statsforecast model's [origins, horizon] point forecasts and its wall
    seconds (fit + every forecast): fitted once on values[:fit_end] and run on to each origin
    with `forward`, or (fit_end None) refitted at every origin on everything before it."""
    import statsforecast.models

    out = {}
    for name in PEERS:
        build = getattr(statsforecast.models, name)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fit_end is None:
                point = [
                    build(season_length=season).forecast(y=values[:o], h=horizon)["mean"]
                    for o in origins
                ]
            else:
                model = build(season_length=season).fit(values[:fit_end])
                point = [model.forward(y=values[:o], h=horizon)["mean"] for o in origins]
        out[name] = (np.stack(point), time.perf_counter() - started)
    return out


def run_peers(
    series: pd.Series, params: Any, prepared: Path, fits: list[str], outcome: Outcome
) -> None:
    """Adds the statsforecast models' holdout scores and seconds to `outcome`, scored by
    trainyard's `score` on trainyard's own holdout windows; and, for a fit that has not seen
    the validation split, the peer a statsforecast user would pick: its model with the best
    validation score (trainyard's validation windows), scored on the holdout."""
    from trainyard.tasks.forecast.evaluate import load_windows, score
    from trainyard.tasks.forecast.forecasters import Forecast

    holdout = load_windows(prepared, params, "holdout")
    validation = load_windows(prepared, params, "validation")
    origins = window_origins(holdout, params, series)
    first = len(origins)
    origins = np.concatenate([origins, window_origins(validation, params, series)])
    values = series.to_numpy(dtype=np.float64)
    w, metric = params.windows, params.evaluate.metric
    train_end = len(values) - w.holdout_length - w.validation_length
    ends = {"train": train_end, "train+validation": train_end + w.validation_length}
    for fit in fits:
        forecasts = peer_forecasts(
            values, origins, ends.get(fit), w.horizon, params.dataset.season_length
        )
        chosen_on = {}
        for name, (point, seconds) in forecasts.items():
            row = peer_row(name, fit, fits)
            outcome.scores[row] = score(
                holdout.actual, Forecast(point=point[:first]), holdout.scale
            )
            outcome.fit_seconds[row] = seconds
            if fit != "train+validation":
                outcome.validation[row] = score(
                    validation.actual, Forecast(point=point[first:]), validation.scale
                )
                chosen_on[row] = outcome.validation[row][metric]
        if chosen_on:
            best = min(chosen_on, key=chosen_on.get)
            outcome.scores[chosen_peer_row(fit, fits)] = outcome.scores[best]
            outcome.notes.append(f"{chosen_peer_row(fit, fits)}: {best}")


def chosen_peer_row(fit: str, fits: list[str]) -> str:
    """Returns the table row of the statsforecast model chosen on validation."""
    return "sf chosen on validation" + (f" [{fit}]" if len(fits) > 1 else "")


def peer_row(name: str, fit: str, fits: list[str]) -> str:
    """Returns the table row of a statsforecast model (its fit named when several are run)."""
    return f"sf {name}" + (f" [{fit}]" if len(fits) > 1 else "")


# --- one series, the table ------------------------------------------------------------------


DUMPED: dict[str, np.ndarray] = {}  # --dump: "<series>/<model>/<split>" -> forecasts
CURRENT = {"series": ""}  # the series being run, for the --dump capture


def capture_forecasts() -> None:
    """Makes the evaluation keep every candidate's validation and holdout point forecasts,
    and those windows' actuals and MASE scales, in DUMPED (--dump; the bench's own hook on
    evaluate.model_forecasts, which returns them unchanged)."""
    from trainyard.tasks.forecast import evaluate

    original = evaluate.model_forecasts

    def keeping(kind: str, model_dir: Path, splits: list, params: Any) -> list:
        forecasts = original(kind, model_dir, splits, params)
        if len(splits) == 2:  # the evaluation's call: validation, then holdout
            for split, windows, forecast in zip(SPLITS, splits, forecasts, strict=True):
                key = f"{CURRENT['series']}/{{}}/{split}"
                DUMPED[key.format(kind)] = forecast.point.astype(np.float64)
                DUMPED[key.format("_actual")] = windows.actual
                DUMPED[key.format("_scale")] = np.asarray(windows.scale, dtype=np.float64)
        return forecasts

    evaluate.model_forecasts = keeping


SPLITS = ("validation", "holdout")


def backtest(name: str, scratch: Path, args: argparse.Namespace) -> Outcome:
    """Returns both sides' results on series `name`; a failure is kept as the outcome's error."""
    CURRENT["series"] = name
    series = SERIES[name]()
    outcome = Outcome(name, len(series))
    try:
        params, outcome.keys, result, outcome.seconds = run_trainyard(name, series, scratch, args)
    except Exception as error:  # noqa: BLE001 - reported in the table, the next series runs
        outcome.error = f"trainyard: {type(error).__name__}: {error}"
        traceback.print_exc()
        return outcome
    evaluation = result.evaluation
    metric = params.evaluate.metric
    outcome.scores.update(evaluation.metrics)
    outcome.validation.update(evaluation.selection)
    # result.trained holds the models the evaluation derived too (the ensemble).
    outcome.candidates = [m.result.name for m in result.trained]
    outcome.fit_seconds.update({m.result.name: m.result.seconds for m in result.trained})
    outcome.notes = [
        f"{m.result.name}: {', '.join(f'{k} {v}' for k, v in m.result.hparams.items())}"
        for m in result.trained
        if m.result.name not in params.train.models
    ]
    outcome.chosen = evaluation.challenger(metric, outcome.candidates)
    if result.decision is not None:
        outcome.promoted, outcome.gate = result.decision.promoted, result.decision.reason
        if not outcome.promoted:
            outcome.notes.append(f"gate: {outcome.gate}")
    try:
        run_peers(series, params, Path(result.prepared.path), args.peer_fit, outcome)
    except Exception as error:  # noqa: BLE001
        outcome.error = f"statsforecast: {type(error).__name__}: {error}"
        traceback.print_exc()
    return outcome


def cell(scores: dict[str, float] | None, width: int) -> str:
    """Returns 'MASE sMAPE' for one table cell, or '-' when the row has no scores."""
    if not scores:
        return f"{'-':>{width}}"
    return f"{scores['mase']:>7.3f} {scores['smape']:>6.2f}".rjust(width)


def print_table(outcomes: list[Outcome], fits: list[str]) -> None:
    """Prints one table (a column per series) and a comparison line per series."""

    def gate(o: Outcome) -> str:
        return f"{o.chosen} {'champion' if o.promoted else 'refused'}" if o.chosen else "failed"

    width = max(16, *(len(o.name) + 2 for o in outcomes), *(len(gate(o)) + 2 for o in outcomes))
    label = 34
    header = f"{'MASE sMAPE%':<{label}}" + "".join(f"{o.name:>{width}}" for o in outcomes)
    print(header)
    print(f"{'':<{label}}" + "".join(f"{f'{o.length} steps':>{width}}" for o in outcomes))
    print("-" * len(header))

    def row(title: str, values: list[str]) -> None:
        print(f"{title:<{label}}" + "".join(f"{v:>{width}}" for v in values))

    row("trainyard chosen", [cell(o.scores.get(o.chosen), width) for o in outcomes])
    row("  = model, gate", [gate(o) for o in outcomes])
    models = list(dict.fromkeys(name for o in outcomes for name in o.candidates))
    baselines = ["naive", "seasonal_naive", "ets"]
    for name in models + [b for b in baselines if any(b in o.scores for o in outcomes)]:
        row(f"trainyard {name}", [cell(o.scores.get(name), width) for o in outcomes])
    peers = [peer_row(p, fit, fits) for fit in fits for p in PEERS]
    chosen_peers = [chosen_peer_row(fit, fits) for fit in fits]
    chosen_peers = [c for c in chosen_peers if any(c in o.scores for o in outcomes)]
    for name in peers + chosen_peers:
        row(name, [cell(o.scores.get(name), width) for o in outcomes])
    print("-" * len(header))
    print("validation (what the challenger was chosen on):")
    scored = [b for b in baselines + peers if any(b in o.validation for o in outcomes)]
    for name in models + scored:
        row(f"  {name}", [cell(o.validation.get(name), width) for o in outcomes])
    print("-" * len(header))
    row("seconds: trainyard run", [f"{o.seconds:.0f}" for o in outcomes])
    for name in models:
        row(f"  fit {name}", [f"{o.fit_seconds.get(name, float('nan')):.1f}" for o in outcomes])
    for name in peers:
        row(f"  {name}", [f"{o.fit_seconds.get(name, float('nan')):.1f}" for o in outcomes])
    ours = sum(o.seconds for o in outcomes if o.chosen)
    theirs = sum(o.fit_seconds.get(name, 0.0) for o in outcomes for name in peers)
    print(f"total seconds: trainyard {ours:.0f}, statsforecast {theirs:.0f}")
    print()
    for o in outcomes:
        print(f"{o.name}: {'; '.join([o.keys, *o.notes])}")
    print()
    tally = {"best statsforecast": [0, 0], "statsforecast chosen on validation": [0, 0]}
    for o in outcomes:
        if o.error:
            print(f"{o.name}: FAILED - {o.error}")
        if not o.chosen:
            continue
        ours = o.scores[o.chosen]["mase"]
        best = min(
            (n for n in peers if n in o.scores), key=lambda n: o.scores[n]["mase"], default=None
        )
        honest = next((c for c in chosen_peers if c in o.scores), None)
        for against, name in (
            ("best statsforecast", best),
            ("statsforecast chosen on validation", honest),
        ):
            if name is None:
                continue
            theirs = o.scores[name]["mase"]
            # The same statsforecast model fitted in a worker process and in this one may
            # differ in the last bits: a tie within 1e-9 is a tie.
            tied = math.isclose(ours, theirs, rel_tol=1e-9)
            verdict = "at least as accurate" if ours <= theirs or tied else "less accurate"
            tally[against][0] += ours <= theirs or tied
            tally[against][1] += ours < theirs and not tied
            print(
                f"{o.name}: trainyard's {o.chosen} MASE {ours:.3f} vs {against} "
                f"({name}) {theirs:.3f}: {verdict} (ratio {ours / theirs:.2f})"
            )
    done = sum(bool(o.chosen) for o in outcomes)
    for against, (level, better) in tally.items():
        print(f"vs {against}: at least as accurate on {level} of {done} series, better on {better}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--series", nargs="+", choices=list(SERIES), default=list(SERIES), help="which series"
    )
    parser.add_argument("--profile", default=None, help="a params.yaml profile (default: none)")
    parser.add_argument(
        "--quick", action="store_const", const="quick", dest="profile", help="--profile quick"
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="trainyard's models (default: the profile's)"
    )
    parser.add_argument(
        "--train",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="forecast.train settings, e.g. stop_on=train anchor=season",
    )
    parser.add_argument(
        "--windows",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="forecast.windows settings over the inferred ones, e.g. encoder_length=48",
    )
    parser.add_argument(
        "--stride", type=int, default=0, help="steps between holdout origins (default: profile's)"
    )
    parser.add_argument(
        "--origins",
        type=int,
        default=20,
        help="rolling origins validation and holdout hold at least (at stride 1)",
    )
    parser.add_argument(
        "--peer-fit", nargs="+", choices=PEER_FITS, default=["train"], help="how the peer is fit"
    )
    parser.add_argument(
        "--dump",
        type=Path,
        default=None,
        metavar="FILE.npz",
        help="save every candidate's validation and holdout forecasts (bench/ensemble_rules.py)",
    )
    args = parser.parse_args()
    if args.dump:
        capture_forecasts()

    import torch

    from trainyard.config import read_params_file

    read_params_file(ROOT / "params.yaml", args.profile)  # a bad --profile fails here, first
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="backtest-bench-") as folder:
        scratch = Path(folder)
        isolate(scratch)
        for name in args.series:
            print(f"--- {name}", flush=True)
            outcomes.append(backtest(name, scratch, args))
    import statsforecast

    print()
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}, statsforecast "
        f"{statsforecast.__version__}, Python {sys.version.split()[0]}; profile "
        f"{args.profile or 'base'}; peer fitted on: {', '.join(args.peer_fit)}"
    )
    print_table(outcomes, args.peer_fit)
    if args.dump:
        np.savez_compressed(args.dump, **DUMPED)
        print(f"forecasts of {len(outcomes)} series saved to {args.dump}")


if __name__ == "__main__":
    main()
