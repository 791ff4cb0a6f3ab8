"""The `trainyard` command as tests run it: from this interpreter's environment, in a project
folder with its own environment variables."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run_trainyard(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Returns the finished `trainyard ARGS` with its output captured."""
    return subprocess.run(
        [str(BIN / "trainyard"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_trainyard(
    args: list[str], cwd: Path, env: dict[str, str], own_group: bool = False
) -> subprocess.Popen:
    """Returns `trainyard ARGS` running (stdout and stderr in one pipe); with `own_group` in
    its own process group, so what it starts can be found by the group id (its PID)."""
    return subprocess.Popen(
        [str(BIN / "trainyard"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=own_group,
    )


def group_alive(pgid: int) -> bool:
    """Returns whether any process of process group `pgid` still runs. Zombies do not count:
    a stopped server whose parent is gone may wait long for init to reap it (os.killpg(pgid,
    0) would still find it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                    return True
    return False


def group_ends(pgid: int, seconds: float = 30) -> bool:
    """Returns whether every process of group `pgid` ends within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.5)
    return not group_alive(pgid)
