"""The `trainyard` command: run the pipeline, or one step of it, and inspect the registry."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trainyard.config import ConfigError, Params, load_params
from trainyard.environment import (
    ProjectPaths,
    configure_environment,
    find_project_root,
    quiet_libraries,
)

app = typer.Typer(
    help=(
        "trainyard: prepare a time-series dataset, train LSTM, TCN and TFT forecasters, "
        "evaluate them against baselines on a held-out period, and register them in MLflow.\n\n"
        "Everything runs locally by default: an ephemeral Prefect server, MLflow on SQLite and "
        "DVC's local cache, all under .state/ and data/. Set PREFECT_API_URL or "
        "MLFLOW_TRACKING_URI to use your own servers."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

ParamsOption = Annotated[
    Path, typer.Option("--params", help="Parameter file (each section feeds one step).")
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Apply a profile's overrides from params.yaml, e.g. quick."),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="Override dataset.name with a CSV/Parquet path or a built-in (co2, macro_panel; "
        "for the panel's windows use --profile panel).",
    ),
]


def _setup(
    params_file: Path, profile: str | None, dataset: str | None
) -> tuple[Params, ProjectPaths]:
    root = find_project_root(params_file.resolve().parent if params_file.exists() else None)
    params = load_params(params_file, profile)
    if dataset:
        from tasks.datasets import BUILTIN_DATASETS

        params.dataset.name = dataset
        for key, value in BUILTIN_DATASETS.get(dataset, (None, {}))[1].items():
            setattr(params.dataset, key, value)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    return params, ProjectPaths(root)


def _fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, FileNotFoundError, ValueError)


def _user_errors_exit(command: Callable[..., None]) -> Callable[..., None]:
    """Returns `command` printing a user's error (bad params, bad data) and exiting with 2,
    with no traceback; any other exception keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except USER_ERRORS as error:
            _fail(error)

    return wrapper


def _results_table(evaluation, metric: str) -> Table:
    table = Table(title=f"Holdout: {evaluation.windows} windows over {evaluation.series} series")
    table.add_column("rank", justify="right")
    table.add_column("model")
    for column in ("mae", "rmse", "smape", "mase"):
        table.add_column(column, justify="right")
    table.add_column("kind")
    for rank, name in enumerate(evaluation.ranking(metric), start=1):
        scores = evaluation.metrics[name]
        kind = "baseline" if name in evaluation.baselines else "model"
        table.add_row(
            str(rank), name, *(f"{scores[c]:.4f}" for c in ("mae", "rmse", "smape", "mase")), kind
        )
    return table


def _verdict(evaluation, metric: str) -> str:
    best_baseline = evaluation.best_baseline(metric)
    best_model = evaluation.best_model(metric)
    if best_model is None:
        return "No model was trained."
    model_score = evaluation.metrics[best_model][metric]
    baseline_score = evaluation.metrics[best_baseline][metric]
    if model_score < baseline_score:
        return (
            f"[green]{best_model} beats the best baseline[/] ({best_baseline}): {metric} "
            f"{model_score:.4f} vs {baseline_score:.4f}."
        )
    return (
        f"[yellow]No model beats the best baseline[/] ({best_baseline}, {metric} "
        f"{baseline_score:.4f}); the best model, {best_model}, has {model_score:.4f}."
    )


@app.command()
@_user_errors_exit
def run(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    dataset: DatasetOption = None,
    no_orchestrator: Annotated[
        bool, typer.Option("--no-orchestrator", help="Run the same steps without Prefect.")
    ] = False,
) -> None:
    """Run the whole pipeline: prepare, train all models, evaluate, register in MLflow."""
    from trainyard.progress import training_progress

    params, paths = _setup(params_file, profile, dataset)
    quiet_libraries()
    where = configure_environment(paths)
    console.print(f"Prefect: {'off' if no_orchestrator else where['prefect']}")
    console.print(f"MLflow:  {where['mlflow']}")
    started = time.perf_counter()
    with training_progress(console) as queue:
        if no_orchestrator:
            from tasks.pipeline import run_pipeline

            result = run_pipeline(params, paths, queue)
        else:
            from flows.forecast import run_forecast_flow

            with _QuietPrefectConsole():
                result = run_forecast_flow(params, paths, queue)
    seconds = time.perf_counter() - started
    summary = result.prepare
    note = "cached: inputs unchanged, skipped" if result.prepare_cached else "prepared"
    console.print(
        f"Data: {summary.source}: {summary.series} series, {summary.rows} rows "
        f"({note}; version {summary.md5[:12]}; {summary.missing_target} missing targets "
        f"skipped, {summary.inserted_steps} gap steps inserted)"
    )
    metric = params.register.metric
    console.print(_results_table(result.evaluation, metric))
    console.print(_verdict(result.evaluation, metric))
    if result.versions:
        names = ", ".join(f"{v.model}=v{v.version}" for v in result.versions)
        console.print(f"Registered {result.versions[0].name}: {names}; challenger = best of run")
        console.print(f"Champion gate: {result.decision.reason}")
    # dvc.yaml's stages read params.yaml as it is: only such a run's outputs are its outputs.
    if profile is None and not dataset and params_file.resolve() == paths.root / "params.yaml":
        _commit_to_dvc(paths)
    console.print(f"Done in {seconds:.0f} s. Where to look:")
    console.print(f"  mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']}")
    console.print(
        f"  PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')} prefect server start"
    )
    console.print("  dvc metrics show   dvc plots show   (reports in data/reports/)")


def _commit_to_dvc(paths: ProjectPaths) -> None:
    """Records this run's outputs in dvc.lock and the DVC cache (they match params.yaml)."""
    import subprocess

    if not (paths.root / ".dvc").exists():
        return
    done = subprocess.run(
        ["dvc", "commit", "--force", "--quiet"], cwd=paths.root, capture_output=True, text=True
    )
    if done.returncode == 0:
        console.print("DVC: outputs committed (dvc.lock and the local cache are up to date)")
    else:
        console.print(f"[yellow]DVC: commit failed[/]: {done.stderr.strip()[-300:]}")


class _HideRunFailures(logging.Filter):
    """Drops Prefect's failed-run reports from the console (they still reach the Prefect API):
    the command prints a user error itself, and any other error raises with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_runs = record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        return not (from_runs and record.levelno >= logging.ERROR)


class _QuietPrefectConsole:
    """Hides the CancelledError tracebacks the ephemeral Prefect server prints as it stops,
    and Prefect's own console copy of a failed run's traceback."""

    def __enter__(self) -> None:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        self.filter = _HideRunFailures()
        self.handlers = list(logging.getLogger().handlers)
        for handler in self.handlers:
            handler.addFilter(self.filter)

    def __exit__(self, *exc: object) -> None:
        for handler in self.handlers:
            handler.removeFilter(self.filter)


@app.command()
@_user_errors_exit
def prepare(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    dataset: DatasetOption = None,
) -> None:
    """Validate the dataset and write data/prepared/series.parquet (DVC stage `prepare`)."""
    # Only the light prepare module: this DVC stage needs no torch, Lightning or MLflow.
    from tasks.prepare import prepare as prepare_data

    params, paths = _setup(params_file, profile, dataset)
    summary = prepare_data(params, paths.root, paths.prepared)
    console.print(
        f"{summary.path}: {summary.series} series, {summary.rows} rows, md5 {summary.md5}"
    )


@app.command()
@_user_errors_exit
def train(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    dataset: DatasetOption = None,
) -> None:
    """Train every model in train.models into data/models (DVC stage `train`; no MLflow)."""
    from tasks.pipeline import train_untracked, write_training_summary

    params, paths = _setup(params_file, profile, dataset)
    quiet_libraries()
    results = train_untracked(params, paths)
    write_training_summary(results, paths)
    for result in results:
        console.print(
            f"{result.name}: {result.epochs} epochs, best val/loss {result.best_val_loss:.4f}, "
            f"{result.seconds:.1f} s"
        )


@app.command()
@_user_errors_exit
def evaluate(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    dataset: DatasetOption = None,
) -> None:
    """Score models and baselines on the holdout into data/reports (DVC stage `evaluate`)."""
    from tasks.evaluate import evaluate as evaluate_models
    from tasks.pipeline import read_training_summary
    from tasks.prepare import PREPARED_FILE

    params, paths = _setup(params_file, profile, dataset)
    quiet_libraries()
    trained = read_training_summary(paths)
    result = evaluate_models(
        paths.prepared / PREPARED_FILE,
        {t.name: Path(t.model_dir) for t in trained},
        params,
        paths.reports,
        {t.name: t.history for t in trained},
    )
    console.print(_results_table(result, params.register.metric))
    console.print(_verdict(result, params.register.metric))


@app.command()
@_user_errors_exit
def models(
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """List registered models with their versions, aliases, holdout metrics and data version."""
    from mlflow.tracking import MlflowClient

    params, paths = _setup(params_file, None, None)
    quiet_libraries()
    configure_environment(paths)
    metric = params.register.metric
    client = MlflowClient()
    registered = client.search_registered_models()
    if not registered:
        console.print("No registered models yet: run `trainyard run` first.")
        return
    for model in registered:
        aliases = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        table = Table(title=model.name)
        for column in ("version", "aliases", "model", f"holdout {metric}", "data version", "run"):
            table.add_column(column)
        versions = client.search_model_versions(f"name='{model.name}'")
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            table.add_row(
                str(version.version),
                ", ".join(aliases.get(str(version.version), [])),
                version.tags.get("model", "?"),
                f"{float(version.tags.get(f'holdout_{metric}', 'nan')):.4f}",
                version.tags.get("data_version", "?")[:12],
                (version.run_id or "")[:8],
            )
        console.print(table)


@app.command()
def datasets() -> None:
    """List the built-in datasets (they ship inside statsmodels: no download)."""
    from tasks.datasets import BUILTIN_DATASETS

    for name, (loader, spec) in BUILTIN_DATASETS.items():
        console.print(f"[bold]{name}[/]: {loader.__doc__.splitlines()[0]}  {spec}")


def main() -> None:
    """Entry point for `python -m trainyard`."""
    app()


if __name__ == "__main__":
    sys.exit(main())
