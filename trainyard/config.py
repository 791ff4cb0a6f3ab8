"""Typed configuration loaded from params.yaml: one dataclass per pipeline stage."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown or of the wrong kind."""


@dataclass
class DatasetConfig:
    """Which table to forecast and how to read it."""

    name: str = "co2"  # a built-in dataset name (see `trainyard datasets`) or a CSV/Parquet path
    time_column: str = "date"  # column holding timestamps
    target: str = "co2"  # column to forecast
    series_columns: list[str] = field(default_factory=list)  # columns identifying a series
    known_covariates: list[str] = field(default_factory=list)  # known in advance (calendar, price)
    unknown_covariates: list[str] = field(default_factory=list)  # observed only up to now
    frequency: str = "W-SAT"  # pandas offset alias of the time grid
    season_length: int = 52  # steps per season, for seasonal naive and MASE
    # "error": a NaN target is invalid; "gap": it marks a missing step.
    missing_target: str = "error"

    @property
    def columns(self) -> list[str]:
        """Returns every column the input table must have: time, target, ids, covariates."""
        return [
            self.time_column,
            self.target,
            *self.series_columns,
            *self.known_covariates,
            *self.unknown_covariates,
        ]

    @property
    def label(self) -> str:
        """Returns the dataset's short name: the built-in name or the file's stem."""
        return Path(self.name).stem


@dataclass
class WindowConfig:
    """How series are cut into encoder/horizon windows and split in time."""

    encoder_length: int = 48  # past steps a model sees
    horizon: int = 12  # future steps a model predicts
    validation_length: int = 104  # last steps before the holdout, for early stopping
    holdout_length: int = 104  # last steps of every series, never seen in training


@dataclass
class LSTMConfig:
    """LSTM forecaster size."""

    hidden_size: int = 64  # LSTM units per layer
    num_layers: int = 2  # stacked LSTM layers
    dropout: float = 0.0  # dropout between LSTM layers


@dataclass
class TCNConfig:
    """Temporal convolutional network size."""

    channels: int = 32  # channels in every residual block
    kernel_size: int = 3  # taps per causal convolution
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # one block each
    dropout: float = 0.0  # dropout inside residual blocks


@dataclass
class TFTConfig:
    """Temporal Fusion Transformer size (pytorch-forecasting)."""

    hidden_size: int = 16  # width of every TFT layer
    attention_head_size: int = 2  # attention heads
    hidden_continuous_size: int = 8  # width of continuous-variable embeddings
    dropout: float = 0.1  # dropout in TFT layers
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])  # predicted quantiles


@dataclass
class TrainConfig:
    """What to train and how long."""

    models: list[str] = field(default_factory=lambda: ["lstm", "tcn", "tft"])
    max_epochs: int = 30  # upper bound; early stopping on val/loss usually ends sooner
    patience: int = 5  # epochs without val/loss improvement before stopping
    batch_size: int = 64  # windows per optimiser step
    learning_rate: float = 3e-3  # Adam step size
    gradient_clip: float = 1.0  # max gradient norm
    limit_train_batches: int = 0  # >0 caps optimiser steps per epoch (quick runs)
    seed: int = 42  # seeds weights and shuffling
    parallel: int = 0  # models trained at once, each in its own process; 0 = one per core
    lstm: LSTMConfig = field(default_factory=LSTMConfig)
    tcn: TCNConfig = field(default_factory=TCNConfig)
    tft: TFTConfig = field(default_factory=TFTConfig)


@dataclass
class EvaluateConfig:
    """How models and baselines are scored on the holdout."""

    stride: int = 1  # steps between rolling forecast origins in the holdout
    classical: str = "ets"  # classical statsmodels baseline: "ets" or "none"
    plot_series: int = 4  # series drawn in forecast plots


@dataclass
class RegisterConfig:
    """How models are registered and when the champion alias moves."""

    enabled: bool = True  # register trained models in the MLflow model registry
    metric: str = "mase"  # holdout metric the champion gate compares (lower is better)
    experiment: str = ""  # MLflow experiment; empty = "trainyard-<dataset>"


@dataclass
class Params:
    """The whole params.yaml."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)

    def section_hash(self, *sections: str) -> str:
        """Returns a short, stable hash of the named sections (all when none named)."""
        data = dataclasses.asdict(self)
        chosen = {name: data[name] for name in (sections or data.keys())}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """Returns the parameters as plain nested dicts."""
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name} must be true or false, got {value!r}")
            kwargs[name] = value
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{name} must be a number, got {value!r}")
            if isinstance(default, int) and value != int(value):
                raise ConfigError(f"{where}.{name} must be a whole number, got {value!r}")
            kwargs[name] = type(default)(value)
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name} must be a list, got {value!r}")
            kwargs[name] = value
        else:
            kwargs[name] = str(value)
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


METRICS = ("mae", "rmse", "smape", "mase")


def check_values(params: Params, where: str) -> Params:
    """Returns params after checking values that are wrong whatever the data."""
    w = params.windows
    problems = [
        f"windows.{name} must be at least 1"
        for name in ("encoder_length", "horizon")
        if getattr(w, name) < 1
    ]
    problems += [
        f"windows.{name} ({getattr(w, name)}) must be at least windows.horizon ({w.horizon})"
        for name in ("validation_length", "holdout_length")
        if getattr(w, name) < w.horizon
    ]
    if params.dataset.missing_target not in ("error", "gap"):
        problems.append("dataset.missing_target must be 'error' or 'gap'")
    if params.dataset.season_length < 1:
        problems.append("dataset.season_length must be at least 1")
    if not params.train.models:
        problems.append("train.models must name at least one model")
    if len(set(params.train.models)) != len(params.train.models):
        problems.append(f"train.models lists a model twice: {params.train.models}")
    if params.evaluate.classical not in ("ets", "none"):
        problems.append("evaluate.classical must be 'ets' or 'none'")
    if params.evaluate.stride < 1:
        problems.append("evaluate.stride must be at least 1")
    if params.register.metric not in METRICS:
        problems.append(f"register.metric must be one of {', '.join(METRICS)}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return params


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Returns Params from a params.yaml, with a named profile's overrides applied on top."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such parameter file; run from the project root or pass one")
    raw = yaml.safe_load(path.read_text()) or {}
    profiles = raw.pop("profiles", {}) or {}
    if profile:
        if profile not in profiles:
            known = ", ".join(profiles) or "none"
            raise ConfigError(f"{path}: no profile {profile!r}; profiles defined: {known}")
        raw = _merge(raw, profiles[profile])
    return check_values(_build(Params, raw, str(path)), str(path))


def params_from_dict(values: dict[str, Any]) -> Params:
    """Returns Params built from nested dicts (missing keys take their defaults)."""
    return check_values(_build(Params, values, "params"), "params")
