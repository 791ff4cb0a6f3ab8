"""Benchmarks N independent trainings run one after another against the same trainings on a
2-worker Dask LocalCluster through prefect-dask (`trainyard run --runner dask`).

In one process: the RL family's scenarios are prepared once, then N trainings (DQN and A2C
agents, alternating, each with its own seed) run three ways on the same inputs:

- sequential: one after another, in this process's thread;
- dask: as Prefect tasks on a LocalCluster of 2 single-threaded worker processes, started and
  closed inside the timed flow run (`trainyard.flows.family.task_runner(DaskCluster(...))`);
- threads: as Prefect tasks on the default runner (`trainyard run` without --runner), which
  trains as many at once as there are cores.

Every training is the pipeline's own unit of work, `train_in_subprocess` (a fresh process,
1 torch thread), so the ways differ only in where they run; each way's best validation scores
must match the sequential ones. Printed per way: wall time, CPU time (this process and every
process it started: the work done, whatever else shares the cores) and speed-up =
sequential wall / its wall. The load average is printed too: other work on the machine slows
the parallel ways most. Run from the project root:

    .venv/bin/python bench/dask_speedup.py                     # 4 trainings
    .venv/bin/python bench/dask_speedup.py --trainings 2 --steps 100    # quick look

Isolation: PREFECT_HOME, the state directory and the trained models go to a temporary folder
removed at exit; PREFECT_API_URL / MLFLOW_TRACKING_URI are dropped (nothing is tracked).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("dqn", "a2c")
DASK_WORKERS = 2


def isolate(workdir: Path) -> None:
    """Points Prefect's and trainyard's state into `workdir` (before Prefect is imported)."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)
    (workdir / "state" / "prefect").mkdir(parents=True)
    os.environ["TRAINYARD_STATE_DIR"] = str(workdir / "state")
    os.environ["PREFECT_HOME"] = str(workdir / "state" / "prefect")
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def rl_params(params_file: Path, args: argparse.Namespace) -> Any:
    """Returns the rl section of `params_file`, shrunk to the benchmark's training size."""
    import yaml

    from trainyard.config import section_from_dict
    from trainyard.tasks.rl.family import RL

    raw = yaml.safe_load(params_file.read_text())["rl"]
    raw["scenarios"]["episodes"] = 16
    raw["train"].update(
        max_epochs=args.epochs,
        patience=args.epochs,  # no early stop: every training does the same work
        steps_per_epoch=args.steps,
        validation_episodes=8,
    )
    return section_from_dict(RL.section, raw, f"{params_file}: rl")


def trainings(params: Any, count: int) -> list[tuple[str, Any]]:
    """Returns `count` (label, params) pairs: DQN and A2C alternating, seeds 1, 1, 2, 2, ..."""
    jobs = []
    for number in range(count):
        kind, seed = KINDS[number % 2], 1 + number // 2
        train = params.train.model_copy(update={"models": [kind], "seed": seed})
        jobs.append((f"{kind}-seed{seed}", params.model_copy(update={"train": train})))
    return jobs


def train_one(label: str, prepared: Path, params: Any, out_dir: Path) -> float:
    """Returns the best validation score of one training, in its own process, 1 thread."""
    from trainyard.tasks.pipeline import DiscardProgress
    from trainyard.tasks.rl.family import RL
    from trainyard.tasks.training import train_in_subprocess

    kind = params.train.models[0]
    result = train_in_subprocess(
        RL, kind, prepared, params, out_dir / label, DiscardProgress(), threads=1
    )
    return result.best_score


def on_prefect(jobs: list, prepared: Path, out_dir: Path, dask: Any) -> dict[str, float]:
    """Returns every job's best score, trained as Prefect tasks on `dask` (None: threads)."""
    from prefect import flow, task

    from trainyard.flows.family import task_runner

    train = task(train_one, name="train")

    @flow(name="bench-dask-speedup", task_runner=task_runner(dask))
    def train_all() -> dict[str, float]:
        """Returns each job's best score, all submitted at once."""
        futures = {label: train.submit(label, prepared, p, out_dir) for label, p in jobs}
        return {label: future.result() for label, future in futures.items()}

    return train_all()


def cluster_overhead(dask: Any) -> float:
    """Returns the wall time of a flow run with one trivial task on `dask`: starting and
    closing the LocalCluster, and a task run's round trip."""
    from prefect import flow, task

    from trainyard.flows.family import task_runner

    @task(name="getpid")
    def worker_pid() -> int:
        """Returns the process id of the worker running it."""
        return os.getpid()

    @flow(name="bench-dask-overhead", task_runner=task_runner(dask))
    def one_trivial_task() -> int:
        """Returns a worker's process id."""
        return worker_pid.submit().result()

    return timed(one_trivial_task)[0]


def timed(call) -> tuple[float, Any]:
    """Returns the wall time of `call()` in seconds and its value."""
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def cpu_seconds() -> float:
    """Returns the CPU time (user + system) of this process and of every descendant it (or
    they) waited for: training processes, Dask workers once their cluster closed."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def measured(call) -> tuple[float, float, Any]:
    """Returns the wall and CPU seconds of `call()`, and its value."""
    cpu = cpu_seconds()
    seconds, value = timed(call)
    return seconds, cpu_seconds() - cpu, value


def load() -> str:
    """Returns the 1-minute load average: other work on the cores skews every way's time."""
    return f"load {os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark and prints each way's wall time, the scores check and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainings", type=int, default=4, help="independent trainings")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per training")
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per epoch")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument("--no-threads", action="store_true", help="skip the threads run")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="trainyard-dask-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    isolate(workdir)

    import prefect
    import torch

    from trainyard.environment import ProjectPaths, configure_environment, quiet_libraries
    from trainyard.flows.family import DaskCluster
    from trainyard.tasks.rl.family import RL

    configure_environment(ProjectPaths(workdir))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    params = rl_params(args.params, args)
    prepared = Path(RL.prepare(params, workdir, workdir / "prepared").path)
    jobs = trainings(params, args.trainings)
    print(
        f"{args.trainings} trainings ({', '.join(label for label, _ in jobs)}): "
        f"{args.epochs} epochs x {args.steps} steps, {params.train.num_envs} envs, 1 torch "
        "thread each, each in its own process"
    )
    print(
        f"prefect {prefect.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"before: {load()} on {os.cpu_count()} cores")
    # Starts the ephemeral Prefect server (not timed) so no way pays for it.
    on_prefect([], prepared, workdir / "warmup", None)

    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    ways = {
        "sequential": lambda: {
            label: train_one(label, prepared, p, workdir / "seq") for label, p in jobs
        },
        f"dask ({DASK_WORKERS}-worker LocalCluster)": lambda: on_prefect(
            jobs, prepared, workdir / "dask", DaskCluster(workers=DASK_WORKERS)
        ),
        "threads (the default runner)": lambda: on_prefect(jobs, prepared, workdir / "thr", None),
    }
    if args.no_threads:
        ways.pop("threads (the default runner)")
    for way, call in ways.items():
        results[way] = measured(call)
        print(f"{way}: {results[way][0]:.1f} s wall, {results[way][1]:.1f} s CPU ({load()})")
    overhead = cluster_overhead(DaskCluster(workers=DASK_WORKERS))
    print(f"dask cluster start and close (a one-trivial-task flow run): {overhead:.1f} s")

    print(f"\n{'way':<38} {'wall s':>7} {'CPU s':>7} {'speed-up':>9}  scores")
    sequential, _, reference = results["sequential"]
    for way, (seconds, cpu, scores) in results.items():
        same = all(abs(scores[label] - reference[label]) < 1e-6 for label in reference)
        print(
            f"{way:<38} {seconds:>7.1f} {cpu:>7.1f} {sequential / seconds:>8.2f}x  "
            f"{'same as sequential' if same else 'DIFFER from sequential'}"
        )


if __name__ == "__main__":
    main()
