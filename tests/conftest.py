"""Shared fixtures: every test gets MLflow and Prefect state in temporary folders only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from trainyard.tasks.forecast.config import Params, load_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory):
    """Points Prefect, MLflow and the state directory at a session temp folder."""
    state = tmp_path_factory.mktemp("state")
    saved = dict(os.environ)
    os.environ["TRAINYARD_STATE_DIR"] = str(state)
    os.environ["PREFECT_HOME"] = str(state / "prefect")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{state / 'mlflow.db'}"
    # The `trainyard` command (DVC stages) must come from this interpreter's environment.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    yield state
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def restore_mlflow_uris():
    """Puts MLflow's tracking and registry URIs back after every test. `mlflow.set_*_uri`
    write both a module global and an MLFLOW_* environment variable: a test that points them
    at a server it then stops must not leave later tests retrying that server."""
    import mlflow.tracking._model_registry.utils as registry_uri
    import mlflow.tracking._tracking_service.utils as tracking_uri

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_uri._tracking_uri, registry_uri._registry_uri)
    yield
    tracking_uri._tracking_uri, registry_uri._registry_uri = saved
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def quick_params() -> Params:
    """Returns params.yaml with the quick profile applied."""
    return load_params(ROOT / "params.yaml", "quick")


@pytest.fixture(scope="session")
def harness(isolated_state):
    """Runs flows against one temporary Prefect server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
