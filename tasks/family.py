"""What a model family plugs into the shared skeleton, and what the skeleton gives back.

The skeleton (tracking, training processes, registry, gate, flows, DVC stages, CLI) only calls
the methods of `Family`; it never asks which family it runs. A family lives in its own folder
(`tasks/<family>/`), registers itself in `tasks/families.py`, and brings its params section.
"""

from __future__ import annotations

import abc
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trainyard.config import FamilySection
from trainyard.errors import DataError

CHECKPOINT = "best.ckpt"  # the best checkpoint of a trained model, in its model folder


def load_checkpoint(model_class: Any, model_dir: Path, kind: str, family: str) -> Any:
    """Returns the LightningModule saved in model_dir/best.ckpt, loaded as weights only (no
    pickled code runs); a missing or unreadable file is a DataError naming it and the fix."""
    path = Path(model_dir) / CHECKPOINT
    try:
        return model_class.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no checkpoint; run `trainyard train --family {family}`") from None
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file: say which
        raise DataError(
            f"{path}: the {kind} checkpoint cannot be loaded as weights ({error}); train it "
            f"again with `trainyard train --family {family}`"
        ) from None


INPUT_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl")  # model input files read_input reads
# A JSON input may also be the body of a request to `mlflow models serve`, so one file serves
# both; its "params" are not read (give them with --param).
SERVING_PAYLOADS = {"dataframe_split": "split", "dataframe_records": "records"}


def read_input_table(path: Path, as_text: bool = False) -> pd.DataFrame:
    """Returns the table in a model input file, compressed or not (.gz, .bz2, .xz, .zip of
    one file): CSV (UTF-8, header row; read as
    prepared.read_csv_text reads spreadsheets), Parquet, JSON (a list
    of records, {column: values}, or an /invocations body) or JSON lines. `as_text` reads
    every CSV cell as text (no numbers, no NA markers). Raises DataError naming the file."""
    from trainyard.tasks.prepared import decode_utf8, read_bytes, read_csv_text, table_suffix

    suffix = table_suffix(path)  # behind a compression suffix (history.csv.gz)
    if suffix not in INPUT_SUFFIXES:
        raise DataError(
            f"{path}: cannot read {suffix or 'a file without suffix'} as model input; give a "
            f"table as {', '.join(INPUT_SUFFIXES)}"
        )
    if not path.is_file():
        why = "is a folder" if path.is_dir() else "no such file"
        raise DataError(f"{path}: {why}; give the model input table with --input")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; give a table with a header row")
    try:
        if suffix == ".csv":
            text = io.StringIO(decode_utf8(path))
            if as_text:
                return pd.read_csv(text, dtype=str, keep_default_na=False)
            return read_csv_text(text.getvalue(), str(path))
        if suffix == ".parquet":
            return pd.read_parquet(io.BytesIO(read_bytes(path)))
        if suffix == ".jsonl":
            return pd.read_json(io.StringIO(decode_utf8(path)), lines=True, dtype=False)
        value = json.loads(decode_utf8(path))
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged or foreign file: say which and why
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot be read as {suffix[1:]} ({reason})") from None
    return _json_table(value, path)


def _json_table(value: Any, path: Path) -> pd.DataFrame:
    """Returns the table a parsed JSON input holds (see read_input_table)."""
    orient = None
    if isinstance(value, dict):
        key = next((key for key in SERVING_PAYLOADS if key in value), None)
        if key:
            value, orient = value[key], SERVING_PAYLOADS[key]
    try:
        if orient == "split" and isinstance(value, dict):
            return pd.DataFrame(value.get("data"), columns=value.get("columns"))
        if isinstance(value, dict | list):
            return pd.DataFrame(value)
        raise ValueError(f"the file holds a JSON {type(value).__name__}")
    except (TypeError, ValueError) as error:
        raise DataError(
            f"{path}: not a table ({error}); give a list of records such as "
            '[{"column": value, ...}, ...] or {"column": [values, ...], ...}'
        ) from None


@dataclass
class Prepared:
    """What a family's prepare step wrote: the DVC-versioned data and its content hash."""

    path: str  # the prepared file (or folder) DVC versions
    md5: str  # its DVC md5: the data version of every run and model version trained on it
    source: str  # where the raw data came from (dataset name, file, environment id)
    stats: dict[str, float] = field(default_factory=dict)  # logged as data/<key> metrics
    description: str = ""  # one line for the console: what was prepared


@dataclass
class TrainingSetup:
    """A fresh LightningModule and how to fit it (loaders None: the module makes its own)."""

    module: Any  # a LightningModule
    train_loader: Any
    val_loader: Any
    hparams: dict[str, Any]  # logged as the model run's params
    monitor: str = "val/loss"  # checkpoint and early-stopping metric
    mode: str = "min"  # "min" or "max" for `monitor`
    gradient_clip: float | None = None  # max gradient norm; None: the module clips itself
    extra_files: dict[str, Any] = field(default_factory=dict)  # name -> JSON-able data: name.json
    # name -> table written as name.parquet beside the checkpoint (e.g. the rows the TFT's
    # encoders are fitted on). Nothing in a model folder is a pickle: a pickle runs code when
    # loaded.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class DirectFit:
    """A model fitted without Lightning (a family's `direct_kinds`, e.g. statistical
    forecasters): its files, its validation score and what to log."""

    files: dict[str, Any]  # name -> JSON-able data, written as name.json in its model folder
    hparams: dict[str, Any]  # logged as the model run's params
    seconds: float  # wall time of fitting
    best_score: float = float("nan")  # its validation score, when the family measures one
    monitor: str = ""  # which metric that is, e.g. "val/mase"
    n_parameters: int = 0  # fitted parameters, when the family counts them


@dataclass
class TrainResult:
    """What training one model produced."""

    name: str  # model kind, e.g. "lstm", "dqn"
    model_dir: str  # folder with best.ckpt and any files the kind needs to predict
    epochs: int  # epochs run before early stopping or max_epochs
    best_score: float  # best value of the monitored metric
    monitor: str  # which metric that is, e.g. "val/loss"
    seconds: float  # wall time of fitting
    n_parameters: int  # trainable parameters
    hparams: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics
    resumed_from_step: int = 0  # global step an interrupted earlier attempt had reached
    processes: int = 1  # DDP processes that trained it together (train.devices x num_nodes)
    train_batches: int = 0  # batches each process ran per epoch


@dataclass
class EvaluationResult:
    """Scores of every model and baseline on one fixed evaluation set, and the reports."""

    metrics: dict[str, dict[str, float]]  # name -> metric -> value
    baselines: list[str]  # which names are baselines
    report_dir: str
    title: str  # e.g. "Holdout: 93 windows over 1 series"
    columns: list[str]  # metrics shown in the console table, in order
    higher_is_better: dict[str, bool]  # direction of every metric in `columns`
    plots: list[str] = field(default_factory=list)
    # name -> metric -> value on a validation set, for families that choose their challenger
    # there (empty: it is chosen on `metrics`). Never the set the gate judges.
    selection: dict[str, dict[str, float]] = field(default_factory=dict)
    # Models the evaluation built from the trained ones (e.g. an ensemble), scored like them:
    # the pipeline tracks, registers and gates them as trained models.
    derived: list[TrainResult] = field(default_factory=list)

    def ranking(self, metric: str) -> list[str]:
        """Returns every name, best `metric` first."""
        sign = -1.0 if self.higher_is_better.get(metric, False) else 1.0
        return sorted(self.metrics, key=lambda name: sign * self.metrics[name][metric])

    def challenger(self, metric: str, names: list[str]) -> str:
        """Returns which of the trained `names` to put forward: the best on the validation
        scores when the family has them (choosing on the gate's set would flatter it), else
        the best on `metrics`."""
        scores = self.selection if all(n in self.selection for n in names) else self.metrics
        sign = -1.0 if self.higher_is_better.get(metric, False) else 1.0
        return min(names, key=lambda name: sign * scores[name][metric])

    def best_baseline(self, metric: str) -> str:
        """Returns the baseline with the best `metric`."""
        return next(name for name in self.ranking(metric) if name in self.baselines)

    def best_model(self, metric: str) -> str | None:
        """Returns the trained model with the best `metric`, if any was trained."""
        return next((n for n in self.ranking(metric) if n not in self.baselines), None)


@dataclass
class PyfuncSpec:
    """How to log one trained model as an MLflow pyfunc."""

    # The mlflow.pyfunc.PythonModel class that serves the model, importable under trainyard.
    # It is named in the model's config, never pickled: one logged script (tasks/
    # pyfunc_entry.py) imports it from the shipped code when the model is loaded.
    python_model: type
    artifacts: dict[str, str]  # name -> local path
    model_config: dict[str, Any]  # JSON-able; the pyfunc reads it when loaded
    input_example: Any


class Family(abc.ABC):
    """A model family: its data, models, baselines, metric and serving."""

    name: str  # e.g. "forecast": its params section, flow, DVC stages and folders
    section: type[FamilySection]  # its params.yaml section
    registry_suffix: str  # registered model = "<label>-<suffix>", e.g. co2-forecaster
    metrics: dict[str, bool]  # every gate metric it offers -> higher is better
    serving_requirements: tuple[str, ...] = ()  # distributions its pyfunc imports
    prepared_type: type[Prepared] = Prepared  # what prepare returns (rebuilt from JSON)
    # Model kinds whose loaders shard their batches across DDP processes and whose metrics
    # are synchronised (train.devices > 1); the others train in one process.
    distributed_kinds: tuple[str, ...] = ()
    # Model kinds fitted by `fit_direct` instead of a Lightning Trainer (seconds, no epochs:
    # fitted in the calling process, never resumed).
    direct_kinds: tuple[str, ...] = ()

    def higher_is_better(self, params: FamilySection) -> bool:
        """Returns the direction of the configured gate metric."""
        return self.metrics[params.evaluate.metric]

    @abc.abstractmethod
    def label(self, params: FamilySection) -> str:
        """Returns the dataset's or environment's short name (experiment, registry, input)."""

    @abc.abstractmethod
    def model_kinds(self) -> list[str]:
        """Returns every model kind this family can train."""

    def dataset_values(self, values: dict[str, Any], dataset: str) -> dict[str, Any] | None:
        """Returns the family's raw params section reading `dataset` (the CLI's --dataset)
        instead of its configured data, or None when the family does not read such data."""
        return None

    def check(self, params: FamilySection) -> None:
        """Raises ConfigError for params no data can fix (before anything is written)."""
        return None

    def check_prepared(self, prepared: Prepared, params: FamilySection) -> None:
        """Raises DataError when the prepared data cannot train these params' models (e.g. a
        target transform the values do not allow): after prepare, before any model trains
        or any MLflow run opens."""
        return None

    @abc.abstractmethod
    def prepare(self, params: FamilySection, root: Path, out_dir: Path) -> Prepared:
        """Returns what was prepared into out_dir (validated, DVC-versioned data)."""

    @abc.abstractmethod
    def prepare_key(self, params: FamilySection, root: Path) -> str:
        """Returns a hash of everything prepare reads (raw data, its params, its code)."""

    def read_input(self, path: Path) -> pd.DataFrame:
        """Returns the table in a model input file for `trainyard predict` (.csv, .parquet,
        .json, .jsonl), raising DataError naming the file when it cannot be read."""
        return read_input_table(Path(path))

    def model_input(self, frame: pd.DataFrame, model_config: dict[str, Any], path: Path):
        """Returns `trainyard predict`'s input table as the registered model reads it, given
        the model's pyfunc config (what the family's `pyfunc` put in model_config): as it was,
        unless the family reshapes it."""
        return frame

    def is_current(self, prepared: Prepared) -> bool:
        """Returns whether the prepared file on disk is still the one `prepared` names."""
        from trainyard.tasks.prepared import is_current

        return is_current(Path(prepared.path), prepared.md5)

    @abc.abstractmethod
    def prepared(self, params: FamilySection, out_dir: Path) -> Prepared:
        """Returns the summary of what an earlier prepare wrote into out_dir (DVC stages)."""

    @abc.abstractmethod
    def setup(self, name: str, prepared_path: Path, params: FamilySection) -> TrainingSetup:
        """Returns model `name`, fresh, with what training it needs (in a child process)."""

    def variants(
        self, name: str, prepared_path: Path, params: FamilySection
    ) -> list[FamilySection]:
        """Returns the settings model `name` trains with. With more than one, each is trained
        on its own and the model combines them (`variant_files`); the hparams in which their
        setups differ are logged as lists. Default: `params` alone."""
        return [params]

    def variant_files(
        self, name: str, variant_dirs: list[Path], params: FamilySection
    ) -> dict[str, Any]:
        """Returns the files (name -> JSON-able) of a model made of trained variants (their
        folders, out_dir/name/variants/<i>), which its loader reads to combine them."""
        raise NotImplementedError(f"{self.name}: {name} has variants but no variant_files")

    def refit_params(
        self, name: str, prepared_path: Path, params: FamilySection
    ) -> FamilySection | None:
        """Returns the params to train model `name` again with, from scratch, on the data its
        early stop held out, for as many epochs as its best checkpoint took; None (the
        default): the best checkpoint is the model."""
        return None

    def calibrate(
        self, name: str, model_dir: Path, prepared_path: Path, params: FamilySection
    ) -> dict[str, Any]:
        """Returns files (name -> JSON-able) to add to trained model `name`'s folder, computed
        from the trained model (e.g. conformal intervals from its validation residuals)."""
        return {}

    def fit_direct(self, name: str, prepared_path: Path, params: FamilySection) -> DirectFit:
        """Returns model `name` (one of `direct_kinds`) fitted to the prepared data."""
        raise NotImplementedError(f"{self.name} fits no model kind directly ({name})")

    @abc.abstractmethod
    def evaluate(
        self,
        prepared: Prepared,
        model_dirs: dict[str, Path],
        params: FamilySection,
        report_dir: Path,
        histories: dict[str, list[dict[str, float]]],
    ) -> EvaluationResult:
        """Returns scores of the models in model_dirs and the baselines; writes reports."""

    @abc.abstractmethod
    def evaluation_key(self, prepared: Prepared, params: FamilySection) -> str:
        """Returns a hash naming the exact evaluation set (data version and its params)."""

    @abc.abstractmethod
    def dataset_frame(self, prepared: Prepared) -> tuple[pd.DataFrame, str | None]:
        """Returns the prepared data as a table for MLflow's log_input, and its target."""

    @abc.abstractmethod
    def pyfunc(
        self, name: str, model_dir: Path, prepared: Prepared, params: FamilySection
    ) -> PyfuncSpec:
        """Returns how to log trained model `name` as a pyfunc."""

    @abc.abstractmethod
    def rescore(
        self,
        model_config: dict[str, Any],
        artifacts: dict[str, Path],
        prepared: Prepared,
        params: FamilySection,
    ) -> float | None:
        """Returns a registered version's gate metric on this run's evaluation set, or None
        when it cannot be scored there (trained for other inputs)."""
