"""A watchdog that stops what a `trainyard run` started when the run itself dies.

A SIGKILLed process cannot clean up: its ephemeral Prefect server, the progress-bar manager
and its training processes would be re-parented to init and run on. The watchdog is a small
separate process that records the run's descendants every half second and, once the run is
gone, stops those still alive (SIGTERM, then SIGKILL), then exits. Linux only (/proc); a
no-op elsewhere.

    python -m trainyard.watchdog PID START
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainyard.environment import process_alive, process_start

POLL_S = 0.5
GRACE_S = 5.0


def start_watchdog() -> subprocess.Popen | None:
    """Starts a watchdog over this process (None where /proc is missing)."""
    if not Path("/proc/self/stat").exists():
        return None
    pid = os.getpid()
    return subprocess.Popen(
        [sys.executable, "-m", "trainyard.watchdog", str(pid), process_start(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the run's process group: a group kill spares it
    )


def descendants(root: int) -> dict[int, str]:
    """Returns every live descendant of process `root`: pid -> start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in found or pid == os.getpid():
            continue
        found[pid] = process_start(pid)
        stack.extend(children.get(pid, []))
    return found


def watch(parent: int, started: str) -> None:
    """Returns once `parent` is gone and the descendants it left are stopped."""
    seen: dict[int, str] = {}
    while process_alive(parent, started):
        seen.update(descendants(parent))
        seen = {pid: start for pid, start in seen.items() if process_alive(pid, start)}
        time.sleep(POLL_S)
    # Children re-parented to init after the death are found through the last snapshot.
    for pid in list(seen):
        seen.update(descendants(pid))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = {pid: start for pid, start in seen.items() if process_alive(pid, start)}
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_S
        while alive and time.monotonic() < deadline:
            alive = {pid: start for pid, start in alive.items() if process_alive(pid, start)}
            time.sleep(0.1)
        if not alive:
            return


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
