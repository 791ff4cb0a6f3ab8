"""The whole pipeline: the chosen families' flows, one after the other, as subflows."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from urllib.parse import urlparse

from prefect import flow

from trainyard.config import ConfigError, FamilySection, RegisterConfig
from trainyard.environment import (
    SERVER_PROBE_TIMEOUT_S,
    ProjectPaths,
    check_servers,
    configure_environment,
    find_project_root,
    quiet_libraries,
)
from trainyard.flows.family import DaskCluster, family_flow
from trainyard.tasks.families import get_family, load_sections, load_shared
from trainyard.tasks.pipeline import FamilyResult


@flow(name="trainyard", validate_parameters=False)
def pipeline_flow(
    sections: dict[str, FamilySection],
    register: RegisterConfig,
    paths: ProjectPaths,
    dask: DaskCluster | None = None,
) -> list[FamilyResult]:
    """Runs each family's flow in order; the families share the cores (or, with `dask`, the
    Dask workers) one at a time."""
    return [
        family_flow(get_family(name), dask)(params, register, paths)
        for name, params in sections.items()
    ]


def check_dask_cluster(dask: DaskCluster, paths: ProjectPaths) -> None:
    """Raises ConfigError, before anything is written, when the trainings cannot run on the
    Dask cluster at `dask.address`: the run's stores are local to this machine, no scheduler
    answers (one probe with a short timeout), it has no workers, or a worker cannot start a
    training process, does not see the project or would log and write elsewhere. A
    LocalCluster needs no check: its workers inherit this process's environment."""
    if dask.address is None:
        return
    where = f"--dask-address {dask.address}"
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    servers = "(`trainyard server up --host 0.0.0.0` starts Prefect and MLflow servers)"
    if urlparse(tracking).scheme in ("", "file", "sqlite"):
        raise ConfigError(
            f"{where}: MLFLOW_TRACKING_URI={tracking} is a store on this machine, which the "
            "Dask workers cannot log to. Set MLFLOW_TRACKING_URI to a tracking server they "
            f"reach {servers}, or leave --dask-address out to train on a LocalCluster here"
        )
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            f"{where}: the Dask workers report their task runs to Prefect, and an ephemeral "
            "server lives only inside this run. Set PREFECT_API_URL to a Prefect server they "
            f"reach {servers}, or leave --dask-address out"
        )
    from distributed import Client

    try:
        client = Client(dask.address, timeout=SERVER_PROBE_TIMEOUT_S)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{where}: no Dask scheduler answers ({error}). Start one (`dask scheduler`, then "
            "`dask worker ADDRESS` on each machine), fix the address, or leave --dask-address "
            "out to train on a LocalCluster here"
        ) from None
    with client:
        try:
            problems = client.run(worker_problem, str(paths.root), str(paths.state), tracking)
        except Exception as error:  # noqa: BLE001 - a worker's error arrives as Exception
            raise ConfigError(
                f"{where}: a worker cannot run trainyard ({error}); install it where the "
                "workers run, as here"
            ) from None
    if not problems:
        raise ConfigError(f"{where}: the scheduler has no workers; start some (`dask worker`)")
    for worker, problem in problems.items():
        if problem:
            raise ConfigError(f"{where}: worker {worker} {problem}")


def worker_problem(root: str, state: str, tracking: str) -> str | None:
    """Returns why this Dask worker cannot train the project at `root` for a run whose state
    directory is `state` and whose MLflow store is `tracking` (None: it can)."""
    if multiprocessing.current_process().daemon:
        return (
            "is a daemonic process, which may not start the process a model trains in: "
            "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
        )
    if not (Path(root) / "params.yaml").exists():
        return f"does not see the project at {root}: it must be on a filesystem they share"
    if os.environ.get("MLFLOW_TRACKING_URI") != tracking:
        theirs = os.environ.get("MLFLOW_TRACKING_URI", "unset")
        return f"has MLFLOW_TRACKING_URI={theirs}: start the workers with this run's, {tracking}"
    if str(ProjectPaths(Path(root)).state) != state:
        return (
            f"keeps run folders in {ProjectPaths(Path(root)).state}, not {state}: start the "
            f"workers with TRAINYARD_STATE_DIR={state}"
        )
    return None


def load_pipeline_config(
    params_file: Path, profile: str | None, families: list[str] | None
) -> tuple[dict[str, FamilySection], RegisterConfig]:
    """Returns the families' sections (default: run.families) and `register:` of a params
    file, a profile's overrides applied."""
    run, register = load_shared(params_file, profile)
    return load_sections(params_file, profile, families or run.families), register


@flow(name="trainyard-from-params")
def pipeline_from_params(
    families: list[str] | None = None,
    profile: str | None = None,
    params_file: str = "params.yaml",
) -> list[dict[str, object]]:
    """Returns per family the gate metric's best model, registered versions and gate verdict.

    What a deployment runs: its parameters are plain JSON, and the params file (relative to
    the working directory) is read when the run starts, so a scheduled run uses it as it is
    then. Prefect and MLflow come from the environment, as for `trainyard run`.
    """
    path = Path(params_file).resolve()
    sections, register = load_pipeline_config(path, profile, families)
    paths = ProjectPaths(find_project_root(path.parent))
    quiet_libraries()
    configure_environment(paths)
    check_servers(prefect=False)  # this run already talks to its Prefect server
    return [
        {
            "family": result.family,
            "metric": result.metric,
            "best_model": result.evaluation.best_model(result.metric),
            "registered": {version.model: version.version for version in result.versions},
            "gate": result.decision.reason if result.decision else None,
        }
        for result in pipeline_flow(sections, register, paths)
    ]
