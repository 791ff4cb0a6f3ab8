"""The treasure hunt's rules, seeding, batching and scenario sets, on hand-built situations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainyard.tasks.rl.treasure_hunt import (
    Action,
    InitialStates,
    TreasureHuntConfig,
    TreasureHuntVecEnv,
    sample_initial_states,
    vector_observation,
)

UP, DOWN, LEFT, RIGHT, STAY = Action


def hunt(
    agents: list[list[int]], treasures: list[list[int]], **config: int | float | str
) -> tuple[TreasureHuntVecEnv, np.ndarray]:
    """Returns a one-env treasure hunt reset to the given cells, and its first observation."""
    config = TreasureHuntConfig(num_agents=len(agents), num_treasures=len(treasures), **config)
    env = TreasureHuntVecEnv(config, num_envs=1, seed=0)
    obs = env.reset(states=InitialStates(np.array([agents]), np.array([treasures])))
    return env, obs


def test_wall_bump_costs_one_plus_the_step_and_the_agent_stays():
    env, _ = hunt([[0, 0], [3, 3]], [[7, 7], [7, 6], [6, 7]])
    _, reward, terminated, truncated, _ = env.step(np.array([[UP, STAY]]))
    assert reward[0] == pytest.approx(-1.1)
    assert env.state()["agents"][0].tolist() == [[0, 0], [3, 3]]
    assert not terminated[0] and not truncated[0]


def test_each_bumping_agent_pays_and_the_step_penalty_is_paid_once():
    env, _ = hunt([[0, 0], [7, 7]], [[3, 3], [4, 4], [5, 5]])
    _, reward, *_ = env.step(np.array([[LEFT, RIGHT]]))
    assert reward[0] == pytest.approx(-2.1)
    _, reward, *_ = env.step(np.array([[DOWN, UP]]))
    assert reward[0] == pytest.approx(-0.1)
    assert env.state()["agents"][0].tolist() == [[1, 0], [6, 7]]


def test_two_agents_reaching_one_treasure_collect_it_once():
    env, _ = hunt([[2, 1], [2, 3]], [[2, 2], [7, 7], [0, 7]])
    _, reward, terminated, _, _ = env.step(np.array([[RIGHT, LEFT]]))
    assert reward[0] == pytest.approx(10 - 0.1)
    assert env.state()["collected"][0].tolist() == [True, False, False]
    assert not terminated[0]
    # Standing on a collected treasure earns nothing more.
    _, reward, *_ = env.step(np.array([[STAY, STAY]]))
    assert reward[0] == pytest.approx(-0.1)


def test_collecting_the_last_treasure_terminates_and_auto_resets():
    env, _ = hunt([[4, 4]], [[4, 5], [3, 4]], size=6)
    env.step(np.array([[RIGHT]]))
    obs, reward, terminated, truncated, info = env.step(np.array([[UP]]))  # (4,5) -> (3,5)
    assert not terminated[0]
    obs, reward, terminated, truncated, info = env.step(np.array([[LEFT]]))  # onto (3,4)
    assert reward[0] == pytest.approx(9.9)
    assert terminated[0] and not truncated[0] and info["success"][0]
    assert info["episode_length"][0] == 3
    assert info["episode_return"][0] == pytest.approx(9.9 - 0.1 + 9.9)
    # The final observation is the ended episode's: at (3,4) with no treasure left.
    assert info["final_observation"][0, 0].tolist() == pytest.approx([3 / 5, 4 / 5, -1, -1])
    # The returned observation and state are a new episode's.
    state = env.state()
    assert state["steps"][0] == 0 and not state["collected"][0].any()
    assert np.array_equal(obs[0, 0, :2] * 5, state["agents"][0, 0])


def test_without_autoreset_an_ended_env_keeps_its_final_state_until_reset():
    config = TreasureHuntConfig(num_agents=1, num_treasures=1)
    env = TreasureHuntVecEnv(config, num_envs=1, seed=0, autoreset=False)
    start = InitialStates(np.array([[[2, 2]]]), np.array([[[2, 3]]]))
    env.reset(states=start)
    obs, _, terminated, _, info = env.step(np.array([[RIGHT]]))
    assert terminated[0] and np.array_equal(obs, info["final_observation"])
    state = env.state()
    assert state["agents"][0].tolist() == [[2, 3]] and state["collected"][0].all()
    with pytest.raises(ValueError, match="env 0 has ended"):
        env.step(np.array([[STAY]]))
    env.reset(states=start)
    env.step(np.array([[STAY]]))


def test_horizon_truncates_at_max_steps():
    env, _ = hunt([[0, 0]], [[7, 7]], max_steps=3)
    for _ in range(2):
        _, _, terminated, truncated, info = env.step(np.array([[STAY]]))
        assert not terminated[0] and not truncated[0]
        assert np.isnan(info["episode_return"][0]) and info["episode_length"][0] == 0
    _, _, terminated, truncated, info = env.step(np.array([[STAY]]))
    assert truncated[0] and not terminated[0] and not info["success"][0]
    assert info["episode_length"][0] == 3
    assert info["episode_return"][0] == pytest.approx(-0.3)


def test_vector_observation_points_at_nearest_treasure_lowest_index_on_ties():
    # Treasures 1 and 2 are both 2 steps from the agent; treasure 1 wins the tie.
    _, obs = hunt([[3, 3]], [[0, 0], [3, 5], [5, 3]])
    assert obs.dtype == np.float32 and obs.shape == (1, 1, 4)
    assert obs[0, 0].tolist() == pytest.approx([3 / 7, 3 / 7, 3 / 7, 5 / 7])


@pytest.mark.parametrize("size", [3, 8, 16, 20])  # up to 16 through lookup tables, then direct
def test_stepped_vector_observations_match_vector_observation(size):
    config = TreasureHuntConfig(size=size, num_agents=3, num_treasures=2, max_steps=12)
    env = TreasureHuntVecEnv(config, num_envs=32, seed=size)
    obs = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(40):
        state = env.state()
        expected = vector_observation(state["agents"], state["treasures"], state["collected"], size)
        assert np.array_equal(obs, expected)
        obs, *_ = env.step(rng.integers(0, 5, size=(32, 3)))


def test_grid_observation_shows_walls_treasures_and_other_agents():
    _, obs = hunt([[0, 0], [0, 1]], [[1, 1]], observation="grid", view_radius=1)
    assert obs.shape == (1, 2, 27) and obs.dtype == np.float32
    wall, treasure, other = obs[0, 0].reshape(3, 3, 3)
    assert wall.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert treasure.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert other.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 0]]  # itself not counted
    wall, treasure, other = obs[0, 1].reshape(3, 3, 3)
    assert wall[0].tolist() == [1, 1, 1] and wall[1:].sum() == 0
    assert treasure.tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert other.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]


def run(env: TreasureHuntVecEnv, actions: np.ndarray) -> list[tuple]:
    """Returns every step's outputs for a sequence of [B, A] actions."""
    return [env.step(a) for a in actions]


def test_same_seed_same_trajectories_different_seed_different():
    config = TreasureHuntConfig(max_steps=7)
    actions = np.random.default_rng(1).integers(0, 5, size=(40, 4, 2))
    first = run_from_seed(config, 3, actions)
    second = run_from_seed(config, 3, actions)
    other = run_from_seed(config, 4, actions)
    for (o1, r1, *_), (o2, r2, *_) in zip(first, second, strict=True):
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def run_from_seed(config: TreasureHuntConfig, seed: int, actions: np.ndarray) -> list[tuple]:
    """Returns the steps of a freshly seeded 4-env hunt under `actions`."""
    env = TreasureHuntVecEnv(config, num_envs=4, seed=seed)
    env.reset()
    return run(env, actions)


@pytest.mark.parametrize("observation", ["vector", "grid"])
def test_a_batch_step_equals_separate_single_env_steps(observation):
    config = TreasureHuntConfig(size=5, max_steps=6, observation=observation)
    batch = 6
    states = sample_initial_states(config, batch, seed=11)
    batched = TreasureHuntVecEnv(config, batch, seed=0)
    singles = [TreasureHuntVecEnv(config, 1, seed=100 + i) for i in range(batch)]
    obs = batched.reset(states=states)
    for i, single in enumerate(singles):
        assert np.array_equal(single.reset(states=states.subset([i]))[0], obs[i])
    actions = np.random.default_rng(2).integers(0, 5, size=(20, batch, 2))
    ends = 0
    for step_actions in actions:
        obs, reward, terminated, truncated, info = batched.step(step_actions)
        state = batched.state()
        for i, single in enumerate(singles):
            s_obs, s_reward, s_term, s_trunc, s_info = single.step(step_actions[i : i + 1])
            assert s_reward[0] == reward[i]
            assert (s_term[0], s_trunc[0]) == (terminated[i], truncated[i])
            assert np.array_equal(s_info["final_observation"][0], info["final_observation"][i])
            for key in ("episode_length", "success"):
                assert s_info[key][0] == info[key][i]
            assert np.array_equal(
                s_info["episode_return"], info["episode_return"][i : i + 1], equal_nan=True
            )
            if terminated[i] or truncated[i]:
                # New episodes come from each env's own generator: restart the single env from
                # the batch's new state, then both must agree again.
                ends += 1
                restart = InitialStates(state["agents"][i : i + 1], state["treasures"][i : i + 1])
                s_obs = single.reset(states=restart)
            assert np.array_equal(s_obs[0], obs[i])
    assert ends >= batch  # every env ended at least once (max_steps=6 over 20 steps)


def test_scenarios_round_trip_through_a_frame_and_reset_starts_from_them():
    config = TreasureHuntConfig()
    states = sample_initial_states(config, 5, seed=7)
    frame = states.to_frame()
    assert list(frame.columns[:4]) == ["agent0_row", "agent0_col", "agent1_row", "agent1_col"]
    assert len(frame) == 5 and "treasure2_col" in frame.columns
    restored = InitialStates.from_frame(frame, config)
    assert np.array_equal(restored.agents, states.agents)
    assert np.array_equal(restored.treasures, states.treasures)
    env = TreasureHuntVecEnv(config, num_envs=5, seed=0)
    env.reset(states=restored)
    state = env.state()
    assert np.array_equal(state["agents"], states.agents)
    assert np.array_equal(state["treasures"], states.treasures)


def test_sampled_states_are_legal_and_reproducible():
    config = TreasureHuntConfig(size=3, num_agents=4, num_treasures=5)
    states = sample_initial_states(config, 500, seed=3)
    states.check(config)  # distinct treasures, none under an agent, all on the grid
    again = sample_initial_states(config, 500, seed=3)
    assert np.array_equal(states.treasures, again.treasures)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("treasure1_row", 5, "two treasures share a cell"),
        ("agent1_col", 8, "an agent lies off the 8x8 grid"),
        ("treasure0_row", 2.5, "expected a whole number"),
    ],
)
def test_from_frame_rejects_a_bad_row_and_names_it(column, value, message):
    config = TreasureHuntConfig()
    frame = pd.DataFrame(
        {
            "agent0_row": [0, 0, 0], "agent0_col": [0, 1, 2],
            "agent1_row": [1, 1, 1], "agent1_col": [0, 1, 2],
            "treasure0_row": [5, 5, 5], "treasure0_col": [5, 5, 5],
            "treasure1_row": [6, 6, 6], "treasure1_col": [5, 5, 5],
            "treasure2_row": [7, 7, 7], "treasure2_col": [7, 7, 7],
        },
        index=["a", "b", "c"],
    )  # fmt: skip
    frame[column] = frame[column].astype(float)
    frame.loc["b", column] = value
    with pytest.raises(ValueError, match=f"row 'b'.*{message}"):
        InitialStates.from_frame(frame, config)


def test_from_frame_names_missing_columns():
    with pytest.raises(ValueError, match="treasure2_row"):
        InitialStates.from_frame(
            sample_initial_states(TreasureHuntConfig(num_treasures=2), 2, 0).to_frame(),
            TreasureHuntConfig(num_treasures=3),
        )


def test_reset_refuses_wrong_count_and_step_refuses_bad_actions():
    env = TreasureHuntVecEnv(TreasureHuntConfig(), num_envs=2, seed=0)
    with pytest.raises(ValueError, match="call reset"):
        env.step(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="3 initial states for 2 envs"):
        env.reset(states=sample_initial_states(env.config, 3, 0))
    env.reset()
    with pytest.raises(ValueError, match=r"env 1: actions \[0, 5\]"):
        env.step(np.array([[0, 0], [0, 5]]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2,), dtype=int))


def test_render_draws_the_grid_at_32_px_per_cell():
    env, _ = hunt([[0, 0]], [[2, 3]], size=5)
    frame = env.render(0)
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8
    assert tuple(frame[2 * 32 + 16, 3 * 32 + 16]) == (232, 181, 18)  # gold treasure centre
    assert tuple(frame[16, 16]) == (31, 119, 180)  # first agent's colour at its centre
