"""Register step: log each model as an MLflow pyfunc, register it, and gate the champion alias."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from filelock import FileLock
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.evaluate import Holdout, model_forecast, score
from tasks.serving import ForecasterModel
from trainyard.config import Params, params_from_dict

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
    return f"{params.dataset.label}-forecaster"


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
    rescore: Callable[[ModelVersion], float | None] | None = None,
) -> GateDecision:
    """Returns the gate's decision after moving `champion` to the challenger if it wins.

    It wins when it beats seasonal naive on the holdout and either no champion exists or its
    metric is lower than the champion's on the same holdout. A champion scored on another
    holdout is re-scored on this one with `rescore`; if it cannot be (None), it stays. A file
    lock serialises concurrent promotions, since setting an alias is last-writer-wins.
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
        before = "no champion"
        if champion is not None:
            recorded = champion.tags.get(f"holdout_{metric}")
            champion_metric = float(recorded) if recorded is not None else None
            where = ""
            if champion.tags.get("holdout_key") != holdout_key or champion_metric is None:
                champion_metric = rescore(champion) if rescore else None
                if champion_metric is None:
                    return GateDecision(
                        False,
                        str(champion.version),
                        f"champion v{champion.version} was scored on another holdout (or metric) "
                        "and cannot forecast this one (other windows or columns); it stays",
                    )
                where = " (re-scored on this holdout)"
            if challenger.metric >= champion_metric:
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


def rescore_on_holdout(version: ModelVersion, holdout: Holdout, params: Params) -> float | None:
    """Returns a registered version's `register.metric` on this holdout, or None when it was
    trained for other windows or columns and cannot forecast these windows."""
    with tempfile.TemporaryDirectory() as folder:
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{version.name}/{version.version}", dst_path=folder
            )
        )
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
        config = flavor["config"]  # what log_model stored as model_config
        theirs = params_from_dict(config["params"])
        if (
            theirs.windows.encoder_length != params.windows.encoder_length
            or theirs.windows.horizon != params.windows.horizon
            or theirs.dataset.target != params.dataset.target
            or theirs.dataset.known_covariates != params.dataset.known_covariates
            or theirs.dataset.unknown_covariates != params.dataset.unknown_covariates
        ):
            return None
        model_dir = local / flavor["artifacts"]["model_dir"]["path"]
        forecast = model_forecast(config["kind"], model_dir, holdout, theirs)
    return score(holdout.actual, forecast, holdout.scale)[params.register.metric]
