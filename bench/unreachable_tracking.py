"""Time from an unreachable MLFLOW_TRACKING_URI to the error: `trainyard run` against the
MLflow client's own behaviour (its retries), side by side in one process run.

    python bench/unreachable_tracking.py [--cap 180]

The target is under 10 s for trainyard. The MLflow client is measured by creating an
experiment against the same closed port; it is stopped at --cap seconds if still retrying.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainyard.environment import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str], cap: float) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=cap)
        output = (done.stdout + done.stderr).strip().splitlines()
        last = output[-1] if output else ""
    except subprocess.TimeoutExpired:
        last = f"still retrying after {cap:.0f} s (stopped)"
    return time.perf_counter() - started, last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cap", type=float, default=180.0)
    args = parser.parse_args()
    uri = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TRAINYARD_STATE_DIR": state}
        ours, message = timed(
            [str(BIN / "trainyard"), "run", "--params", str(ROOT / "params.yaml")], env, args.cap
        )
        print(f"trainyard run:          {ours:6.1f} s  {message[:120]}")
        client = "import mlflow; mlflow.MlflowClient().create_experiment('probe')"
        theirs, message = timed([sys.executable, "-c", client], env, args.cap)
        print(f"MlflowClient (default): {theirs:6.1f} s  {message[:120]}")
    print(f"ratio MLflow client / trainyard: {theirs / ours:.1f}x (MLflow capped at {args.cap} s)")


if __name__ == "__main__":
    main()
