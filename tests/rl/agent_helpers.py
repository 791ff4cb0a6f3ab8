"""Shared helpers of the agent tests: a tiny team env and a quick Trainer."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Runs each test on one torch thread: for these tiny nets, a second thread only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MatchEnv:
    """Tiny vectorised team env for tests: every agent should pick the action its obs points at.

    Obs per agent: one-hot target (num_actions) + a per-agent bit; team reward = share of agents
    that matched. Episodes last `episode_length` steps and end by truncation, or by termination
    if `terminate`. Follows the env contract: auto-reset with info["final_observation"].
    """

    def __init__(
        self,
        num_envs: int = 3,
        num_agents: int = 2,
        num_actions: int = 3,
        episode_length: int = 4,
        terminate: bool = False,
    ) -> None:
        self.num_envs, self.num_agents, self.num_actions = num_envs, num_agents, num_actions
        self.observation_size = num_actions + 1
        self.episode_length, self.terminate = episode_length, terminate
        self.rng = np.random.default_rng(0)
        self.targets = np.zeros((num_envs, num_agents), dtype=np.int64)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.returns = np.zeros(num_envs)

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_agents, self.observation_size), np.float32)
        np.put_along_axis(obs, self.targets[..., None], 1.0, axis=-1)
        obs[:, 1:, -1] = 1.0  # agents after the first see a set bit
        return obs

    def _new_targets(self, envs: np.ndarray) -> None:
        self.targets[envs] = self.rng.integers(0, self.num_actions, (len(envs), self.num_agents))

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._new_targets(np.arange(self.num_envs))
        self.t[:] = 0
        self.returns[:] = 0
        return self._observe()

    def step(self, actions: np.ndarray):
        reward = (actions == self.targets).mean(axis=1).astype(np.float32)
        self.returns += reward
        self.t += 1
        ended = self.t >= self.episode_length
        final_observation = self._observe()
        info = {
            "final_observation": final_observation,
            "episode_return": np.where(ended, self.returns, np.nan).astype(np.float32),
            "episode_length": np.where(ended, self.t, 0),
        }
        self._new_targets(np.flatnonzero(ended))
        self.t[ended] = 0
        self.returns[ended] = 0
        terminated = ended if self.terminate else np.zeros_like(ended)
        truncated = np.zeros_like(ended) if self.terminate else ended
        return self._observe(), reward, terminated, truncated, info


def quick_trainer(tmp_path, steps: int = 2) -> L.Trainer:
    """Returns a Trainer for `steps` training steps and one validation, without files or bars."""
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
