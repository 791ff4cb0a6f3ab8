"""The model families trainyard knows, by name; each is imported only when it is used."""

from __future__ import annotations

import importlib

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
