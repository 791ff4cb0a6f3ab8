"""dvc.yaml lists every file of ours that each stage imports, so a code change re-runs it.

Each stage runs for real (tiny params) with a recorder that writes, when the process exits,
every module file it imported; each of ours must be covered by a `deps` entry of that stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

RECORDER = """
import atexit, json, os, sys

def _record():
    files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
    path = os.path.join(os.environ["TRAINYARD_IMPORT_LOG"], f"{os.getpid()}.json")
    with open(path, "w") as handle:
        json.dump({"argv": sys.argv, "files": files}, handle)

atexit.register(_record)
"""

TINY = {
    "forecast": {
        "train": {
            "models": ["lstm", "tft", "autotheta"],
            "max_epochs": 1,
            "min_steps": 0,
            "limit_train_batches": 2,
        },
        "evaluate": {"stride": 26, "classical": "none"},
    },
    "text": {
        "train": {"max_epochs": 1, "limit_train_batches": 2, "lstm": {"hidden_size": 16}},
        "evaluate": {"max_ngram_order": 2, "sample_length": 8},
    },
    "rl": {
        "scenarios": {"episodes": 8},
        "train": {
            "models": ["dqn", "a2c"],
            "max_epochs": 1,
            "steps_per_epoch": 5,
            "validation_episodes": 2,
            "num_envs": 2,
            "dqn": {"learning_starts": 10, "batch_size": 8},
        },
    },
}


OUR_FOLDERS = ("trainyard", "tasks", "models", "flows")


def _ours(path: str) -> bool:
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(ROOT / folder) for folder in OUR_FOLDERS)


def _covered(path: str, deps: list[str]) -> bool:
    relative = Path(path).resolve().relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("family", ["forecast", "rl", "text"])
def test_every_imported_module_is_a_dependency_of_its_stage(family: str, tmp_path: Path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.pop("profiles")
    for section, values in TINY[family].items():
        params[family][section] = {**params[family].get(section, {}), **values}
    params["run"] = {"families": [family]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    recorder = tmp_path / "recorder"
    recorder.mkdir()
    (recorder / "sitecustomize.py").write_text(RECORDER)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(recorder),
        "TRAINYARD_IMPORT_LOG": str(logs),
    }
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    trainyard = str(Path(sys.executable).parent / "trainyard")
    for step in ("prepare", "train", "evaluate"):
        for old in logs.iterdir():
            old.unlink()
        done = subprocess.run(
            [trainyard, step, "--family", family, "--params", str(tmp_path / "params.yaml")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        ours = {
            file
            for log in logs.iterdir()
            for file in json.loads(log.read_text())["files"]
            if _ours(file)
        }
        assert ours, f"{step}: the recorder saw none of our modules"
        deps = stages[f"{step}_{family}"]["deps"]
        missing = sorted(
            Path(file).resolve().relative_to(ROOT).as_posix()
            for file in ours
            if not _covered(file, deps)
        )
        assert not missing, f"dvc.yaml stage {step}_{family} does not list {missing}"
