"""The champion gate against a real MLflow registry (SQLite in a temp folder)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tasks.register import CHAMPION, RegisteredVersion, promote_if_better
from trainyard.config import Params
from trainyard.environment import ProjectPaths, configure_environment


@pytest.fixture
def registry(tmp_path: Path):
    """Returns (client, registered model name) for a fresh registered model."""
    configure_environment(ProjectPaths(tmp_path))
    client = MlflowClient()
    name = f"gate-{tmp_path.name}"
    client.create_registered_model(name)
    return client, name


def _version(client: MlflowClient, name: str, metric: float, key: str = "k1") -> RegisteredVersion:
    created = client.create_model_version(
        name, source="file:///nonexistent", tags={"holdout_key": key, "holdout_mase": str(metric)}
    )
    return RegisteredVersion(name, str(created.version), "tcn", "run", metric)


def test_first_winner_becomes_champion_and_a_worse_one_does_not(registry, tmp_path):
    client, name = registry
    lock = tmp_path / "registry.lock"
    good = _version(client, name, 0.5)
    assert promote_if_better(client, good, Params(), "k1", 1.0, lock).promoted
    worse = _version(client, name, 0.7)
    decision = promote_if_better(client, worse, Params(), "k1", 1.0, lock)
    assert not decision.promoted and "is not beaten" in decision.reason
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == good.version


def test_a_model_that_loses_to_seasonal_naive_is_never_champion(registry, tmp_path):
    client, name = registry
    loser = _version(client, name, 1.2)
    decision = promote_if_better(client, loser, Params(), "k1", 1.0, tmp_path / "lock")
    assert not decision.promoted and "seasonal naive" in decision.reason
    assert not client.get_registered_model(name).aliases


def test_champion_from_another_holdout_is_not_compared(registry, tmp_path):
    client, name = registry
    lock = tmp_path / "lock"
    old = _version(client, name, 0.9, key="old-holdout")
    promote_if_better(client, old, Params(), "old-holdout", 1.0, lock)
    new = _version(client, name, 0.3, key="new-holdout")
    decision = promote_if_better(client, new, Params(), "new-holdout", 1.0, lock)
    assert not decision.promoted and "another holdout" in decision.reason


def test_concurrent_promotions_leave_the_best_as_champion(registry, tmp_path, monkeypatch):
    import tasks.register

    client, name = registry
    lock = tmp_path / "lock"
    read_alias = tasks.register.current_alias

    def slow_read(*args):
        # Widen the read-compare-write window: without the lock, a slower promotion that read
        # an old champion would overwrite a better one that landed meanwhile.
        version = read_alias(*args)
        time.sleep(0.2)
        return version

    monkeypatch.setattr(tasks.register, "current_alias", slow_read)
    candidates = [_version(client, name, metric) for metric in (0.8, 0.2, 0.6, 0.4, 0.5, 0.3)]
    start = threading.Barrier(len(candidates))

    def promote(candidate: RegisteredVersion) -> None:
        start.wait()
        promote_if_better(MlflowClient(), candidate, Params(), "k1", 1.0, lock)

    threads = [threading.Thread(target=promote, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    best = min(candidates, key=lambda c: c.metric)
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == best.version


@pytest.mark.parametrize(("rescored", "promoted"), [(0.25, False), (0.35, True)])
def test_champion_from_another_holdout_is_rescored_on_this_one(
    registry, tmp_path, rescored, promoted
):
    client, name = registry
    lock = tmp_path / "lock"
    old = _version(client, name, 0.9, key="old-holdout")
    promote_if_better(client, old, Params(), "old-holdout", 1.0, lock)
    new = _version(client, name, 0.3, key="new-holdout")
    asked = []

    def rescore(champion):
        asked.append(str(champion.version))
        return rescored

    decision = promote_if_better(client, new, Params(), "new-holdout", 1.0, lock, rescore)
    assert asked == [old.version]
    assert decision.promoted is promoted
    assert "re-scored on this holdout" in decision.reason
    expected = new.version if promoted else old.version
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == expected
