"""The promotion gate, the registry lock and the audit trail against a real MLflow registry
(SQLite in a temp folder)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.tracking import MlflowClient

from trainyard.config import StageGate
from trainyard.environment import ProjectPaths, configure_environment
from trainyard.tasks import promotion, registry
from trainyard.tasks.promotion import (
    GateRule,
    Promotion,
    PromotionError,
    audit_records,
    promote,
    rollback,
    scorer,
)
from trainyard.tasks.registry import CHAMPION

LINEAGE = {
    "family": "forecast",
    "git_commit": "abc123",
    "params_hash": "p1",
    "data_version": "d1",
    "train_finite": "true",
}


def _rule(
    key: str = "k1",
    baseline_value: float | None = 1.0,
    baseline: str | None = "seasonal_naive",
    metric: str = "mase",
    higher_is_better: bool = False,
) -> GateRule:
    return GateRule(metric, higher_is_better, key, baseline, baseline_value)


@pytest.fixture
def registry_model(tmp_path: Path):
    """Returns (client, registered model name) for a fresh registered model."""
    configure_environment(ProjectPaths(tmp_path))
    client = MlflowClient()
    name = f"gate-{tmp_path.name}"
    client.create_registered_model(name)
    return client, name


def _version(
    client: MlflowClient,
    name: str,
    value: float,
    key: str = "k1",
    metric: str = "mase",
    **tags: str,
) -> str:
    created = client.create_model_version(
        name,
        source="file:///nonexistent",
        tags={
            **LINEAGE,
            "evaluation_key": key,
            registry.metric_tag(metric): str(value),
            **tags,
        },
    )
    return str(created.version)


def _promote(client, name, version, rule=None, rescore=None, stage=CHAMPION, **options):
    rule = rule or _rule()
    request = Promotion(name, version, stage, rule, **options)
    return promote(client, request, scorer(rule, rescore))


def _holder(client: MlflowClient, name: str, stage: str = CHAMPION) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases[stage]) if stage in aliases else None


def test_first_winner_becomes_champion_and_a_worse_one_does_not(registry_model):
    client, name = registry_model
    good = _version(client, name, 0.5)
    assert _promote(client, name, good).promoted
    worse = _version(client, name, 0.7)
    decision = _promote(client, name, worse)
    assert not decision.promoted and "is not beaten" in decision.reason
    assert "40.0% worse" in decision.reason  # 0.7 against the holder's 0.5
    assert _holder(client, name) == good
    records = audit_records(client, name)
    assert [(r["action"], r["from"], r["to"]) for r in records] == [
        ("promote", None, good),
        ("refused", good, worse),
    ]
    assert records[1]["metrics"] == {"candidate": 0.7, "holder": 0.5}
    assert client.get_model_version(name, good).tags[f"stage.{CHAMPION}"]


def test_a_model_that_loses_to_the_best_baseline_is_never_champion(registry_model):
    client, name = registry_model
    decision = _promote(client, name, _version(client, name, 1.2))
    assert not decision.promoted and "seasonal_naive" in decision.reason
    assert "(1.0000; 20.0% worse)" in decision.reason  # 1.2 against the baseline's 1.0
    assert _holder(client, name) is None


def test_a_holder_from_another_evaluation_set_that_cannot_be_rescored_stays(registry_model):
    client, name = registry_model
    old = _version(client, name, 0.9, key="old-holdout")
    assert _promote(client, name, old, _rule("old-holdout")).promoted
    new = _version(client, name, 0.3, key="new-holdout")
    decision = _promote(client, name, new, _rule("new-holdout"), rescore=lambda v: None)
    assert not decision.promoted and "cannot be scored" in decision.reason
    assert _holder(client, name) == old


@pytest.mark.parametrize(("rescored", "promoted"), [(0.25, False), (0.35, True)])
def test_both_are_scored_on_the_current_evaluation_set(registry_model, rescored, promoted):
    client, name = registry_model
    old = _version(client, name, 0.9, key="old-holdout")
    _promote(client, name, old, _rule("old-holdout"))
    new = _version(client, name, 0.3, key="new-holdout")
    asked = []

    def rescore(version):
        asked.append(str(version.version))
        return rescored

    decision = _promote(client, name, new, _rule("new-holdout"), rescore=rescore)
    # The old holder's logged 0.9 was measured on other data: only the re-score counts.
    assert asked == [old]
    assert decision.promoted is promoted
    if not promoted:
        assert "re-scored on this evaluation set" in decision.reason
    assert _holder(client, name) == (new if promoted else old)


def test_a_candidate_scored_elsewhere_is_rescored_too(registry_model):
    client, name = registry_model
    holder = _version(client, name, 0.5)
    _promote(client, name, holder)
    # Logged 0.1 on another evaluation set; on this one it scores 0.6: it must lose.
    stale = _version(client, name, 0.1, key="other")
    decision = _promote(client, name, stale, rescore=lambda v: 0.6)
    assert not decision.promoted and "0.6000" in decision.reason


def test_the_margin_and_the_limits_of_a_stage(registry_model):
    client, name = registry_model
    holder = _version(client, name, 0.50)
    _promote(client, name, holder)
    slightly = _version(client, name, 0.495)
    decision = _promote(client, name, slightly, gate=StageGate(min_margin=0.05))
    assert not decision.promoted and "by 5%" in decision.reason
    clearly = _version(client, name, 0.40)
    assert _promote(client, name, clearly, gate=StageGate(min_margin=0.05)).promoted
    capped = _version(client, name, 0.30)
    decision = _promote(client, name, capped, gate=StageGate(limits={"mase": 0.2}))
    assert not decision.promoted and "limit" in decision.reason


def test_no_lineage_or_a_nonfinite_loss_never_passes(registry_model):
    client, name = registry_model
    orphan = client.create_model_version(
        name, source="file:///x", tags={"evaluation_key": "k1", "eval_mase": "0.1"}
    ).version
    decision = _promote(client, name, str(orphan))
    assert not decision.promoted and "no lineage" in decision.reason
    diverged = _version(client, name, 0.1, train_finite="false")
    decision = _promote(client, name, diverged)
    assert not decision.promoted and "NaN/inf" in decision.reason
    assert _holder(client, name) is None


def test_a_forced_promotion_needs_a_reason_and_is_recorded(registry_model):
    client, name = registry_model
    good = _version(client, name, 0.3)
    _promote(client, name, good)
    worse = _version(client, name, 0.8)
    with pytest.raises(PromotionError, match="reason"):
        _promote(client, name, worse, force=True)
    decision = _promote(client, name, worse, force=True, reason="hotfix for the Monday demo")
    assert decision.promoted and _holder(client, name) == worse
    last = audit_records(client, name)[-1]
    assert last["action"] == "force" and last["reason"] == "hotfix for the Monday demo"


def test_rollback_restores_the_previous_holder_and_history_keeps_all(registry_model):
    client, name = registry_model
    v1, v2, v3 = (_version(client, name, value) for value in (0.6, 0.5, 0.4))
    for version in (v1, v2, v3):
        assert _promote(client, name, version).promoted
    assert rollback(client, name, CHAMPION, "v3 misbehaves").version == v2
    assert _holder(client, name) == v2
    assert rollback(client, name, CHAMPION).version == v1
    with pytest.raises(PromotionError, match="no previous holder"):
        rollback(client, name, CHAMPION)
    actions = [(r["action"], r["from"], r["to"]) for r in audit_records(client, name)]
    assert actions == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("promote", v2, v3),
        ("rollback", v3, v2),
        ("rollback", v2, v1),
    ]
    assert [r["seq"] for r in audit_records(client, name)] == [1, 2, 3, 4, 5]


def test_rollback_refuses_when_the_alias_moved_outside_trainyard(registry_model):
    client, name = registry_model
    v1, v2 = _version(client, name, 0.6), _version(client, name, 0.5)
    _promote(client, name, v1)
    _promote(client, name, v2)
    client.set_registered_model_alias(name, CHAMPION, v1)
    with pytest.raises(PromotionError, match="moved outside trainyard"):
        rollback(client, name, CHAMPION)


def test_stages_are_independent_aliases(registry_model):
    client, name = registry_model
    v1 = _version(client, name, 0.5)
    assert _promote(client, name, v1, stage="staging").promoted
    assert _promote(client, name, v1, stage="production").promoted
    v2 = _version(client, name, 0.4)
    assert _promote(client, name, v2, stage="staging").promoted
    assert (_holder(client, name, "staging"), _holder(client, name, "production")) == (v2, v1)


def test_concurrent_promotions_leave_the_best_as_champion(registry_model, monkeypatch):
    client, name = registry_model
    read_alias = promotion.current_alias

    def slow_read(*args):
        # Widen the read-compare-write window: without the lock, a slower promotion that read
        # an old champion would overwrite a better one that landed meanwhile.
        version = read_alias(*args)
        time.sleep(0.2)
        return version

    monkeypatch.setattr(promotion, "current_alias", slow_read)
    values = (0.8, 0.2, 0.6, 0.4, 0.5, 0.3)
    candidates = {_version(client, name, value): value for value in values}
    start = threading.Barrier(len(candidates))
    errors = []

    def run(version: str) -> None:
        start.wait()
        try:
            _promote(MlflowClient(), name, version)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(v,)) for v in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert _holder(client, name) == min(candidates, key=candidates.get)
    # Every request is in the trail once, numbered without gaps.
    records = audit_records(client, name)
    assert sorted(r["to"] for r in records) == sorted(candidates)
    assert [r["seq"] for r in records] == list(range(1, len(candidates) + 1))
    assert not [m for m in client.search_registered_models() if promotion.is_lock(m.name)]


def test_a_stale_lock_of_a_dead_holder_is_broken(registry_model):
    client, name = registry_model
    client.create_registered_model(
        promotion.lock_name(name), tags={"trainyard.lock": "dead", "expires": "1"}
    )
    assert _promote(client, name, _version(client, name, 0.5)).promoted


def test_a_live_lock_times_out_with_a_clear_error(registry_model):
    client, name = registry_model
    with promotion.registry_lock(client, name):
        with pytest.raises(PromotionError, match="registry lock"):
            with promotion.registry_lock(MlflowClient(), name, timeout=0.5):
                pass


def test_a_registry_error_reading_the_champion_never_promotes(registry_model, monkeypatch):
    client, name = registry_model
    old = _version(client, name, 0.9)
    assert _promote(client, name, old).promoted
    better = _version(client, name, 0.1)

    def registry_down(*args, **kwargs):
        raise MlflowException("boom", error_code=INTERNAL_ERROR)

    # Fault injection on one client method; the registry itself is a real SQLite MLflow.
    monkeypatch.setattr(client, "get_model_version_by_alias", registry_down)
    with pytest.raises(MlflowException, match="boom"):
        _promote(client, name, better)
    monkeypatch.undo()
    assert _holder(client, name) == old


def test_no_champion_yet_is_not_an_error(registry_model):
    client, name = registry_model
    assert registry.current_alias(client, name, CHAMPION) is None


@pytest.mark.parametrize(("value", "promoted"), [(4.0, False), (5.0, False), (6.0, True)])
def test_higher_is_better_gate_must_beat_the_best_baseline(registry_model, value, promoted):
    client, name = registry_model
    rule = _rule(baseline="greedy", baseline_value=5.0, metric="mean_return", higher_is_better=True)
    challenger = _version(client, name, value, metric="mean_return")
    decision = _promote(client, name, challenger, rule)
    assert decision.promoted is promoted
    if promoted:
        assert _holder(client, name) == challenger
    else:
        assert "greedy" in decision.reason and "best baseline" in decision.reason
        assert _holder(client, name) is None


def test_higher_is_better_champion_is_beaten_only_by_a_higher_value(registry_model):
    client, name = registry_model
    rule = _rule(baseline="greedy", baseline_value=5.0, metric="mean_return", higher_is_better=True)
    first = _version(client, name, 7.0, metric="mean_return")
    assert _promote(client, name, first, rule).promoted
    assert not _promote(
        client, name, _version(client, name, 6.0, metric="mean_return"), rule
    ).promoted
    higher = _version(client, name, 8.0, metric="mean_return")
    assert _promote(client, name, higher, rule).promoted
    assert _holder(client, name) == higher
