"""MLflow tracking for every family: an experiment per dataset, a parent run, a run per model."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import platform
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from trainyard.config import FamilySection, RegisterConfig
from trainyard.environment import ProjectPaths, process_alive, process_start
from trainyard.tasks.family import Family, Prepared
from trainyard.tasks.registry import REGISTRATION_TAG

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def git_state(root: Path) -> tuple[str, bool | None]:
    """Returns the checked-out git commit and whether the tree has changes to tracked code
    (("unknown", None) outside a git checkout)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        # Run records (dvc.lock, data/) change with every run; they do not make code dirty.
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!dvc.lock",
                ":!data",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None
    return commit, bool(dirty)


LIBRARIES = ("trainyard", "torch", "lightning", "mlflow", "pytorch-forecasting", "prefect", "dvc")


def library_versions() -> dict[str, str]:
    """Returns the Python version and the versions of the libraries a model depends on."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def experiment_name(family: Family, params: FamilySection, register: RegisterConfig) -> str:
    """Returns the MLflow experiment: register.experiment, or trainyard-<dataset/env label>."""
    if register.experiment:
        return register.experiment
    return f"trainyard-{family.label(params)}"


def ensure_experiment(name: str, artifact_location: str | None) -> str:
    """Returns the id of experiment `name`, creating it if needed."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def lineage_tags(
    family: Family, prepared: Prepared, params: FamilySection, root: Path
) -> dict[str, str]:
    """Returns the tags that tie a run or model version to its code, params and data."""
    path = Path(prepared.path)
    commit, dirty = git_state(root)
    return {
        "family": family.name,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "params_hash": params.section_hash(),
        "data_version": prepared.md5,
        "data_path": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
        "data_source": prepared.source,
        "evaluation_key": family.evaluation_key(prepared, params),
    }


HEARTBEAT_TAG = "trainyard.heartbeat"  # unix time the owning process last said it lives


def heartbeat_seconds() -> float:
    """Returns how often a pipeline run's heartbeat is written (TRAINYARD_HEARTBEAT_SECONDS,
    default 60); a run of another host silent for ten times that is taken for dead."""
    return float(os.environ.get("TRAINYARD_HEARTBEAT_SECONDS", "60"))


def owner_tags() -> dict[str, str]:
    """Returns tags naming the process that owns a run, so a later run can tell that it died
    (SIGKILL, power loss) and close it: by its PID on this host, by its heartbeat elsewhere."""
    pid = os.getpid()
    return {
        "trainyard.host": socket.gethostname(),
        "trainyard.pid": str(pid),
        "trainyard.pid_start": process_start(pid),
        HEARTBEAT_TAG: str(int(time.time())),
    }


@contextlib.contextmanager
def heartbeat(run_id: str) -> Iterator[None]:
    """Keeps the run's heartbeat tag fresh from a background thread while the block runs, so
    runs on other hosts can tell this one lives. A failed write is retried at the next beat."""
    stop = threading.Event()

    def beat() -> None:
        client = MlflowClient()
        while not stop.wait(heartbeat_seconds()):
            with contextlib.suppress(Exception):  # a missed beat only ages the tag
                client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time())))

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def close_dead_runs(experiment_id: str) -> list[str]:
    """Returns the ids of runs of this experiment whose process died while they ran, after
    marking them KILLED and deleting the model versions they left unfinished (registered
    without the `registration: complete` tag).

    On this host a run is dead when its process is gone. A run of another host is dead when
    its pipeline run's heartbeat is older than ten heartbeat intervals (10 minutes by default,
    which also absorbs clock skew between hosts); runs without a heartbeat are left alone.
    """
    client = MlflowClient()
    host = socket.gethostname()
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'")
    beats = {run.info.run_id: run.data.tags.get(HEARTBEAT_TAG) for run in running}
    stale_before = time.time() - 10 * heartbeat_seconds()

    def dead(run) -> bool:
        tags = run.data.tags
        if "trainyard.host" not in tags:
            return False  # not a trainyard run
        if tags["trainyard.host"] == host:
            pid = int(tags.get("trainyard.pid", "0") or 0)
            return not process_alive(pid, tags.get("trainyard.pid_start", ""))
        beat = beats.get(tags.get("mlflow.parentRunId", ""), tags.get(HEARTBEAT_TAG))
        return beat is not None and float(beat) < stale_before

    gone = [run for run in running if dead(run)]
    for run in gone:
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            if version.tags.get(REGISTRATION_TAG) != "complete":
                client.delete_model_version(version.name, version.version)
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in gone]


@contextlib.contextmanager
def pipeline_run(
    family: Family,
    params: FamilySection,
    register: RegisterConfig,
    prepared: Prepared,
    root: Path,
    artifact_location: str | None,
) -> Iterator[str]:
    """Yields the id of an active parent run with params, lineage tags and the data logged.

    The run ends FINISHED, or FAILED (never left RUNNING) if the block raises.
    """
    experiment_id = ensure_experiment(experiment_name(family, params, register), artifact_location)
    closed = close_dead_runs(experiment_id)
    for run_id in closed:  # the killed run's private folder (its half-trained models)
        shutil.rmtree(ProjectPaths(root).run(run_id, family.name), ignore_errors=True)
    if closed:
        log.warning("closed %d run(s) of a killed earlier run as KILLED", len(closed))
    tags = {**lineage_tags(family, prepared, params, root), **owner_tags()}
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{family.name}-pipeline", tags=tags
    ) as run:
        flat = pd.json_normalize(params.to_dict(), sep=".").iloc[0].to_dict()
        mlflow.log_params({key: str(value)[:500] for key, value in flat.items()})
        log_dataset(family, prepared, params, "training")
        mlflow.log_metrics({f"data/{key}": value for key, value in prepared.stats.items()})
        with heartbeat(run.info.run_id):
            yield run.info.run_id


def log_dataset(family: Family, prepared: Prepared, params: FamilySection, context: str) -> None:
    """Logs the prepared data as the active run's input, its digest the DVC md5."""
    table, target = family.dataset_frame(prepared)
    dataset = mlflow.data.from_pandas(
        table,
        source=prepared.path,
        targets=target,
        name=family.label(params),
        digest=prepared.md5,
    )
    mlflow.log_input(dataset, context=context)


@contextlib.contextmanager
def model_run(
    parent_run_id: str, name: str, tags: dict[str, str], system_metrics: bool = True
) -> Iterator[str]:
    """Yields the id of an active run nested under the pipeline run, for one model.

    MLflow's active run is per thread, so models trained in parallel threads each get theirs.
    """
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=name,
        parent_run_id=parent_run_id,
        nested=True,
        tags={**tags, **owner_tags(), "model": name},
        log_system_metrics=system_metrics,
    ) as run:
        yield run.info.run_id


def log_history(run_id: str, history: list[dict[str, float]]) -> None:
    """Logs per-epoch metrics (train/loss, val/loss, ...) with the epoch as the step."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, int(row["epoch"]))
        for row in history
        for key, value in row.items()
        if key != "epoch"
    ]
    MlflowClient().log_batch(run_id, metrics=metrics)
