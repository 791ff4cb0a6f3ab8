"""The forecasting pipeline as plain Python: prepare -> train -> evaluate -> register.

Each step is a function the Prefect flow wraps as a task; `run_pipeline` chains the same
functions without Prefect (used by `trainyard run --no-orchestrator` and by tests).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tasks.evaluate import EvaluationResult, evaluate, load_holdout
from tasks.prepare import PREPARED_FILE, PrepareSummary, prepare, read_prepared
from tasks.register import (
    CHALLENGER,
    GateDecision,
    RegisteredVersion,
    log_pyfunc,
    promote_if_better,
    register_version,
    registered_model_name,
    rescore_on_holdout,
)
from tasks.tracking import lineage_tags, log_history, model_run, pipeline_run
from tasks.train import TrainResult, check_model_names, parallel_trainings, train_in_subprocess
from trainyard.config import Params
from trainyard.environment import ProjectPaths, artifact_root

TRAINING_SUMMARY = "training.json"


@dataclass
class TrainedModel:
    """A trained model and the MLflow run that records it."""

    result: TrainResult
    run_id: str


@dataclass
class PipelineResult:
    """Everything one pipeline run produced."""

    prepare: PrepareSummary
    prepare_cached: bool
    evaluation: EvaluationResult
    trained: list[TrainedModel]
    run_id: str
    versions: list[RegisteredVersion] = field(default_factory=list)
    decision: GateDecision | None = None


def prepare_step(params: Params, paths: ProjectPaths) -> PrepareSummary:
    """Returns the summary of validating and preparing the configured dataset."""
    return prepare(params, paths.root, paths.prepared)


def train_step(
    name: str,
    summary: PrepareSummary,
    params: Params,
    paths: ProjectPaths,
    parent_run_id: str,
    progress_queue: Any = None,
) -> TrainedModel:
    """Returns model `name` trained in its own process and tracked in a nested MLflow run."""
    tags = lineage_tags(summary, params, paths.root)
    with model_run(parent_run_id, name, tags) as run_id:
        result = train_in_subprocess(
            name, Path(summary.path), params, paths.models, progress_queue, torch_threads(params)
        )
        mlflow.log_params({f"model.{key}": str(value) for key, value in result.hparams.items()})
        mlflow.log_params({"model.kind": name, "model.n_parameters": result.n_parameters})
        log_history(run_id, result.history)
        mlflow.log_metrics(
            {
                "best/val_loss": result.best_val_loss,
                "train/epochs": result.epochs,
                "train/seconds": result.seconds,
            }
        )
    return TrainedModel(result, run_id)


def torch_threads(params: Params) -> int:
    """Returns the torch threads each training process gets: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // parallel_trainings(params))


def for_each_model(params: Params, train_one: Callable[[str], Any]) -> list[Any]:
    """Returns train_one(name) for every configured model, up to train.parallel at once; it
    waits for all of them even when one fails, then raises that failure."""
    with ThreadPoolExecutor(max_workers=parallel_trainings(params)) as pool:
        futures = [pool.submit(train_one, name) for name in params.train.models]
        return [future.result() for future in futures]


def train_all(
    summary: PrepareSummary,
    params: Params,
    paths: ProjectPaths,
    parent_run_id: str,
    progress_queue: Any = None,
) -> list[TrainedModel]:
    """Returns every configured model trained and tracked in its own nested MLflow run."""
    forget_training_summary(paths)
    return for_each_model(
        params,
        lambda name: train_step(name, summary, params, paths, parent_run_id, progress_queue),
    )


def train_untracked(
    params: Params, paths: ProjectPaths, progress_queue: Any = None
) -> list[TrainResult]:
    """Returns every configured model trained from data/prepared, with no MLflow tracking
    (the DVC `train` stage)."""
    prepared = paths.prepared / PREPARED_FILE
    forget_training_summary(paths)
    return for_each_model(
        params,
        lambda name: train_in_subprocess(
            name, prepared, params, paths.models, progress_queue, torch_threads(params)
        ),
    )


def forget_training_summary(paths: ProjectPaths) -> None:
    """Removes data/models/training.json, so a failed training leaves no summary that points
    at a mix of old and new models (evaluation then asks for training)."""
    (paths.models / TRAINING_SUMMARY).unlink(missing_ok=True)


def write_training_summary(trained: list[TrainResult], paths: ProjectPaths) -> None:
    """Writes data/models/training.json: what each model's training did (model folders are
    stored by name, so the file stays valid wherever the project is checked out)."""
    paths.models.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(result), "model_dir": result.name} for result in trained]
    (paths.models / TRAINING_SUMMARY).write_text(json.dumps(rows, indent=2))


def read_training_summary(paths: ProjectPaths) -> list[TrainResult]:
    """Returns the training results written by write_training_summary."""
    path = paths.models / TRAINING_SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained models; run `trainyard train` first")
    rows = json.loads(path.read_text())
    return [TrainResult(**{**row, "model_dir": str(paths.models / row["name"])}) for row in rows]


def evaluate_step(
    summary: PrepareSummary,
    trained: list[TrainedModel],
    params: Params,
    paths: ProjectPaths,
    parent_run_id: str,
) -> EvaluationResult:
    """Returns holdout scores; logs them to each model's run and reports to the pipeline run."""
    result = evaluate(
        Path(summary.path),
        {model.result.name: Path(model.result.model_dir) for model in trained},
        params,
        paths.reports,
        {model.result.name: model.result.history for model in trained},
    )
    client = MlflowClient()
    now = int(time.time() * 1000)
    for model in trained:
        scores = result.metrics[model.result.name]
        client.log_batch(
            model.run_id, metrics=[Metric(f"holdout/{k}", v, now, 0) for k, v in scores.items()]
        )
    client.log_batch(
        parent_run_id,
        metrics=[
            Metric(f"holdout/{name}/{key}", value, now, 0)
            for name, scores in result.metrics.items()
            for key, value in scores.items()
        ],
    )
    client.log_artifacts(parent_run_id, result.report_dir, artifact_path="reports")
    return result


def input_example(summary: PrepareSummary, params: Params) -> pd.DataFrame:
    """Returns a small history in the input table's format, for the pyfunc signature."""
    spec = params.dataset
    table, _ = read_prepared(Path(summary.path))
    first = table[table["series_id"] == table["series_id"].iloc[0]]
    first = first[first[spec.target].notna()].tail(params.windows.encoder_length)
    return first[spec.columns].reset_index(drop=True)


def register_step(
    trained: list[TrainedModel],
    evaluation: EvaluationResult,
    summary: PrepareSummary,
    params: Params,
    paths: ProjectPaths,
) -> tuple[list[RegisteredVersion], GateDecision]:
    """Returns the versions registered (alias challenger on this run's best) and the champion
    gate's decision. If any registration fails, this run's versions are deleted again."""
    metric = params.register.metric
    name = registered_model_name(params)
    tags = lineage_tags(summary, params, paths.root)
    example = input_example(summary, params)
    client = MlflowClient()
    versions: list[RegisteredVersion] = []
    try:
        for model in trained:
            kind = model.result.name
            uri = log_pyfunc(model.run_id, kind, Path(model.result.model_dir), params, example)
            value = evaluation.metrics[kind][metric]
            versions.append(register_version(uri, name, kind, model.run_id, value, params, tags))
        best = min(versions, key=lambda version: version.metric)
        client.set_registered_model_alias(name, CHALLENGER, best.version)
        decision = promote_if_better(
            client,
            best,
            params,
            tags["holdout_key"],
            evaluation.metrics["seasonal_naive"][metric],
            paths.state / "registry.lock",
            rescore=lambda champion: rescore_on_holdout(
                champion, load_holdout(Path(summary.path), params), params
            ),
        )
    except BaseException:
        for version in versions:
            client.delete_model_version(version.name, version.version)
        raise
    return versions, decision


def run_pipeline(
    params: Params,
    paths: ProjectPaths,
    progress_queue: Any = None,
    on_prepared: Callable[[PrepareSummary], None] | None = None,
) -> PipelineResult:
    """Returns the result of the whole pipeline run without an orchestrator."""
    check_model_names(params)
    summary = prepare_step(params, paths)
    if on_prepared:
        on_prepared(summary)
    with pipeline_run(params, summary, paths.root, artifact_root(paths)) as run_id:
        trained = train_all(summary, params, paths, run_id, progress_queue)
        write_training_summary([model.result for model in trained], paths)
        evaluation = evaluate_step(summary, trained, params, paths, run_id)
        result = PipelineResult(summary, False, evaluation, trained, run_id)
        if params.register.enabled:
            result.versions, result.decision = register_step(
                trained, evaluation, summary, params, paths
            )
    return result
