"""MLflow tracking: one experiment per pipeline, a parent run, a nested run per model."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tasks.prepare import PrepareSummary, read_prepared
from trainyard.config import Params


@functools.lru_cache(maxsize=8)
def git_commit(root: Path) -> str:
    """Returns the checked-out git commit (with "-dirty" if the tree has changes), or "unknown"."""
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
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def experiment_name(params: Params) -> str:
    """Returns the MLflow experiment of this pipeline: register.experiment or trainyard-<data>."""
    if params.register.experiment:
        return params.register.experiment
    return f"trainyard-{params.dataset.label}"


def ensure_experiment(params: Params, artifact_location: str | None) -> str:
    """Returns the id of the pipeline's experiment, creating it if needed."""
    name = experiment_name(params)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def lineage_tags(summary: PrepareSummary, params: Params, root: Path) -> dict[str, str]:
    """Returns the tags that tie a run or model version to its code, params and data."""
    return {
        "git_commit": git_commit(root),
        "params_hash": params.section_hash(),
        "data_version": summary.md5,
        "data_path": str(Path(summary.path).relative_to(root))
        if Path(summary.path).is_relative_to(root)
        else summary.path,
        "data_source": summary.source,
        "holdout_key": holdout_key(summary, params),
    }


def holdout_key(summary: PrepareSummary, params: Params) -> str:
    """Returns a hash naming the exact holdout windows: data version, windows and stride."""
    parts = f"{summary.md5}|{params.section_hash('windows')}|{params.evaluate.stride}"
    return hashlib.sha256(parts.encode()).hexdigest()[:12]


@contextlib.contextmanager
def pipeline_run(
    params: Params, summary: PrepareSummary, root: Path, artifact_location: str | None
) -> Iterator[str]:
    """Yields the id of an active parent run with params, lineage tags and the dataset logged.

    The run ends FINISHED, or FAILED (never left RUNNING) if the block raises.
    """
    experiment_id = ensure_experiment(params, artifact_location)
    tags = lineage_tags(summary, params, root)
    with mlflow.start_run(experiment_id=experiment_id, run_name="pipeline", tags=tags) as run:
        flat = pd.json_normalize(params.to_dict(), sep=".").iloc[0].to_dict()
        mlflow.log_params({key: str(value)[:500] for key, value in flat.items()})
        log_dataset(summary, params, "training")
        mlflow.log_metrics(
            {
                "data/series": summary.series,
                "data/rows": summary.rows,
                "data/inserted_steps": summary.inserted_steps,
                "data/missing_target": summary.missing_target,
                "data/interpolated_covariates": summary.interpolated_covariates,
            }
        )
        yield run.info.run_id


def log_dataset(summary: PrepareSummary, params: Params, context: str) -> None:
    """Logs the prepared table as the active run's input, its digest the DVC md5."""
    table, _ = read_prepared(Path(summary.path))
    dataset = mlflow.data.from_pandas(
        table,
        source=summary.path,
        targets=params.dataset.target,
        name=params.dataset.label,
        digest=summary.md5,
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
        tags={**tags, "model": name},
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
