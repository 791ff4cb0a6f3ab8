"""Embedded defaults for Prefect and MLflow, kept in the project's state directory."""

from __future__ import annotations

import logging
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trainyard.errors import ConfigError

# Seconds the ephemeral Prefect server may take to start: a fresh PREFECT_HOME needs 12-14 s.
EPHEMERAL_STARTUP_TIMEOUT_S = "90"


@dataclass(frozen=True)
class ProjectPaths:
    """Where a project keeps its inputs, prepared data, outputs and server state."""

    root: Path

    @property
    def state(self) -> Path:
        """Git-ignored home of local servers' state (Prefect home, MLflow database)."""
        return Path(os.environ.get("TRAINYARD_STATE_DIR", self.root / ".state"))

    def family(self, name: str) -> FamilyPaths:
        """Returns where family `name` keeps its data, models and reports."""
        return FamilyPaths(self.root, name)

    def run(self, run_id: str, family: str) -> Path:
        """Returns the private folder of one pipeline run of a family (models it trains):
        runs at once in one project never share files."""
        return self.state / "runs" / f"{family}-{run_id}"


@dataclass(frozen=True)
class FamilyPaths:
    """A family's DVC-tracked folders: data/<family>/{prepared,models,reports}."""

    root: Path
    family: str

    @property
    def data(self) -> Path:
        """The family's folder under data/."""
        return self.root / "data" / self.family

    @property
    def prepared(self) -> Path:
        """Prepared data and its metadata (a DVC output)."""
        return self.data / "prepared"

    @property
    def models(self) -> Path:
        """Trained model checkpoints (a DVC output)."""
        return self.data / "models"

    @property
    def reports(self) -> Path:
        """Metrics, evaluation tables and plots (DVC metrics and plots)."""
        return self.data / "reports"


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a port on `host` that nothing listens on now (bound, then released at once)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def find_project_root(start: Path | None = None) -> Path:
    """Returns the nearest folder at or above `start` holding params.yaml (else `start`)."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "params.yaml").exists():
            return folder
    return start


def configure_environment(paths: ProjectPaths) -> dict[str, str]:
    """Returns the Prefect/MLflow settings in force, setting embedded defaults where unset.

    PREFECT_API_URL set: that Prefect server is used; otherwise an ephemeral one whose
    PREFECT_HOME is under the state directory. MLFLOW_TRACKING_URI set: that store is used;
    otherwise SQLite in the state directory.
    """
    paths.state.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(paths.state / "prefect"))
        os.environ.setdefault(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S
        )
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The embedded server must not phone home: there is no network to reach, and it logs that.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Nor MLflow: its telemetry thread also races the REST client over an environment
    # variable it sets and unsets (a KeyError in an unrelated request).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{paths.state / 'mlflow.db'}"
    # Sample CPU/memory every 2 s so short training runs still get system metrics.
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "2")
    os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")
    # MLflow and alembic announce every schema migration at INFO.
    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return {
        "prefect": os.environ.get("PREFECT_API_URL") or f"ephemeral ({os.environ['PREFECT_HOME']})",
        "mlflow": os.environ["MLFLOW_TRACKING_URI"],
    }


SERVER_PROBE_TIMEOUT_S = 5.0  # how long a configured server may take to answer the first call


def unreachable(url: str, timeout: float = SERVER_PROBE_TIMEOUT_S) -> str | None:
    """Returns why no HTTP server answers at url, or None when one answers (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered, if only to say no: the server is there
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def check_servers(prefect: bool = True) -> None:
    """Raises ConfigError, before anything is written, when MLFLOW_TRACKING_URI (or, with
    `prefect`, PREFECT_API_URL) names a server that does not answer: one probe with a short
    timeout instead of minutes of client retries mid-run."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if tracking.startswith(("http://", "https://")):
        why = unreachable(tracking.rstrip("/") + "/health")
        if why:
            raise ConfigError(
                f"MLFLOW_TRACKING_URI={tracking}: no MLflow tracking server answers ({why}). "
                "Start it (e.g. `mlflow server --host 127.0.0.1 --port 5000`), fix the "
                "address, or unset MLFLOW_TRACKING_URI to use the embedded store in .state/"
            )
    api = os.environ.get("PREFECT_API_URL", "")
    if prefect and api:
        why = unreachable(api.rstrip("/") + "/health")
        if why:
            raise ConfigError(
                f"PREFECT_API_URL={api}: no Prefect server answers ({why}). Start it "
                "(`prefect server start --host 127.0.0.1`), fix the address, unset "
                "PREFECT_API_URL to use an ephemeral server, or run with --no-orchestrator"
            )


def process_start(pid: int) -> str:
    """Returns when process `pid` started, in clock ticks since boot ("" if unknown or a
    zombie): with the PID it names one process, even after the PID is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()  # fields from 3 on, after the command name
    return "" if fields[0] == "Z" else fields[19]


def process_alive(pid: int, started: str) -> bool:
    """Returns whether the process that had `pid` and start time `started` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir() or not started:
        return True
    return process_start(pid) == started  # "" once it is a zombie: dead, not yet reaped


def ensure_tracking_store(paths: ProjectPaths) -> None:
    """Creates the embedded MLflow store once, under a file lock: two first runs starting
    together would otherwise both run its schema migrations and one would die."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("sqlite:///"):
        return
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(database) + ".init.lock", timeout=300):
        MlflowClient().search_experiments(max_results=1)


def artifact_root(paths: ProjectPaths) -> str | None:
    """Returns where new MLflow experiments store artifacts for the embedded SQLite store."""
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith("sqlite:///" + str(paths.state)):
        return (paths.state / "mlartifacts").as_uri()
    return None


def quiet_libraries() -> None:
    """Silences library chatter (tips, deprecation notes, progress bars) users cannot act on."""
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for message in (
        ".*LeafSpec.*",
        ".*is an instance of `nn.Module`.*",
        ".*does not have many workers.*",
        ".*Inferred schema contains integer column.*",
        ".*Hint: Inferred schema.*",
        ".*dataset source can be interpreted in multiple ways.*",
        ".*`IterableDataset` has `__len__` defined.*",
    ):
        warnings.filterwarnings("ignore", message=message)
    # Both set their loggers' levels on import; ours must come after.
    import lightning  # noqa: F401
    import mlflow  # noqa: F401

    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "mlflow",
        "prefect",
        "httpx",
        "alembic",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Notices on every log_model (code paths, environment inference) the pipeline reports
    # in its own words; real errors still show.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
