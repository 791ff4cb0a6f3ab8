"""Local Prefect and MLflow servers as detached processes, each recorded in the state directory.

A started server runs in its own session (it outlives the command that started it), writes
its output to `<state>/servers/<name>.log`, and is recorded in `<state>/servers/<name>.json`
(PID, port, URL, command line). Status and stop act on that record only, and stop signals a
PID only while its command line is still the recorded server's: a PID reused by another
program is never touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trainyard.environment import ProjectPaths, unreachable
from trainyard.errors import UserError

PREFECT = "prefect"
MLFLOW = "mlflow"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
# Seconds a server may take to answer its health check: a fresh PREFECT_HOME first creates
# and migrates its database (12-14 s on two cores), MLflow its SQLite schema.
STARTUP_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0  # seconds between SIGTERM and SIGKILL
HEALTH_PROBE_S = 2.0  # per health request
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# MLflow's rule for a basic-auth password (mlflow.utils.validation._validate_password).
MIN_PASSWORD_LENGTH = 12


class ServerError(UserError):
    """A local server cannot be started, found or stopped as asked."""


@dataclass(frozen=True)
class ServerRecord:
    """A server this project started: what runs, where it answers, where it logs."""

    name: str  # "prefect" or "mlflow"
    pid: int  # leader of the server's own process group (its workers are in that group)
    host: str  # the interface it is bound to
    port: int
    url: str  # what a client sets: PREFECT_API_URL or MLFLOW_TRACKING_URI
    health: str  # the URL probed for "running"
    command: list[str]  # argv as started: how its PID is recognised (no secrets in it)
    log: str
    started: str  # ISO 8601, UTC


@dataclass(frozen=True)
class ServerStatus:
    """What is known about a recorded server right now."""

    name: str
    record: ServerRecord | None
    alive: bool  # the recorded PID runs the recorded command
    healthy: bool  # its health URL answers

    @property
    def running(self) -> bool:
        """Whether the server is up and answering."""
        return self.alive and self.healthy


def servers_dir(paths: ProjectPaths) -> Path:
    """Returns the folder of server records and logs."""
    return paths.state / "servers"


def record_path(paths: ProjectPaths, name: str) -> Path:
    """Returns where server `name` is recorded."""
    return servers_dir(paths) / f"{name}.json"


def read_record(paths: ProjectPaths, name: str) -> ServerRecord | None:
    """Returns the record of server `name` (None when there is none or it is unreadable)."""
    path = record_path(paths, name)
    try:
        return ServerRecord(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise ServerError(
            f"{path}: not a server record ({error}); delete it after checking that no server "
            "it names still runs"
        ) from None


def _write_record(paths: ProjectPaths, record: ServerRecord) -> None:
    path = record_path(paths, record.name)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(record), indent=2) + "\n")
    temporary.replace(path)  # never a half-written record


def _remove_record(paths: ProjectPaths, name: str) -> None:
    record_path(paths, name).unlink(missing_ok=True)


def status(paths: ProjectPaths, name: str) -> ServerStatus:
    """Returns whether server `name` is recorded, its process alive and its health answering."""
    record = read_record(paths, name)
    if record is None:
        return ServerStatus(name, None, alive=False, healthy=False)
    alive = _is_recorded_process(record)
    return ServerStatus(
        name, record, alive, alive and unreachable(record.health, HEALTH_PROBE_S) is None
    )


def advertised_host(host: str) -> str:
    """Returns the name clients use to reach a server bound to `host`."""
    if host in ("0.0.0.0", "::", ""):
        return socket.getfqdn() or socket.gethostname()
    return host


def is_loopback(host: str) -> bool:
    """Returns whether binding to `host` keeps a server on this machine only."""
    return host in LOOPBACK or host.startswith("127.")


def _http_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _probe_host(host: str) -> str:
    """Returns the address this machine probes a server bound to `host` at."""
    return DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host


def _executable(name: str) -> str:
    """Returns the program installed beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServerError(f"`{name}` is not installed here; install trainyard's dependencies")
    return found


def _check_port_free(host: str, port: int, name: str, option: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerError(
                f"cannot start the {name} server on {host}:{port}: {error.strerror or error}. "
                f"Another program uses that port: pass another with {option}"
            ) from None


def prefect_home(paths: ProjectPaths) -> Path:
    """Returns the Prefect server's home (its SQLite database lives there): the same home
    the ephemeral server of `trainyard run` uses, so local runs show in its UI."""
    return paths.state / "prefect"


def start_prefect(
    paths: ProjectPaths,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PREFECT_PORT,
    timeout: float = STARTUP_TIMEOUT_S,
) -> tuple[ServerRecord, bool]:
    """Returns the record of a running Prefect server and whether this call started it.

    A server recorded as running is reused. Otherwise `prefect server start` runs detached
    with PREFECT_HOME (and its SQLite database, unless PREFECT_SERVER_DATABASE_CONNECTION_URL
    names another, e.g. PostgreSQL) under the state directory.
    """
    return _await_launches(paths, [_launch_prefect(paths, host, port, "--port")], timeout)[0]


def start_team(
    paths: ProjectPaths,
    settings: MlflowSettings,
    host: str = DEFAULT_HOST,
    prefect_port: int = DEFAULT_PREFECT_PORT,
    mlflow_port: int = DEFAULT_MLFLOW_PORT,
    timeout: float = STARTUP_TIMEOUT_S,
) -> list[tuple[ServerRecord, bool]]:
    """Returns the records of a running Prefect and MLflow server, each with whether this call
    started it (a recorded running one is reused). Both start at once; when one fails, neither
    started here is left running.

    MLflow's artifacts are proxied: clients upload through the server, which writes them to
    `settings.artifacts_destination`. The backend store URI reaches the server through
    MLFLOW_BACKEND_STORE_URI, never its command line (a PostgreSQL URI may hold a password).
    """
    if settings.basic_auth:
        check_basic_auth()
    if read_record(paths, PREFECT) is None:
        _check_port_free(host, prefect_port, "Prefect", "--prefect-port")
    if read_record(paths, MLFLOW) is None:
        _check_port_free(host, mlflow_port, "MLflow", "--mlflow-port")
    launches = [_launch_prefect(paths, host, prefect_port, "--prefect-port")]
    try:
        launches.append(_launch_mlflow(paths, settings, host, mlflow_port))
    except BaseException:
        _abandon(paths, launches)
        raise
    return _await_launches(paths, launches, timeout)


def _new_record(
    paths: ProjectPaths, name: str, host: str, port: int, command: list[str], api: str
) -> ServerRecord:
    """Returns the record of a server about to start: clients use <address><api>, and
    <api>/health answers once it is up."""
    address = f"http://{_http_host(advertised_host(host))}:{port}"
    return ServerRecord(
        name=name,
        pid=0,
        host=host,
        port=port,
        url=f"{address}{api}",
        health=f"http://{_http_host(_probe_host(host))}:{port}{api}/health",
        command=command,
        log=str(servers_dir(paths) / f"{name}.log"),
        started="",
    )


@dataclass(frozen=True)
class _Launch:
    """A server this call launched (process set) or found running (process None)."""

    record: ServerRecord
    process: subprocess.Popen | None


def _launch_prefect(paths: ProjectPaths, host: str, port: int, option: str) -> _Launch:
    running = _running(paths, PREFECT, host)
    if running is not None:
        return _Launch(running, None)
    _check_port_free(host, port, "Prefect", option)
    home = prefect_home(paths)
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # a server is nobody's client
    env["PREFECT_HOME"] = str(home)
    if not (
        env.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
        or env.get("PREFECT_API_DATABASE_CONNECTION_URL")
    ):
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    address = f"http://{_http_host(advertised_host(host))}:{port}"
    if not is_loopback(host):
        env.setdefault("PREFECT_UI_API_URL", f"{address}/api")  # what browsers elsewhere call
    command = [_executable("prefect"), "server", "start", "--host", host, "--port", str(port)]
    return _launch(paths, _new_record(paths, PREFECT, host, port, command, "/api"), env, home)


@dataclass(frozen=True)
class MlflowSettings:
    """How `trainyard server up` runs the MLflow tracking server."""

    backend_store_uri: str  # runs, metrics and the registry: sqlite:///... or postgresql://...
    artifacts_destination: str  # where proxied artifacts go: a folder or s3://, gs://, ...
    allowed_hosts: str  # Host headers the server accepts (DNS-rebinding protection)
    basic_auth: bool = False  # MLflow's basic-auth app: users, passwords, permissions
    workers: int = 2  # uvicorn worker processes


def team_dir(paths: ProjectPaths) -> Path:
    """Returns the folder of team mode's MLflow store, artifacts and auth database."""
    return paths.state / "team"


def default_mlflow_settings(paths: ProjectPaths, host: str = DEFAULT_HOST) -> MlflowSettings:
    """Returns team mode's defaults: SQLite and artifacts under the state directory, and only
    loopback names (plus the advertised name when bound elsewhere) as allowed hosts."""
    team = team_dir(paths)
    return MlflowSettings(
        backend_store_uri=f"sqlite:///{team / 'mlflow.db'}",
        artifacts_destination=str(team / "artifacts"),
        allowed_hosts=default_allowed_hosts(host),
    )


def default_allowed_hosts(host: str) -> str:
    """Returns the Host headers MLflow accepts by default: this machine's loopback names, and
    the bound and advertised names when `host` is not loopback (each with any port)."""
    names = ["localhost", "127.0.0.1"]
    if not is_loopback(host):
        names += [name for name in (host, advertised_host(host)) if name not in ("0.0.0.0", "::")]
    unique = list(dict.fromkeys(names))
    return ",".join(f"{name},{name}:*" for name in unique)


def check_basic_auth() -> None:
    """Raises ServerError unless the admin password for MLflow's basic auth is given: MLflow
    ships no default password and neither does trainyard."""
    password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    # With the team's own auth config, MLflow checks its admin_password itself.
    if not password and not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        raise ServerError(
            "--basic-auth needs the MLflow admin password and there is no default: set "
            "MLFLOW_AUTH_ADMIN_PASSWORD (at least 12 characters; MLFLOW_AUTH_ADMIN_USERNAME "
            "names the admin, default admin), or MLFLOW_AUTH_CONFIG_PATH to your own "
            "basic_auth.ini. Nothing was started."
        )
    if password and len(password) < MIN_PASSWORD_LENGTH:
        raise ServerError(
            f"MLFLOW_AUTH_ADMIN_PASSWORD has {len(password)} characters; MLflow requires at "
            f"least {MIN_PASSWORD_LENGTH}. Nothing was started."
        )
    if importlib.util.find_spec("flask_wtf") is None:
        raise ServerError(
            "--basic-auth needs MLflow's auth extra (Flask-WTF, for CSRF protection), which "
            f"is not installed: pip install 'mlflow[auth]=={version('mlflow')}'. Nothing was "
            "started."
        )


def _auth_env(paths: ProjectPaths) -> dict[str, str]:
    """Returns the environment of MLflow's basic-auth app: its config (users kept in SQLite
    under the state directory) and a CSRF key that stays the same across restarts."""
    team = team_dir(paths)
    env = {}
    if not os.environ.get("MLFLOW_AUTH_CONFIG_PATH"):
        config = team / "basic_auth.ini"
        # No password in the file: MLflow reads it from MLFLOW_AUTH_ADMIN_PASSWORD.
        config.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{team / 'basic_auth.db'}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        key_file = team / "flask-secret-key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_hex(32))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = key_file.read_text().strip()
    return env


def _launch_mlflow(paths: ProjectPaths, settings: MlflowSettings, host: str, port: int) -> _Launch:
    running = _running(paths, MLFLOW, host)
    if running is not None:
        return _Launch(running, None)
    _check_port_free(host, port, "MLflow", "--mlflow-port")
    team = team_dir(paths)
    team.mkdir(parents=True, exist_ok=True)
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": settings.backend_store_uri}
    # trainyard runs no MLflow server jobs (GenAI evaluation); they would add seven worker
    # processes. Set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have them.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a local server does not phone home
    command = [
        _executable("mlflow"),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(settings.workers),
        "--serve-artifacts",
        "--artifacts-destination",
        settings.artifacts_destination,
        "--allowed-hosts",
        settings.allowed_hosts,
    ]
    if settings.basic_auth:
        command += ["--app-name", "basic-auth"]
        env.update(_auth_env(paths))
    return _launch(paths, _new_record(paths, MLFLOW, host, port, command, ""), env, team)


def redacted(uri: str) -> str:
    """Returns `uri` with any password replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _running(paths: ProjectPaths, name: str, host: str) -> ServerRecord | None:
    """Returns the record of server `name` when it runs, answers and is bound to `host`;
    forgets a dead one."""
    current = status(paths, name)
    if current.record is None:
        return None
    if current.running and current.record.host != host:
        raise ServerError(
            f"the {name} server already runs on {current.record.host}, not {host}: stop it "
            f"first (`trainyard server stop --which {name}`)"
        )
    if current.running:
        return current.record
    if current.alive:
        raise ServerError(
            f"the recorded {name} server (PID {current.record.pid}) runs but does not answer "
            f"{current.record.health}; see {current.record.log}, or `trainyard server stop "
            f"--which {name}` and start it again"
        )
    _stop_leftovers(current.record)
    _remove_record(paths, name)
    return None


def _launch(paths: ProjectPaths, record: ServerRecord, env: dict[str, str], cwd: Path) -> _Launch:
    """Returns the launched server, recorded at once: a server whose starter is killed while
    waiting for it can still be found and stopped."""
    servers_dir(paths).mkdir(parents=True, exist_ok=True)
    with open(record.log, "w") as out:
        process = subprocess.Popen(
            record.command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, and no hangup when we exit
        )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record = ServerRecord(**{**asdict(record), "pid": process.pid, "started": started})
    _write_record(paths, record)
    return _Launch(record, process)


def _await_launches(
    paths: ProjectPaths, launches: list[_Launch], timeout: float
) -> list[tuple[ServerRecord, bool]]:
    """Returns each server's record and whether it was launched here, once all answer their
    health URL; on any failure (or Ctrl-C) the ones launched here are stopped, unrecorded."""
    deadline = time.monotonic() + timeout  # they start together: one deadline for all
    try:
        for launch in launches:
            if launch.process is not None:
                _wait_until_healthy(launch.process, launch.record, deadline, timeout)
    except BaseException:
        _abandon(paths, launches)
        raise
    return [(launch.record, launch.process is not None) for launch in launches]


def _abandon(paths: ProjectPaths, launches: list[_Launch]) -> None:
    """Stops the servers launched here and removes their records."""
    for launch in launches:
        if launch.process is not None:
            _terminate_group(launch.process.pid, STOP_GRACE_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                launch.process.wait(timeout=5)
            _remove_record(paths, launch.record.name)


def _wait_until_healthy(
    process: subprocess.Popen, record: ServerRecord, deadline: float, timeout: float
) -> None:
    while True:
        code = process.poll()
        if code is not None:
            raise ServerError(
                f"the {record.name} server exited with code {code} while starting; the end of "
                f"{record.log}:\n{_tail(record.log)}"
            )
        if unreachable(record.health, HEALTH_PROBE_S) is None:
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"the {record.name} server did not answer {record.health} within "
                f"{timeout:.0f} s, so it was stopped; the end of {record.log}:\n"
                f"{_tail(record.log)}"
            )
        time.sleep(0.5)


def _tail(log: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(paths: ProjectPaths, name: str, grace: float = STOP_GRACE_S) -> str:
    """Returns what was done to stop server `name`: SIGTERM to its process group, SIGKILL
    after `grace` seconds, then its record removed. A PID that no longer runs the recorded
    command is left alone."""
    record = read_record(paths, name)
    if record is None:
        return f"{name}: no server recorded ({record_path(paths, name)})"
    if _is_recorded_process(record):
        forced = _terminate_group(record.pid, grace)
        _remove_record(paths, name)
        how = f"killed after {grace:.0f} s" if forced else "stopped"
        return f"{name}: {how} (PID {record.pid}, {record.url})"
    command = _command_line(record.pid)
    _remove_record(paths, name)
    if command is not None:
        return (
            f"{name}: PID {record.pid} now runs another program ({' '.join(command)[:80]}); "
            "left alone, record removed"
        )
    _stop_leftovers(record)
    return f"{name}: was not running (PID {record.pid} gone); record removed"


def _stop_leftovers(record: ServerRecord) -> None:
    """Stops workers left in a dead server's process group. Safe: while any process is in
    that group, the kernel keeps its number (the dead leader's PID) from being reused."""
    if _command_line(record.pid) is None and _group_members(record.pid):
        _terminate_group(record.pid, STOP_GRACE_S)


def _terminate_group(pgid: int, grace: float) -> bool:
    """Returns whether SIGKILL was needed to end process group `pgid` after SIGTERM."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, grace):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_group_gone(pgid, 10)
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        _reap(pgid)
        if not _group_members(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _reap(pid: int) -> None:
    """Collects `pid`'s exit status when it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


PROC = Path("/proc")


def _proc_stat(pid: str | int) -> list[str] | None:
    """Returns the fields after the command name of /proc/<pid>/stat (state first)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _command_line(pid: int) -> list[str] | None:
    """Returns the argv of live process `pid`; None when it is gone or a zombie."""
    _reap(pid)
    if PROC.joinpath("self").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return None
        try:
            raw = (PROC / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        return raw.decode(errors="replace").split("\0")[:-1]
    done = subprocess.run(
        ["ps", "-o", "stat=", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
    )
    fields = done.stdout.strip().split()
    if done.returncode != 0 or not fields or fields[0].startswith("Z"):
        return None
    return fields[1:]


def _group_members(pgid: int) -> list[int]:
    """Returns the live (not zombie) processes of process group `pgid`."""
    if not PROC.joinpath("self").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(entry.name)
            # stat: state, ppid, pgrp, ...
            if stat is not None and stat[0] not in ("Z", "X") and stat[2] == str(pgid):
                members.append(int(entry.name))
    return members


def _is_recorded_process(record: ServerRecord) -> bool:
    """Returns whether the recorded PID still runs the recorded server's command."""
    actual = _command_line(record.pid)
    if not actual:
        return False
    # A script's argv is `python /path/to/prefect server ...`: the recorded arguments must
    # end the command line, preceded by the recorded program.
    program, arguments = record.command[0], record.command[1:]
    joined = " ".join(actual)
    head = joined.removesuffix(" ".join(arguments))
    return joined.endswith(" ".join(arguments)) and Path(program).name in head
