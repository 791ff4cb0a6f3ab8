"""Replay buffer: ring wraparound, sample shapes, prioritised sampling and importance weights."""

from __future__ import annotations

import numpy as np
import pytest

from trainyard.models.rl.replay import ReplayBuffer, ReplayDataset, SumTree


def add_transitions(buffer: ReplayBuffer, rewards: list[float], agents: int = 1, dim: int = 3):
    """Adds one transition per reward; obs are filled with the reward so they are traceable."""
    r = np.asarray(rewards, dtype=np.float32)
    obs = np.broadcast_to(r[:, None, None], (len(r), agents, dim)).astype(np.float32)
    buffer.add(obs, np.zeros((len(r), agents), dtype=np.int64), r, obs + 1, np.zeros(len(r)))


def test_capacity_wraps_around_and_keeps_the_newest():
    buffer = ReplayBuffer(capacity=5, num_agents=1, observation_size=3)
    add_transitions(buffer, [0, 1, 2])
    add_transitions(buffer, [3, 4, 5, 6])
    assert len(buffer) == 5
    assert buffer.position == 2
    np.testing.assert_array_equal(buffer.rewards, [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.obs[:, 0, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.next_obs[:, 0, 0], [6, 7, 3, 4, 5])


def test_adding_more_than_capacity_at_once_keeps_the_newest():
    buffer = ReplayBuffer(capacity=3, num_agents=1, observation_size=3)
    add_transitions(buffer, [0, 1, 2, 3, 4])
    assert sorted(buffer.rewards.tolist()) == [2, 3, 4]


def test_uniform_sample_shapes_and_unit_weights():
    buffer = ReplayBuffer(capacity=100, num_agents=2, observation_size=3, seed=0)
    add_transitions(buffer, list(range(10)), agents=2)
    batch = buffer.sample(16)
    assert batch["obs"].shape == (16, 2, 3) and batch["obs"].dtype == np.float32
    assert batch["next_obs"].shape == (16, 2, 3)
    assert batch["actions"].shape == (16, 2) and batch["actions"].dtype == np.int64
    assert batch["rewards"].shape == batch["dones"].shape == batch["weights"].shape == (16,)
    assert batch["indices"].max() < 10
    np.testing.assert_array_equal(batch["weights"], 1.0)
    # Each sampled row is one consistent transition.
    np.testing.assert_array_equal(batch["obs"][:, 0, 0], batch["rewards"])


def test_sampling_an_empty_buffer_says_what_to_do():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(capacity=4, num_agents=1, observation_size=3).sample(2)


def test_sum_tree_finds_the_interval_holding_each_value():
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    # Cumulative intervals: [0,1) [1,3) [3,6) [6,10).
    np.testing.assert_array_equal(tree.find(np.array([0.5, 1.0, 2.9, 3.0, 9.9])), [0, 1, 1, 2, 3])


def test_prioritized_sampling_favours_high_priority():
    buffer = ReplayBuffer(4, 1, 3, prioritized=True, alpha=1.0, seed=0)
    add_transitions(buffer, [0, 1, 2, 3])
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 17.0]))
    indices = np.concatenate([buffer.sample(20)["indices"] for _ in range(200)])
    share = np.mean(indices == 3)
    assert share == pytest.approx(17 / 20, abs=0.03)


def test_importance_weights_match_a_hand_example():
    buffer = ReplayBuffer(4, 1, 3, prioritized=True, alpha=1.0, beta=0.5, seed=0)
    add_transitions(buffer, [0, 1, 2, 3])
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    batch = buffer.sample(64)
    # P(i) = p_i / 10; w_i = (N P_i)^-beta / (N P_min)^-beta = (p_i / 1)^-0.5.
    expected = np.array([1.0, 2.0, 3.0, 4.0]) ** -0.5
    np.testing.assert_allclose(batch["weights"], expected[batch["indices"]], rtol=1e-5)
    assert set(batch["indices"].tolist()) == {0, 1, 2, 3}


def test_new_transitions_get_the_largest_priority_seen():
    buffer = ReplayBuffer(8, 1, 3, prioritized=True, alpha=1.0, seed=0)
    add_transitions(buffer, [0, 1])
    buffer.update_priorities(np.array([0]), np.array([5.0]))
    add_transitions(buffer, [2])
    assert buffer.tree.get(np.array([2]))[0] == pytest.approx(5.0)


def test_replay_dataset_yields_one_epoch_of_batches():
    buffer = ReplayBuffer(10, 1, 3, seed=0)
    add_transitions(buffer, [0, 1, 2])
    dataset = ReplayDataset(buffer, batch_size=4, num_batches=3)
    batches = list(dataset)
    assert len(dataset) == len(batches) == 3
    assert batches[0]["obs"].shape == (4, 1, 3)
