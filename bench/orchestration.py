"""Benchmarks the pipeline's wall time under Prefect against the same steps without it.

In one process, the plain pipeline (`trainyard.tasks.pipeline.run_family`) and the Prefect
flow (`trainyard.flows.forecast.forecast_flow`) of the forecasting family run alternately
(plain, prefect, plain, prefect, ...) on the same parameters, and the ratio of their median
wall times is printed (target <= 1.10x).
The one-time start of the ephemeral Prefect server is timed on its own, with an empty flow run
before any pipeline run, and is not counted in the ratio. Run from the project root:

    .venv/bin/python bench/orchestration.py                         # quick profile, 2 repeats
    .venv/bin/python bench/orchestration.py --profile none          # default params (~60 s/run)

Isolation: everything goes to a temporary folder removed at exit: the state directory
(TRAINYARD_STATE_DIR: MLflow SQLite store and artifacts) and PREFECT_HOME are set there before
Prefect is imported, and PREFECT_API_URL / MLFLOW_TRACKING_URI are dropped from the
environment, so neither the user's home, a remote server nor the repo's .state is touched.

Fairness: every run, of either kind, gets a fresh project root. The Prefect flow caches the
prepare step across runs (by its inputs, which include the project root), so with a shared root
every Prefect run after the first would skip preparing while the plain pipeline always
re-prepares; fresh roots make Prefect prepare every time too (reported as `prepare cached`).
A warm-up pair (one untimed run of each kind, quick profile) first pays the in-process
one-time costs both kinds share (MLflow store creation and migrations, lazy imports).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]

TARGET_RATIO = 1.10
SERVER_STARTUP_TIMEOUT_S = "120"
WARMUP_PROFILE = "quick"
KINDS = ("plain", "prefect")


@dataclass
class Run:
    """One timed pipeline run."""

    kind: str  # "plain" or "prefect"
    seconds: float  # wall time of run_pipeline / run_forecast_flow
    prepare_cached: bool  # whether the prepare step was skipped as cached
    root: Path  # the fresh project root the run used


def isolate(workdir: Path) -> Path:
    """Returns the temporary state directory, after pointing Prefect and MLflow into `workdir`.

    Must run before Prefect is imported: Prefect reads its settings at import.
    """
    state = workdir / "state"
    state.mkdir(parents=True)
    for name in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)
    os.environ["TRAINYARD_STATE_DIR"] = str(state)
    os.environ["PREFECT_HOME"] = str(state / "prefect")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = SERVER_STARTUP_TIMEOUT_S
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The server's telemetry service would try the network on start (and log an error offline).
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return state


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """Returns the wall time of `call()` in seconds and its return value."""
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def load_bench_params(params_file: Path, profile: str | None, kind: str) -> Any:
    """Returns (forecast params, register config) for one run kind: its own MLflow
    experiment, bench-<kind>."""
    from trainyard.config import RegisterConfig
    from trainyard.tasks.forecast.config import load_params

    return load_params(params_file, profile), RegisterConfig(experiment=f"bench-{kind}")


def run_once(kind: str, params: Any, workdir: Path, label: str) -> Run:
    """Returns one run of `kind` timed, in a fresh project root under `workdir`."""
    from trainyard.environment import ProjectPaths
    from trainyard.flows.forecast import forecast_flow
    from trainyard.tasks.forecast.family import FORECAST
    from trainyard.tasks.pipeline import run_family

    root = workdir / "roots" / label
    root.mkdir(parents=True)
    paths = ProjectPaths(root)
    section, register = params
    if kind == "prefect":
        seconds, result = timed(lambda: forecast_flow(section, register, paths))
    else:
        seconds, result = timed(lambda: run_family(FORECAST, section, register, paths))
    return Run(kind, seconds, result.prepare_cached, root)


def start_server() -> tuple[float, float]:
    """Returns the wall times of a first empty flow run (which starts the ephemeral Prefect
    server) and of a second one (the per-flow-run cost once the server is up)."""
    from prefect import flow

    @flow(name="bench-empty")
    def empty() -> None:
        """Returns nothing: a flow run with no work, to start the server."""
        return None

    first, _ = timed(empty)
    second, _ = timed(empty)
    return first, second


def print_runs(runs: list[Run]) -> None:
    """Prints one row per timed run."""
    print(f"\n{'#':>2}  {'kind':<8} {'wall s':>8}  prepare cached")
    print("-" * 36)
    for number, run in enumerate(runs, 1):
        print(f"{number:>2}  {run.kind:<8} {run.seconds:>8.2f}  {run.prepare_cached}")


def summarize(runs: list[Run], server_s: float, empty_s: float) -> float:
    """Returns the ratio of median wall times (prefect / plain), after printing the summary."""
    plain = [run.seconds for run in runs if run.kind == "plain"]
    prefect = [run.seconds for run in runs if run.kind == "prefect"]
    plain_median = statistics.median(plain)
    prefect_median = statistics.median(prefect)
    ratio = prefect_median / plain_median
    cached = sum(run.prepare_cached for run in runs if run.kind == "prefect")
    print(f"\nplain   median {plain_median:8.2f} s  (runs: {', '.join(f'{s:.2f}' for s in plain)})")
    print(
        f"prefect median {prefect_median:8.2f} s  (runs: {', '.join(f'{s:.2f}' for s in prefect)})"
    )
    print(f"overhead        {prefect_median - plain_median:+8.2f} s per pipeline run")
    print(
        f"one-time ephemeral Prefect server start (first empty flow run): {server_s:.2f} s "
        "(not in the ratio)"
    )
    print(f"empty flow run once the server is up: {empty_s:.2f} s")
    print(
        f"prepare cached in {cached} of {len(prefect)} Prefect runs (fair comparison: each run "
        "has a fresh project root, so Prefect's cross-run prepare cache never hits)"
    )
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"\nratio (prefect / plain, medians): {ratio:.3f}x  ({verdict} target {TARGET_RATIO}x)")
    return ratio


def hide_shutdown_noise() -> None:
    """Silences the CancelledError tracebacks the ephemeral server logs as it stops at exit.

    Called only after the last run, so errors during the benchmark are still shown.
    """
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Returns the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", default="quick", help='params.yaml profile; "none" = the default params'
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each kind")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed warm-up run of each kind"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints each run, the medians and the ratio."""
    args = parse_args(argv)
    profile = None if args.profile.lower() == "none" else args.profile
    workdir = Path(tempfile.mkdtemp(prefix="trainyard-orchestration-"))
    if not args.keep:
        # Registered before Prefect is imported, so it runs after Prefect's own exit handlers
        # (atexit is last in, first out) have stopped the ephemeral server.
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    state = isolate(workdir)

    from trainyard.environment import ProjectPaths, configure_environment, quiet_libraries

    configure_environment(ProjectPaths(workdir))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()

    import_plain_s, _ = timed(lambda: __import__("tasks.pipeline"))
    import_prefect_s, _ = timed(lambda: __import__("flows.forecast"))
    import prefect
    import torch

    params = {kind: load_bench_params(args.params, profile, kind) for kind in KINDS}
    train = params["plain"].train
    print(
        f"profile: {profile or 'none (default params)'}; models {', '.join(train.models)}, "
        f"max_epochs {train.max_epochs}, repeats {args.repeats}"
    )
    print(
        f"prefect {prefect.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"temporary state: {state} ({'kept' if args.keep else 'removed at exit'})")
    print(
        f"imports: tasks.pipeline {import_plain_s:.2f} s, then flows.forecast (Prefect) "
        f"{import_prefect_s:.2f} s (not in the ratio)"
    )

    server_s, empty_s = start_server()
    print(f"ephemeral Prefect server start (first empty flow run): {server_s:.2f} s")

    if not args.no_warmup:
        for kind in KINDS:
            warm = load_bench_params(args.params, WARMUP_PROFILE, kind)
            run = run_once(kind, warm, workdir, f"warmup-{kind}")
            print(f"warm-up {kind:<7} ({WARMUP_PROFILE} profile, untimed): {run.seconds:.2f} s")

    runs: list[Run] = []
    for repeat in range(args.repeats):
        for kind in KINDS:
            run = run_once(kind, params[kind], workdir, f"{kind}-{repeat}")
            print(f"run {repeat + 1}/{args.repeats} {kind:<7}: {run.seconds:.2f} s")
            runs.append(run)
    hide_shutdown_noise()
    print_runs(runs)
    summarize(runs, server_s, empty_s)


if __name__ == "__main__":
    main()
