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
def training_progress(console: Console) -> Iterator[Any]:
    """Yields a queue that child processes put (model, epoch, max_epochs, metrics) on, while a
    bar per model shows its epochs and latest val/loss."""
    manager = multiprocessing.get_context("spawn").Manager()
    events = manager.Queue()
    progress = Progress(
        TextColumn("{task.fields[model]:>5}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  val/loss {task.fields[val_loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bars: dict[str, int] = {}  # a bar appears when its model reports its first epoch
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                name, epoch, total, metrics = events.get(timeout=0.2)
            except (queue_module.Empty, EOFError, OSError):
                continue
            value = metrics.get("val/loss")
            if name not in bars:
                bars[name] = progress.add_task("", total=total, model=name, val_loss="-")
            progress.update(
                bars[name],
                completed=epoch,
                total=total,
                val_loss=f"{value:.4f}" if value is not None else "-",
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
                for task_id in bars.values():  # early stopping ends a bar before max_epochs
                    progress.update(task_id, total=progress.tasks[task_id].completed or 1)
    finally:
        manager.shutdown()
