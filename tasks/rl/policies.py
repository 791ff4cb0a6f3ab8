"""Baseline policies and the rollout that scores any policy on a fixed scenario set.

A policy is any object with `act(obs, state) -> actions`: obs float32 [N, A, D], state the env's
`state()` dict (greedy needs it; neural agents use obs only), actions int [N, A].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from trainyard.tasks.rl.gym_envs import VecEnv
from trainyard.tasks.rl.treasure_hunt import Action, InitialStates, nearest_treasure


class Policy(Protocol):
    """Anything that picks actions for a batch of envs."""

    def act(self, obs: np.ndarray, state: dict[str, np.ndarray] | None) -> np.ndarray:
        """Returns int [N, A] actions for obs [N, A, D] (and the envs' state, if it needs it)."""
        ...


class RandomPolicy:
    """Uniformly random actions; also callable as `policy(obs)`."""

    def __init__(self, rng: np.random.Generator, num_actions: int = len(Action)):
        self.rng = rng
        self.num_actions = num_actions

    def act(self, obs: np.ndarray, state: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Returns int [N, A] actions drawn uniformly from 0..num_actions-1."""
        return self.rng.integers(0, self.num_actions, size=obs.shape[:2])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.act(obs)


def random_policy(rng: np.random.Generator, num_actions: int = len(Action)) -> RandomPolicy:
    """Returns a uniformly random policy drawing from `rng`: `policy(obs [N,A,D]) -> [N,A]`."""
    return RandomPolicy(rng, num_actions)


def greedy_actions(env_state: dict[str, np.ndarray]) -> np.ndarray:
    """Returns int [N, A]: each agent's step toward its nearest remaining treasure.

    Nearest as in the vector observation (Manhattan, ties to the lowest treasure index); the
    agent closes the row gap first, then the column gap, and stays when no treasure remains.
    `env_state` is `TreasureHuntVecEnv.state()`.
    """
    agents = env_state["agents"]
    target, found = nearest_treasure(agents, env_state["treasures"], env_state["collected"])
    d_row = target[:, :, 0] - agents[:, :, 0]
    d_col = target[:, :, 1] - agents[:, :, 1]
    actions = np.select(
        [d_row < 0, d_row > 0, d_col < 0, d_col > 0],
        [Action.UP, Action.DOWN, Action.LEFT, Action.RIGHT],
        default=Action.STAY,
    )
    return np.where(found, actions, Action.STAY).astype(np.int64)


class GreedyPolicy:
    """Every agent walks to its nearest remaining treasure (needs the treasure hunt's state)."""

    def act(self, obs: np.ndarray, state: dict[str, np.ndarray] | None) -> np.ndarray:
        """Returns `greedy_actions(state)`."""
        if state is None:
            raise ValueError("GreedyPolicy needs the env state: pass TreasureHuntVecEnv.state()")
        return greedy_actions(state)


def rollout(
    env: VecEnv,
    policy: Policy,
    scenarios: InitialStates | Sequence[int] | int,
) -> pd.DataFrame:
    """Returns one row per episode: scenario, return, length, success.

    Runs each scenario once, `env.num_envs` at a time. `scenarios` is an `InitialStates` set
    (treasure hunt), a list of reset seeds (any env), or a count n meaning seeds 0..n-1. A short
    last batch is padded with copies of its last scenario whose episodes are not recorded. Each
    env's first episode is the only one recorded; what auto-reset starts after it is ignored.
    """
    if isinstance(scenarios, int):
        scenarios = list(range(scenarios))
    total = len(scenarios)
    width = env.num_envs
    rows = []
    for start in range(0, total, width):
        chosen = np.arange(start, min(start + width, total))
        padded = np.concatenate([chosen, np.full(width - len(chosen), chosen[-1])])
        if isinstance(scenarios, InitialStates):
            obs = env.reset(states=scenarios.subset(padded))
        else:
            obs = env.reset(seeds=[scenarios[i] for i in padded])
        done = np.arange(width) >= len(chosen)  # padding counts as done from the start
        returns = np.zeros(width, dtype=np.float32)
        lengths = np.zeros(width, dtype=np.int64)
        success = np.zeros(width, dtype=bool)
        while not done.all():
            actions = policy.act(obs, env.state())
            obs, _, terminated, truncated, info = env.step(actions)
            ended = ~done & (terminated | truncated)
            returns[ended] = info["episode_return"][ended]
            lengths[ended] = info["episode_length"][ended]
            success[ended] = info["success"][ended]
            done |= ended
        for k, index in enumerate(chosen):
            rows.append((int(index), returns[k], int(lengths[k]), bool(success[k])))
    return pd.DataFrame(rows, columns=["scenario", "return", "length", "success"])
