"""params.yaml loading: typed sections (pydantic), profiles, and errors that name the bad key.

The file has one section per model family (`forecast:`, `rl:`, ...) plus the shared `run:` and
`register:`. A stage loads only the section it depends on (as dvc.yaml declares it), never the
whole file; a family's section is a pydantic model defined beside the family's tasks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from trainyard.errors import ConfigError

__all__ = ["ConfigError", "Section", "load_section", "section_from_dict"]


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    if value != int(value):
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(value)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError(f"must be a single value, got {value!r}")
    return str(value)


def _list(value: Any) -> Any:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"must be a list, got {value!r}")
    return list(value)


# Field types with params.yaml's rules: YAML ints become floats, 3.0 is a whole number,
# true is not a number, and a scalar where a list belongs is an error rather than a list.
WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
Number = Annotated[float, BeforeValidator(_number)]
Flag = Annotated[bool, BeforeValidator(_boolean)]
Text = Annotated[str, BeforeValidator(_text)]
TextList = Annotated[list[str], BeforeValidator(_list)]
NumberList = Annotated[list[Number], BeforeValidator(_list)]
WholeNumberList = Annotated[list[WholeNumber], BeforeValidator(_list)]


def too_small(section: BaseModel, prefix: str, minimum: float, *names: str) -> list[str]:
    """Returns "prefix.name must be at least minimum, got value" for each named field below it."""
    return [
        f"{prefix}.{name} must be at least {minimum}, got {getattr(section, name)}"
        for name in names
        if getattr(section, name) < minimum
    ]


def outside(
    section: BaseModel, prefix: str, name: str, low: float, high: float, *, open_high: bool = False
) -> list[str]:
    """Returns a problem when field `name` lies outside [low, high] (or [low, high))."""
    value = getattr(section, name)
    if low <= value < high or (value == high and not open_high):
        return []
    closing = ")" if open_high else "]"
    return [f"{prefix}.{name} must be in [{low}, {high}{closing}, got {value}"]


class ValueProblems(ValueError):
    """A section's values that cannot work together or at all, one sentence each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors; assignments are checked too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def section_hash(self, *names: str) -> str:
        """Returns a short, stable hash of the named sub-sections (all when none named)."""
        data = self.to_dict()
        chosen = {name: data[name] for name in (names or data.keys())}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """Returns the section as plain nested dicts and lists."""
        return self.model_dump(mode="json")


class RunConfig(Section):
    """What `trainyard run` does when not told otherwise."""

    families: TextList = Field(default_factory=lambda: ["forecast", "rl"])  # run in order


RESERVED_ALIASES = ("challenger", "latest")  # challenger: every new best; latest: MLflow's
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


class RegisterConfig(Section):
    """Registry settings shared by every family."""

    enabled: Flag = True  # register trained models in the MLflow model registry
    experiment: Text = ""  # MLflow experiment; empty = "trainyard-<dataset or environment>"
    # The aliases a version is promoted through, in order (e.g. [staging, production]); the
    # pipeline's gate promotes into the first, `trainyard promote --to NEXT` moves it on.
    stages: TextList = Field(default_factory=lambda: ["champion"])

    @model_validator(mode="after")
    def _check_stages(self) -> Self:
        if not self.stages:
            raise ValueError("register.stages must name at least one stage, e.g. [champion]")
        for stage in self.stages:
            if stage in RESERVED_ALIASES or not ALIAS_PATTERN.match(stage):
                raise ValueError(
                    f"register.stages: {stage!r} cannot be a stage; use a name of letters, "
                    f"digits, - and _ starting with a letter, other than {RESERVED_ALIASES}"
                )
            if re.fullmatch(r"v\d+", stage):
                raise ValueError(f"register.stages: {stage!r} is how MLflow names versions")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"register.stages lists a stage twice: {self.stages}")
        return self


class StageGate(Section):
    """What a version must show to be promoted into one stage (see `gate:` in params.yaml)."""

    # Relative improvement over the stage's current holder, both scored on the same evaluation
    # set: 0.02 = at least 2% better in the metric's direction; 0 = strictly better.
    min_margin: Number = 0.0
    # metric -> bound the version must meet on the current evaluation set, in the metric's
    # direction (a ceiling for error metrics such as mase, a floor for success_rate).
    limits: dict[str, Number] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_margin(self) -> Self:
        if not 0.0 <= self.min_margin < 1.0:
            raise ValueError(f"gate min_margin must be in [0, 1), not {self.min_margin}")
        return self


class TrainBase(Section):
    """Training knobs the shared skeleton reads; a family's train section extends it."""

    models: TextList = Field(default_factory=list)  # model kinds to train, each its own run
    max_epochs: WholeNumber = 30  # upper bound; early stopping on the monitor usually ends sooner
    # Budgets in optimiser steps: on a short series an epoch is a batch or two, so epochs say
    # little about how much a model trained. max_steps > 0 replaces max_epochs; min_steps
    # runs at least that many steps (past max_epochs if need be) before early stopping may
    # end training (the best checkpoint on validation is kept either way).
    max_steps: WholeNumber = 0
    min_steps: WholeNumber = 0
    patience: WholeNumber = 5  # epochs without improvement of the monitor before stopping
    limit_train_batches: WholeNumber = 0  # >0 caps optimiser steps per epoch (quick runs)
    seed: WholeNumber = 42  # seeds weights, shuffling and environments
    parallel: WholeNumber = 0  # models trained at once, each in its own process; 0 = one per core
    # Data-parallel training (DDP, gloo on CPU) of the kinds a family can shard: each model
    # trains in devices x num_nodes processes, each on its share of the batches. Several
    # nodes: run the same command on each with MASTER_ADDR, MASTER_PORT and NODE_RANK set.
    devices: WholeNumber = 1  # processes per node training one model together
    num_nodes: WholeNumber = 1
    strategy: Text = "ddp"  # the only strategy on CPU

    def common_problems(self) -> list[str]:
        """Returns what is wrong with the shared knobs, whatever the family."""
        problems = []
        if not self.models:
            problems.append("train.models must name at least one model")
        if len(set(self.models)) != len(self.models):
            problems.append(f"train.models lists a model twice: {self.models}")
        problems += too_small(self, "train", 1, "max_epochs", "patience")
        problems += too_small(
            self, "train", 0, "limit_train_batches", "parallel", "seed", "max_steps", "min_steps"
        )
        if self.max_steps and self.min_steps > self.max_steps:
            problems.append(
                f"train.min_steps ({self.min_steps}) must not exceed train.max_steps "
                f"({self.max_steps})"
            )
        problems += too_small(self, "train", 1, "devices", "num_nodes")
        if self.strategy != "ddp":
            problems.append(
                f"train.strategy: {self.strategy!r} is not available; trainyard trains on CPU "
                "with ddp (gloo), set by train.devices and train.num_nodes"
            )
        if self.seed >= 2**32:
            problems.append(f"train.seed must be below 2**32 (a numpy seed), got {self.seed}")
        return problems


class EvaluateBase(Section):
    """Evaluation knobs the shared skeleton reads; a family's evaluate section extends it."""

    metric: Text = ""  # the gate metric (its direction comes from the family)


class FamilySection(Section):
    """A family's whole params.yaml section: the skeleton reads `train` and `evaluate`."""

    section_name: ClassVar[str] = ""  # its key in params.yaml, e.g. "forecast"
    train: TrainBase
    evaluate: EvaluateBase
    # stage -> its gate for this family's models; a stage not listed needs only to beat the
    # best baseline and its current holder.
    gate: dict[str, StageGate] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_values(self) -> Self:
        problems = self.problems()
        if problems:
            raise ValueProblems(problems)
        return self

    def problems(self) -> list[str]:
        """Returns what is wrong with values whatever the data (empty when nothing is), each
        starting with its dotted key below the section, e.g. "train.batch_size must be ..."."""
        return self.train.common_problems()

    @classmethod
    def load(cls, path: str | Path = "params.yaml", profile: str | None = None) -> Self:
        """Returns this section of a params file, a named profile's overrides applied."""
        return load_section(path, cls.section_name, cls, profile)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None) -> Self:
        """Returns the section built from nested dicts (missing keys take their defaults)."""
        return section_from_dict(cls, values or {}, "params")


S = TypeVar("S", bound=BaseModel)


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Returns the section class found by following `loc` from `cls` (None if not a section)."""
    current: Any = cls
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        current = fields[part].annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _messages(error: ValidationError, cls: type[BaseModel], where: str) -> list[str]:
    """Returns one sentence per problem, each naming the dotted key."""
    unknown: dict[tuple[Any, ...], list[str]] = {}
    problems: list[str] = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not isinstance(part, int))
        kind = item["type"]
        if kind == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        key = ".".join([where, *map(str, loc)])
        if kind == "model_type" or kind == "model_attributes_type":
            problems.append(f"{key} must be a mapping, got {item['input']!r}")
        elif kind == "value_error":
            cause = item.get("ctx", {}).get("error", item["msg"])
            if isinstance(cause, ValueProblems):  # each names its key below this section
                problems += [f"{key}.{problem}" for problem in cause.problems]
            else:
                problems.append(f"{key} {cause}" if loc else f"{where}: {cause}")
        else:
            problems.append(f"{key}: {item['msg'].lower()} (got {item['input']!r})")
    for parent, names in unknown.items():
        section = _model_at(cls, parent)
        known = ", ".join(section.model_fields) if section else "?"
        problems.insert(
            0,
            f"{'.'.join([where, *map(str, parent)])}: unknown key(s) {', '.join(names)}; "
            f"known keys are {known}",
        )
    return problems


def section_from_dict(cls: type[S], values: Any, where: str = "params") -> S:
    """Returns `cls` built from nested dicts (missing keys take their defaults)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    try:
        return cls.model_validate(values)
    except ValidationError as error:
        raise ConfigError("; ".join(_messages(error, cls, where))) from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Returns `base` with `override` applied key by key (nested mappings merged, not replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_params_file(path: str | Path, profile: str | None = None) -> dict[str, Any]:
    """Returns params.yaml as nested dicts, with a named profile's overrides applied on top."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such parameter file; run from the project root, pass one with --params, "
            "or write one for a forecasting table with `trainyard init TABLE.csv`"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(raw).__name__}")
    profiles = raw.pop("profiles", {}) or {}
    if profile:
        if profile not in profiles:
            known = ", ".join(profiles) or "none"
            raise ConfigError(f"{path}: no profile {profile!r}; profiles defined: {known}")
        raw = merge(raw, profiles[profile])
    return raw


def load_section(path: str | Path, name: str, cls: type[S], profile: str | None = None) -> S:
    """Returns section `name` of a params file as `cls`, a profile's overrides applied."""
    raw = read_params_file(path, profile)
    return section_from_dict(cls, raw.get(name), f"{path}: {name}")
