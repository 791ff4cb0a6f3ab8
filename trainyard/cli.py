"""The `trainyard` command: run the pipeline of every family, or one stage of one family, and
inspect the registry. The roof of the house: it may import everything; nothing imports it."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trainyard.config import (
    ConfigError,
    FamilySection,
    RegisterConfig,
    RunConfig,
    read_params_file,
    section_from_dict,
)
from trainyard.environment import (
    ProjectPaths,
    check_servers,
    configure_environment,
    find_project_root,
    quiet_libraries,
)
from trainyard.errors import UserError
from trainyard.tasks.families import family_names, get_family

app = typer.Typer(
    help=(
        "trainyard: prepare data, train models, evaluate them against baselines on one fixed "
        "evaluation set, register them in MLflow and promote the best, for every model family: "
        "forecast (LSTM, TCN and TFT forecasters of time series) and rl (DQN and A2C agents in "
        "a cooperative grid world or any discrete-action gymnasium environment).\n\n"
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
    Path, typer.Option("--params", help="Parameter file (a section per family, see README).")
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Apply a profile's overrides from params.yaml, e.g. quick."),
]
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="Run on this data instead of params.yaml's: a CSV/Parquet table or a built-in "
        "table (co2, macro_panel) for forecast; a folder, glob or .txt/.md file of UTF-8 text "
        "or python_docs for text. Without --family, runs the families that read it.",
    ),
]
FamiliesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--family",
        "-f",
        help="Run only this family (repeatable): forecast, rl, text. Default: run.families.",
    ),
]
FamilyOption = Annotated[
    str,
    typer.Option("--family", "-f", help="The family whose stage to run: forecast, rl, text."),
]


def _root(params_file: Path) -> Path:
    return find_project_root(params_file.resolve().parent if params_file.exists() else None)


def _load(
    params_file: Path, profile: str | None, names: list[str], dataset: str | None = None
) -> dict[str, FamilySection]:
    """Returns the sections of the named families (only those: a stage reads its own)."""
    raw = read_params_file(params_file, profile)
    unknown = sorted(set(raw) - {*family_names(), "run", "register"})
    if unknown:
        raise ConfigError(
            f"{params_file}: unknown section(s) {', '.join(unknown)}; sections are "
            f"{', '.join([*family_names(), 'run', 'register', 'profiles'])} (forecasting keys "
            "such as dataset: and windows: go under forecast:)"
        )
    sections = {}
    for name in names:
        family = get_family(name)
        values = raw.get(name) or {}
        if dataset:
            read = family.dataset_values(values, dataset)
            if read is None:
                raise ConfigError(
                    f"--dataset {dataset}: the {name} family does not read it; "
                    f"{readers_hint(dataset)}"
                )
            values = read
        sections[name] = section_from_dict(family.section, values, f"{params_file}: {name}")
    return sections


def families_reading(dataset: str) -> list[str]:
    """Returns the families that take `dataset` as their data (--dataset without --family)."""
    return [name for name in family_names() if get_family(name).dataset_values({}, dataset)]


def readers_hint(dataset: str) -> str:
    """Returns which families read `dataset`, as advice."""
    readers = families_reading(dataset)
    if readers:
        return f"use --family {' --family '.join(readers)}"
    return "give a CSV/Parquet table (forecast) or a folder / .txt file of text (text)"


def _shared(params_file: Path, profile: str | None) -> tuple[RunConfig, RegisterConfig]:
    raw = read_params_file(params_file, profile)
    return (
        section_from_dict(RunConfig, raw.get("run"), f"{params_file}: run"),
        section_from_dict(RegisterConfig, raw.get("register"), f"{params_file}: register"),
    )


def _start_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)


def _fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _user_errors_exit(command: Callable[..., None]) -> Callable[..., None]:
    """Returns `command` printing a user's error (bad params, bad data, a missing step) and
    exiting with 2, with no traceback; any other exception keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except UserError as error:
            _fail(error)

    return wrapper


def _results_table(evaluation, metric: str) -> Table:
    table = Table(title=evaluation.title)
    table.add_column("rank", justify="right")
    table.add_column("model")
    for column in evaluation.columns:
        table.add_column(column.replace("_", " "), justify="right", overflow="fold")
    table.add_column("kind")
    for rank, name in enumerate(evaluation.ranking(metric), start=1):
        scores = evaluation.metrics[name]
        kind = "baseline" if name in evaluation.baselines else "model"
        cells = [f"{scores[c]:.4f}" if c in scores else "-" for c in evaluation.columns]
        table.add_row(str(rank), name, *cells, kind)
    return table


def _verdict(evaluation, metric: str) -> str:
    best_baseline = evaluation.best_baseline(metric)
    best_model = evaluation.best_model(metric)
    if best_model is None:
        return "No model was trained."
    model_score = evaluation.metrics[best_model][metric]
    baseline_score = evaluation.metrics[best_baseline][metric]
    higher = evaluation.higher_is_better.get(metric, False)
    if model_score > baseline_score if higher else model_score < baseline_score:
        return (
            f"[green]{best_model} beats the best baseline[/] ({best_baseline}): {metric} "
            f"{model_score:.4f} vs {baseline_score:.4f}."
        )
    return (
        f"[yellow]No model beats the best baseline[/] ({best_baseline}, {metric} "
        f"{baseline_score:.4f}); the best model, {best_model}, has {model_score:.4f}."
    )


def _report(result) -> None:
    note = "cached: inputs unchanged, skipped" if result.prepare_cached else "prepared"
    console.print(f"[bold]{result.family}[/] data: {result.prepared.description} ({note})")
    console.print(_results_table(result.evaluation, result.metric))
    console.print(_verdict(result.evaluation, result.metric))
    if result.versions:
        names = ", ".join(f"{v.model}=v{v.version}" for v in result.versions)
        console.print(f"Registered {result.versions[0].name}: {names}; challenger = best of run")
        console.print(f"Champion gate: {result.decision.reason}")


@app.command()
@_user_errors_exit
def run(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    family: FamiliesOption = None,
    dataset: DatasetOption = None,
    no_orchestrator: Annotated[
        bool, typer.Option("--no-orchestrator", help="Run the same steps without Prefect.")
    ] = False,
) -> None:
    """Run the whole pipeline of every chosen family: prepare, train, evaluate, register."""
    run_config, register = _shared(params_file, profile)
    names = family or (families_reading(dataset) if dataset else run_config.families)
    if not names:
        raise ConfigError(f"--dataset {dataset}: no family reads it; {readers_hint(dataset)}")
    sections = _load(params_file, profile, names, dataset)
    paths = ProjectPaths(_root(params_file))
    _start_logging()
    quiet_libraries()
    where = configure_environment(paths)
    check_servers(prefect=not no_orchestrator)
    console.print(f"Prefect: {'off' if no_orchestrator else where['prefect']}")
    console.print(f"MLflow:  {where['mlflow']}")
    started = time.perf_counter()
    if no_orchestrator:
        from trainyard.tasks.pipeline import run_family

        results = [
            run_family(get_family(name), params, register, paths)
            for name, params in sections.items()
        ]
    else:
        from trainyard.flows.pipeline import pipeline_flow

        with _QuietPrefectConsole():
            results = pipeline_flow(sections, register, paths)
    seconds = time.perf_counter() - started
    for result in results:
        _report(result)
    # dvc.yaml's stages read params.yaml as it is: only such a run's outputs are its outputs.
    if profile is None and not dataset and params_file.resolve() == paths.root / "params.yaml":
        _commit_to_dvc(paths, list(sections))
    console.print(f"Done in {seconds:.0f} s. Where to look:")
    console.print(f"  mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']}")
    console.print(
        f"  PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')} prefect server start"
    )
    console.print("  dvc metrics show   dvc plots show   (reports in data/<family>/reports/)")


def _commit_to_dvc(paths: ProjectPaths, families: list[str]) -> None:
    """Records the families' outputs in dvc.lock and the DVC cache (they match params.yaml)."""
    if not (paths.root / ".dvc").exists():
        return
    stages = [f"{step}_{name}" for name in families for step in ("prepare", "train", "evaluate")]
    # The dvc installed beside this interpreter (the venv's), even when it is not on PATH.
    beside = Path(sys.executable).parent / "dvc"
    dvc = str(beside) if beside.exists() else shutil.which("dvc")
    if dvc is None:
        console.print("[yellow]DVC: not installed here; outputs not committed[/]")
        return
    done = subprocess.run(
        [dvc, "commit", "--force", "--quiet", *stages],
        cwd=paths.root,
        capture_output=True,
        text=True,
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
    family: FamilyOption = "forecast",
    dataset: DatasetOption = None,
) -> None:
    """Validate and prepare a family's data into data/<family>/prepared (DVC stage)."""
    params = _load(params_file, profile, [family], dataset)[family]
    paths = ProjectPaths(_root(params_file))
    _start_logging()
    chosen = get_family(family)
    # Only the family's prepare code: this DVC stage needs no MLflow or Prefect.
    prepared = chosen.prepare(params, paths.root, paths.family(family).prepared)
    console.print(f"{prepared.path}: {prepared.description}; md5 {prepared.md5}")


@app.command()
@_user_errors_exit
def train(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    family: FamilyOption = "forecast",
    dataset: DatasetOption = None,
) -> None:
    """Train a family's train.models into data/<family>/models (DVC stage; no MLflow)."""
    from trainyard.progress import training_progress
    from trainyard.tasks.pipeline import check_step, train_untracked

    params = _load(params_file, profile, [family], dataset)[family]
    paths = ProjectPaths(_root(params_file))
    _start_logging()
    quiet_libraries()
    chosen = get_family(family)
    check_step(chosen, params)
    with training_progress(console) as queue:
        results = train_untracked(chosen, params, paths, queue)
    for result in results:
        console.print(
            f"{result.name}: {result.epochs} epochs, best {result.monitor} "
            f"{result.best_score:.4f}, {result.seconds:.1f} s"
        )


@app.command()
@_user_errors_exit
def evaluate(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    family: FamilyOption = "forecast",
    dataset: DatasetOption = None,
) -> None:
    """Score a family's models and baselines into data/<family>/reports (DVC stage)."""
    from trainyard.tasks.training import read_training_summary

    params = _load(params_file, profile, [family], dataset)[family]
    paths = ProjectPaths(_root(params_file))
    _start_logging()
    quiet_libraries()
    chosen = get_family(family)
    folders = paths.family(family)
    trained = read_training_summary(folders.models, family)
    prepared = chosen.prepared(params, folders.prepared)
    result = chosen.evaluate(
        prepared,
        {t.name: Path(t.model_dir) for t in trained},
        params,
        folders.reports,
        {t.name: t.history for t in trained},
    )
    console.print(_results_table(result, params.evaluate.metric))
    console.print(_verdict(result, params.evaluate.metric))


@app.command()
@_user_errors_exit
def models(
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """List registered models with their versions, aliases, evaluation metric and data."""
    from mlflow.tracking import MlflowClient

    paths = ProjectPaths(_root(params_file))
    quiet_libraries()
    configure_environment(paths)
    check_servers(prefect=False)
    client = MlflowClient()
    registered = client.search_registered_models()
    if not registered:
        console.print("No registered models yet: run `trainyard run` first.")
        return
    for model in registered:
        aliases: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        table = Table(title=model.name)
        for column in ("version", "aliases", "model", "metric", "data version", "run"):
            table.add_column(column)
        versions = client.search_model_versions(f"name='{model.name}'")
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            metrics = {k[5:]: v for k, v in version.tags.items() if k.startswith("eval_")}
            shown = ", ".join(f"{k} {float(v):.4f}" for k, v in metrics.items()) or "-"
            table.add_row(
                str(version.version),
                ", ".join(aliases.get(str(version.version), [])),
                version.tags.get("model", "?"),
                shown,
                version.tags.get("data_version", "?")[:12],
                (version.run_id or "")[:8],
            )
        console.print(table)


@app.command()
def datasets() -> None:
    """List the built-in datasets: forecasting tables (inside statsmodels) and text corpora
    (inside Python); nothing is downloaded."""
    from trainyard.tasks.forecast.datasets import BUILTIN_DATASETS
    from trainyard.tasks.text.corpus import BUILTIN_CORPORA

    for name, (loader, spec) in BUILTIN_DATASETS.items():
        console.print(f"forecast [bold]{name}[/]: {loader.__doc__.splitlines()[0]}  {spec}")
    for name, loader in BUILTIN_CORPORA.items():
        summary = " ".join(line.strip() for line in loader.__doc__.split("\n\n")[0].splitlines())
        console.print(f"text [bold]{name}[/]: {summary}")


def main() -> None:
    """Entry point for `python -m trainyard`."""
    app()


if __name__ == "__main__":
    sys.exit(main())
