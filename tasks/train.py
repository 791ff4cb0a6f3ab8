"""Train step: fits one forecaster on prepared windows and keeps its best checkpoint."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from tasks.forecasters import FORECASTERS
from tasks.prepare import read_prepared_for
from tasks.windows import SeriesArrays
from trainyard.config import ConfigError, Params, params_from_dict
from trainyard.environment import quiet_libraries

CHECKPOINT = "best.ckpt"


@dataclass
class TrainResult:
    """What training one model produced."""

    name: str  # model kind, e.g. "lstm"
    model_dir: str  # folder with best.ckpt and any files the kind needs to predict
    epochs: int  # epochs run before early stopping or max_epochs
    best_val_loss: float  # best val/loss seen
    seconds: float  # wall time of fitting
    n_parameters: int  # trainable parameters
    hparams: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics


class EpochHistory(Callback):
    """Records train/ and val/ epoch metrics, and reports progress to an optional queue."""

    def __init__(self, name: str, queue: Any = None):
        self.name = name
        self.queue = queue
        self.history: list[dict[str, float]] = []

    # Lightning validates before it ends the training epoch: only here are both this epoch's
    # train/ aggregates and its val/ metrics in callback_metrics.
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        logged = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith(("train/", "val/")) and not key.endswith("_step")
        }
        # A metric logged per step and per epoch appears as "x" (last step) and "x_epoch":
        # the epoch aggregate wins.
        metrics = {key: value for key, value in logged.items() if not key.endswith("_epoch")}
        metrics.update(
            {k.removesuffix("_epoch"): v for k, v in logged.items() if k.endswith("_epoch")}
        )
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        if self.queue is not None:
            self.queue.put((self.name, trainer.current_epoch + 1, trainer.max_epochs, metrics))


def check_model_names(params: Params) -> None:
    """Raises ConfigError if train.models names a model kind that does not exist."""
    unknown = [name for name in params.train.models if name not in FORECASTERS]
    if unknown:
        raise ConfigError(
            f"train.models: unknown model(s) {', '.join(unknown)}; known: {', '.join(FORECASTERS)}"
        )


def train_model(
    name: str,
    prepared_path: Path,
    params: Params,
    out_dir: Path,
    progress_queue: Any = None,
    threads: int | None = None,
) -> TrainResult:
    """Returns the result of training model kind `name`; its files land in out_dir/name."""
    check_model_names(params)
    if threads:
        torch.set_num_threads(threads)
    quiet_libraries()
    table = read_prepared_for(prepared_path, params)
    arrays = SeriesArrays.from_prepared(table, params.dataset)
    L.seed_everything(params.train.seed, workers=True, verbose=False)
    kind = FORECASTERS[name]
    setup = kind.setup(arrays, table, params)
    history = EpochHistory(name, progress_queue)
    final_dir = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-"))
    try:
        checkpoint = ModelCheckpoint(
            dirpath=work_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1
        )
        trainer = L.Trainer(
            max_epochs=params.train.max_epochs,
            limit_train_batches=params.train.limit_train_batches or None,
            gradient_clip_val=params.train.gradient_clip,
            callbacks=[
                EarlyStopping(monitor="val/loss", mode="min", patience=params.train.patience),
                checkpoint,
                history,
            ],
            accelerator="cpu",
            deterministic=True,
            logger=False,
            enable_progress_bar=progress_queue is None,
            enable_model_summary=False,
            default_root_dir=work_dir,
        )
        started = time.perf_counter()
        trainer.fit(setup.module, setup.train_loader, setup.val_loader)
        seconds = time.perf_counter() - started
        for file_name, value in setup.extra_files.items():
            with open(work_dir / f"{file_name}.pkl", "wb") as handle:
                pickle.dump(value, handle)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(work_dir, final_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return TrainResult(
        name=name,
        model_dir=str(final_dir),
        epochs=trainer.current_epoch,
        best_val_loss=float(checkpoint.best_model_score),
        seconds=seconds,
        n_parameters=sum(p.numel() for p in setup.module.parameters() if p.requires_grad),
        hparams=setup.hparams,
        history=history.history,
    )


def _train_in_child(
    name: str, prepared_path: str, params: dict, out_dir: str, queue: Any, threads: int
) -> TrainResult:
    return train_model(
        name, Path(prepared_path), params_from_dict(params), Path(out_dir), queue, threads
    )


def train_in_subprocess(
    name: str,
    prepared_path: Path,
    params: Params,
    out_dir: Path,
    progress_queue: Any = None,
    threads: int = 1,
) -> TrainResult:
    """Returns train_model's result, run in a fresh process (own RNG, own torch threads)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(
            _train_in_child,
            name,
            str(prepared_path),
            params.to_dict(),
            str(out_dir),
            progress_queue,
            threads,
        )
        return future.result()


def parallel_trainings(params: Params) -> int:
    """Returns how many models to train at once: train.parallel, or one per core."""
    if params.train.parallel > 0:
        return params.train.parallel
    return max(1, min(len(params.train.models), os.cpu_count() or 1))
