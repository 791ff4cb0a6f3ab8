"""Benchmark: the cost of predicting with a registered forecaster, three ways.

In a scratch project, a small LSTM forecaster of co2 is trained and registered (the quick
profile, one model) and given `champion`. The same 60-week history (12 forecast rows out) is
then predicted:

  (a) direct: `model.predict(frame)` on a pyfunc loaded once in this process;
  (b) CLI:    `trainyard predict co2-forecaster@champion --input history.csv --output out.csv`
              as a subprocess: interpreter start, imports, registry lookup, model load, predict
              and write; every call is cold;
  (c) served: `mlflow models serve -m models:/co2-forecaster@champion --env-manager local`,
              answering sequential POST /invocations (dataframe_split) over one keep-alive
              connection.

(a) and (c) run ~10 s each, alternating in 5 rounds so that other load on the machine weighs
on both alike; both use torch's default threads (one per core). (a) is timed twice: called
from the main thread, as a script calls it, and from a worker thread, as the server's request
handler calls it (on a busy machine these differ; see docs/benchmarks.md).

It prints per-request latency (median, p90), rows/s (forecast rows out), and the ratios
CLI / direct and served per-request / direct. Run from the project root:

    .venv/bin/python bench/predict.py                  # ~3 minutes on 2 cores
    .venv/bin/python bench/predict.py --seconds 5 --cli-runs 2

Everything goes to a temporary folder removed at exit (TRAINYARD_STATE_DIR, the MLflow SQLite
store and artifacts); MLFLOW_TRACKING_URI and PREFECT_API_URL are dropped from the
environment, so no server of the user's is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from trainyard.environment import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NAME = "co2-forecaster"
ROUNDS = 5  # alternating rounds of direct and served calls


def isolated_env(scratch: Path) -> dict[str, str]:
    """Returns the environment every step runs in: state and MLflow store under scratch."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL")
    }
    state = scratch / ".state"
    env.update(
        TRAINYARD_STATE_DIR=str(state),
        MLFLOW_TRACKING_URI=f"sqlite:///{state / 'mlflow.db'}",
        MLFLOW_DISABLE_TELEMETRY="true",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # uvicorn for `mlflow models serve`
    )
    return env


def register_forecaster(scratch: Path, env: dict[str, str]) -> float:
    """Trains and registers one quick-profile LSTM forecaster, gives it `champion`; returns
    the seconds it took."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["run"]["families"] = ["forecast"]
    params["forecast"]["train"]["models"] = ["lstm"]
    params["forecast"]["evaluate"]["classical"] = "none"
    (scratch / "params.yaml").write_text(yaml.safe_dump(params))
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "trainyard"), "run", "--no-orchestrator", "--profile", "quick"],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"training failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    uri = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(NAME, "challenger").version
    client.set_registered_model_alias(NAME, "champion", version)
    return time.perf_counter() - started


def timed_loop(call: Callable[[], object], seconds: float, at_least: int = 5) -> list[float]:
    """Returns the wall time of every call of `call`, repeated for `seconds` (at least
    `at_least` times), after one untimed warm-up call."""
    call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < at_least:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


@contextlib.contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[tuple[str, float]]:
    """Yields (url, seconds to the first answer of /ping) of `mlflow models serve` on the
    champion; the server runs in its own process group, stopped by its PID at the end."""
    import httpx

    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{NAME}@champion",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while True:
            if server.poll() is not None or time.perf_counter() - started > 180:
                sys.exit(f"mlflow models serve did not start:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, time.perf_counter() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


def summary(label: str, times: list[float], rows: int | None) -> tuple[str, float]:
    """Returns a table line for `times` (seconds per request) and their median."""
    median = statistics.median(times)
    p90 = sorted(times)[max(0, round(0.9 * len(times)) - 1)]
    per_second = f"{rows / median:>10.0f}" if rows is not None else f"{'-':>10}"
    line = (
        f"{label:<34} {len(times):>6} {1000 * median:>11.1f} {1000 * p90:>10.1f} "
        f"{1 / median:>10.2f} {per_second}"
    )
    return line, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per loop")
    parser.add_argument("--cli-runs", type=int, default=3, help="cold `trainyard predict` runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="predict-bench-") as folder:
        scratch = Path(folder)
        env = isolated_env(scratch)
        train_seconds = register_forecaster(scratch, env)

        from trainyard.tasks.forecast.datasets import co2_weekly

        history = co2_weekly().tail(60).reset_index(drop=True)
        history.to_csv(scratch / "history.csv", index=False)
        body = json.loads(
            history.assign(date=history["date"].dt.strftime("%Y-%m-%d")).to_json(
                orient="split", index=False
            )
        )

        # (a) direct: one process, the model loaded once.
        os.environ.update(env)
        import httpx
        import mlflow.pyfunc
        import torch

        started = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
        load_seconds = time.perf_counter() - started
        rows = len(model.predict(history))

        # (a) and (c) alternate in rounds, so that whatever else runs on the machine weighs
        # on both alike; the server is idle while the direct calls run.
        direct: list[float] = []
        threaded: list[float] = []
        serve: list[float] = []
        pool = ThreadPoolExecutor(max_workers=1)  # one worker thread, as the server's
        with served(env, scratch / "serve.log") as (url, start_seconds):
            with httpx.Client(timeout=120) as client:

                def request() -> int:
                    answer = client.post(f"{url}/invocations", json={"dataframe_split": body})
                    answer.raise_for_status()
                    return len(answer.json()["predictions"])

                assert request() == rows
                share = args.seconds / ROUNDS
                for _ in range(ROUNDS):
                    direct += timed_loop(lambda: model.predict(history), share)
                    threaded += pool.submit(
                        timed_loop, lambda: model.predict(history), share
                    ).result()
                    serve += timed_loop(request, share)
        pool.shutdown()

        # (b) the CLI, cold every time; `trainyard --help` is its interpreter + import floor.
        def run(*command: str) -> int:
            done = subprocess.run(command, cwd=scratch, env=env, capture_output=True)
            if done.returncode != 0:
                sys.exit(done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:])
            return 0

        trainyard = str(BIN / "trainyard")
        predict_args = ("predict", f"{NAME}@champion", "--input", "history.csv")
        cli = timed_loop(
            lambda: run(trainyard, *predict_args, "--output", "out.csv"), 0, args.cli_runs
        )
        floor = timed_loop(lambda: run(trainyard, "--help"), 0, 2)

    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), mlflow {mlflow.__version__}, "
        f"Python {sys.version.split()[0]}"
    )
    print(
        f"model: LSTM forecaster of co2 (quick profile), registered in {train_seconds:.0f} s; "
        f"request: {len(history)} history rows in, {rows} forecast rows out"
    )
    print(
        f"one-time: load_model in process {load_seconds:.1f} s; mlflow models serve start "
        f"to first /ping {start_seconds:.1f} s"
    )
    header = (
        f"{'way':<34} {'calls':>6} {'median ms':>11} {'p90 ms':>10} {'req/s':>10} {'rows/s':>10}"
    )
    print(header)
    print("-" * len(header))
    line, direct_median = summary("(a) direct pyfunc.predict", direct, rows)
    print(line)
    line, threaded_median = summary("    the same, in a worker thread", threaded, rows)
    print(line)
    line, cli_median = summary("(b) trainyard predict (cold)", cli, rows)
    print(line)
    print(summary("    trainyard --help (start floor)", floor, None)[0])
    line, serve_median = summary("(c) served /invocations", serve, rows)
    print(line)
    print(f"ratio CLI / direct:                      {cli_median / direct_median:,.0f}x")
    print(f"ratio served per-request / direct:       {serve_median / direct_median:.2f}x")
    print(f"ratio served / direct in a worker thread: {serve_median / threaded_median:.2f}x")


if __name__ == "__main__":
    main()
