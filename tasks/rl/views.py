"""The treasure hunt as a gymnasium Env and as a PettingZoo ParallelEnv, and GIF writing.

Both views step one `TreasureHuntVecEnv` (num_envs=1, autoreset off, so the final state stays
visible to `render` until `reset`). Frames come from `TreasureHuntVecEnv.render`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from PIL import Image

from trainyard.tasks.rl.treasure_hunt import (
    InitialStates,
    TreasureHuntConfig,
    TreasureHuntVecEnv,
    sample_initial_states,
)


def _observation_box(config: TreasureHuntConfig, shape: tuple[int, ...]) -> spaces.Box:
    """Returns the Box holding `config`'s observations: [-1, 1] for vector, [0, 1] for grid."""
    low = -1.0 if config.observation == "vector" else 0.0
    return spaces.Box(low=low, high=1.0, shape=shape, dtype=np.float32)


def _initial_state(
    config: TreasureHuntConfig, options: dict[str, Any] | None, rng: np.random.Generator
) -> InitialStates:
    """Returns options["states"] (one scenario) if given, else one drawn from `rng`."""
    states = (options or {}).get("states")
    if states is None:
        return sample_initial_states(config, 1, rng)
    if not isinstance(states, InitialStates) or len(states) != 1:
        raise ValueError("options['states'] must be an InitialStates holding one scenario")
    return states


class TreasureHuntGymEnv(gymnasium.Env):
    """The treasure hunt as one gymnasium Env, all agents driven by one policy.

    With one agent (the default config) the action space is Discrete(5) and the observation the
    agent's D floats. With A > 1 agents the action is the joint MultiDiscrete([5] * A) and the
    observation the A agents' observations concatenated (A * D floats). The reward is the team's.
    `reset(options={"states": InitialStates})` starts from a given scenario.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, config: TreasureHuntConfig | None = None, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config or TreasureHuntConfig(num_agents=1)
        self.render_mode = render_mode
        self._env = TreasureHuntVecEnv(self.config, num_envs=1, autoreset=False)
        agents = self.config.num_agents
        self.observation_space = _observation_box(
            self.config, (agents * self.config.observation_size,)
        )
        if agents == 1:
            self.action_space = spaces.Discrete(self._env.num_actions)
        else:
            self.action_space = spaces.MultiDiscrete([self._env.num_actions] * agents)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Returns the first observation of a new episode and an empty info dict."""
        super().reset(seed=seed)
        obs = self._env.reset(states=_initial_state(self.config, options, self.np_random))
        return obs.reshape(-1), {}

    def step(
        self, action: int | np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Returns obs, team reward, terminated, truncated and info {"success": bool}."""
        actions = np.asarray(action, dtype=np.int64).reshape(1, self.config.num_agents)
        obs, reward, terminated, truncated, info = self._env.step(actions)
        return (
            obs.reshape(-1),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {"success": bool(info["success"][0])},
        )

    def render(self) -> np.ndarray | None:
        """Returns an RGB uint8 frame when render_mode is "rgb_array", else None."""
        if self.render_mode == "rgb_array":
            return self._env.render(0)
        return None


class TreasureHuntParallelEnv(ParallelEnv):
    """The treasure hunt as a PettingZoo ParallelEnv: agents "agent_0", "agent_1", ...

    Every agent gets the shared team reward. All agents terminate (or are truncated) together,
    after which `agents` is empty until `reset`. `reset(options={"states": InitialStates})`
    starts from a given scenario.
    """

    metadata = {"render_modes": ["rgb_array"], "name": "treasure_hunt_v0", "render_fps": 4}

    def __init__(self, config: TreasureHuntConfig | None = None, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.config = config or TreasureHuntConfig()
        self.render_mode = render_mode
        self._env = TreasureHuntVecEnv(self.config, num_envs=1, autoreset=False)
        self._rng = np.random.default_rng()
        self.possible_agents = [f"agent_{i}" for i in range(self.config.num_agents)]
        self.agents: list[str] = []
        # One space object per agent, returned every time (PettingZoo seeds spaces by identity).
        self._observation_spaces = {
            agent: _observation_box(self.config, (self.config.observation_size,))
            for agent in self.possible_agents
        }
        self._action_spaces = {
            agent: spaces.Discrete(self._env.num_actions) for agent in self.possible_agents
        }

    def observation_space(self, agent: str) -> spaces.Box:
        """Returns `agent`'s observation space (the same object every call)."""
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        """Returns `agent`'s action space (the same object every call)."""
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Returns every agent's first observation and an empty info dict per agent."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs = self._env.reset(states=_initial_state(self.config, options, self._rng))
        self.agents = list(self.possible_agents)
        return self._per_agent(obs[0]), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        """Returns per-agent observations, rewards, terminations, truncations and infos."""
        if not self.agents:
            raise ValueError("the episode has ended: call reset() before step()")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"step got no action for {missing}; every live agent needs one")
        joint = np.array([[actions[agent] for agent in self.possible_agents]], dtype=np.int64)
        obs, reward, terminated, truncated, info = self._env.step(joint)
        success = bool(info["success"][0])
        rewards = dict.fromkeys(self.agents, float(reward[0]))
        terminations = dict.fromkeys(self.agents, bool(terminated[0]))
        truncations = dict.fromkeys(self.agents, bool(truncated[0]))
        infos = {agent: {"success": success} for agent in self.agents}
        if terminated[0] or truncated[0]:
            self.agents = []
        return self._per_agent(obs[0]), rewards, terminations, truncations, infos

    def render(self) -> np.ndarray | None:
        """Returns an RGB uint8 frame when render_mode is "rgb_array", else None."""
        if self.render_mode == "rgb_array":
            return self._env.render(0)
        return None

    def _per_agent(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Returns {agent name: its row of `obs` [A, D]}."""
        return {agent: obs[i].copy() for i, agent in enumerate(self.possible_agents)}


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 4) -> Path:
    """Returns `path` after writing `frames` (RGB uint8 [H, W, 3]) there as a looping GIF.

    The file appears whole or not at all: it is written beside `path` and then renamed.
    """
    if not frames:
        raise ValueError(f"write_gif got no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".gif")
    os.close(handle)
    try:
        images[0].save(
            partial,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
        )
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path
