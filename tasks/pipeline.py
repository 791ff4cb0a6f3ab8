"""The pipeline every family shares, as plain Python: prepare -> train -> evaluate -> register.

Each step is a function the Prefect flows wrap as a task (flows/family.py); `run_family`
chains the same functions without Prefect (`trainyard run --no-orchestrator`, tests). Nothing
here asks which family it runs: it calls the `Family` interface.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from trainyard.config import FamilySection, RegisterConfig, StageGate
from trainyard.data_versions import remote_for_lineage
from trainyard.environment import ProjectPaths, artifact_root
from trainyard.errors import DivergedError
from trainyard.progress import training_progress
from trainyard.tasks.family import EvaluationResult, Family, Prepared, TrainResult
from trainyard.tasks.promotion import (
    GateDecision,
    GateRule,
    Promotion,
    Scorer,
    promote,
    record_challenger,
    scorer,
)
from trainyard.tasks.registry import (
    CHALLENGER,
    REGISTRATION_TAG,
    RegisteredVersion,
    current_alias,
    log_pyfunc,
    metric_tag,
    register_version,
    registered_model_name,
    rescore_registered,
    restore_after_failure,
)
from trainyard.tasks.tracking import (
    library_versions,
    lineage_tags,
    log_history,
    model_run,
    pipeline_run,
)
from trainyard.tasks.training import (
    check_model_names,
    forget_training_summary,
    parallel_trainings,
    resume_dir,
    torch_threads,
    train_in_subprocess,
    write_training_summary,
)

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained model and the MLflow run that records it."""

    result: TrainResult
    run_id: str


@dataclass
class FamilyResult:
    """Everything one family's pipeline run produced."""

    family: str
    metric: str  # the gate metric
    prepared: Prepared
    prepare_cached: bool
    evaluation: EvaluationResult
    trained: list[TrainedModel]
    run_id: str
    versions: list[RegisteredVersion] = field(default_factory=list)
    decision: GateDecision | None = None


def check_step(family: Family, params: FamilySection) -> None:
    """Raises ConfigError for params no data can fix, before anything is written."""
    check_model_names(family, params)
    family.check(params)


def prepare_step(family: Family, params: FamilySection, paths: ProjectPaths) -> Prepared:
    """Returns what the family's prepare step wrote under data/<family>/prepared."""
    return family.prepare(params, paths.root, paths.family(family.name).prepared)


class DiscardProgress:
    """A progress queue nobody reads, for trainings away from this process (Dask): it also
    keeps Lightning's own bars off, which worker processes would draw over one another."""

    def put(self, item: object) -> None:
        """Drops the progress report."""


def train_step(
    family: Family,
    name: str,
    prepared: Prepared,
    params: FamilySection,
    paths: ProjectPaths,
    parent_run_id: str,
    progress_queue: Any = None,
    slots: threading.Semaphore | None = None,
) -> TrainedModel:
    """Returns model `name` trained in its own process and tracked in a nested MLflow run;
    `slots` bounds how many train at once. On a Dask worker the run is tagged with its
    address (`dask_worker`)."""
    tags = lineage_tags(family, prepared, params, paths.root)
    worker = dask_worker()
    if worker:
        tags["dask_worker"] = worker
    with slots or contextlib.nullcontext(), model_run(parent_run_id, name, tags) as run_id:
        result = train_in_subprocess(
            family,
            name,
            Path(prepared.path),
            params,
            run_models_dir(paths, family, parent_run_id),
            progress_queue,
            torch_threads(params),
            resume_dir(paths.state, family, name, prepared.md5, params),
        )
        log_training(result, run_id)
    return TrainedModel(result, run_id)


def log_training(result: TrainResult, run_id: str) -> None:
    """Logs what training (or deriving) one model did to its active run."""
    mlflow.log_params({f"model.{key}": str(value) for key, value in result.hparams.items()})
    mlflow.log_params(
        {
            "model.kind": result.name,
            "model.n_parameters": result.n_parameters,
            "train.processes": result.processes,
        }
    )
    log_history(run_id, result.history)
    metrics = {
        "train/epochs": result.epochs,
        "train/seconds": result.seconds,
        "train/resumed_from_step": result.resumed_from_step,
    }
    if result.monitor:
        metrics[f"best/{result.monitor.replace('/', '_')}"] = result.best_score
    mlflow.log_metrics(metrics)


def derive_step(
    family: Family,
    evaluation: EvaluationResult,
    prepared: Prepared,
    params: FamilySection,
    paths: ProjectPaths,
    parent_run_id: str,
) -> list[TrainedModel]:
    """Returns the models the evaluation derived (an ensemble), each tracked in a nested run
    like a trained model, so that it is registered and gated like one."""
    tags = lineage_tags(family, prepared, params, paths.root)
    derived = []
    for result in evaluation.derived:
        with model_run(parent_run_id, result.name, tags, system_metrics=False) as run_id:
            log_training(result, run_id)
        derived.append(TrainedModel(result, run_id))
    return derived


def dask_worker() -> str | None:
    """Returns the address of the Dask worker running this code (None: not on Dask)."""
    if "distributed" not in sys.modules:  # never imported here: surely not a Dask worker
        return None
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return None


def run_models_dir(paths: ProjectPaths, family: Family, run_id: str) -> Path:
    """Returns where one pipeline run trains its models: its own folder, so runs at once in
    one project never register each other's weights."""
    return paths.run(run_id, family.name) / "models"


def publish_models(trained: list[TrainedModel], models_dir: Path) -> None:
    """Copies a finished run's models into data/<family>/models (the DVC output), each
    folder swapped in whole, points the results at those copies, and writes training.json
    beside them."""
    models_dir.mkdir(parents=True, exist_ok=True)
    for model in trained:
        name = model.result.name
        staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{name}-new-"))
        shutil.copytree(model.result.model_dir, staging, dirs_exist_ok=True)
        final = models_dir / name
        if final.exists():
            retired = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{name}-old-"))
            os.replace(final, retired / name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
        model.result.model_dir = str(final)  # the run's own folder is removed next
    write_training_summary([model.result for model in trained], models_dir)


def for_each_model(params: FamilySection, train_one: Callable[[str], Any]) -> list[Any]:
    """Returns train_one(name) for every configured model that trained, up to train.parallel
    at once. It waits for all of them even when one fails; a model that diverged is dropped
    (the others go on), any other failure is raised."""
    with ThreadPoolExecutor(max_workers=parallel_trainings(params)) as pool:
        futures = {name: pool.submit(train_one, name) for name in params.train.models}
        return keep_trained({name: _outcome(future.result) for name, future in futures.items()})


def _outcome(result: Callable[[], Any]) -> Any:
    try:
        return result()
    except Exception as error:  # noqa: BLE001 - sorted by keep_trained
        return error


def keep_trained(outcomes: dict[str, Any]) -> list[Any]:
    """Returns the models that trained, from each model's result or exception.

    A model that diverged (DivergedError) is dropped with a warning: it is never evaluated,
    checkpointed or registered, and the others go on. Any other failure is raised, and so is
    a DivergedError naming every model when none trained.
    """
    failures = {n: o for n, o in outcomes.items() if isinstance(o, BaseException)}
    for error in failures.values():
        if not isinstance(error, DivergedError):
            raise error
    trained = [o for o in outcomes.values() if not isinstance(o, BaseException)]
    if not trained:
        raise DivergedError("every model diverged: " + "; ".join(map(str, failures.values())))
    for error in failures.values():
        log.warning("%s; it is dropped, the other models go on", error)
    return trained


def train_untracked(
    family: Family, params: FamilySection, paths: ProjectPaths, progress_queue: Any = None
) -> list[TrainResult]:
    """Returns every configured model trained from data/<family>/prepared, with no MLflow
    tracking (the DVC `train` stage)."""
    folders = paths.family(family.name)
    prepared = family.prepared(params, folders.prepared)
    family.check_prepared(prepared, params)
    forget_training_summary(folders.models)
    results = for_each_model(
        params,
        lambda name: train_in_subprocess(
            family,
            name,
            Path(prepared.path),
            params,
            folders.models,
            progress_queue,
            torch_threads(params),
        ),
    )
    write_training_summary(results, folders.models)
    return results


def evaluate_step(
    family: Family,
    prepared: Prepared,
    trained: list[TrainedModel],
    params: FamilySection,
    paths: ProjectPaths,
) -> EvaluationResult:
    """Returns the scores of every trained model and baseline on the family's evaluation set;
    writes the reports to data/<family>/reports."""
    return family.evaluate(
        prepared,
        {model.result.name: Path(model.result.model_dir) for model in trained},
        params,
        paths.family(family.name).reports,
        {model.result.name: model.result.history for model in trained},
    )


def log_evaluation_step(
    evaluation: EvaluationResult, trained: list[TrainedModel], parent_run_id: str
) -> None:
    """Logs evaluation scores to each model's run and the pipeline run, and the reports.

    Safe to retry: a metric a run already holds is not logged again.
    """
    client = MlflowClient()
    now = int(time.time() * 1000)

    def log_missing(run_id: str, values: dict[str, float]) -> None:
        have = client.get_run(run_id).data.metrics
        metrics = [Metric(k, v, now, 0) for k, v in values.items() if k not in have]
        if metrics:
            client.log_batch(run_id, metrics=metrics)

    for model in trained:
        scores = evaluation.metrics[model.result.name]
        chosen_on = evaluation.selection.get(model.result.name, {})
        log_missing(
            model.run_id,
            {
                **{f"eval/{key}": value for key, value in scores.items()},
                **{f"select/{key}": value for key, value in chosen_on.items()},
            },
        )
    log_missing(
        parent_run_id,
        {
            f"eval/{name}/{key}": value
            for name, scores in evaluation.metrics.items()
            for key, value in scores.items()
        },
    )
    client.log_artifacts(parent_run_id, evaluation.report_dir, artifact_path="reports")


def run_lineage(
    family: Family,
    evaluation: EvaluationResult,
    prepared: Prepared,
    params: FamilySection,
    paths: ProjectPaths,
    context: dict[str, str],
) -> dict[str, str]:
    """Returns the lineage every version of one run shares: code, data, params, libraries,
    the DVC remote, the evaluation set and its best baseline."""
    metric = params.evaluate.metric
    baseline = evaluation.best_baseline(metric)
    return {
        **lineage_tags(family, prepared, params, paths.root),
        "params": json.dumps(params.to_dict(), sort_keys=True),
        "libraries": json.dumps(library_versions(), sort_keys=True),
        "dvc_remote": remote_for_lineage(paths.root),
        "gate_metric": metric,
        "best_baseline": baseline,
        "best_baseline_value": str(evaluation.metrics[baseline][metric]),
        **context,
    }


def model_lineage(model: TrainedModel, evaluation: EvaluationResult) -> dict[str, str]:
    """Returns what one model's version adds: its run, its scores, whether its loss stayed
    finite."""
    losses = [row[key] for row in model.result.history for key in row if key.endswith("/loss")]
    return {
        "mlflow_run_id": model.run_id,
        "train_finite": str(all(math.isfinite(loss) for loss in losses)).lower(),
        **{metric_tag(k): str(v) for k, v in evaluation.metrics[model.result.name].items()},
    }


def register_step(
    family: Family,
    trained: list[TrainedModel],
    evaluation: EvaluationResult,
    prepared: Prepared,
    params: FamilySection,
    paths: ProjectPaths,
    register: RegisterConfig | None = None,
    context: dict[str, str] | None = None,
) -> tuple[list[RegisteredVersion], GateDecision]:
    """Returns the versions registered (alias challenger on this run's best) and the gate's
    decision on promoting it into the first stage. If anything fails, this run's versions
    are deleted and `challenger` goes back to the version that held it; the original error is
    raised. `context` (e.g. the orchestrator's flow run id) is added to every version's tags."""
    register = register or RegisterConfig()
    context = dict(context or {})
    metric = params.evaluate.metric
    higher = family.higher_is_better(params)
    name = registered_model_name(family, family.label(params))
    client = MlflowClient()
    previous = current_alias(client, name, CHALLENGER) if _exists(client, name) else None
    versions: list[RegisteredVersion] = []
    shared = run_lineage(family, evaluation, prepared, params, paths, context)
    try:
        for model in trained:
            kind, model_dir = model.result.name, Path(model.result.model_dir)
            spec = family.pyfunc(kind, model_dir, prepared, params)
            uri, digests = log_pyfunc(model.run_id, family, spec)
            value = evaluation.metrics[kind][metric]
            tags = {
                **shared,
                **model_lineage(model, evaluation),
                "artifact_digests": json.dumps(digests, sort_keys=True),
            }
            versions.append(register_version(uri, name, kind, model.run_id, metric, value, tags))
        for version in versions:  # a version without this tag is from an unfinished run
            client.set_model_version_tag(name, version.version, REGISTRATION_TAG, "complete")
        chosen = evaluation.challenger(metric, [model.result.name for model in trained])
        best = versions[[model.result.name for model in trained].index(chosen)]
        evaluation_key = shared["evaluation_key"]
        audit = {"data_version": prepared.md5, "evaluation_key": evaluation_key, **context}
        record_challenger(client, name, best.version, audit)
        baseline = shared["best_baseline"]
        rule = GateRule(
            metric, higher, evaluation_key, baseline, evaluation.metrics[baseline][metric]
        )
        stage = register.stages[0]
        decision = promote(
            client,
            Promotion(
                name,
                best.version,
                stage,
                rule,
                params.gate.get(stage, StageGate()),
                reason="pipeline gate",
                context=context,
            ),
            scorer(rule, lambda version: rescore_version(family, version, prepared, params)),
        )
    except BaseException:
        restore_after_failure(client, versions, name, str(previous.version) if previous else None)
        raise
    return versions, decision


def rescore_version(
    family: Family, version: ModelVersion, prepared: Prepared, params: FamilySection
) -> float | None:
    """Returns a registered version's gate metric on this run's evaluation set (None: it
    cannot be scored there); nothing from the registry runs as code."""
    return rescore_registered(
        version,
        family,
        lambda config, artifacts: family.rescore(config, artifacts, prepared, params),
    )


def current_gate(
    family: Family, params: FamilySection, paths: ProjectPaths, candidate: ModelVersion
) -> tuple[GateRule, Scorer]:
    """Returns the gate rule and scorer on the family's current evaluation set (the prepared
    data on disk), for promotions outside a pipeline run.

    The best baseline is known only when the candidate was evaluated on this same set.
    """
    prepared = family.prepared(params, paths.family(family.name).prepared)
    metric = params.evaluate.metric
    key = family.evaluation_key(prepared, params)
    baseline, value = None, None
    tags = candidate.tags
    if tags.get("evaluation_key") == key and "best_baseline" in tags:
        baseline, value = tags["best_baseline"], float(tags["best_baseline_value"])
    rule = GateRule(metric, family.higher_is_better(params), key, baseline, value)
    return rule, scorer(rule, lambda version: rescore_version(family, version, prepared, params))


def _exists(client: MlflowClient, name: str) -> bool:
    return bool(client.search_registered_models(filter_string=f"name = '{name}'"))


def run_family(
    family: Family,
    params: FamilySection,
    register: RegisterConfig,
    paths: ProjectPaths,
    on_prepared: Callable[[Prepared], None] | None = None,
) -> FamilyResult:
    """Returns the result of one family's whole pipeline run, without an orchestrator."""
    check_step(family, params)
    prepared = prepare_step(family, params, paths)
    if on_prepared:
        on_prepared(prepared)
    family.check_prepared(prepared, params)
    models_dir = paths.family(family.name).models
    with pipeline_run(
        family, params, register, prepared, paths.root, artifact_root(paths)
    ) as run_id:
        forget_training_summary(models_dir)
        try:
            with training_progress() as queue:
                trained = for_each_model(
                    params,
                    lambda name: train_step(family, name, prepared, params, paths, run_id, queue),
                )
            evaluation = evaluate_step(family, prepared, trained, params, paths)
            trained += derive_step(family, evaluation, prepared, params, paths, run_id)
            log_evaluation_step(evaluation, trained, run_id)
            result = FamilyResult(
                family.name, params.evaluate.metric, prepared, False, evaluation, trained, run_id
            )
            if register.enabled:
                result.versions, result.decision = register_step(
                    family, trained, evaluation, prepared, params, paths, register
                )
            publish_models(trained, models_dir)
        finally:
            shutil.rmtree(paths.run(run_id, family.name), ignore_errors=True)
    return result
