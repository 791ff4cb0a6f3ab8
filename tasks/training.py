"""Train step for every family: fit one model in its own process and keep its best checkpoint.

The family gives a fresh module and its loaders (`Family.setup`); this module owns the
Lightning Trainer, checkpointing on the family's monitor, early stopping, per-epoch history,
progress reports and the atomic swap of the finished model folder into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import queue
import random
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy

from trainyard.config import ConfigError, FamilySection
from trainyard.environment import free_port, quiet_libraries
from trainyard.errors import DivergedError, MissingStepError
from trainyard.tasks.family import CHECKPOINT, Family, TrainingSetup, TrainResult

log = logging.getLogger(__name__)

TRAINING_SUMMARY = "training.json"


class EpochHistory(Callback):
    """Records train/, val/ and rollout/ epoch metrics, and reports progress to a queue."""

    def __init__(self, name: str, monitor: str, queue: Any = None):
        self.name = name
        self.monitor = monitor
        self.queue = queue
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}  # kept in checkpoints: a resumed run keeps it

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    # Lightning validates before it ends the training epoch: only here are both this epoch's
    # train/ aggregates and its val/ metrics in callback_metrics.
    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        logged = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith(("train/", "val/", "rollout/")) and not key.endswith("_step")
        }
        # A metric logged per step and per epoch appears as "x" (last step) and "x_epoch":
        # the epoch aggregate wins.
        metrics = {key: value for key, value in logged.items() if not key.endswith("_epoch")}
        metrics.update(
            {k.removesuffix("_epoch"): v for k, v in logged.items() if k.endswith("_epoch")}
        )
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        if self.queue is not None:
            steps = trainer.max_steps > 0  # a step budget: progress in steps
            self.queue.put(
                (
                    self.name,
                    trainer.global_step if steps else trainer.current_epoch + 1,
                    trainer.max_steps if steps else trainer.max_epochs,
                    "steps" if steps else "epochs",
                    self.monitor,
                    metrics.get(self.monitor),
                )
            )


class DivergenceGuard(Callback):
    """Stops a model whose training loss (any step) or weights (any epoch end) are not finite:
    the error names the model and the epoch, and nothing of the run is kept as its model."""

    ADVICE = (
        "nothing of this model is kept. Lower its learning rate, clip gradients harder, or "
        "look for huge or non-numeric values in the training data"
    )

    def __init__(self, name: str):
        self.name = name

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            raise DivergedError(
                f"{self.name}: training diverged in epoch {trainer.current_epoch + 1} (step "
                f"{trainer.global_step}): the training loss is {float(loss.detach().max())}; "
                f"{self.ADVICE}"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for name, parameter in module.named_parameters():
            if not torch.isfinite(parameter.detach()).all():
                raise DivergedError(
                    f"{self.name}: training diverged in epoch {trainer.current_epoch + 1}: "
                    f"weights {name} are not finite; {self.ADVICE}"
                )


def check_model_names(family: Family, params: FamilySection) -> None:
    """Raises ConfigError if train.models names a model kind the family does not have."""
    known = family.model_kinds()
    unknown = [name for name in params.train.models if name not in known]
    if unknown:
        raise ConfigError(
            f"{family.name}.train.models: unknown model(s) {', '.join(unknown)}; "
            f"known: {', '.join(known)}"
        )


def train_model(
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    out_dir: Path,
    progress_queue: Any = None,
    threads: int | None = None,
    resume_dir: Path | None = None,
) -> TrainResult:
    """Returns the result of training model kind `name`; its files land in out_dir/name.

    With `resume_dir` (one folder per model, data version and params), training keeps its
    latest checkpoint there every epoch; a run killed mid-training and started again on the
    same inputs resumes from it (weights, optimiser, epoch, early stopping, history, random
    state) instead of from scratch. The checkpoint is read as weights only: an unreadable one
    is set aside and training starts over. With train.devices > 1 (and a kind the family can
    shard), the model trains in that many DDP processes (`fit_distributed`). Where the family
    gives the model several variants (`Family.variants`, e.g. encoder lengths), each is trained
    (and refitted) on its own, kept as out_dir/name/variants/<i>, and the model is their
    combination (`Family.variant_files` says how).
    """
    check_model_names(family, params)
    if name in family.direct_kinds:
        return fit_direct(family, name, prepared_path, params, out_dir)
    if threads:
        torch.set_num_threads(threads)
    quiet_libraries()
    final_dir = out_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = _claim(resume_dir) if resume_dir is not None else None
    work_dir = resume_dir if lock else Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-"))
    fit = fit_distributed if processes(family, name, params) > 1 else _fit
    variants = family.variants(name, prepared_path, params)
    try:
        started = time.perf_counter()
        folders = (
            [work_dir]
            if len(variants) == 1
            else [work_dir / f"variant-{i}" for i in range(len(variants))]
        )
        runs = []
        for variant, folder in zip(variants, folders, strict=True):
            folder.mkdir(exist_ok=True)
            fitted = _finished(folder)
            if fitted is None:
                fitted = _fit_or_restart(
                    fit, family, name, prepared_path, variant, folder, progress_queue
                )
                _refit(family, name, prepared_path, variant, folder, fitted)
                _keep_finished(folder, fitted)
            runs.append(fitted)
        seconds = time.perf_counter() - started
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-done-"))
        if len(variants) == 1:
            fitted = runs[0]
            shutil.copy2(work_dir / CHECKPOINT, staging / CHECKPOINT)
            _write_files(staging, fitted)
        else:
            members = []
            for i, (folder, run) in enumerate(zip(folders, runs, strict=True)):
                members.append(staging / VARIANTS / str(i))
                members[-1].mkdir(parents=True)
                shutil.copy2(folder / CHECKPOINT, members[-1] / CHECKPOINT)
                _write_files(members[-1], run)
            for file_name, value in family.variant_files(name, members, params).items():
                (staging / f"{file_name}.json").write_text(json.dumps(value))
            fitted = _merged(runs)
        for file_name, value in family.calibrate(name, staging, prepared_path, params).items():
            (staging / f"{file_name}.json").write_text(json.dumps(value))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(staging, final_dir)
        _empty(work_dir)
    except DivergedError:
        _empty(work_dir)  # a diverged model is never resumed
        raise
    finally:
        if lock is None:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            lock.release()
    return TrainResult(
        name=name,
        model_dir=str(final_dir),
        epochs=fitted.epochs,
        best_score=fitted.best_score,
        monitor=fitted.monitor,
        seconds=seconds,
        n_parameters=fitted.n_parameters,
        hparams=fitted.hparams,
        history=fitted.history,
        resumed_from_step=fitted.resumed_from_step,
        processes=fitted.processes,
        train_batches=fitted.train_batches,
    )


VARIANTS = "variants"  # subfolder of a model folder holding one model folder per variant


FINISHED = "finished.json"  # in a model's (or variant's) work folder: its Fitted, once fitted


def _keep_finished(folder: Path, fitted: Fitted) -> None:
    """Records in folder that its model (or variant) is fitted and refitted, with what fitting
    gave: a run killed after it (during a later variant, or before the model folder is
    assembled) and started again keeps it as it is; resuming it from its last checkpoint would
    refit it again over its refitted weights."""
    _write_files(folder, fitted)
    record = {k: v for k, v in asdict(fitted).items() if k != "tables"}
    record["tables"] = list(fitted.tables)
    temporary = folder / f".{FINISHED}.tmp"
    temporary.write_text(json.dumps(record, default=str))
    os.replace(temporary, folder / FINISHED)


def _finished(folder: Path) -> Fitted | None:
    """Returns the Fitted of the model (or variant) a killed run fitted and refitted in folder
    (None if none did, or its record cannot be read: it is then trained again)."""
    path = folder / FINISHED
    if not path.exists() or not (folder / CHECKPOINT).exists():
        return None
    try:
        record = json.loads(path.read_text())
        tables = {n: pd.read_parquet(folder / f"{n}.parquet") for n in record.pop("tables")}
        fitted = Fitted(**record, tables=tables)
    except Exception as error:  # noqa: BLE001 - a damaged record: train the variant again
        log.warning("%s: unreadable (%s); training it again", path, error)
        _empty(folder)
        return None
    log.info("%s: kept what a stopped run fitted and refitted", folder)
    return fitted


def _merged(runs: list[Fitted]) -> Fitted:
    """Returns the record of a model made of several variants: the last variant's (its
    history, epochs and early-stopping score), with each variant's hparams that differ listed
    in variant order ("24, 48") and the parameters of all."""
    main = runs[-1]
    differing = {
        key
        for run in runs
        for key in run.hparams
        if any(other.hparams.get(key) != run.hparams.get(key) for other in runs)
    }
    hparams = {
        **main.hparams,
        **{key: ", ".join(str(run.hparams.get(key)) for run in runs) for key in sorted(differing)},
        "variants": len(runs),
    }
    return replace(main, hparams=hparams, n_parameters=sum(run.n_parameters for run in runs))


def _fit_or_restart(
    fit: Any,
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    work_dir: Path,
    progress_queue: Any,
) -> Fitted:
    """Returns `fit`'s result in work_dir, resumed from its last checkpoint when there is
    one; a checkpoint that cannot be resumed is set aside and training starts over."""
    last = work_dir / "last.ckpt"
    try:
        return fit(family, name, prepared_path, params, work_dir, progress_queue, last)
    except DivergedError:
        raise
    except Exception as error:  # noqa: BLE001 - only a resume is retried, fresh
        if not last.exists():
            raise
        log.warning("%s: %s cannot be resumed (%s); training from scratch", name, last, error)
        _empty(work_dir)
        return fit(family, name, prepared_path, params, work_dir, progress_queue, None)


def _write_files(folder: Path, fitted: Fitted) -> None:
    """Writes a fitted model's files (JSON and Parquet) beside its checkpoint in folder."""
    for file_name, value in fitted.extra_files.items():
        (folder / f"{file_name}.json").write_text(json.dumps(value))
    for file_name, table in fitted.tables.items():
        table.to_parquet(folder / f"{file_name}.parquet", index=False)


def _cpu_trainer(
    params: FamilySection,
    setup: TrainingSetup,
    work_dir: Path,
    callbacks: list[Callback],
    **options: Any,
) -> L.Trainer:
    """Returns a deterministic CPU Trainer without a logger for `setup`'s module, with the
    train.limit_train_batches cap and the setup's gradient clipping; `options` add the rest."""
    return L.Trainer(
        limit_train_batches=params.train.limit_train_batches or None,
        gradient_clip_val=setup.gradient_clip,
        callbacks=callbacks,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_model_summary=False,
        default_root_dir=work_dir,
        **options,
    )


def _refit(
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    work_dir: Path,
    fitted: Fitted,
) -> None:
    """Where the family asks for it (`Family.refit_params`: the data its early stop held out
    included), trains model `name` again from scratch, in this process, for as many epochs
    as its best checkpoint took, writes it over work_dir's best checkpoint and logs its steps
    as `refit_steps` in fitted.hparams. A model trained in DDP processes is not refitted."""
    params = family.refit_params(name, prepared_path, params)
    if params is None:
        return
    if fitted.processes > 1:
        log.warning(
            "%s: train.refit is skipped for a model trained in %d DDP processes; its model "
            "is the one stopped early on the end of the train split",
            name,
            fitted.processes,
        )
        return
    best = torch.load(work_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    L.seed_everything(params.train.seed, workers=True, verbose=False)
    setup = family.setup(name, prepared_path, params)
    batches = max(len(setup.train_loader), 1)
    if params.train.limit_train_batches:
        batches = min(batches, params.train.limit_train_batches)
    steps = max(1, round(best["global_step"] * batches / max(fitted.train_batches, 1)))
    trainer = _cpu_trainer(
        params,
        setup,
        work_dir,
        [DivergenceGuard(name), RandomState()],
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    warnings.filterwarnings("ignore", message=r"You defined a `validation_step` but have no")
    trainer.fit(setup.module, setup.train_loader, weights_only=True)
    trainer.save_checkpoint(work_dir / CHECKPOINT, weights_only=True)
    fitted.hparams = {**fitted.hparams, "refit_steps": steps}


def fit_direct(
    family: Family, name: str, prepared_path: Path, params: FamilySection, out_dir: Path
) -> TrainResult:
    """Returns the result of fitting model kind `name` without Lightning (a family's
    `direct_kinds`); its JSON files land in out_dir/name whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fitted = family.fit_direct(name, prepared_path, params)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}-done-"))
    try:
        for file_name, value in fitted.files.items():
            (staging / f"{file_name}.json").write_text(json.dumps(value))
        final_dir = out_dir / name
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(staging, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TrainResult(
        name=name,
        model_dir=str(final_dir),
        epochs=0,
        best_score=fitted.best_score,
        monitor=fitted.monitor,
        seconds=fitted.seconds,
        n_parameters=fitted.n_parameters,
        hparams=fitted.hparams,
    )


def _claim(resume_dir: Path) -> FileLock | None:
    """Returns the held lock of `resume_dir`, or None while another process trains there."""
    resume_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(resume_dir) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def _empty(folder: Path) -> None:
    for item in folder.iterdir() if folder.exists() else []:
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


class RandomState(Callback):
    """Keeps the global random state (torch, numpy, Python) in checkpoints and restores it on
    resume, and tells the training loader its epoch: a run resumed from an epoch's checkpoint
    then draws the same dropout masks and batch orders as one never stopped.

    The state is stored as tensors and plain numbers, so it loads with weights_only=True.
    """

    def state_dict(self) -> dict[str, Any]:
        version, words, gauss = random.getstate()
        kind, keys, position, has_gauss, cached = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": torch.from_numpy(keys.astype(np.int64)),
            "numpy_rest": [kind, int(position), int(has_gauss), float(cached)],
            "python": [version, list(words), gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        torch.set_rng_state(state_dict["torch"])
        kind, position, has_gauss, cached = state_dict["numpy_rest"]
        keys = state_dict["numpy"].numpy().astype(np.uint32)
        np.random.set_state((kind, keys, position, has_gauss, cached))
        version, words, gauss = state_dict["python"]
        random.setstate((version, tuple(words), gauss))

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        set_epoch = getattr(trainer.train_dataloader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(trainer.current_epoch)


class StartStep(Callback):
    """Records the global step training starts from (above 0 when resumed)."""

    step = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.step = trainer.global_step


@dataclass
class Fitted:
    """What fitting one model gave (in the process that fitted it, or DDP's rank 0)."""

    epochs: int
    best_score: float
    monitor: str
    n_parameters: int
    hparams: dict[str, Any]
    history: list[dict[str, float]]
    resumed_from_step: int
    processes: int
    train_batches: int
    extra_files: dict[str, Any] = field(default_factory=dict)  # written as <name>.json
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # written as <name>.parquet


def _fit(
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    work_dir: Path,
    progress_queue: Any,
    resume_from: Path | None,
    distributed: bool = False,
) -> Fitted:
    """Returns what fitting a fresh module gave, from `resume_from`'s state when it exists.

    `distributed`: this process is one of train.devices x train.num_nodes DDP processes
    (gloo on CPU), started by `fit_distributed` with the rendezvous in its environment.
    """
    L.seed_everything(params.train.seed, workers=True, verbose=False)
    setup = family.setup(name, prepared_path, params)
    history = EpochHistory(name, setup.monitor, progress_queue)
    start = StartStep()
    checkpoint = ModelCheckpoint(
        dirpath=work_dir,
        filename="best",
        monitor=setup.monitor,
        mode=setup.mode,
        save_top_k=1,
        save_last=True,
    )
    placement: dict[str, Any] = {"devices": 1}
    if distributed:
        placement = {
            "devices": params.train.devices,
            "num_nodes": params.train.num_nodes,
            "strategy": DDPStrategy(process_group_backend="gloo"),
        }
    max_epochs, max_steps = step_budget(params.train, setup.train_loader)
    trainer = _cpu_trainer(
        params,
        setup,
        work_dir,
        [
            EarlyStopping(monitor=setup.monitor, mode=setup.mode, patience=params.train.patience),
            DivergenceGuard(name),
            checkpoint,
            history,
            start,
            RandomState(),
        ],
        max_epochs=max_epochs,
        max_steps=max_steps,
        min_steps=params.train.min_steps or None,  # early stopping waits for them
        **placement,
        enable_progress_bar=progress_queue is None and not distributed,
    )
    ckpt = resume_from if resume_from is not None and resume_from.exists() else None
    # The resume folder holds the checkpoints being resumed: that is the point.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    trainer.fit(
        setup.module, setup.train_loader, setup.val_loader, ckpt_path=ckpt, weights_only=True
    )
    return Fitted(
        epochs=trainer.current_epoch,
        best_score=float(checkpoint.best_model_score),
        monitor=setup.monitor,
        n_parameters=sum(p.numel() for p in setup.module.parameters() if p.requires_grad),
        hparams=setup.hparams,
        history=history.history,
        resumed_from_step=start.step,
        processes=trainer.world_size,
        train_batches=int(trainer.num_training_batches),
        extra_files=setup.extra_files,
        tables=setup.tables,
    )


def step_budget(train: Any, loader: Any) -> tuple[int, int]:
    """Returns Lightning's (max_epochs, max_steps): max_steps when set; else max_epochs,
    stretched into steps when they would give fewer than min_steps (a short series)."""
    if train.max_steps:
        return -1, train.max_steps
    if not train.min_steps:
        return train.max_epochs, -1
    try:
        batches = len(loader)
    except TypeError:  # a loader of unknown length: epochs decide
        return train.max_epochs, -1
    if train.limit_train_batches:
        batches = min(batches, train.limit_train_batches)
    return -1, max(train.min_steps, train.max_epochs * max(batches, 1))


def processes(family: Family, name: str, params: FamilySection) -> int:
    """Returns how many DDP processes train model `name` (1: no DDP). Kinds the family cannot
    shard train in one process, whatever train.devices says."""
    if name not in family.distributed_kinds:
        return 1
    return params.train.devices * params.train.num_nodes


def fit_distributed(
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    work_dir: Path,
    progress_queue: Any,
    resume_from: Path | None,
) -> Fitted:
    """Returns rank 0's Fitted after train.devices DDP processes on this node fitted the model
    together (gloo on CPU), each its share of the batches.

    Like torchrun, this starts the node's processes itself and gives each its rendezvous in
    the environment (MASTER_ADDR, MASTER_PORT, NODE_RANK, LOCAL_RANK, WORLD_SIZE), so Lightning
    joins them instead of re-running the command. One node: 127.0.0.1 and a free port. Several
    nodes (train.num_nodes): run the same command on every node with MASTER_ADDR, MASTER_PORT
    and NODE_RANK set. Only rank 0 writes checkpoints and reports progress; if any process
    fails, the others are stopped and its error is raised.
    """
    devices = params.train.devices
    node_rank = int(os.environ.get("NODE_RANK", "0"))
    rendezvous = {
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(free_port()),
        "NODE_RANK": str(node_rank),
        "WORLD_SIZE": str(devices * params.train.num_nodes),
    }
    threads = max(1, torch.get_num_threads() // devices)
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    ranks = [
        context.Process(
            target=_rank_main,
            args=(
                {**rendezvous, "LOCAL_RANK": str(local)},
                family.name,
                name,
                str(prepared_path),
                params.to_dict(),
                str(work_dir),
                progress_queue if local == 0 and node_rank == 0 else None,
                str(resume_from) if resume_from else None,
                threads,
                answers,
            ),
            daemon=True,
        )
        for local in range(devices)
    ]
    for rank in ranks:
        rank.start()
    try:
        return _gather(ranks, answers)
    finally:
        for rank in ranks:
            if rank.is_alive():
                rank.terminate()
            rank.join(timeout=30)


def _gather(ranks: list[Any], answers: Any) -> Fitted:
    """Returns local rank 0's Fitted once every rank has answered; raises the first error."""
    fitted: Fitted | None = None
    waiting = set(range(len(ranks)))
    while waiting:
        try:
            local, outcome = answers.get(timeout=1.0)
        except queue.Empty:
            dead = [i for i in waiting if not ranks[i].is_alive()]
            if dead:  # died without answering (killed, or crashed in C)
                raise RuntimeError(
                    f"DDP process {dead[0]} exited with code {ranks[dead[0]].exitcode} "
                    "before it finished training"
                ) from None
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        waiting.discard(local)
        if local == 0:
            fitted = outcome
    assert fitted is not None
    return fitted


def _rank_main(
    environment: dict[str, str],
    family_name: str,
    name: str,
    prepared_path: str,
    params: dict,
    work_dir: str,
    progress_queue: Any,
    resume_from: str | None,
    threads: int,
    answers: Any,
) -> None:
    """One DDP process: joins the rendezvous, fits, and answers (its Fitted, or its error)."""
    from trainyard.tasks.families import get_family

    os.environ.update(environment)
    local = int(environment["LOCAL_RANK"])
    torch.set_num_threads(threads)
    quiet_libraries()
    try:
        family = get_family(family_name)
        section = family.section.model_validate(params)
        resume = Path(resume_from) if resume_from else None
        fitted = _fit(
            family, name, Path(prepared_path), section, Path(work_dir), progress_queue, resume, True
        )
        answers.put((local, fitted if local == 0 else None))
    except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            answers.put((local, error))
        except Exception:  # noqa: BLE001 - an error that cannot be pickled is sent as text
            answers.put((local, RuntimeError(f"{name}: DDP process {local}: {error!r}")))


def _train_in_child(
    family_name: str,
    name: str,
    prepared_path: str,
    params: dict,
    out_dir: str,
    queue: Any,
    threads: int,
    resume_dir: str | None = None,
) -> TrainResult:
    from trainyard.tasks.families import get_family

    family = get_family(family_name)
    section = family.section.model_validate(params)
    resume = Path(resume_dir) if resume_dir else None
    return train_model(
        family, name, Path(prepared_path), section, Path(out_dir), queue, threads, resume
    )


def train_in_subprocess(
    family: Family,
    name: str,
    prepared_path: Path,
    params: FamilySection,
    out_dir: Path,
    progress_queue: Any = None,
    threads: int = 1,
    resume_dir: Path | None = None,
) -> TrainResult:
    """Returns train_model's result, run in a fresh process (own RNG, own torch threads);
    kinds the family fits directly (seconds, no torch) are fitted in this process."""
    if name in family.direct_kinds:
        return train_model(family, name, prepared_path, params, out_dir)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(
            _train_in_child,
            family.name,
            name,
            str(prepared_path),
            params.to_dict(),
            str(out_dir),
            progress_queue,
            threads,
            str(resume_dir) if resume_dir else None,
        )
        return future.result()


def resume_dir(
    state: Path, family: Family, name: str, data_version: str, params: FamilySection
) -> Path:
    """Returns where model `name` keeps its resumable checkpoint: one folder per model kind,
    data version and params, so only a run on the same inputs resumes it."""
    inputs = json.dumps([family.name, name, data_version, params.to_dict()], sort_keys=True)
    return (
        state
        / "training"
        / f"{family.name}-{name}-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"
    )


def parallel_trainings(params: FamilySection) -> int:
    """Returns how many models to train at once: train.parallel, or one per core (one per
    train.devices cores when each model trains in that many DDP processes)."""
    if params.train.parallel > 0:
        return params.train.parallel
    cores = (os.cpu_count() or 1) // params.train.devices
    return max(1, min(len(params.train.models), cores))


def torch_threads(params: FamilySection) -> int:
    """Returns the torch threads each training process gets: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // parallel_trainings(params))


def forget_training_summary(models_dir: Path) -> None:
    """Removes training.json, so a failed training leaves no summary that points at a mix of
    old and new models (evaluation then asks for training)."""
    (models_dir / TRAINING_SUMMARY).unlink(missing_ok=True)


def write_training_summary(trained: list[TrainResult], models_dir: Path) -> None:
    """Writes training.json: what each model's training did (model folders are stored by
    name, so the file stays valid wherever the project is checked out)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(result), "model_dir": result.name} for result in trained]
    (models_dir / TRAINING_SUMMARY).write_text(json.dumps(rows, indent=2))


def read_training_summary(models_dir: Path, family: str) -> list[TrainResult]:
    """Returns the training results written by write_training_summary."""
    path = models_dir / TRAINING_SUMMARY
    if not path.exists():
        raise MissingStepError(
            f"{path}: no trained models; run `trainyard train --family {family}` first"
        )
    rows = json.loads(path.read_text())
    return [TrainResult(**{**row, "model_dir": str(models_dir / row["name"])}) for row in rows]
