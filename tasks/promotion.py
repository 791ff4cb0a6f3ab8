"""Promotion between stages for every family: one gate, a registry-wide lock, an audit trail.

Stages are registry aliases (`register.stages`, e.g. champion, or staging -> production).
Every promotion, refusal and rollback is appended to the registered model's own tags
(`audit.000001`, ...), so history and rollback work from any machine pointed at the same
tracking server. Setting an alias is last-writer-wins, so every read-decide-write runs under
`registry_lock`, a lock held *in the registry*: creating a registered model whose name is
taken fails atomically (a unique key in MLflow's SQL store), on one host or many.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

from trainyard.config import StageGate
from trainyard.errors import DataError, UserError
from trainyard.tasks.registry import CHALLENGER, current_alias, metric_tag

LOCK_PREFIX = "trainyard-lock--"  # registered models with this prefix are locks, not models
AUDIT_PREFIX = "audit."  # registered-model tags holding the audit trail, one record each
# Tags a version needs before any gate looks at it (written at registration).
REQUIRED_LINEAGE = ("family", "git_commit", "params_hash", "data_version", "evaluation_key")
PROMOTING_ACTIONS = ("promote", "force")


class PromotionError(UserError):
    """A promotion or rollback that cannot be done as asked (no such version, no previous
    holder, a forced promotion without a reason, the registry lock held too long)."""


@dataclass
class GateRule:
    """How this family's versions are compared: the metric, its direction, the evaluation set
    both are scored on, and the best baseline on that set (when known)."""

    metric: str
    higher_is_better: bool
    evaluation_key: str  # the current evaluation set: data version and its params
    baseline: str | None = None
    baseline_value: float | None = None

    def better(self, a: float, b: float, margin: float = 0.0) -> bool:
        """Returns whether `a` beats `b` by more than `margin` of |b| in the metric's direction."""
        if self.higher_is_better:
            return a > b + margin * abs(b)
        return a < b - margin * abs(b)

    def meets(self, value: float, bound: float) -> bool:
        """Returns whether `value` is within `bound` (a ceiling or a floor by direction)."""
        return value >= bound if self.higher_is_better else value <= bound


@dataclass
class GateDecision:
    """What a promotion decided, and why."""

    promoted: bool
    version: str | None  # the stage's holder afterwards
    reason: str
    stage: str = "champion"


@dataclass
class Scores:
    """A version's metrics on the current evaluation set."""

    metrics: dict[str, float]
    rescored: bool  # True: computed now; False: read from its tags (same evaluation set)
    note: str = ""  # why a metric is missing (e.g. its files failed their digest check)


# Returns a version's metrics on the current evaluation set, or None when it cannot be scored
# there (trained for other inputs).
Scorer = Callable[[ModelVersion], Scores | None]


def tagged_metrics(version: ModelVersion) -> dict[str, float]:
    """Returns the evaluation metrics a version was registered with (tags eval_<metric>)."""
    prefix = metric_tag("")
    return {k[len(prefix) :]: float(v) for k, v in version.tags.items() if k.startswith(prefix)}


def scorer(rule: GateRule, rescore: Callable[[ModelVersion], float | None] | None) -> Scorer:
    """Returns a Scorer that reads a version's tags when it was scored on `rule`'s evaluation
    set, and otherwise re-scores it there with `rescore` (its gate metric only)."""

    def score(version: ModelVersion) -> Scores | None:
        metrics = tagged_metrics(version)
        if version.tags.get("evaluation_key") == rule.evaluation_key and rule.metric in metrics:
            return Scores(metrics, rescored=False)
        try:
            value = rescore(version) if rescore else None
        except DataError as error:  # its files cannot be trusted or read: it scores nothing
            return Scores({}, rescored=True, note=str(error))
        return None if value is None else Scores({rule.metric: float(value)}, rescored=True)

    return score


def actor() -> str:
    """Returns who acts: $TRAINYARD_USER, or user@host."""
    return os.environ.get("TRAINYARD_USER") or f"{getpass.getuser()}@{socket.gethostname()}"


# ----------------------------------------------------------------------------- the lock


def lock_name(name: str) -> str:
    """Returns the registered-model name that locks registered model `name`."""
    return f"{LOCK_PREFIX}{name}"


def is_lock(name: str) -> bool:
    """Returns whether a registered model is one of trainyard's locks."""
    return name.startswith(LOCK_PREFIX)


@contextlib.contextmanager
def registry_lock(
    client: MlflowClient, name: str, timeout: float = 120.0, ttl: float = 600.0
) -> Iterator[str]:
    """Yields while this process holds the lock on registered model `name`, in the registry.

    The lock is a registered model named `trainyard-lock--<name>`: creating it succeeds for
    exactly one client (RESOURCE_ALREADY_EXISTS for the rest), whichever host it runs on. A
    lock older than `ttl` seconds belongs to a dead holder and is broken.
    """
    holder = f"{actor()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    locked = lock_name(name)
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            client.create_registered_model(
                locked,
                tags={"trainyard.lock": holder, "expires": f"{time.time() + ttl:.3f}"},
                description=f"trainyard promotion lock on {name} (deleted when released)",
            )
            break
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        _break_if_stale(client, locked)
        if time.monotonic() > deadline:
            raise PromotionError(
                f"{name}: another promotion has held the registry lock for over {timeout:.0f} s "
                f"(registered model {locked!r}); retry, or delete that registered model if "
                "no promotion is running"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    try:
        yield holder
    finally:
        with contextlib.suppress(MlflowException):
            if client.get_registered_model(locked).tags.get("trainyard.lock") == holder:
                client.delete_registered_model(locked)


def _break_if_stale(client: MlflowClient, locked: str) -> None:
    try:
        tags = client.get_registered_model(locked).tags
    except MlflowException:
        return  # released meanwhile
    if float(tags.get("expires", "inf")) < time.time():
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(locked)


# ----------------------------------------------------------------------------- the audit trail


def audit_records(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Returns the registered model's audit records, oldest first."""
    tags = client.get_registered_model(name).tags or {}
    keyed = sorted((k, v) for k, v in tags.items() if k.startswith(AUDIT_PREFIX))
    return [json.loads(value) for _, value in keyed]


def append_audit(client: MlflowClient, name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Returns `record` numbered and stored as the next audit tag (hold registry_lock)."""
    tags = client.get_registered_model(name).tags or {}
    numbers = [int(k[len(AUDIT_PREFIX) :]) for k in tags if k.startswith(AUDIT_PREFIX)]
    record = {
        "seq": max(numbers, default=0) + 1,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": actor(),
        **record,
    }
    client.set_registered_model_tag(name, f"{AUDIT_PREFIX}{record['seq']:06d}", json.dumps(record))
    return record


# ----------------------------------------------------------------------------- the gate


def gate(
    candidate: ModelVersion,
    scores: Scores | None,
    holder: ModelVersion | None,
    holder_scores: Scores | None,
    rule: GateRule,
    stage: StageGate,
) -> str | None:
    """Returns why `candidate` may not replace `holder` (None: it may).

    One function for every family. Both are scored on the same evaluation set (the caller's
    Scorer re-scores whichever was measured elsewhere); lineage and a finite training loss
    come first, then the stage's limits, the best baseline, and the margin over the holder.
    """
    label = f"v{candidate.version}"
    missing = [tag for tag in REQUIRED_LINEAGE if not candidate.tags.get(tag)]
    if missing:
        return f"{label} has no lineage ({', '.join(missing)} missing): it cannot be promoted"
    if candidate.tags.get("train_finite") != "true":
        return f"{label} was trained with a NaN/inf loss (or has no record that it was not)"
    if scores is None:
        return f"{label} cannot be scored on the current evaluation set (trained for other inputs)"
    value = scores.metrics.get(rule.metric)
    if value is None or not math.isfinite(value):
        why = f": {scores.note}" if scores.note else ""
        return f"{label} has no finite {rule.metric} on the current evaluation set{why}"
    for metric, bound in stage.limits.items():
        have = scores.metrics.get(metric)
        if have is None:
            return f"{label}: limit on {metric} cannot be checked (only {rule.metric} re-scored)"
        if not rule.meets(have, bound):
            return f"{label} {metric} {have:.4f} is outside the stage's limit {bound:g}"
    if rule.baseline is not None and rule.baseline_value is not None:
        if not rule.better(value, rule.baseline_value):
            return (
                f"{label} {rule.metric} {value:.4f} does not beat the best baseline, "
                f"{rule.baseline} ({rule.baseline_value:.4f}; "
                f"{_shortfall(value, rule.baseline_value, rule)})"
            )
    if holder is None:
        return None
    if holder_scores is None or rule.metric not in holder_scores.metrics:
        why = holder_scores.note if holder_scores and holder_scores.note else "other inputs"
        return (
            f"holder v{holder.version} cannot be scored on the current evaluation set ({why}), "
            "so nothing can be compared; promote with --force --reason to replace it"
        )
    theirs = holder_scores.metrics[rule.metric]
    if not rule.better(value, theirs, stage.min_margin):
        where = " (re-scored on this evaluation set)" if holder_scores.rescored else ""
        margin = f" by {stage.min_margin:.0%}" if stage.min_margin else ""
        return (
            f"holder v{holder.version}{where} {rule.metric} {theirs:.4f} is not beaten{margin} "
            f"by {label} ({value:.4f}; {_shortfall(value, theirs, rule)})"
        )
    return None


def _shortfall(value: float, other: float, rule: GateRule) -> str:
    """Returns how far `value` is from beating `other`, e.g. "12.5% worse" or "equal"."""
    if value == other:
        return "equal"
    worse = value < other if rule.higher_is_better else value > other
    if other == 0:
        return f"{abs(value - other):.4g} {'worse' if worse else 'better'}"
    return f"{abs(value - other) / abs(other):.1%} {'worse' if worse else 'better'}"


@dataclass
class Promotion:
    """One request to move `stage` to `version` of registered model `name`."""

    name: str
    version: str
    stage: str
    rule: GateRule
    gate: StageGate = field(default_factory=StageGate)
    force: bool = False
    reason: str = ""  # why (required with force)
    context: dict[str, str] = field(default_factory=dict)  # data version, flow run, ...


def promote(client: MlflowClient, request: Promotion, score: Scorer) -> GateDecision:
    """Returns the decision after moving the stage's alias to the version if the gate lets it.

    The read-decide-write runs under the registry lock; the alias is read back after it is
    set, and the decision (refusals too) is appended to the audit trail.
    """
    if request.force and not request.reason.strip():
        raise PromotionError("a forced promotion needs --reason: say why the gate is overruled")
    with registry_lock(client, request.name):
        candidate = client.get_model_version(request.name, request.version)
        holder = current_alias(client, request.name, request.stage)
        if holder is not None and str(holder.version) == str(candidate.version):
            return GateDecision(
                False,
                str(holder.version),
                f"v{holder.version} already holds {request.stage}",
                request.stage,
            )
        scores = score(candidate)
        holder_scores = score(holder) if holder is not None else None
        refusal = (
            None
            if request.force
            else gate(candidate, scores, holder, holder_scores, request.rule, request.gate)
        )
        metrics = {
            "candidate": scores.metrics.get(request.rule.metric) if scores else None,
            "holder": holder_scores.metrics.get(request.rule.metric) if holder_scores else None,
        }
        record = {
            "action": "refused" if refusal else ("force" if request.force else "promote"),
            "alias": request.stage,
            "from": str(holder.version) if holder is not None else None,
            "to": str(candidate.version),
            "metric": request.rule.metric,
            "metrics": metrics,
            "reason": refusal or request.reason,
            "evaluation_key": request.rule.evaluation_key,
            "data_version": candidate.tags.get("data_version"),
            **request.context,
        }
        if refusal:
            append_audit(client, request.name, record)
            return GateDecision(
                False, str(holder.version) if holder else None, refusal, request.stage
            )
        _move_alias(client, request.name, request.stage, str(candidate.version))
        entry = append_audit(client, request.name, record)
        client.set_model_version_tag(
            request.name,
            candidate.version,
            f"stage.{request.stage}",
            f"{entry['time']} by {entry['actor']} (audit {entry['seq']})",
        )
    was = (
        f"was v{holder.version} at {metrics['holder']:.4f}"
        if holder is not None and metrics["holder"] is not None
        else (f"was v{holder.version}" if holder is not None else f"no {request.stage} before")
    )
    value = metrics["candidate"]
    shown = f"{request.rule.metric} {value:.4f}" if value is not None else "not scored"
    how = f"forced: {request.reason}" if request.force else shown
    return GateDecision(
        True,
        str(candidate.version),
        f"{request.stage} -> v{candidate.version} ({how}; {was})",
        request.stage,
    )


def _move_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Sets `alias` and reads it back (compare-after-set): a writer outside the lock shows."""
    client.set_registered_model_alias(name, alias, version)
    now = current_alias(client, name, alias)
    if now is None or str(now.version) != version:
        raise PromotionError(
            f"{name}@{alias} was set to v{version} but reads back as "
            f"{'nothing' if now is None else f'v{now.version}'}: something outside trainyard "
            "moves this alias; stop it and retry"
        )


def holders(records: list[dict[str, Any]], stage: str) -> list[str]:
    """Returns the stage's holders as a stack (oldest first), replaying the audit trail:
    a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for record in records:
        if record.get("alias") != stage:
            continue
        if record["action"] in PROMOTING_ACTIONS:
            stack.append(record["to"])
        elif record["action"] == "rollback" and stack:
            stack.pop()
    return stack


def rollback(
    client: MlflowClient, name: str, stage: str, reason: str = "", context: dict | None = None
) -> GateDecision:
    """Returns the decision after giving `stage` back to its previous holder.

    The previous holder comes from the audit trail; versions deleted since are skipped.
    """
    with registry_lock(client, name):
        current = current_alias(client, name, stage)
        if current is None:
            raise PromotionError(f"{name}: no version holds {stage}; nothing to roll back")
        stack = holders(audit_records(client, name), stage)
        if not stack or stack[-1] != str(current.version):
            raise PromotionError(
                f"{name}@{stage} is v{current.version} but trainyard's history says "
                f"{'nothing' if not stack else 'v' + stack[-1]}: the alias was moved outside "
                f"trainyard; use `trainyard promote {name} --version V --to {stage} --force`"
            )
        previous = None
        for version in reversed(stack[:-1]):
            if version != str(current.version) and _exists(client, name, version):
                previous = version
                break
        if previous is None:
            raise PromotionError(f"{name}: {stage} has no previous holder to roll back to")
        _move_alias(client, name, stage, previous)
        target = client.get_model_version(name, previous)
        append_audit(
            client,
            name,
            {
                "action": "rollback",
                "alias": stage,
                "from": str(current.version),
                "to": previous,
                "metric": None,
                "metrics": {},
                "reason": reason or "rollback",
                "data_version": target.tags.get("data_version"),
                **(context or {}),
            },
        )
    return GateDecision(True, previous, f"{stage} -> v{previous} (was v{current.version})", stage)


def record_challenger(client: MlflowClient, name: str, version: str, context: dict) -> None:
    """Moves `challenger` to `version` under the lock and records it in the audit trail."""
    with registry_lock(client, name):
        before = current_alias(client, name, CHALLENGER)
        client.set_registered_model_alias(name, CHALLENGER, version)
        append_audit(
            client,
            name,
            {
                "action": "register",
                "alias": CHALLENGER,
                "from": str(before.version) if before is not None else None,
                "to": version,
                "metric": None,
                "metrics": {},
                "reason": "best model of its run",
                **context,
            },
        )


def _exists(client: MlflowClient, name: str, version: str) -> bool:
    try:
        client.get_model_version(name, version)
    except MlflowException:
        return False
    return True
