"""Register step: log each model as an MLflow pyfunc, register it, and gate the champion alias."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.serving import ForecasterModel
from trainyard.config import Params

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
CODE_PATHS = ["tasks", "models", "trainyard"]  # packages the pyfunc imports when loaded


@dataclass
class RegisteredVersion:
    """One model version this run added to the registry."""

    name: str  # registered model name
    version: str
    model: str  # model kind
    run_id: str
    metric: float  # holdout value of register.metric


@dataclass
class GateDecision:
    """What the champion gate decided, and why."""

    promoted: bool
    version: str | None
    reason: str


def registered_model_name(params: Params) -> str:
    """Returns the registry name for this dataset and task: <dataset>-forecaster."""
    return f"{Path(params.dataset.name).stem}-forecaster"


def log_pyfunc(run_id: str, kind: str, model_dir: Path, params: Params, example) -> str:
    """Returns the model URI of `kind` logged as a pyfunc into run `run_id`."""
    import torch

    root = Path(__file__).resolve().parent.parent
    with mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecasterModel(),
            artifacts={"model_dir": str(model_dir)},
            model_config={"kind": kind, "params": params.to_dict()},
            code_paths=[str(root / package) for package in CODE_PATHS],
            input_example=example,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "lightning==2.6.6",
                "pytorch-forecasting==1.8.0",
                "pandera==0.35.0",
                f"pandas=={pd.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    return info.model_uri


def register_version(
    model_uri: str,
    name: str,
    kind: str,
    run_id: str,
    metric: float,
    params: Params,
    tags: dict[str, str],
) -> RegisteredVersion:
    """Returns the new registry version of `model_uri` under `name`, tagged with its lineage."""
    # register_model prints progress lines straight to stderr; the pipeline reports instead.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(
            model_uri,
            name,
            tags={**tags, "model": kind, f"holdout_{params.register.metric}": str(metric)},
        )
    return RegisteredVersion(name, str(version.version), kind, run_id, metric)


def current_alias(client: MlflowClient, name: str, alias: str):
    """Returns the version holding `alias`, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote_if_better(
    client: MlflowClient,
    challenger: RegisteredVersion,
    params: Params,
    holdout_key: str,
    baseline_metric: float,
    lock_path: Path,
) -> GateDecision:
    """Returns the gate's decision after moving `champion` to the challenger if it wins.

    It wins when it beats seasonal naive on the holdout and either no champion exists, the
    champion was scored on another holdout (cannot be compared: it stays, reported), or its
    metric is lower than the champion's. A file lock serialises concurrent promotions, since
    setting an alias is last-writer-wins.
    """
    metric = params.register.metric
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=120):
        if challenger.metric >= baseline_metric:
            return GateDecision(
                False,
                None,
                f"{challenger.model} v{challenger.version} {metric} {challenger.metric:.4f} does "
                f"not beat seasonal naive ({baseline_metric:.4f})",
            )
        champion = current_alias(client, challenger.name, CHAMPION)
        if champion is not None:
            champion_metric = float(champion.tags.get(f"holdout_{metric}", "inf"))
            if champion.tags.get("holdout_key") != holdout_key:
                return GateDecision(
                    False,
                    champion.version,
                    f"champion v{champion.version} was scored on another holdout "
                    f"({champion.tags.get('holdout_key')}); not comparable, it stays",
                )
            if challenger.metric >= champion_metric:
                return GateDecision(
                    False,
                    champion.version,
                    f"champion v{champion.version} {metric} {champion_metric:.4f} is not beaten "
                    f"by v{challenger.version} ({challenger.metric:.4f})",
                )
        client.set_registered_model_alias(challenger.name, CHAMPION, challenger.version)
        before = f"v{champion.version}" if champion is not None else "no champion"
        return GateDecision(
            True,
            challenger.version,
            f"champion -> v{challenger.version} ({challenger.model}, {metric} "
            f"{challenger.metric:.4f}; was {before})",
        )
