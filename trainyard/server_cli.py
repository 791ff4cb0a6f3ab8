"""`trainyard server ...` and `trainyard schedule`: run Prefect (and, for a team, MLflow) as
local servers, and serve the pipeline on a cron schedule. Part of the roof: cli.py registers
these commands; the process management lives in trainyard/servers.py."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trainyard import servers
from trainyard.environment import (
    ProjectPaths,
    check_servers,
    configure_environment,
    find_project_root,
)
from trainyard.errors import ConfigError, UserError

if TYPE_CHECKING:  # Prefect is imported only by the commands that use it
    from prefect import Flow
    from prefect.server.schemas.schedules import CronSchedule

server_app = typer.Typer(
    help=(
        "Run a Prefect server (start), or Prefect plus an MLflow tracking server for a team "
        "(up), as detached processes recorded under the state directory (.state/servers/); "
        "see whether they run (status) and stop them (stop)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)


class Which(StrEnum):
    """The servers a status or stop command acts on."""

    prefect = "prefect"
    mlflow = "mlflow"
    all = "all"

    def names(self) -> list[str]:
        """Returns the server names, MLflow before Prefect (the order to stop them in)."""
        return [servers.MLFLOW, servers.PREFECT] if self is Which.all else [self.value]


WhichOption = Annotated[
    Which, typer.Option("--which", help="Which server: prefect, mlflow or all.")
]
PrefectPortOption = Annotated[
    int, typer.Option("--port", help="Port of the Prefect server (API and UI).")
]


def _paths() -> ProjectPaths:
    return ProjectPaths(find_project_root())


def _say(text: str) -> None:
    console.print(escape(text))


def _user_errors_exit(command: Callable[..., None]) -> Callable[..., None]:
    """Returns `command` printing a user's error and exiting with 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except UserError as error:
            console.print(f"[bold red]error:[/] {escape(str(error))}")
            raise typer.Exit(code=2) from None

    return wrapper


def _describe(record: servers.ServerRecord, started: bool) -> str:
    how = "started" if started else "already running"
    return f"{record.name}: {how} at {record.url} (PID {record.pid}, log {record.log})"


@server_app.command()
@_user_errors_exit
def start(port: PrefectPortOption = servers.DEFAULT_PREFECT_PORT) -> None:
    """Start a Prefect server (API and UI) on 127.0.0.1, or reuse the running one.

    It runs detached, with its home and SQLite database under the state directory
    (.state/prefect/), its log in .state/servers/prefect.log.
    """
    paths = _paths()
    record, started = servers.start_prefect(paths, port=port)
    _say(_describe(record, started))
    _say(f"UI: {record.url.removesuffix('/api')}")
    _say("Point runs and schedules at it:")
    _say(f"  export PREFECT_API_URL={record.url}")
    _say("Stop it with `trainyard server stop`.")


@server_app.command()
@_user_errors_exit
def up(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Interface both servers bind to. The default keeps them on this machine; "
            "another (e.g. 0.0.0.0) exposes them to the network.",
        ),
    ] = servers.DEFAULT_HOST,
    prefect_port: Annotated[
        int, typer.Option("--prefect-port", help="Port of the Prefect server.")
    ] = servers.DEFAULT_PREFECT_PORT,
    mlflow_port: Annotated[
        int, typer.Option("--mlflow-port", help="Port of the MLflow tracking server.")
    ] = servers.DEFAULT_MLFLOW_PORT,
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            "--backend-store-uri",
            envvar="MLFLOW_BACKEND_STORE_URI",
            show_envvar=True,
            help="MLflow's store of runs and registry, e.g. postgresql://user:pass@db/mlflow. "
            "Default: SQLite at <state>/team/mlflow.db.",
        ),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            "--artifacts-destination",
            help="Where the MLflow server stores artifacts that clients upload through it, "
            "e.g. s3://bucket/mlflow. Default: <state>/team/artifacts.",
        ),
    ] = None,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(
            "--allowed-hosts",
            help="Host headers MLflow accepts, comma-separated (wildcards allowed). Default: "
            "localhost and 127.0.0.1, plus this machine's name when --host is not loopback.",
        ),
    ] = None,
    basic_auth: Annotated[
        bool,
        typer.Option(
            "--basic-auth",
            help="Require MLflow logins (MLflow's basic-auth app). The admin password must be "
            "in MLFLOW_AUTH_ADMIN_PASSWORD: there is no default.",
        ),
    ] = False,
    mlflow_workers: Annotated[
        int, typer.Option("--mlflow-workers", help="MLflow server worker processes.")
    ] = 2,
) -> None:
    """Team mode: start Prefect and MLflow servers; print what a teammate sets.

    MLflow keeps runs and the registry in --backend-store-uri and the artifacts clients
    upload through it in --artifacts-destination (defaults under .state/team/).
    """
    paths = _paths()
    defaults = servers.default_mlflow_settings(paths, host)
    settings = servers.MlflowSettings(
        backend_store_uri=backend_store_uri or defaults.backend_store_uri,
        artifacts_destination=artifacts_destination or defaults.artifacts_destination,
        allowed_hosts=allowed_hosts or defaults.allowed_hosts,
        basic_auth=basic_auth,
        workers=mlflow_workers,
    )
    if basic_auth:
        servers.check_basic_auth()  # before the warning: nothing starts without it
    if not servers.is_loopback(host):
        console.print(
            f"[bold yellow]warning:[/] --host {escape(host)} exposes both servers to the "
            "network. Prefect's server has no login unless PREFECT_SERVER_API_AUTH_STRING is "
            "set; MLflow's only with --basic-auth. Put them behind TLS to cross networks you "
            "do not trust."
        )
    (prefect, prefect_started), (mlflow, mlflow_started) = servers.start_team(
        paths, settings, host, prefect_port, mlflow_port
    )
    _say(_describe(prefect, prefect_started))
    _say(_describe(mlflow, mlflow_started))
    if mlflow_started:
        _say(f"  store {servers.redacted(settings.backend_store_uri)}")
        _say(f"  artifacts {settings.artifacts_destination} (uploaded through the server)")
        _say(f"  allowed hosts {settings.allowed_hosts}")
    _say("A teammate (and this machine) sets:")
    _say(f"  export PREFECT_API_URL={prefect.url}")
    _say(f"  export MLFLOW_TRACKING_URI={mlflow.url}")
    if basic_auth:
        _say("  export MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>")
        _say("(the admin creates users: see MLflow's basic-auth docs)")
    _say("then `trainyard run` and `trainyard schedule` use these servers.")
    _say("Stop both with `trainyard server stop`.")


@server_app.command()
@_user_errors_exit
def status(which: WhichOption = Which.all) -> None:
    """Show whether each recorded server runs and answers (exit code 3 when one does not)."""
    paths = _paths()
    all_running = True
    for name in reversed(which.names()):
        current = servers.status(paths, name)
        record = current.record
        if record is None:
            _say(f"{name}: not running (nothing recorded in {servers.record_path(paths, name)})")
        elif current.running:
            _say(
                f"{name}: running at {record.url} (PID {record.pid}, since {record.started}, "
                f"log {record.log})"
            )
        elif current.alive:
            _say(
                f"{name}: PID {record.pid} runs but {record.health} does not answer; "
                f"see {record.log}"
            )
        else:
            _say(
                f"{name}: not running (PID {record.pid} is gone); `trainyard server stop` "
                "clears the record"
            )
        all_running = all_running and current.running
    if not all_running:
        raise typer.Exit(code=3)


@server_app.command()
@_user_errors_exit
def stop(which: WhichOption = Which.all) -> None:
    """Stop recorded servers: SIGTERM, then SIGKILL after a grace period.

    The record is removed; a PID that no longer runs the recorded server is left alone.
    """
    paths = _paths()
    for name in which.names():
        _say(servers.stop(paths, name))


def _check_schedule(cron: str, timezone: str) -> CronSchedule:
    """Returns the Prefect cron schedule, or raises ConfigError naming what is wrong."""
    from prefect.server.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as error:
        if any(problem["loc"] == ("timezone",) for problem in error.errors()):
            raise ConfigError(
                f"--timezone {timezone}: not an IANA time zone (e.g. UTC, Europe/Berlin)"
            ) from None
        raise ConfigError(
            f'--cron "{cron}": not a valid cron expression. Give five fields, minute hour '
            'day-of-month month day-of-week, e.g. "0 2 * * *" for 02:00 every day. Nothing '
            "was started."
        ) from None


@_user_errors_exit
def schedule(
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            help='When to run: a cron expression, e.g. "0 2 * * *" (02:00 every day).',
        ),
    ],
    family: Annotated[
        list[str] | None,
        typer.Option(
            "--family",
            "-f",
            help="Run only this family (repeatable): forecast, rl, text. Default: run.families.",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Apply a profile's overrides from params.yaml."),
    ] = None,
    params_file: Annotated[
        Path,
        typer.Option("--params", help="Parameter file; each run reads it as it is then."),
    ] = Path("params.yaml"),
    name: Annotated[str, typer.Option("--name", help="Deployment name.")] = "scheduled",
    timezone: Annotated[
        str, typer.Option("--timezone", help="Time zone of the cron expression (IANA name).")
    ] = "UTC",
    port: Annotated[
        int,
        typer.Option(
            "--port", help="Port of the Prefect server started when PREFECT_API_URL is unset."
        ),
    ] = servers.DEFAULT_PREFECT_PORT,
) -> None:
    """Serve the pipeline as a Prefect deployment on a cron schedule, until Ctrl-C.

    Schedules need a real Prefect server: PREFECT_API_URL's, else the one `trainyard
    server start` recorded, else one started here (it keeps running after Ctrl-C).
    """
    cron_schedule = _check_schedule(cron, timezone)
    from trainyard.flows.pipeline import load_pipeline_config, pipeline_from_params
    from trainyard.tasks.families import get_family
    from trainyard.tasks.pipeline import check_step

    params_path = params_file.resolve()
    sections, _ = load_pipeline_config(params_path, profile, family)
    for family_name, params in sections.items():
        check_step(get_family(family_name), params)
    paths = ProjectPaths(find_project_root(params_path.parent))
    api_url = os.environ.get("PREFECT_API_URL")
    where = configure_environment(paths)
    check_servers(prefect=bool(api_url))
    if api_url:
        _say(f"Prefect: {api_url} (PREFECT_API_URL)")
    else:
        record, started = servers.start_prefect(paths, port=port)
        api_url = record.url
        os.environ["PREFECT_API_URL"] = api_url  # for the flow runs serve starts
        how = "started a Prefect server" if started else "using the recorded Prefect server"
        _say(f"Prefect: {api_url} (PREFECT_API_URL is unset: {how}; PID {record.pid})")
    _say(f"MLflow:  {where['mlflow']}")
    _serve(
        pipeline_from_params,
        cron_schedule,
        name,
        api_url,
        {
            "families": list(sections),
            "profile": profile,
            "params_file": str(params_path),
        },
    )


def _serve(
    flow: Flow, cron_schedule: CronSchedule, name: str, api_url: str, parameters: dict
) -> None:
    """Serves `flow` as deployment `name` on `cron_schedule` until interrupted."""
    from prefect import serve
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.types.entrypoint import EntrypointType

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        deployment = flow.to_deployment(
            name=name,
            schedule=Cron(cron_schedule.cron, timezone=cron_schedule.timezone),
            parameters=parameters,
            # Found by module, whatever the working directory of the run.
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="trainyard's pipeline on a schedule (`trainyard schedule`)",
        )
        upcoming = asyncio.run(cron_schedule.get_dates(n=3))
        _say(
            f"Deployment: {flow.name}/{name}, cron {cron_schedule.cron} ({cron_schedule.timezone})"
        )
        _say(f"Parameters: {json.dumps(parameters)}")
        _say("Next runs: " + ", ".join(when.strftime("%Y-%m-%d %H:%M %Z") for when in upcoming))
        _say(f"Run it now: prefect deployment run '{flow.name}/{name}'")
        _say("Serving until Ctrl-C (the schedule is paused when serving stops).")
        try:
            serve(deployment, print_starting_message=False)
        except KeyboardInterrupt:
            pass
    _say("Stopped serving; the schedule is paused. Prefect server: `trainyard server status`.")
