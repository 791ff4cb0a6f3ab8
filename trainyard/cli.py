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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainyard.config import ConfigError, merge
from trainyard.environment import (
    ProjectPaths,
    check_servers,
    configure_environment,
    ensure_tracking_store,
    find_project_root,
    quiet_libraries,
)
from trainyard.errors import UserError
from trainyard.server_cli import schedule, server_app
from trainyard.tasks.families import (
    families_reading,
    family_names,
    get_family,
    load_sections,
    load_shared,
    readers_hint,
)
from trainyard.watchdog import start_watchdog

if TYPE_CHECKING:
    from trainyard.config import FamilySection
    from trainyard.flows.family import DaskCluster
    from trainyard.tasks.forecast.infer import Inference

app = typer.Typer(
    help=(
        "trainyard: prepare data, train models, evaluate them against baselines on one fixed "
        "evaluation set, register them in MLflow and promote the best, for every model family: "
        "forecast (LSTM, TCN and TFT forecasters and AutoETS, AutoARIMA and AutoTheta on time "
        "series, with an ensemble), rl (DQN and A2C agents in a cooperative grid world or any "
        "discrete-action gymnasium environment) and text (an LSTM language model beside a "
        "Kneser-Ney n-gram).\n\n"
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
        help="Run on this data instead of params.yaml's: a CSV/Parquet table (also .gz, .bz2, "
        ".xz, .zip) or a built-in table (co2, macro_panel) for forecast; a folder, glob or "
        ".txt/.md file of UTF-8 text or python_docs for text. Without --family, runs the "
        "families that read it.",
    ),
]
# Pins of a forecasting table's keys (--dataset FILE, or `trainyard init FILE`); what is not
# pinned is inferred from the table.
LayoutOption = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help="Forecasting table (--dataset FILE or init): long (a row per series and time), "
        "dates_as_columns (a row per series, a column per date), series_as_columns (a column "
        "per series beside the time column) or periods_as_columns (a row per year, a column "
        "per month or quarter); a wide table is melted to long as it is read. Default: "
        "inferred, periods_as_columns when a column holds years and the headers are months "
        "(Jan-Dec) or quarters (Q1-Q4), dates_as_columns when no column holds times and the "
        "headers are dates, else long.",
        show_default=False,
    ),
]
TimeColumnOption = Annotated[
    str | None,
    typer.Option(
        "--time-column",
        help="Forecasting table (--dataset FILE or init): the column of times. Default: "
        "inferred, the only column of dates or period codes (1959 Q1, 1959M01), else of years "
        "(with a quarter or month column beside them: forecast.dataset.period_column).",
        show_default=False,
    ),
]
TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Forecasting table (--dataset FILE or init): the column to forecast (of a wide "
        "table: the name its values get). Default: inferred, the only numeric column that "
        "varies within a series (value, for a wide table).",
        show_default=False,
    ),
]
SeriesColumnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--series-column",
        help="Forecasting table (--dataset FILE or init): a column naming the series of a long "
        "panel (repeatable). Default: inferred, none when every time occurs once, else the "
        "text column that makes (series, time) unique.",
        show_default=False,
    ),
]
FrequencyOption = Annotated[
    str | None,
    typer.Option(
        "--frequency",
        help="Forecasting table (--dataset FILE or init): the pandas offset alias of the time "
        "grid, e.g. D, W-SUN, MS, QE-DEC, h. Default: inferred from the times (gaps allowed).",
        show_default=False,
    ),
]
SeasonLengthOption = Annotated[
    int | None,
    typer.Option(
        "--season-length",
        min=1,
        help="Forecasting table (--dataset FILE or init): steps per season (seasonal naive, "
        "MASE). Default: by frequency (h 24, D 7, W 52, MS 12, QE 4), 1 when the series hold "
        "fewer than two seasons for training.",
        show_default=False,
    ),
]
HorizonOption = Annotated[
    int | None,
    typer.Option(
        "--horizon",
        min=1,
        help="Forecasting table (--dataset FILE or init): steps to forecast. Default: by "
        "frequency (h 24, D 14, W 12, MS 12, QE 8, YE 3), cut to fit the shortest series; the "
        "encoder, validation and holdout lengths are fitted around it.",
        show_default=False,
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
    chosen_on = evaluation.selection  # validation scores: what the challenger is chosen on
    if chosen_on:
        table.add_column(f"validation {metric}", justify="right")
    table.add_column("kind")
    for rank, name in enumerate(evaluation.ranking(metric), start=1):
        scores = evaluation.metrics[name]
        kind = "baseline" if name in evaluation.baselines else "model"
        cells = [f"{scores[c]:.4f}" if c in scores else "-" for c in evaluation.columns]
        if chosen_on:
            cells.append(f"{chosen_on[name][metric]:.4f}" if name in chosen_on else "-")
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
        chosen = "best on validation" if result.evaluation.selection else "best of run"
        console.print(f"Registered {result.versions[0].name}: {names}; challenger = {chosen}")
        console.print(f"Champion gate: {result.decision.reason}")


def _table_pins(
    layout: str | None,
    time_column: str | None,
    target: str | None,
    series_columns: list[str] | None,
    frequency: str | None,
    season_length: int | None,
    horizon: int | None,
) -> dict[str, Any]:
    """Returns the forecasting table's keys given on the command line (only those given)."""
    given = {
        "layout": layout,
        "time_column": time_column,
        "target": target,
        "series_columns": series_columns or None,
        "frequency": frequency,
        "season_length": season_length,
        "horizon": horizon,
    }
    return {key: value for key, value in given.items() if value is not None}


def _is_table_file(dataset: str) -> bool:
    """Returns whether --dataset names a CSV/Parquet file (not a built-in table)."""
    from trainyard.tasks.forecast.datasets import BUILTIN_DATASETS
    from trainyard.tasks.forecast.family import TABLE_SUFFIXES
    from trainyard.tasks.prepared import table_suffix

    return dataset not in BUILTIN_DATASETS and table_suffix(Path(dataset)) in TABLE_SUFFIXES


def _load_sections(
    params_file: Path,
    profile: str | None,
    names: list[str],
    dataset: str | None,
    pins: dict[str, Any],
) -> dict[str, FamilySection]:
    """Returns the families' sections (load_sections). When --dataset is a CSV/Parquet file
    for forecasting, the keys describing it that neither the command line (`pins`) nor
    params.yaml (when it names that same file) sets are inferred from the table, and printed."""
    table = dataset is not None and "forecast" in names and _is_table_file(dataset)
    if pins and not table:
        from trainyard.tasks.forecast.infer import FLAGS

        flags = ", ".join(FLAGS[key] for key in pins)
        if dataset is None:
            where = (
                "the table params.yaml names is described by forecast.dataset there (or write "
                "a file's keys into it with `trainyard init FILE`)"
            )
        elif "forecast" not in names:
            where = f"--dataset {dataset} is read by {', '.join(names)}, not forecast"
        else:
            where = f"{dataset} is not a .csv or .parquet file"
        raise ConfigError(
            f"{flags}: these describe a forecasting table given as --dataset FILE.csv or "
            f"FILE.parquet; {where}"
        )
    if not table:
        return load_sections(params_file, profile, names, dataset)
    inference = _infer_table(params_file, profile, dataset, pins)
    _print_inference(
        inference,
        f"pin any with its flag; `trainyard init {dataset}` writes them into params.yaml",
    )
    return load_sections(params_file, profile, names, dataset, {"forecast": inference.section()})


def _infer_table(
    params_file: Path, profile: str | None, dataset: str, pins: dict[str, Any]
) -> Inference:
    """Returns the forecasting keys of table `dataset`: pinned on the command line, else by
    params.yaml when its forecast.dataset.name is that file, else inferred from the table."""
    from trainyard.config import read_params_file
    from trainyard.tasks.forecast.infer import Pins, infer_file, pins_from_section

    root = _root(params_file)
    section = read_params_file(params_file, profile).get("forecast")
    configured = pins_from_section(
        section if isinstance(section, dict) else {}, dataset, root, f"{params_file}"
    )
    return infer_file(dataset, root, Pins.given(pins, configured))


def _print_inference(inference: Inference, note: str) -> None:
    console.print(
        f"{inference.source}: forecasting keys ({note}):",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for line in inference.lines():
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


class Runner(StrEnum):
    """Where `trainyard run` trains a family's models."""

    thread = "thread"
    dask = "dask"


@app.command()
@_user_errors_exit
def run(
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
    family: FamiliesOption = None,
    dataset: DatasetOption = None,
    layout: LayoutOption = None,
    time_column: TimeColumnOption = None,
    target: TargetOption = None,
    series_column: SeriesColumnOption = None,
    frequency: FrequencyOption = None,
    season_length: SeasonLengthOption = None,
    horizon: HorizonOption = None,
    no_orchestrator: Annotated[
        bool, typer.Option("--no-orchestrator", help="Run the same steps without Prefect.")
    ] = False,
    runner: Annotated[
        Runner,
        typer.Option(
            "--runner",
            help="Where the models train: thread (a process each, started from this one) or "
            "dask (on Dask workers, through prefect-dask).",
        ),
    ] = Runner.thread,
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address",
            help="With --runner dask: a running scheduler, e.g. tcp://10.0.0.5:8786 (its "
            "workers need the project on a shared filesystem and reachable Prefect and MLflow "
            "servers). Default: a LocalCluster on this machine.",
        ),
    ] = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(
            "--dask-workers", min=1, help="With --runner dask: the LocalCluster's workers [2]."
        ),
    ] = None,
) -> None:
    """Run the whole pipeline of every chosen family: prepare, train, evaluate, register."""
    _check_runner(runner, dask_address, dask_workers, no_orchestrator)
    run_config, register = load_shared(params_file, profile)
    names = family or (families_reading(dataset) if dataset else run_config.families)
    if not names:
        raise ConfigError(f"--dataset {dataset}: no family reads it; {readers_hint(dataset)}")
    pins = _table_pins(
        layout, time_column, target, series_column, frequency, season_length, horizon
    )
    sections = _load_sections(params_file, profile, names, dataset, pins)
    paths = ProjectPaths(_root(params_file))
    _start_logging()
    where = configure_environment(paths)
    dask = _dask_cluster(paths, dask_address, dask_workers) if runner is Runner.dask else None
    check_servers(prefect=not no_orchestrator)  # before the heavy imports: fails in seconds
    quiet_libraries()
    ensure_tracking_store(paths)
    start_watchdog()  # stops the servers and trainings this run starts if it is killed
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
            results = pipeline_flow(sections, register, paths, dask)
    seconds = time.perf_counter() - started
    for result in results:
        _report(result)
    # dvc.yaml's stages read params.yaml as it is: only such a run's outputs are its outputs.
    if profile is None and not dataset and params_file.resolve() == paths.root / "params.yaml":
        _commit_to_dvc(paths, list(sections))
    _push_data(paths, results)
    console.print(f"Done in {seconds:.0f} s. Where to look:")
    console.print(f"  mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']}")
    console.print(
        f"  PREFECT_HOME={os.environ.get('PREFECT_HOME', '~/.prefect')} prefect server start"
    )
    console.print("  dvc metrics show   dvc plots show   (reports in data/<family>/reports/)")


def _check_runner(
    runner: Runner, address: str | None, workers: int | None, no_orchestrator: bool
) -> None:
    """Raises ConfigError for --runner options that do not go together."""
    if runner is Runner.thread and (address or workers):
        option = "--dask-address" if address else "--dask-workers"
        raise ConfigError(f"{option} needs --runner dask")
    if runner is Runner.dask and no_orchestrator:
        raise ConfigError("--runner dask trains through Prefect: drop --no-orchestrator")
    if address and workers:
        raise ConfigError(
            "--dask-workers sizes the LocalCluster started without --dask-address; a running "
            "cluster has its own workers"
        )


def _dask_cluster(paths: ProjectPaths, address: str | None, workers: int | None) -> DaskCluster:
    """Returns the Dask cluster to train on, checked (imports Prefect: call it only once the
    environment is configured)."""
    from trainyard.flows.pipeline import DaskCluster, check_dask_cluster

    dask = DaskCluster(address, workers or DaskCluster.workers)
    check_dask_cluster(dask, paths)
    return dask


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


def _push_data(paths: ProjectPaths, results: list) -> None:
    """Pushes every family's data version to the DVC remote, so that a clone can pull the data
    a model version was trained on. A failure only warns: the models are registered already."""
    if not (paths.root / ".dvc").exists():
        return
    from trainyard.data_versions import push_data_version

    urls = set()
    for result in results:
        prepared = result.prepared
        try:
            urls.add(push_data_version(paths.root, prepared.path, prepared.md5))
        except Exception as error:  # noqa: BLE001 - no push failure may fail a finished run
            console.print(
                f"[yellow]DVC: {result.family} data not pushed[/]: {error}", soft_wrap=True
            )
    if urls:
        # soft_wrap: a path is copied from here, so it is never broken across lines.
        console.print(f"DVC: data pushed to {', '.join(sorted(urls))}", soft_wrap=True)


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
    layout: LayoutOption = None,
    time_column: TimeColumnOption = None,
    target: TargetOption = None,
    series_column: SeriesColumnOption = None,
    frequency: FrequencyOption = None,
    season_length: SeasonLengthOption = None,
    horizon: HorizonOption = None,
) -> None:
    """Validate and prepare a family's data into data/<family>/prepared (DVC stage)."""
    pins = _table_pins(
        layout, time_column, target, series_column, frequency, season_length, horizon
    )
    params = _load_sections(params_file, profile, [family], dataset, pins)[family]
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
    layout: LayoutOption = None,
    time_column: TimeColumnOption = None,
    target: TargetOption = None,
    series_column: SeriesColumnOption = None,
    frequency: FrequencyOption = None,
    season_length: SeasonLengthOption = None,
    horizon: HorizonOption = None,
) -> None:
    """Train a family's train.models into data/<family>/models (DVC stage; no MLflow)."""
    from trainyard.progress import training_progress
    from trainyard.tasks.pipeline import check_step, train_untracked

    pins = _table_pins(
        layout, time_column, target, series_column, frequency, season_length, horizon
    )
    params = _load_sections(params_file, profile, [family], dataset, pins)[family]
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
    layout: LayoutOption = None,
    time_column: TimeColumnOption = None,
    target: TargetOption = None,
    series_column: SeriesColumnOption = None,
    frequency: FrequencyOption = None,
    season_length: SeasonLengthOption = None,
    horizon: HorizonOption = None,
) -> None:
    """Score a family's models and baselines into data/<family>/reports (DVC stage)."""
    from trainyard.tasks.training import read_training_summary

    pins = _table_pins(
        layout, time_column, target, series_column, frequency, season_length, horizon
    )
    params = _load_sections(params_file, profile, [family], dataset, pins)[family]
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


models_app = typer.Typer(
    help="List registered models, or show one version's metrics and lineage.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(models_app, name="models")


def _registry(params_file: Path):
    """Returns (project paths, an MLflow client) once the tracking server answers."""
    from mlflow.tracking import MlflowClient

    paths = ProjectPaths(_root(params_file))
    configure_environment(paths)
    check_servers(prefect=False)
    quiet_libraries()
    ensure_tracking_store(paths)
    return paths, MlflowClient()


def _resolve(client, reference: str):
    """Returns the model version `reference` names: NAME@ALIAS, NAME/VERSION or NAME (its
    challenger)."""
    from mlflow.exceptions import MlflowException

    from trainyard.tasks.registry import CHALLENGER, current_alias

    name, _, alias = reference.partition("@")
    name, _, number = name.partition("/")
    _require_model(client, name)
    try:
        if number:
            return client.get_model_version(name, number)
        version = current_alias(client, name, alias or CHALLENGER)
    except MlflowException as error:
        raise UserError(f"{reference}: no such version ({error.message})") from None
    if version is None:
        raise UserError(f"{reference}: no version of {name} holds @{alias or CHALLENGER}")
    return version


def _require_model(client, name: str) -> None:
    """Raises UserError, listing the registered models, when `name` is not one of them."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    from trainyard.tasks.promotion import is_lock

    if not is_lock(name):
        try:
            client.get_registered_model(name)
            return
        except MlflowException as error:  # only "no such model"; a registry fault is raised
            if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
    names = [m.name for m in client.search_registered_models() if not is_lock(m.name)]
    known = ", ".join(sorted(names)) or "none yet: run `trainyard run`"
    raise UserError(f"no registered model {name!r}; registered models: {known}")


@models_app.callback()
@_user_errors_exit
def models(
    context: typer.Context,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """List registered models with their versions, aliases, evaluation metric and data."""
    if context.invoked_subcommand is not None:
        return
    from trainyard.tasks.promotion import is_lock, tagged_metrics

    _, client = _registry(params_file)
    registered = [m for m in client.search_registered_models() if not is_lock(m.name)]
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
            metric = version.tags.get("gate_metric")
            metrics = tagged_metrics(version)
            if metric in metrics:
                metrics = {metric: metrics[metric]}
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


@models_app.command("show")
@_user_errors_exit
def models_show(
    reference: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME/VERSION or NAME.")],
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Show one version: aliases, metrics, and the lineage to reproduce it."""
    import json

    from trainyard.tasks.promotion import tagged_metrics

    _, client = _registry(params_file)
    version = _resolve(client, reference)
    aliases = sorted(version.aliases or [])  # fetched versions carry their aliases
    tags = dict(version.tags)
    console.print(f"[bold]{version.name} v{version.version}[/]  {tags.get('model', '?')}")
    console.print(f"  aliases      {', '.join(aliases) or '-'}")
    metrics = tagged_metrics(version)
    console.print("  metrics      " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    console.print(f"  evaluated on {tags.get('evaluation_key', '?')}")
    lineage = Table(title="lineage", show_header=False)
    shown = (
        "family",
        "git_commit",
        "git_dirty",
        "data_version",
        "data_path",
        "data_source",
        "dvc_remote",
        "params_hash",
        "mlflow_run_id",
        "prefect_flow_run_id",
        "train_finite",
        "best_baseline",
        "libraries",
    )
    for key in shown:
        lineage.add_row(key, tags.get(key, "-"))
    stages = {k: v for k, v in tags.items() if k.startswith("stage.")}
    for key, value in sorted(stages.items()):
        lineage.add_row(key, value)
    console.print(lineage)
    params = tags.get("params")
    if params:
        console.print("  params       " + json.dumps(json.loads(params), sort_keys=True)[:2000])
    console.print("To reproduce it:")
    console.print(f"  git checkout {tags.get('git_commit', '<commit>')}")
    console.print(f"  trainyard checkout {version.name}/{version.version}   # its data, by DVC md5")
    console.print(f"  trainyard run --family {tags.get('family', '<family>')}")


def _family_context(client, version, params_file: Path, profile: str | None):
    """Returns (family, its params, register config, paths) for gating `version`."""
    from trainyard.tasks.registry import registered_model_name

    family_name = version.tags.get("family")
    if family_name not in family_names():
        raise UserError(
            f"{version.name} v{version.version} has no family tag (no lineage): trainyard "
            "cannot score it"
        )
    family = get_family(family_name)
    params = load_sections(params_file, profile, [family_name])[family_name]
    _, register = load_shared(params_file, profile)
    paths = ProjectPaths(_root(params_file))
    expected = registered_model_name(family, family.label(params))
    if expected != version.name:
        raise UserError(
            f"{version.name} is not what {params_file} prepares ({expected}): the gate scores "
            "versions on the current evaluation data; use the --params/--profile that prepares "
            f"{version.name}'s data"
        )
    return family, params, register, paths


def _print_decision(decision) -> None:
    colour = "green" if decision.promoted else "yellow"
    console.print(f"[{colour}]{decision.reason}[/]", highlight=False)
    if not decision.promoted:
        raise typer.Exit(code=1)


@app.command()
@_user_errors_exit
def promote(
    reference: Annotated[str, typer.Argument(help="Registered model NAME (or NAME@ALIAS).")],
    version: Annotated[
        str | None, typer.Option("--version", help="The version to promote.")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            help="Promote the version holding this alias (default: challenger for the first "
            "stage, the previous stage for later ones).",
        ),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="The stage (alias) to promote into.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the gate (needs --reason; recorded).")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the history.")] = "",
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Promote a version into a stage through the family's gate: both it and the stage's
    holder are scored on the current evaluation data; exit 1 when the gate refuses."""
    from trainyard.config import StageGate
    from trainyard.tasks.pipeline import current_gate
    from trainyard.tasks.promotion import Promotion
    from trainyard.tasks.promotion import promote as promote_version

    _, client = _registry(params_file)
    name, _, given = reference.partition("@")
    _, register = load_shared(params_file, profile)
    stage = to or register.stages[0]
    if stage not in register.stages:
        raise UserError(
            f"--to {stage}: not a stage; register.stages are {', '.join(register.stages)}"
        )
    if version is None:
        position = register.stages.index(stage)
        source = (
            alias or given or ("challenger" if position == 0 else register.stages[position - 1])
        )
        candidate = _resolve(client, f"{name}@{source}")
    else:
        candidate = _resolve(client, f"{name}/{version}")
    family, params, register, paths = _family_context(client, candidate, params_file, profile)
    rule, score = current_gate(family, params, paths, candidate)
    request = Promotion(
        name,
        str(candidate.version),
        stage,
        rule,
        params.gate.get(stage, StageGate()),
        force=force,
        reason=reason,
    )
    _print_decision(promote_version(client, request, score))


@app.command()
@_user_errors_exit
def rollback(
    name: Annotated[str, typer.Argument(help="Registered model NAME.")],
    to: Annotated[
        str | None, typer.Option("--to", help="The stage to roll back (default: the first).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the history.")] = "",
    params_file: ParamsOption = Path("params.yaml"),
    profile: ProfileOption = None,
) -> None:
    """Give a stage back to the version that held it before (from the audit trail)."""
    from trainyard.tasks.promotion import rollback as roll_back

    _, client = _registry(params_file)
    _require_model(client, name)
    _, register = load_shared(params_file, profile)
    stage = to or register.stages[0]
    _print_decision(roll_back(client, name, stage, reason))


@app.command()
@_user_errors_exit
def history(
    name: Annotated[str, typer.Argument(help="Registered model NAME.")],
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Show every promotion, refusal and rollback of a registered model, newest first."""
    from trainyard.tasks.promotion import audit_records

    _, client = _registry(params_file)
    _require_model(client, name)
    records = audit_records(client, name)
    if not records:
        console.print(f"{name}: no promotions recorded yet")
        return
    table = Table(title=f"{name}: history, newest first")
    for column in (
        "#",
        "when (UTC)",
        "who",
        "action",
        "alias",
        "from -> to",
        "metric",
        "reason",
        "data",
    ):
        table.add_column(column)
    for record in reversed(records):
        values = record.get("metrics") or {}
        metric = record.get("metric")
        shown = ""
        if metric and values.get("candidate") is not None:
            shown = f"{metric} {values['candidate']:.4f}"
            if values.get("holder") is not None:
                shown += f" vs {values['holder']:.4f}"
        table.add_row(
            str(record["seq"]),
            record["time"].replace("+00:00", ""),
            record.get("actor", "?"),
            record["action"],
            record.get("alias", ""),
            f"{'v' + record['from'] if record.get('from') else '-'} -> v{record['to']}",
            shown,
            record.get("reason", ""),
            (record.get("data_version") or "")[:12],
        )
    console.print(table)


PREDICTION_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl")  # what --output can write
SHOWN_PREDICTIONS = 50  # rows printed when no --output is given


def _inference_params(pairs: list[str], signature) -> dict[str, object]:
    """Returns --param KEY=VALUE pairs as the model's inference params, each value converted
    to the type the model's signature declares for it."""
    declared = signature.params if signature is not None else None
    specs = {spec.name: spec for spec in (declared.params if declared else [])}
    known = ", ".join(f"{s.name} ({s.dtype.name}, default {s.default})" for s in specs.values())
    values: dict[str, object] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UserError(f"--param {pair}: write KEY=VALUE, e.g. --param temperature=0.5")
        if key not in specs:
            takes = f"it takes {known}" if specs else "it takes no params"
            raise UserError(f"--param {key}: the model takes no such param; {takes}")
        kind = specs[key].dtype.name
        try:
            if kind in ("long", "integer"):
                values[key] = int(text)
            elif kind in ("double", "float"):
                values[key] = float(text)
            elif kind == "boolean" and text.lower() in ("true", "false"):
                values[key] = text.lower() == "true"
            elif kind in ("string", "binary"):
                values[key] = text
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"--param {key}={text}: not a {kind} value") from None
    return values


def _fit_signature(frame, schema, path: Path):
    """Returns the input table converted to the column types of the model's signature, as
    `mlflow models serve` converts a request; raises DataError naming the file, the column
    and the first value that does not convert."""
    import numpy as np
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.types.schema import Schema
    from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

    from trainyard.errors import DataError

    if schema is None or not schema.has_input_names():
        return frame
    takes = ", ".join(
        f"{spec.name} ({getattr(spec.type, 'name', spec.type)})" for spec in schema.inputs[:12]
    )
    missing = [name for name in schema.required_input_names() if name not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing[:6]))}"
            f"{' ...' if len(missing) > 6 else ''}; the model reads {takes}"
            f"{' ...' if len(schema.inputs) > 12 else ''}; the file has "
            f"{', '.join(map(str, frame.columns[:12])) or 'no columns'}"
        )
    frame = frame.copy()
    for spec in schema.inputs:
        if spec.name not in frame.columns:
            continue
        try:
            frame[spec.name] = cast_df_types_according_to_schema(
                frame[[spec.name]].copy(),
                Schema([spec]),  # a copy: MLflow assigns into it
            )[spec.name]
        except MlflowException:
            values = frame[spec.name]
            kind = getattr(spec.type, "name", str(spec.type))
            parse = pd.to_datetime if kind == "datetime" else pd.to_numeric
            try:
                bad = parse(values, errors="coerce").isna().to_numpy() & values.notna().to_numpy()
            except (TypeError, ValueError):
                bad = np.zeros(len(values), dtype=bool)
            where, value = "", ""
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                line = f"line {row + 2}" if path.suffix.lower() == ".csv" else f"row {row + 1}"
                where, value = f", {line}", f"{values.iloc[row]!r} "
            raise DataError(
                f"{path}: column {spec.name!r}{where}: {value}is not a {kind}, the type the "
                "model reads there; correct the value or drop the row"
            ) from None
    return frame


def _write_predictions(frame, path: Path) -> None:
    """Writes the predictions to path (format by suffix) through a temporary file beside it:
    path is either complete or untouched."""
    suffix = path.suffix.lower()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            frame.to_csv(temporary, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            lines = suffix == ".jsonl"
            frame.to_json(
                temporary, orient="records", lines=lines, date_format="iso", force_ascii=False
            )
        os.replace(temporary, path)
    except (OSError, TypeError, ValueError) as error:  # a full disk, a table the format refuses
        raise UserError(f"{path}: cannot write the predictions ({error})") from None
    finally:
        temporary.unlink(missing_ok=True)


def _predictions_table(frame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.head(SHOWN_PREDICTIONS).itertuples(index=False):
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    return table


@app.command()
@_user_errors_exit
def predict(
    reference: Annotated[
        str,
        typer.Argument(
            help="A registered model version: NAME@ALIAS (e.g. co2-forecaster@champion), "
            "NAME/VERSION or NAME (its challenger).",
            metavar="NAME@ALIAS",
            show_default=False,
        ),
    ],
    input_file: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="The model input: a history table (forecaster), agent{a}_obs{d} columns "
            "(agent), or prompts as a .txt file, one per line, or a `prompt` column (language "
            "model). Tables: .csv (UTF-8), .parquet, .json, .jsonl.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the predictions here: .csv, .parquet, .json or .jsonl. Default: print "
            "them as a table.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="An inference param KEY=VALUE (repeatable), e.g. temperature=0.5 or "
            "length=80 for a language model.",
        ),
    ] = None,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Predict with a registered model version on a file of inputs: forecasts of every series
    of a history table, every agent's action per state, or continuations of prompts."""
    import mlflow.models
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from trainyard.errors import DataError

    if output is not None and output.suffix.lower() not in PREDICTION_SUFFIXES:
        raise UserError(
            f"--output {output}: cannot write {output.suffix or 'a file without suffix'}; "
            f"name a {', '.join(PREDICTION_SUFFIXES)} file"
        )
    _, client = _registry(params_file)
    version = _resolve(client, reference)
    family = version.tags.get("family")
    if family not in family_names():
        raise UserError(
            f"{version.name} v{version.version} has no family tag: it was not registered by "
            "trainyard, so its input format is unknown; load it with mlflow.pyfunc.load_model"
        )
    chosen = get_family(family)
    frame = chosen.read_input(input_file)
    uri = f"models:/{version.name}/{version.version}"
    info = mlflow.models.get_model_info(uri)
    signature = info.signature
    config = (info.flavors.get("python_function") or {}).get("config") or {}
    frame = chosen.model_input(frame, config, input_file)
    inference = _inference_params(param or [], signature)
    frame = _fit_signature(frame, signature.inputs if signature else None, input_file)
    model = mlflow.pyfunc.load_model(uri)
    try:
        result = model.predict(frame, params=inference or None)
    except UserError as error:
        raise DataError(f"{input_file}: {error}") from None
    except MlflowException as error:
        reason = error.message.rpartition("Error: ")[2] or error.message
        raise DataError(f"{input_file}: the model refuses the input: {reason}") from None
    predictions = result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)
    source = f"{version.name} v{version.version}"
    if output is not None:
        _write_predictions(predictions, output)
        console.print(f"{output}: {len(predictions)} rows predicted by {source}")
        return
    console.print(_predictions_table(predictions, f"{source} on {input_file}"))
    if len(predictions) > SHOWN_PREDICTIONS:
        console.print(
            f"... and {len(predictions) - SHOWN_PREDICTIONS} more rows: write them all with "
            "--output FILE"
        )


@app.command()
@_user_errors_exit
def checkout(
    version: Annotated[
        str,
        typer.Argument(
            help="A registered model version: NAME@ALIAS (e.g. co2-forecaster@champion), "
            "NAME/VERSION or NAME (its challenger).",
            metavar="NAME@ALIAS",
            show_default=False,
        ),
    ],
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            help="DVC remote (URL or configured name) to pull from. Default: the version's "
            "dvc_remote tag, else this repo's default remote.",
        ),
    ] = None,
    params_file: ParamsOption = Path("params.yaml"),
) -> None:
    """Pull the data a registered model version was trained on; print how to retrain it."""
    from trainyard.data_versions import pull_data_version

    paths, client = _registry(params_file)
    tags = _resolve(client, version).tags
    md5, data_path = tags.get("data_version"), tags.get("data_path")
    if not md5 or not data_path:
        raise UserError(f"{version}: no data_version / data_path tags: nothing to pull")
    source = remote or tags.get("dvc_remote") or None
    target = pull_data_version(paths.root, data_path, md5, source)
    console.print(f"Data: {target} is data version {md5}", soft_wrap=True)
    commit = tags.get("git_commit", "unknown")
    dirty = commit.endswith("-dirty") or tags.get("git_dirty", "").lower() == "true"
    commit = commit.removesuffix("-dirty")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=paths.root, capture_output=True, text=True
    ).stdout.strip()
    if dirty:
        console.print(
            f"[yellow]Code: trained from {commit} with uncommitted changes[/]: "
            "git holds only the commit, not those changes",
            soft_wrap=True,
        )
    console.print("Next:")
    if commit != "unknown" and commit != head:
        console.print(f"  git checkout {commit}")
    family = tags.get("family")
    console.print(f"  trainyard run --family {family}" if family else "  trainyard run")


@app.command()
@_user_errors_exit
def init(
    table: Annotated[
        Path,
        typer.Argument(
            help="Your CSV or Parquet table of time series, one row per series and time: a "
            "column of times, the target and any columns naming the series.",
            show_default=False,
        ),
    ],
    params_file: ParamsOption = Path("params.yaml"),
    layout: LayoutOption = None,
    time_column: TimeColumnOption = None,
    target: TargetOption = None,
    series_column: SeriesColumnOption = None,
    frequency: FrequencyOption = None,
    season_length: SeasonLengthOption = None,
    horizon: HorizonOption = None,
) -> None:
    """Write a table's forecasting keys into params.yaml, inferred where no flag pins them.

    The forecast section gets the table's name, columns, frequency, season length and windows
    (keys params.yaml already sets for this same file are kept); the rest of the file and its
    comments are kept."""
    from trainyard.config import read_params_file, section_from_dict
    from trainyard.tasks.forecast.config import Params
    from trainyard.tasks.forecast.family import TABLE_SUFFIXES
    from trainyard.tasks.forecast.infer import Pins, infer_file, pins_from_section, write_params
    from trainyard.tasks.prepared import table_suffix

    if table_suffix(table) not in TABLE_SUFFIXES:
        raise UserError(
            f"{table}: not a table trainyard reads; give a .csv or .parquet file of time series"
        )
    root = params_file.resolve().parent
    path = table.expanduser().resolve()
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    raw = read_params_file(params_file) if params_file.exists() else {}
    section = raw.get("forecast") if isinstance(raw.get("forecast"), dict) else {}
    pins = _table_pins(
        layout, time_column, target, series_column, frequency, season_length, horizon
    )
    configured = pins_from_section(section, name, root, str(params_file))
    inference = infer_file(name, root, Pins.given(pins, configured))
    keys = inference.section()
    keys["dataset"]["name"] = name
    # Checked before writing: a section that would not load is never written.
    section_from_dict(Params, merge(section, keys), f"{params_file}: forecast")
    existed = params_file.exists()
    write_params(params_file, name, inference)
    _print_inference(inference, "pin any with its flag and run this again")
    written = ", ".join(["name", *inference.dataset])
    rest = "the rest of the file is as it was" if existed else "a new file that runs forecast only"
    console.print(
        f"Wrote {params_file}: forecast.dataset ({written}) and forecast.windows "
        f"({', '.join(inference.windows)}); {rest}.",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    other = "" if params_file == Path("params.yaml") else f" --params {params_file}"
    console.print(
        f"Next: trainyard run --family forecast{other}   (or trainyard prepare{other}, to check "
        "it)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


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


app.command()(schedule)
app.add_typer(server_app, name="server")


def main() -> None:
    """Entry point for `python -m trainyard`."""
    app()


if __name__ == "__main__":
    sys.exit(main())
