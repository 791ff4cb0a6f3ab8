"""Live progress bars for models training in child processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import queue as queue_module
import threading
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def training_progress(console: Console | None = None) -> Iterator[Any]:
    """Yields a queue that child processes put (model, done, total, unit, monitor, value) on
    (unit: epochs, or steps under a step budget), while a bar per model shows its progress
    and the latest value of its monitored metric."""
    manager = multiprocessing.get_context("spawn").Manager()
    events = manager.Queue()
    progress = Progress(
        TextColumn("{task.fields[model]:>6}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}  {task.fields[monitor]} {task.fields[value]}"),
        TimeElapsedColumn(),
        console=console or Console(),
        transient=False,
    )
    bars: dict[str, int] = {}  # a bar appears when its model reports its first epoch
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                name, done, total, unit, monitor, value = events.get(timeout=0.2)
            except (queue_module.Empty, EOFError, OSError):
                continue
            if name not in bars:
                bars[name] = progress.add_task(
                    "", total=total, model=name, unit=unit, monitor=monitor, value="-"
                )
            progress.update(
                bars[name],
                completed=done,
                total=total,
                value=f"{value:.4f}" if value is not None else "-",
            )

    reader = threading.Thread(target=drain, daemon=True)
    try:
        with progress:
            reader.start()
            try:
                yield events
            finally:
                stop.set()
                reader.join()
                for task_id in bars.values():  # early stopping ends a bar before its total
                    progress.update(task_id, total=progress.tasks[task_id].completed or 1)
    finally:
        manager.shutdown()
