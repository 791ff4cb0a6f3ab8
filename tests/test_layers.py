"""The house rules on imports: data flows one way, and families plug in without knowing each
other. Checked statically on every import statement (module level and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Folder in the repo -> the module prefix it is installed under.
PACKAGES = {
    "trainyard": "trainyard",
    "tasks": "trainyard.tasks",
    "models": "trainyard.models",
    "flows": "trainyard.flows",
}
FAMILIES = ("forecast", "rl", "text")
GROUND = (
    "trainyard.config",
    "trainyard.data_versions",
    "trainyard.environment",
    "trainyard.errors",
    "trainyard.progress",
    "trainyard.watchdog",
)


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    prefix = PACKAGES[relative.parts[0]]
    parts = [*prefix.split("."), *relative.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("trainyard", "tasks", "models")}


def _modules() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path)
        for folder in PACKAGES
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


MODULES = _modules()


def _family_of(module: str) -> str | None:
    for family in FAMILIES:
        for layer in ("trainyard.tasks", "trainyard.models", "trainyard.flows"):
            if module == f"{layer}.{family}" or module.startswith(f"{layer}.{family}."):
                return family
    return None


def test_nothing_imports_the_old_top_level_names():
    offenders = {
        module: sorted(n for n in names if n.split(".")[0] in ("tasks", "models"))
        for module, names in MODULES.items()
    }
    assert not {m: n for m, n in offenders.items() if n}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("trainyard.models", ("trainyard.tasks", "trainyard.flows", "trainyard.cli")),
        ("trainyard.tasks", ("trainyard.flows", "trainyard.cli")),
        ("trainyard.flows", ("trainyard.cli",)),
    ],
)
def test_data_flows_one_way(layer: str, forbidden: tuple[str, ...]):
    upward = {
        module: sorted(n for n in names if n.startswith(forbidden))
        for module, names in MODULES.items()
        if module.startswith(layer)
    }
    assert not {m: n for m, n in upward.items() if n}


def test_the_ground_imports_nothing_above_it():
    for module in GROUND:
        above = [name for name in MODULES[module] if not name.startswith(GROUND)]
        assert not above, f"{module} imports {above}"


def test_families_never_import_each_other():
    for module, names in MODULES.items():
        own = _family_of(module)
        if own is None:
            continue
        others = [n for n in names if _family_of(n) not in (None, own)]
        assert not others, f"{module} ({own}) imports {others}"


def test_the_skeleton_never_imports_a_family():
    """Shared modules reach a family only through the Family interface (tasks/families.py
    names them as strings)."""
    for module, names in MODULES.items():
        if _family_of(module) is not None or module.startswith("trainyard.cli"):
            continue
        if module.startswith("trainyard.flows.") and module.split(".")[-1] in FAMILIES:
            continue  # a family's own one-line flow module
        family_imports = [n for n in names if _family_of(n) is not None]
        assert not family_imports, f"shared module {module} imports {family_imports}"
