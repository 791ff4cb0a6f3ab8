"""Register step for every family: log each model as a pyfunc, register it, gate `champion`."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.tracking import MlflowClient

from trainyard.errors import DataError
from trainyard.tasks.family import Family, PyfuncSpec

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
# Version tag set once every version of a run is registered: one without it is from a run
# that died mid-registration, and the next run deletes it.
REGISTRATION_TAG = "registration"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the repo: trainyard/, tasks/, models/
# Folders a pyfunc imports when loaded, as the namespace they are installed under.
SHIPPED_PACKAGES = {
    "trainyard": "trainyard",
    "tasks": "trainyard/tasks",
    "models": "trainyard/models",
}
# Always needed to load any pyfunc of ours (the family adds what its models import).
SERVING_BASE = ("mlflow", "torch", "lightning", "pandas", "numpy", "pydantic", "pyyaml")


@dataclass
class RegisteredVersion:
    """One model version this run added to the registry."""

    name: str  # registered model name
    version: str
    model: str  # model kind
    run_id: str
    metric: float  # evaluation value of the gate metric


def registered_model_name(family: Family, label: str) -> str:
    """Returns the registry name for a family's dataset or environment: <label>-<suffix>."""
    return f"{label}-{family.registry_suffix}"


def metric_tag(metric: str) -> str:
    """Returns the version tag holding the evaluation value of `metric`."""
    return f"eval_{metric}"


def serving_requirements(family: Family) -> list[str]:
    """Returns the pip requirements of a family's pyfunc, with trainyard's own pins.

    The pins come from the installed trainyard's metadata (pyproject.toml): one place.
    """
    wanted = {name.lower() for name in (*SERVING_BASE, *family.serving_requirements)}
    pinned = {}
    for requirement in importlib.metadata.requires("trainyard") or []:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        if name in wanted:
            pinned[name] = requirement.split(";")[0].strip()
    return [pinned.get(name, name) for name in sorted(wanted)]


@contextlib.contextmanager
def shipped_code() -> Iterator[list[str]]:
    """Yields code_paths holding the trainyard package as installed (tasks/ and models/
    inside it), so a loaded pyfunc imports trainyard.* and nothing named tasks or models."""
    with tempfile.TemporaryDirectory(prefix="trainyard-code-") as folder:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for source, target in SHIPPED_PACKAGES.items():
            shutil.copytree(PACKAGE_ROOT / source, Path(folder) / target, ignore=ignore)
        yield [str(Path(folder) / "trainyard")]


# Every pyfunc is logged as this script (MLflow models-from-code), never as a pickle.
PYFUNC_ENTRY = Path(__file__).resolve().with_name("pyfunc_entry.py")
PYFUNC_CLASS = "python_model"  # model_config key: "module:Class" the entry script serves with
ARTIFACT_DIGESTS = "artifact_digests"  # model_config key: {artifact file: sha256}
PICKLE_SUFFIXES = (".pkl", ".pickle")  # files never logged with a model: they run code


class LoggedPyfunc(NamedTuple):
    """A pyfunc logged into a run."""

    model_uri: str
    artifact_digests: dict[str, str]  # "<artifact>/<path in it>" -> sha256 of that file


def artifact_digests(artifacts: dict[str, str | Path]) -> dict[str, str]:
    """Returns the sha256 of every file of `artifacts` (name -> file or folder), keyed
    "<name>/<path inside the folder>" (a file artifact: its name)."""
    digests = {}
    for name, location in artifacts.items():
        root = Path(location)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            key = name if path == root else f"{name}/{path.relative_to(root).as_posix()}"
            with open(path, "rb") as handle:
                digests[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return digests


def _artifact_file(artifacts: dict[str, str | Path], key: str) -> Path:
    """Returns the file an artifact_digests key names."""
    name, _, inside = key.partition("/")
    root = Path(artifacts.get(name, name))
    return root / inside if inside else root


def verify_artifacts(
    artifacts: dict[str, Path], digests: dict[str, str] | None, where: str
) -> None:
    """Raises DataError unless the files of `artifacts` are exactly those `digests` recorded
    when the model was logged: none changed, none missing, none added (a planted pickle)."""
    if not isinstance(digests, dict):
        raise DataError(
            f"{where}: no artifact digests recorded (logged before trainyard recorded them), "
            "so its files cannot be checked and nothing of it is loaded; train and register "
            "it again"
        )
    found = artifact_digests(artifacts)
    changed = sorted(key for key in found.keys() & digests.keys() if found[key] != digests[key])
    missing = sorted(digests.keys() - found.keys())
    added = sorted(found.keys() - digests.keys())
    problems = [
        *(f"{_artifact_file(artifacts, key)} was changed after logging" for key in changed),
        *(f"{_artifact_file(artifacts, key)} is missing" for key in missing),
        *(f"{_artifact_file(artifacts, key)} was not logged with it" for key in added),
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(
            f"{where}: its files are not the ones it was logged with: "
            f"{'; '.join(problems[:3])}{more}. Nothing of it is loaded; train and register "
            "it again"
        )


def pyfunc_config(spec: PyfuncSpec) -> dict[str, Any]:
    """Returns the model_config `spec` is logged with: the family's config, the class the
    entry script serves it with, and the sha256 of every artifact file."""
    served = f"{spec.python_model.__module__}:{spec.python_model.__qualname__}"
    if not served.startswith("trainyard."):
        raise ValueError(f"{served}: a pyfunc is served by a class under trainyard.")
    digests = artifact_digests(spec.artifacts)
    pickles = [key for key in digests if key.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise DataError(
            f"{_artifact_file(spec.artifacts, pickles[0])}: a pickle, which runs code when "
            "loaded; no model holding one is logged. Train the model again"
        )
    return {**spec.model_config, PYFUNC_CLASS: served, ARTIFACT_DIGESTS: digests}


def log_pyfunc(run_id: str, family: Family, spec: PyfuncSpec) -> LoggedPyfunc:
    """Returns the model URI of `spec` logged as a pyfunc into run `run_id` (models-from-code:
    the entry script and the shipped trainyard code, no pickle), and the sha256 of every
    artifact file, which loading checks."""
    config = pyfunc_config(spec)
    with shipped_code() as code_paths, mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_ENTRY),
            artifacts=spec.artifacts,
            model_config=config,
            code_paths=code_paths,
            input_example=spec.input_example,
            pip_requirements=serving_requirements(family),
        )
    return LoggedPyfunc(info.model_uri, config[ARTIFACT_DIGESTS])


def register_version(
    model_uri: str,
    name: str,
    kind: str,
    run_id: str,
    metric: str,
    value: float,
    tags: dict[str, str],
) -> RegisteredVersion:
    """Returns the new registry version of `model_uri` under `name`, tagged with its lineage."""
    # register_model prints progress lines straight to stderr; the pipeline reports instead.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(
            model_uri, name, tags={**tags, "model": kind, metric_tag(metric): str(value)}
        )
    return RegisteredVersion(name, str(version.version), kind, run_id, value)


def current_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """Returns the version holding `alias`, or None when no version holds it.

    Any other registry error (a 5xx, an auth error, a timeout) is raised: it says nothing
    about the alias, and the gate must not promote on it. MLflow's SQL store answers a missing
    alias with INVALID_PARAMETER_VALUE, a code other mistakes share, so that answer counts as
    "no holder" only once the registered model is seen to have no such alias.
    """
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        if error.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and alias not in (
            client.get_registered_model(name).aliases or {}
        ):
            return None
        raise


def rescore_registered(
    version: ModelVersion, family: Family, score: Callable[[dict, dict[str, Path]], float | None]
) -> float | None:
    """Returns `score(model_config, artifacts)` of a registered version, its artifacts
    downloaded to a temporary folder and verified against their logged digests. No code from
    the registry runs: the MLmodel file is read as YAML data, and `score` loads the weights,
    JSON and Parquet with the installed trainyard."""
    uri = f"models:/{version.name}/{version.version}"
    with tempfile.TemporaryDirectory() as folder:
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=folder))
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        artifacts = {
            name: local / entry["path"] for name, entry in flavor.get("artifacts", {}).items()
        }
        config = flavor.get("config", {})
        verify_artifacts(artifacts, config.get(ARTIFACT_DIGESTS), uri)
        return score(config, artifacts)


@functools.lru_cache(maxsize=1)
def _quiet_registry_logs() -> None:
    logging.getLogger("mlflow.store.model_registry").setLevel(logging.WARNING)


def restore_after_failure(
    client: MlflowClient, versions: list[RegisteredVersion], name: str, challenger: str | None
) -> None:
    """Deletes this run's versions and gives `challenger` back to the version that held it.

    Called while an error propagates: a failure here is logged, never raised over it.
    """
    _quiet_registry_logs()
    for version in versions:
        try:
            client.delete_model_version(version.name, version.version)
        except Exception as error:  # noqa: BLE001 - the original error must surface
            log.warning("could not delete %s v%s: %s", version.name, version.version, error)
    if challenger is None:
        return
    try:
        client.set_registered_model_alias(name, CHALLENGER, challenger)
    except Exception as error:  # noqa: BLE001
        log.warning("could not give %s back to v%s: %s", CHALLENGER, challenger, error)
