"""One Prefect flow per family, built from the shared steps of tasks/pipeline.py.

Retries, caching and concurrency are declared here, on the task wrappers, once for every
family. A family's own flow module is one line: `family_flow(FAMILY)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import threading
from typing import TYPE_CHECKING

from prefect import Flow, flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from trainyard.config import FamilySection, RegisterConfig
from trainyard.environment import ProjectPaths, artifact_root
from trainyard.errors import is_transient
from trainyard.progress import training_progress
from trainyard.tasks import pipeline
from trainyard.tasks.families import get_family
from trainyard.tasks.family import Family
from trainyard.tasks.tracking import pipeline_run
from trainyard.tasks.training import forget_training_summary, parallel_trainings

if TYPE_CHECKING:
    from distributed import LocalCluster


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
# Not retried: a retry after a failure half-way would track a derived model twice.
derive_task = task(pipeline.derive_step, name="derive", cache_policy=NO_CACHE)
register_task = task(pipeline.register_step, name="register", retries=2, **IO_RETRIES)


def _prepared(family: Family, stored: dict):
    """Returns the family's summary object rebuilt from the prepare task's JSON result."""
    fields = {k: v for k, v in stored.items() if k not in ("type", "stats", "description")}
    return family.prepared_type(**fields)


@dataclasses.dataclass(frozen=True)
class DaskCluster:
    """Where the trainings run on Dask (`trainyard run --runner dask`)."""

    # A running scheduler, e.g. tcp://10.0.0.5:8786; None: a LocalCluster started for each
    # family's run and closed after it.
    address: str | None = None
    workers: int = 2  # the LocalCluster's worker processes, one thread each


def task_runner(dask: DaskCluster | None = None) -> TaskRunner:
    """Returns the runner of a family flow's tasks: threads of this process, or Dask."""
    if dask is None:
        return ThreadPoolTaskRunner(max_workers=os.cpu_count() or 1)
    from prefect_dask import DaskTaskRunner  # imports distributed: only when asked for

    if dask.address:
        return DaskTaskRunner(address=dask.address)
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs={"n_workers": dask.workers})


def local_cluster(n_workers: int) -> LocalCluster:
    """Returns a LocalCluster of `n_workers` single-threaded worker processes that report to
    this run's Prefect server and may start the processes models train in."""
    import dask
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO is not for users
    # A daemonic process may not start children, and Dask workers are daemonic by default.
    # The nanny reads this each time it (re)starts a worker, so it is set for the process.
    # Nobody reads the workers' profiles; sampling them costs ~5% of a core per training.
    dask.config.set(
        {"distributed.worker.daemon": False, "distributed.worker.profile.enabled": False}
    )
    # Without PREFECT_API_URL each worker would start an ephemeral Prefect server of its own;
    # MLflow's INFO lines (system metrics started/stopped) would reach the terminal.
    api = str(get_client(sync_client=True).api_url)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"PREFECT_API_URL": api, "MLFLOW_LOGGING_LEVEL": "WARNING"},
    )


def family_flow(family: Family, dask: DaskCluster | None = None) -> Flow:
    """Returns the Prefect flow that runs `family`'s pipeline, its trainings on Dask with
    `dask`, else in threads of this process."""

    @flow(name=family.name, task_runner=task_runner(dask), validate_parameters=False)
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
        family.check_prepared(prepared, params)
        models_dir = paths.family(family.name).models
        with pipeline_run(
            family, params, register, prepared, paths.root, artifact_root(paths)
        ) as run_id:
            forget_training_summary(models_dir)
            try:
                # The progress queue and the bound on trainings at once reach only tasks in
                # this process; Dask runs as many at once as it has worker threads.
                if dask is None:
                    slots = threading.BoundedSemaphore(parallel_trainings(params))
                    progress = training_progress()
                else:
                    slots, progress = None, contextlib.nullcontext(pipeline.DiscardProgress())
                with progress as queue:
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
                trained += derive_task(family, evaluation, prepared, params, paths, run_id)
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
