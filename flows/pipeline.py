"""The whole pipeline: the chosen families' flows, one after the other, as subflows."""

from __future__ import annotations

from prefect import flow

from trainyard.config import FamilySection, RegisterConfig
from trainyard.environment import ProjectPaths
from trainyard.flows.family import family_flow
from trainyard.tasks.families import get_family
from trainyard.tasks.pipeline import FamilyResult


@flow(name="trainyard", validate_parameters=False)
def pipeline_flow(
    sections: dict[str, FamilySection], register: RegisterConfig, paths: ProjectPaths
) -> list[FamilyResult]:
    """Runs each family's flow in order; the families share the cores one at a time."""
    return [
        family_flow(get_family(name))(params, register, paths) for name, params in sections.items()
    ]
