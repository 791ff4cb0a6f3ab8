"""The model families trainyard knows, by name; each is imported only when it is used."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from trainyard.config import (
    FamilySection,
    RegisterConfig,
    RunConfig,
    merge,
    read_params_file,
    section_from_dict,
)
from trainyard.errors import ConfigError
from trainyard.tasks.family import Family

# name -> "module:attribute" of its Family object. Adding a family adds a line here.
FAMILIES: dict[str, str] = {
    "forecast": "trainyard.tasks.forecast.family:FORECAST",
    "rl": "trainyard.tasks.rl.family:RL",
    "text": "trainyard.tasks.text.family:TEXT",
}


def family_names() -> list[str]:
    """Returns the names of every known family."""
    return list(FAMILIES)


def get_family(name: str) -> Family:
    """Returns the family called `name`."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    module, attribute = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def families_reading(dataset: str) -> list[str]:
    """Returns the families that take `dataset` as their data (--dataset without --family)."""
    return [name for name in family_names() if get_family(name).dataset_values({}, dataset)]


def readers_hint(dataset: str) -> str:
    """Returns which families read `dataset`, as advice."""
    readers = families_reading(dataset)
    if readers:
        return f"use --family {' --family '.join(readers)}"
    return "give a CSV/Parquet table (forecast) or a folder / .txt file of text (text)"


def load_sections(
    params_file: Path,
    profile: str | None,
    names: list[str],
    dataset: str | None = None,
    dataset_keys: dict[str, dict[str, Any]] | None = None,
) -> dict[str, FamilySection]:
    """Returns the sections of the named families of a params file (only those: a stage
    reads its own), a profile's overrides applied and, with `dataset`, reading that data.

    `dataset_keys` maps a family to section values that describe `dataset` (such as a table's
    columns, inferred or given on the command line), laid over the section that reads it."""
    raw = read_params_file(params_file, profile)
    unknown = sorted(set(raw) - {*family_names(), "run", "register"})
    if unknown:
        raise ConfigError(
            f"{params_file}: unknown section(s) {', '.join(unknown)}; sections are "
            f"{', '.join([*family_names(), 'run', 'register', 'profiles'])} (forecasting keys "
            "such as dataset: and windows: go under forecast:)"
        )
    sections = {}
    for name in names:
        family = get_family(name)
        values = raw.get(name) or {}
        if dataset:
            read = family.dataset_values(values, dataset)
            if read is None:
                raise ConfigError(
                    f"--dataset {dataset}: the {name} family does not read it; "
                    f"{readers_hint(dataset)}"
                )
            values = merge(read, (dataset_keys or {}).get(name, {}))
        sections[name] = section_from_dict(family.section, values, f"{params_file}: {name}")
    return sections


def load_shared(params_file: Path, profile: str | None) -> tuple[RunConfig, RegisterConfig]:
    """Returns the `run:` and `register:` sections of a params file."""
    raw = read_params_file(params_file, profile)
    return (
        section_from_dict(RunConfig, raw.get("run"), f"{params_file}: run"),
        section_from_dict(RegisterConfig, raw.get("register"), f"{params_file}: register"),
    )
