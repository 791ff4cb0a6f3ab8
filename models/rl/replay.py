"""Replay buffer (uniform or prioritised) in numpy, and the IterableDataset that samples it.

A stored transition is one env's joint step: every agent's observation and action, the shared
team reward, every agent's next observation and the termination flag. Each agent's own
transition is the agent slice of it, so independent learners train on all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import IterableDataset

TRANSITION_KEYS = ("obs", "actions", "rewards", "next_obs", "dones")


class SumTree:
    """Binary sum tree over `capacity` leaf priorities with vectorised update and search."""

    def __init__(self, capacity: int) -> None:
        # A power-of-two leaf count keeps every leaf at the same depth, so the search is a
        # fixed number of vectorised steps.
        self.depth = max(1, int(np.ceil(np.log2(capacity))))
        self.leaves = 1 << self.depth
        self.tree = np.zeros(2 * self.leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        """Returns the sum of all priorities."""
        return float(self.tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Returns the priorities stored at leaf `indices`."""
        return self.tree[indices + self.leaves]

    def min(self, size: int) -> float:
        """Returns the smallest priority among the first `size` leaves."""
        return float(self.tree[self.leaves : self.leaves + size].min())

    def set(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Returns None after setting leaf priorities and refreshing the sums above them."""
        nodes = np.asarray(indices, dtype=np.int64) + self.leaves
        self.tree[nodes] = priorities
        # Duplicate parents are harmless: each write recomputes the same sum from its children.
        for _ in range(self.depth):
            nodes //= 2
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find(self, values: np.ndarray) -> np.ndarray:
        """Returns the leaf index whose cumulative-priority interval holds each value."""
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * nodes]
            go_right = values >= left
            values -= left * go_right
            nodes = 2 * nodes + go_right
        return nodes - self.leaves


class ReplayBuffer:
    """Fixed-capacity ring buffer of joint transitions; uniform or proportional prioritised.

    Prioritised mode (Schaul et al., 2016): P(i) = p_i^alpha / sum_k p_k^alpha; new transitions
    get the largest priority seen so far; importance weights (N * P(i))^-beta are divided by
    the largest possible weight in the buffer so they only ever scale the loss down.
    """

    def __init__(
        self,
        capacity: int,
        num_agents: int,
        observation_size: int,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        seed: int | None = None,
    ) -> None:
        self.capacity = capacity
        self.prioritized = prioritized
        self.alpha = alpha
        self.beta = beta
        self.rng = np.random.default_rng(seed)
        shape = (capacity, num_agents, observation_size)
        self.obs = np.zeros(shape, dtype=np.float32)
        self.next_obs = np.zeros(shape, dtype=np.float32)
        self.actions = np.zeros((capacity, num_agents), dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.position = 0
        self.size = 0
        self.tree = SumTree(capacity) if prioritized else None
        self.max_priority = 1.0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Returns None after storing B transitions (obs [B,A,D], actions [B,A], rewards/dones [B]).

        `dones` must be True only for termination: a truncated episode still bootstraps from
        `next_obs`, which for an ended episode is its final observation, not the reset one.
        """
        if len(rewards) > self.capacity:  # only the newest `capacity` would survive anyway
            newest = slice(-self.capacity, None)
            obs, actions, rewards = obs[newest], actions[newest], rewards[newest]
            next_obs, dones = next_obs[newest], dones[newest]
        n = len(rewards)
        idx = (self.position + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.next_obs[idx] = next_obs
        self.dones[idx] = dones
        if self.tree is not None:
            self.tree.set(idx, np.full(n, self.max_priority**self.alpha))
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """Returns a batch: the transition arrays plus `indices` and importance `weights` [B]."""
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty; add transitions first.")
        if self.tree is None:
            indices = self.rng.integers(0, self.size, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            indices, weights = self._sample_prioritized(batch_size)
        batch = {key: getattr(self, key)[indices] for key in TRANSITION_KEYS}
        batch["indices"] = indices
        batch["weights"] = weights
        return batch

    def _sample_prioritized(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns indices drawn proportionally to priority and their importance weights."""
        total = self.tree.total
        # Stratified: one draw per equal slice of the total mass, as in the PER paper.
        bounds = np.linspace(0.0, total, batch_size + 1)
        values = self.rng.uniform(bounds[:-1], bounds[1:])
        indices = np.minimum(self.tree.find(values), self.size - 1)
        probs = self.tree.get(indices) / total
        min_prob = self.tree.min(self.size) / total
        weights = (self.size * probs) ** -self.beta / (self.size * min_prob) ** -self.beta
        return indices, weights.astype(np.float32)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Returns None after setting sampled transitions' priorities to |TD error| (+ a floor)."""
        if self.tree is None:
            return
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + 1e-6
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.set(np.asarray(indices), priorities**self.alpha)


class ReplayDataset(IterableDataset):
    """Yields `num_batches` batches sampled from a replay buffer: one training epoch.

    Sampling happens lazily in the training process, so every batch sees the transitions the
    agent added during the previous training steps. Use with `DataLoader(..., batch_size=None)`.
    """

    def __init__(self, buffer: ReplayBuffer, batch_size: int, num_batches: int) -> None:
        self.buffer = buffer
        self.batch_size = batch_size
        self.num_batches = num_batches

    def __len__(self) -> int:
        # A known length stops Lightning from prefetching a batch ahead of the training step.
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for _ in range(self.num_batches):
            yield self.buffer.sample(self.batch_size)
