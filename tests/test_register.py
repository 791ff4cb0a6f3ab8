"""The champion gate against a real MLflow registry (SQLite in a temp folder)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.tracking import MlflowClient

from trainyard.environment import ProjectPaths, configure_environment
from trainyard.tasks import registry
from trainyard.tasks.registry import CHAMPION, GateRule, RegisteredVersion, promote_if_better


def _rule(
    key: str = "k1",
    baseline_value: float = 1.0,
    baseline: str = "seasonal_naive",
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
    client: MlflowClient, name: str, value: float, key: str = "k1", metric: str = "mase"
) -> RegisteredVersion:
    created = client.create_model_version(
        name,
        source="file:///nonexistent",
        tags={"evaluation_key": key, registry.metric_tag(metric): str(value)},
    )
    return RegisteredVersion(name, str(created.version), "tcn", "run", value)


def _champion(client: MlflowClient, name: str) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def test_first_winner_becomes_champion_and_a_worse_one_does_not(registry_model, tmp_path):
    client, name = registry_model
    lock = tmp_path / "registry.lock"
    good = _version(client, name, 0.5)
    assert promote_if_better(client, good, _rule(), lock).promoted
    worse = _version(client, name, 0.7)
    decision = promote_if_better(client, worse, _rule(), lock)
    assert not decision.promoted and "is not beaten" in decision.reason
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == good.version


def test_a_model_that_loses_to_seasonal_naive_is_never_champion(registry_model, tmp_path):
    client, name = registry_model
    loser = _version(client, name, 1.2)
    decision = promote_if_better(client, loser, _rule(), tmp_path / "lock")
    assert not decision.promoted and "seasonal_naive" in decision.reason
    assert not client.get_registered_model(name).aliases


def test_champion_from_another_evaluation_set_is_not_compared(registry_model, tmp_path):
    client, name = registry_model
    lock = tmp_path / "lock"
    old = _version(client, name, 0.9, key="old-holdout")
    promote_if_better(client, old, _rule("old-holdout"), lock)
    new = _version(client, name, 0.3, key="new-holdout")
    decision = promote_if_better(client, new, _rule("new-holdout"), lock)
    assert not decision.promoted and "another evaluation set" in decision.reason
    assert _champion(client, name) == old.version


def test_concurrent_promotions_leave_the_best_as_champion(registry_model, tmp_path, monkeypatch):
    client, name = registry_model
    lock = tmp_path / "lock"
    read_alias = registry.current_alias

    def slow_read(*args):
        # Widen the read-compare-write window: without the lock, a slower promotion that read
        # an old champion would overwrite a better one that landed meanwhile.
        version = read_alias(*args)
        time.sleep(0.2)
        return version

    monkeypatch.setattr(registry, "current_alias", slow_read)
    candidates = [_version(client, name, value) for value in (0.8, 0.2, 0.6, 0.4, 0.5, 0.3)]
    start = threading.Barrier(len(candidates))

    def promote(candidate: RegisteredVersion) -> None:
        start.wait()
        promote_if_better(MlflowClient(), candidate, _rule(), lock)

    threads = [threading.Thread(target=promote, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    best = min(candidates, key=lambda c: c.metric)
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == best.version


@pytest.mark.parametrize(("rescored", "promoted"), [(0.25, False), (0.35, True)])
def test_champion_from_another_evaluation_set_is_rescored_on_this_one(
    registry_model, tmp_path, rescored, promoted
):
    client, name = registry_model
    lock = tmp_path / "lock"
    old = _version(client, name, 0.9, key="old-holdout")
    promote_if_better(client, old, _rule("old-holdout"), lock)
    new = _version(client, name, 0.3, key="new-holdout")
    asked = []

    def rescore(champion):
        asked.append(str(champion.version))
        return rescored

    decision = promote_if_better(client, new, _rule("new-holdout"), lock, rescore)
    assert asked == [old.version]
    assert decision.promoted is promoted
    assert "re-scored on this evaluation set" in decision.reason
    expected = new.version if promoted else old.version
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == expected


# Review defects of the shared skeleton: the gate's fault cases and its direction.


def test_a_registry_error_reading_the_champion_never_promotes(
    registry_model, tmp_path, monkeypatch
):
    client, name = registry_model
    lock = tmp_path / "lock"
    old = _version(client, name, 0.9)
    assert promote_if_better(client, old, _rule(), lock).promoted
    better = _version(client, name, 0.1)

    def registry_down(*args, **kwargs):
        raise MlflowException("boom", error_code=INTERNAL_ERROR)

    # Fault injection on one client method; the registry itself is a real SQLite MLflow.
    monkeypatch.setattr(client, "get_model_version_by_alias", registry_down)
    with pytest.raises(MlflowException, match="boom"):
        promote_if_better(client, better, _rule(), lock)
    monkeypatch.undo()
    assert _champion(client, name) == old.version


def test_no_champion_yet_is_not_an_error(registry_model):
    client, name = registry_model
    assert registry.current_alias(client, name, CHAMPION) is None


@pytest.mark.parametrize(("value", "promoted"), [(4.0, False), (5.0, False), (6.0, True)])
def test_higher_is_better_gate_must_beat_the_best_baseline(
    registry_model, tmp_path, value, promoted
):
    client, name = registry_model
    rule = _rule(baseline="greedy", baseline_value=5.0, metric="mean_return", higher_is_better=True)
    challenger = _version(client, name, value, metric="mean_return")
    decision = promote_if_better(client, challenger, rule, tmp_path / "lock")
    assert decision.promoted is promoted
    if promoted:
        assert _champion(client, name) == challenger.version
    else:
        assert "greedy" in decision.reason and "best baseline" in decision.reason
        assert _champion(client, name) is None


def test_higher_is_better_champion_is_beaten_only_by_a_higher_value(registry_model, tmp_path):
    client, name = registry_model
    lock = tmp_path / "lock"
    rule = _rule(baseline="greedy", baseline_value=5.0, metric="mean_return", higher_is_better=True)
    first = _version(client, name, 7.0, metric="mean_return")
    assert promote_if_better(client, first, rule, lock).promoted
    lower = _version(client, name, 6.0, metric="mean_return")
    assert not promote_if_better(client, lower, rule, lock).promoted
    higher = _version(client, name, 8.0, metric="mean_return")
    assert promote_if_better(client, higher, rule, lock).promoted
    assert _champion(client, name) == higher.version


def test_lower_is_better_gate_refuses_a_model_worse_than_the_best_baseline(
    registry_model, tmp_path
):
    client, name = registry_model
    # The run's best baseline is ETS (0.6), not seasonal naive (1.0): 0.8 beats only the latter.
    challenger = _version(client, name, 0.8)
    rule = _rule(baseline="ets", baseline_value=0.6)
    decision = promote_if_better(client, challenger, rule, tmp_path / "lock")
    assert not decision.promoted and "ets" in decision.reason
    assert _champion(client, name) is None
