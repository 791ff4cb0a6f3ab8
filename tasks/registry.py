"""Register step for every family: log each model as a pyfunc, register it, gate `champion`."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import yaml
from filelock import FileLock
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.tracking import MlflowClient

from trainyard.tasks.family import Family, PyfuncSpec

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
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


@dataclass
class GateRule:
    """What a challenger must beat, on which evaluation set, by which metric and direction."""

    metric: str
    higher_is_better: bool
    evaluation_key: str  # names the evaluation set the metric was measured on
    baseline: str  # the run's best baseline
    baseline_value: float

    def better(self, a: float, b: float) -> bool:
        """Returns whether value `a` is strictly better than `b`."""
        return a > b if self.higher_is_better else a < b


@dataclass
class GateDecision:
    """What the champion gate decided, and why."""

    promoted: bool
    version: str | None
    reason: str


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


def log_pyfunc(run_id: str, family: Family, spec: PyfuncSpec) -> str:
    """Returns the model URI of `spec` logged as a pyfunc into run `run_id`."""
    with shipped_code() as code_paths, mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=spec.python_model,
            artifacts=spec.artifacts,
            model_config=spec.model_config,
            code_paths=code_paths,
            input_example=spec.input_example,
            pip_requirements=serving_requirements(family),
        )
    return info.model_uri


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


def promote_if_better(
    client: MlflowClient,
    challenger: RegisteredVersion,
    rule: GateRule,
    lock_path: Path,
    rescore: Callable[[ModelVersion], float | None] | None = None,
) -> GateDecision:
    """Returns the gate's decision after moving `champion` to the challenger if it wins.

    It wins when it beats the run's best baseline and either no champion exists or it beats
    the champion on the same evaluation set. A champion scored on another evaluation set is
    re-scored on this one with `rescore`; if it cannot be (None), it stays. A file lock
    serialises concurrent promotions, since setting an alias is last-writer-wins.
    """
    metric = rule.metric
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=120):
        if not rule.better(challenger.metric, rule.baseline_value):
            return GateDecision(
                False,
                None,
                f"{challenger.model} v{challenger.version} {metric} {challenger.metric:.4f} does "
                f"not beat the best baseline, {rule.baseline} ({rule.baseline_value:.4f})",
            )
        champion = current_alias(client, challenger.name, CHAMPION)
        before = "no champion"
        if champion is not None:
            recorded = champion.tags.get(metric_tag(metric))
            champion_metric = float(recorded) if recorded is not None else None
            where = ""
            if champion.tags.get("evaluation_key") != rule.evaluation_key or recorded is None:
                champion_metric = rescore(champion) if rescore else None
                if champion_metric is None:
                    return GateDecision(
                        False,
                        str(champion.version),
                        f"champion v{champion.version} was scored on another evaluation set "
                        "(or metric) and cannot be scored on this one (other inputs); it stays",
                    )
                where = " (re-scored on this evaluation set)"
            if not rule.better(challenger.metric, champion_metric):
                return GateDecision(
                    False,
                    str(champion.version),
                    f"champion v{champion.version}{where} {metric} {champion_metric:.4f} is not "
                    f"beaten by v{challenger.version} ({challenger.metric:.4f})",
                )
            before = f"v{champion.version}{where} at {champion_metric:.4f}"
        client.set_registered_model_alias(challenger.name, CHAMPION, challenger.version)
        return GateDecision(
            True,
            challenger.version,
            f"champion -> v{challenger.version} ({challenger.model}, {metric} "
            f"{challenger.metric:.4f}; was {before})",
        )


def rescore_registered(
    version: ModelVersion, family: Family, score: Callable[[dict, dict[str, Path]], float | None]
) -> float | None:
    """Returns `score(model_config, artifacts)` of a registered version, its artifacts
    downloaded to a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{version.name}/{version.version}", dst_path=folder
            )
        )
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        artifacts = {
            name: local / entry["path"] for name, entry in flavor.get("artifacts", {}).items()
        }
        return score(flavor.get("config", {}), artifacts)


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
