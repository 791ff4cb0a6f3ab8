"""The gymnasium adapter: CartPole behind the treasure hunt's vectorised interface."""

from __future__ import annotations

import numpy as np
import pytest

from trainyard.tasks.rl.gym_envs import GymVecEnv, make_env
from trainyard.tasks.rl.treasure_hunt import (
    TreasureHuntConfig,
    TreasureHuntVecEnv,
    sample_initial_states,
)

# CartPole-v1 ends when the pole passes 12 degrees or the cart leaves +-2.4.
ANGLE_LIMIT = 12 * 2 * np.pi / 360


def test_cartpole_shapes_and_dtypes():
    env = GymVecEnv("CartPole-v1", num_envs=3, seed=0)
    assert (env.num_envs, env.num_agents, env.num_actions, env.observation_size) == (3, 1, 2, 4)
    obs = env.reset()
    assert obs.shape == (3, 1, 4) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(np.ones((3, 1), dtype=np.int64))
    assert obs.shape == (3, 1, 4) and obs.dtype == np.float32
    assert reward.shape == (3,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool
    assert info["final_observation"].shape == (3, 1, 4)
    assert np.isnan(info["episode_return"]).all() and (info["episode_length"] == 0).all()


def test_cartpole_termination_reports_the_final_observation_and_the_episode():
    env = GymVecEnv("CartPole-v1", num_envs=2, seed=0)
    env.reset()
    actions = np.array([[0], [1]])  # push one cart steadily left, the other right
    steps, terminated = 0, np.zeros(2, dtype=bool)
    while not terminated.any():  # both fall within a few dozen steps
        obs, reward, terminated, truncated, info = env.step(actions)
        steps += 1
    i = int(np.flatnonzero(terminated)[0])
    final = info["final_observation"][i, 0]
    assert abs(final[2]) > ANGLE_LIMIT or abs(final[0]) > 2.4  # the state that ended it
    assert np.abs(obs[i, 0]).max() <= 0.05  # CartPole restarts within +-0.05
    assert info["episode_length"][i] == steps
    assert info["episode_return"][i] == pytest.approx(steps)  # +1 per step
    assert not info["success"][i]
    still = ~terminated
    assert np.array_equal(info["final_observation"][still], obs[still])
    # The next step continues the new episode from 1.
    _, _, _, _, info = env.step(actions)
    assert info["episode_length"][i] in (0, 1)


def test_reset_seeds_define_reproducible_scenarios():
    env = GymVecEnv("CartPole-v1", num_envs=3)
    first = env.reset(seeds=[5, 6, 7])
    again = env.reset(seeds=[7, 6, 5])
    assert np.array_equal(first, again[::-1])
    assert np.array_equal(GymVecEnv("CartPole-v1", 3, seed=5).reset()[0], first[0])
    with pytest.raises(ValueError, match="seeds=\\[...\\]"):
        env.reset(states=sample_initial_states(TreasureHuntConfig(), 3, 0))


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("NoSuchEnv-v0", "cannot make gymnasium env 'NoSuchEnv-v0'.*CartPole-v1.*register"),
        ("Pendulum-v1", "'Pendulum-v1' has action space Box.*only Discrete"),
        ("FrozenLake-v1", "'FrozenLake-v1' has observation space Discrete.*flat"),
    ],
)
def test_unsupported_env_ids_fail_with_a_clear_message(env_id, message):
    with pytest.raises(ValueError, match=message):
        GymVecEnv(env_id, num_envs=1)


def test_make_env_builds_either_kind_by_name():
    hunt = make_env("treasure_hunt", TreasureHuntConfig(num_agents=3), num_envs=2, seed=0)
    assert isinstance(hunt, TreasureHuntVecEnv) and hunt.num_agents == 3
    cartpole = make_env("CartPole-v1", None, num_envs=2, seed=0)
    assert isinstance(cartpole, GymVecEnv) and cartpole.reset().shape == (2, 1, 4)
