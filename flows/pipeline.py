"""The whole pipeline: the chosen families' flows, one after the other, as subflows."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from trainyard.config import FamilySection, RegisterConfig
from trainyard.environment import (
    ProjectPaths,
    check_servers,
    configure_environment,
    find_project_root,
    quiet_libraries,
)
from trainyard.flows.family import family_flow
from trainyard.tasks.families import get_family, load_sections, load_shared
from trainyard.tasks.pipeline import FamilyResult


@flow(name="trainyard", validate_parameters=False)
def pipeline_flow(
    sections: dict[str, FamilySection], register: RegisterConfig, paths: ProjectPaths
) -> list[FamilyResult]:
    """Runs each family's flow in order; the families share the cores one at a time."""
    return [
        family_flow(get_family(name))(params, register, paths) for name, params in sections.items()
    ]


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
