"""The forecasting pipeline as a Prefect flow: the steps of tasks/pipeline.py, orchestrated."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import pipeline
from tasks.prepare import PrepareSummary, is_current, prepare_input_key
from tasks.tracking import pipeline_run
from tasks.train import check_model_names, parallel_trainings
from trainyard.config import Params
from trainyard.environment import ProjectPaths, artifact_root

# Set by run_forecast_flow: a queue is no flow parameter (Prefect stores parameters as JSON).
_progress_queue: Any = None


def _retry_io_errors(task, task_run, state) -> bool:
    """Retries transient failures, never bad input: that needs the user, not another try.

    Every user-facing error (DataValidationError, DatasetError, ConfigError) is a ValueError.
    """
    try:
        state.result()
    except ValueError:
        return False
    except Exception:
        return True
    return False


@task(
    name="prepare",
    # input_key covers the params prepare reads, the data and the prepare code; the rest of
    # params (training, evaluation) must not invalidate the cache.
    cache_policy=(INPUTS - "params") + TASK_SOURCE,
    persist_result=True,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_io_errors,
)
def prepare_task(params: Params, paths: ProjectPaths, input_key: str) -> PrepareSummary:
    """Returns the prepare summary; cached across runs by `input_key` (the data's hash)."""
    return pipeline.prepare_step(params, paths)


# Training is not retried: a failure there is a bug or bad params, and costs minutes.
train_task = task(pipeline.train_step, name="train", cache_policy=NO_CACHE)
# Evaluate and register read and write MLflow and files: retry those failures, not bad input.
IO_RETRIES = {
    "cache_policy": NO_CACHE,
    "retry_delay_seconds": 2,
    "retry_condition_fn": _retry_io_errors,
}
evaluate_task = task(pipeline.evaluate_step, name="evaluate", retries=1, **IO_RETRIES)
register_task = task(pipeline.register_step, name="register", retries=2, **IO_RETRIES)


@flow(name="forecast")
def forecast_flow(params: Params, paths: ProjectPaths) -> pipeline.PipelineResult:
    """Prepares, trains (concurrently), evaluates and registers the configured forecasters."""
    check_model_names(params)
    key = prepare_input_key(params, paths.root)
    state = prepare_task(params, paths, key, return_state=True)
    summary = state.result()
    cached = state.name == "Cached"
    if cached and not is_current(summary):
        summary = prepare_task.with_options(refresh_cache=True)(params, paths, key)
        cached = False
    with pipeline_run(params, summary, paths.root, artifact_root(paths)) as run_id:
        pipeline.forget_training_summary(paths)
        futures = [
            train_task.submit(name, summary, params, paths, run_id, _progress_queue)
            for name in params.train.models
        ]
        wait(futures)  # a failed model must not leave the others running past the flow
        trained = [future.result() for future in futures]
        pipeline.write_training_summary([model.result for model in trained], paths)
        evaluation = evaluate_task(summary, trained, params, paths, run_id)
        result = pipeline.PipelineResult(summary, cached, evaluation, trained, run_id)
        if params.register.enabled:
            result.versions, result.decision = register_task(
                trained, evaluation, summary, params, paths
            )
    return result


def run_forecast_flow(
    params: Params, paths: ProjectPaths, progress_queue: Any = None
) -> pipeline.PipelineResult:
    """Returns the flow's result, training up to train.parallel models at once."""
    global _progress_queue
    _progress_queue = progress_queue
    try:
        runner = ThreadPoolTaskRunner(max_workers=parallel_trainings(params))
        return forecast_flow.with_options(task_runner=runner)(params, paths)
    finally:
        _progress_queue = None
