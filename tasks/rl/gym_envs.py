"""Any discrete-action gymnasium env behind the same vectorised interface as the treasure hunt.

`VecEnv` is that interface: agents and code that score them see obs [B, A, D] float32, take
actions [B, A], and get team rewards [B]. A gymnasium env is a one-agent team (A = 1).
`make_env` builds either kind by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from trainyard.tasks.rl.treasure_hunt import InitialStates, TreasureHuntConfig, TreasureHuntVecEnv

TREASURE_HUNT = "treasure_hunt"  # the `make_env` name of our own environment


class VecEnv(Protocol):
    """What `TreasureHuntVecEnv` and `GymVecEnv` both offer (B envs, A agents each)."""

    num_envs: int
    num_agents: int
    num_actions: int
    observation_size: int

    def reset(
        self,
        seed: int | None = None,
        states: InitialStates | None = None,
        seeds: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Returns float32 [B, A, D] first observations."""
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Returns obs, reward [B], terminated [B], truncated [B], info; ended envs auto-reset."""
        ...

    def state(self) -> dict[str, np.ndarray]:
        """Returns copies of the env's state arrays (at least "steps" [B])."""
        ...


class GymVecEnv:
    """B copies of a gymnasium env with a Discrete action space and a flat Box observation.

    Observations are [B, 1, D] float32 and actions [B, 1]: the env is a team of one agent. Ended
    envs reset at once (gymnasium's SAME_STEP autoreset); info holds "final_observation",
    "episode_return", "episode_length" as for `TreasureHuntVecEnv`, and "success", which here
    means the episode ran to its time limit (truncated) rather than terminating. That is right
    for CartPole-like envs, where terminating is failing, and wrong where terminating is the goal.
    A scenario set is a list of reset seeds: `reset(seeds=[...])` seeds sub-env i with seeds[i].
    """

    num_agents: int = 1

    def __init__(self, env_id: str, num_envs: int, seed: int | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        probe = _make(env_id)
        action_space, observation_space = probe.action_space, probe.observation_space
        probe.close()
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"gymnasium env {env_id!r} has action space {action_space}; only Discrete "
                "action spaces are supported"
            )
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                f"gymnasium env {env_id!r} has observation space {observation_space}; only flat "
                "(1-D) Box observations are supported (wrap it with FlattenObservation first)"
            )
        self.env_id = env_id
        self.num_envs = num_envs
        self.num_actions = int(action_space.n)
        self.observation_size = int(observation_space.shape[0])
        self._action_start = int(action_space.start)
        self._envs = SyncVectorEnv(
            [lambda: _make(env_id) for _ in range(num_envs)],
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        self._first_seed = seed  # used by the first reset that is given no seed
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._steps = np.zeros(num_envs, dtype=np.int64)

    def reset(
        self,
        seed: int | None = None,
        states: InitialStates | None = None,
        seeds: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Returns float32 [B, 1, D] first observations of new episodes in every env.

        `seed` seeds sub-env i with seed + i; `seeds` seeds sub-env i with seeds[i]; neither
        continues each sub-env's generator (seeded by the constructor's `seed` the first time).
        `states` exists for interface parity and is refused: gymnasium scenarios are seeds.
        """
        if states is not None:
            raise ValueError(
                f"{self.env_id!r} cannot start from InitialStates; pass seeds=[...] instead "
                "(a gymnasium scenario is the seed of its reset)"
            )
        if seed is not None and seeds is not None:
            raise ValueError("pass seed or seeds to reset, not both")
        if seeds is not None:
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
            chosen: int | list[int] | None = [int(s) for s in seeds]
        else:
            chosen = seed if seed is not None else self._first_seed
        self._first_seed = None
        obs, _ = self._envs.reset(seed=chosen)
        self._returns[:] = 0.0
        self._steps[:] = 0
        return self._batch(obs)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Returns obs [B,1,D] float32, reward [B] float32, terminated, truncated [B], info."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, 1):
            raise ValueError(
                f"actions must have shape [num_envs, 1] = [{self.num_envs}, 1], "
                f"got {list(actions.shape)}"
            )
        obs, reward, terminated, truncated, vector_info = self._envs.step(
            actions[:, 0].astype(np.int64) + self._action_start
        )
        obs = self._batch(obs)
        ended = terminated | truncated
        self._returns += reward
        self._steps += 1
        final_observation = obs.copy()
        if "final_obs" in vector_info:
            for i in np.flatnonzero(vector_info["_final_obs"]):
                final_observation[i, 0] = vector_info["final_obs"][i]
        info = {
            "final_observation": final_observation,
            "episode_return": np.where(ended, self._returns, np.nan).astype(np.float32),
            "episode_length": np.where(ended, self._steps, 0),
            "success": truncated & ~terminated,
        }
        self._returns[ended] = 0.0
        self._steps[ended] = 0
        return obs, reward.astype(np.float32), terminated, truncated, info

    def state(self) -> dict[str, np.ndarray]:
        """Returns {"steps": [B] steps into each env's current episode}."""
        return {"steps": self._steps.copy()}

    def close(self) -> None:
        """Returns None after closing every sub-env."""
        self._envs.close()

    def _batch(self, obs: np.ndarray) -> np.ndarray:
        """Returns gymnasium's [B, D] observations as float32 [B, 1, D]."""
        return np.asarray(obs, dtype=np.float32).reshape(self.num_envs, 1, -1)


def _make(env_id: str) -> gymnasium.Env:
    """Returns gymnasium.make(env_id), or raises ValueError saying how to fix an unknown id."""
    try:
        return gymnasium.make(env_id)
    except gymnasium.error.Error as error:
        # Suggest ids that need nothing beyond gymnasium itself.
        known = ", ".join(
            sorted(
                spec.id
                for spec in gymnasium.registry.values()
                if str(spec.entry_point).startswith("gymnasium.envs.classic_control")
            )
        )
        raise ValueError(
            f"cannot make gymnasium env {env_id!r} ({error}). Registered ids include {known}, ... "
            "(all: gymnasium.pprint_registry()). Register your own with "
            "gymnasium.register(id=..., entry_point='package.module:EnvClass') before use."
        ) from error


def make_env(
    name: str, config: TreasureHuntConfig | None, num_envs: int, seed: int | None = None
) -> TreasureHuntVecEnv | GymVecEnv:
    """Returns B envs: the treasure hunt for name "treasure_hunt", else gymnasium env `name`.

    `config` configures the treasure hunt (None: defaults) and is ignored for gymnasium envs.
    """
    if name == TREASURE_HUNT:
        return TreasureHuntVecEnv(config or TreasureHuntConfig(), num_envs, seed)
    return GymVecEnv(name, num_envs, seed)
