"""One Prefect flow per family, built from the shared steps of tasks/pipeline.py.

Retries, caching and concurrency are declared here, on the task wrappers, once for every
family. A family's own flow module is one line: `family_flow(FAMILY)`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading

from prefect import Flow, flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from trainyard.config import FamilySection, RegisterConfig
from trainyard.environment import ProjectPaths, artifact_root
from trainyard.errors import is_transient
from trainyard.progress import training_progress
from trainyard.tasks import pipeline
from trainyard.tasks.families import get_family
from trainyard.tasks.family import Family
from trainyard.tasks.tracking import pipeline_run
from trainyard.tasks.training import forget_training_summary, parallel_trainings


def _retry_transient(task, task_run, state) -> bool:
    """Retries passing I/O and network faults only: never bad input, never a bug."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - classified, not swallowed
        return is_transient(error)
    return False


IO_RETRIES = {
    "cache_policy": NO_CACHE,
    "retry_delay_seconds": [2, 5, 10],
    "retry_condition_fn": _retry_transient,
}


@task(
    name="prepare",
    # input_key covers the params prepare reads, the raw data and the family's prepare code;
    # the rest of params (training, evaluation) must not invalidate the cache. The result is
    # stored as JSON: nothing read back from disk is a pickle.
    cache_policy=(INPUTS - "params") + TASK_SOURCE,
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_transient,
)
def prepare_task(family: str, params: FamilySection, paths: ProjectPaths, input_key: str) -> dict:
    """Returns the prepare summary as a dict; cached across runs by `input_key`."""
    prepared = pipeline.prepare_step(get_family(family), params, paths)
    return {"type": type(prepared).__qualname__, **dataclasses.asdict(prepared)}


# Training is not retried: a failure there is a bug or bad params, and costs minutes.
train_task = task(pipeline.train_step, name="train", cache_policy=NO_CACHE)
evaluate_task = task(pipeline.evaluate_step, name="evaluate", retries=1, **IO_RETRIES)
log_evaluation_task = task(
    pipeline.log_evaluation_step, name="log-evaluation", retries=3, **IO_RETRIES
)
register_task = task(pipeline.register_step, name="register", retries=2, **IO_RETRIES)


def _prepared(family: Family, stored: dict):
    """Returns the family's summary object rebuilt from the prepare task's JSON result."""
    fields = {k: v for k, v in stored.items() if k not in ("type", "stats", "description")}
    return family.prepared_type(**fields)


def family_flow(family: Family) -> Flow:
    """Returns the Prefect flow that runs `family`'s pipeline."""

    @flow(
        name=family.name,
        task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 1),
        validate_parameters=False,
    )
    def run(
        params: FamilySection, register: RegisterConfig, paths: ProjectPaths
    ) -> pipeline.FamilyResult:
        """Prepares, trains (concurrently), evaluates and registers the family's models."""
        pipeline.check_step(family, params)
        key = family.prepare_key(params, paths.root)
        state = prepare_task(family.name, params, paths, key, return_state=True)
        prepared, cached = _prepared(family, state.result()), state.name == "Cached"
        if cached and not family.is_current(prepared):
            fresh = prepare_task.with_options(refresh_cache=True)
            prepared, cached = _prepared(family, fresh(family.name, params, paths, key)), False
        models_dir = paths.family(family.name).models
        with pipeline_run(
            family, params, register, prepared, paths.root, artifact_root(paths)
        ) as run_id:
            forget_training_summary(models_dir)
            try:
                slots = threading.BoundedSemaphore(parallel_trainings(params))
                with training_progress() as queue:
                    futures = [
                        train_task.submit(
                            family, name, prepared, params, paths, run_id, queue, slots
                        )
                        for name in params.train.models
                    ]
                    wait(futures)  # a failed model must not leave others running past the flow
                    trained = pipeline.keep_trained(
                        {
                            name: future.result(raise_on_failure=False)
                            for name, future in zip(params.train.models, futures, strict=True)
                        }
                    )
                evaluation = evaluate_task(family, prepared, trained, params, paths)
                log_evaluation_task(evaluation, trained, run_id)
                result = pipeline.FamilyResult(
                    family.name,
                    params.evaluate.metric,
                    prepared,
                    cached,
                    evaluation,
                    trained,
                    run_id,
                )
                if register.enabled:
                    context = {"prefect_flow_run_id": str(flow_run.get_id())}
                    result.versions, result.decision = register_task(
                        family, trained, evaluation, prepared, params, paths, register, context
                    )
                pipeline.publish_models(trained, models_dir)
            finally:
                shutil.rmtree(paths.run(run_id, family.name), ignore_errors=True)
        return result

    return run
