"""Baseline policies and the rollout that scores them on fixed scenario sets."""

from __future__ import annotations

import numpy as np
import pytest

from trainyard.tasks.rl.gym_envs import GymVecEnv
from trainyard.tasks.rl.policies import (
    GreedyPolicy,
    RandomPolicy,
    greedy_actions,
    random_policy,
    rollout,
)
from trainyard.tasks.rl.treasure_hunt import (
    Action,
    InitialStates,
    TreasureHuntConfig,
    TreasureHuntVecEnv,
    sample_initial_states,
)

UP, DOWN, LEFT, RIGHT, STAY = Action


def test_greedy_closes_the_row_gap_first_and_stays_when_nothing_remains():
    state = {
        "agents": np.array([[[4, 4], [0, 0]], [[2, 2], [2, 2]]]),
        "treasures": np.array([[[1, 6], [0, 1]], [[2, 0], [3, 2]]]),
        "collected": np.array([[False, False], [True, True]]),
    }
    # Env 0: agent 0 is 5 from both treasures, takes treasure 0 (lower index): up first.
    # Agent 1 is 1 from treasure 1, in its row: right. Env 1: nothing remains.
    assert greedy_actions(state).tolist() == [[UP, RIGHT], [STAY, STAY]]


def test_greedy_solves_a_hand_built_scenario_in_the_optimal_number_of_steps():
    # Agent 0 needs 3 steps for (0,3). Agent 1 takes (7,5) in 2 and then (4,5) in 3 more; no
    # plan is faster, as agent 0 is 9 steps from (4,5) and 12 from (7,5).
    scenario = InitialStates(
        agents=np.array([[[0, 0], [7, 7]]]), treasures=np.array([[[0, 3], [7, 5], [4, 5]]])
    )
    env = TreasureHuntVecEnv(TreasureHuntConfig(), num_envs=1, seed=0)
    result = rollout(env, GreedyPolicy(), scenario)
    assert result.to_dict("records") == [
        {"scenario": 0, "return": pytest.approx(30 - 0.5), "length": 5, "success": True}
    ]


def test_random_policy_draws_valid_actions_in_the_obs_batch_shape():
    policy = random_policy(np.random.default_rng(0))
    actions = policy(np.zeros((7, 3, 4), dtype=np.float32))
    assert actions.shape == (7, 3) and actions.min() >= 0 and actions.max() <= 4
    assert isinstance(policy, RandomPolicy)
    assert policy.act(np.zeros((2, 1, 4)), None).shape == (2, 1)


def test_rollout_runs_every_scenario_exactly_once_across_padded_batches():
    config = TreasureHuntConfig(max_steps=15)
    scenarios = sample_initial_states(config, 7, seed=0)
    env = TreasureHuntVecEnv(config, num_envs=3, seed=0)  # batches of 3, 3, 1 (+2 padding)
    result = rollout(env, GreedyPolicy(), scenarios)
    assert result["scenario"].tolist() == list(range(7))
    assert ((result["length"] >= 1) & (result["length"] <= 15)).all()
    assert (result.loc[~result["success"], "length"] == 15).all()  # failures hit the horizon
    # Scenario i alone gives the same episode as inside the batch.
    alone = rollout(TreasureHuntVecEnv(config, 1, seed=5), GreedyPolicy(), scenarios.subset([6]))
    assert alone["return"][0] == pytest.approx(result["return"][6])
    assert alone["length"][0] == result["length"][6]


class PushLeft:
    """Always action 0: a deterministic policy, so equal seeds must give equal episodes."""

    def act(self, obs: np.ndarray, state: dict | None) -> np.ndarray:
        return np.zeros(obs.shape[:2], dtype=np.int64)


def test_rollout_on_gym_seeds_scores_each_seed_once():
    env = GymVecEnv("CartPole-v1", num_envs=4)
    result = rollout(env, PushLeft(), [3, 1, 4, 1, 5])
    assert result["scenario"].tolist() == [0, 1, 2, 3, 4]
    assert (result["return"] == result["length"]).all()  # CartPole pays +1 per step
    assert result["return"][1] == result["return"][3]  # the same seed twice
    assert not result["success"].any()  # pushing one way always drops the pole


def test_greedy_beats_random_on_200_scenarios():
    config = TreasureHuntConfig()
    scenarios = sample_initial_states(config, 200, seed=2024)
    env = TreasureHuntVecEnv(config, num_envs=200, seed=0)
    greedy = rollout(env, GreedyPolicy(), scenarios)
    random = rollout(env, random_policy(np.random.default_rng(0)), scenarios)
    assert greedy["success"].all()
    assert greedy["return"].mean() > random["return"].mean() + 20
    assert greedy["length"].mean() < random["length"].mean() / 2
