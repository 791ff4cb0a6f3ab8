"""Builds a fresh agent (DQN or A2C) from the `rl.train` params and its environments."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import numpy as np

from trainyard.errors import ConfigError
from trainyard.tasks.rl.config import Params
from trainyard.tasks.rl.evaluate import AGENTS


def agent_config(name: str, params: Params, num_envs: int) -> Any:
    """Returns the agent's config dataclass filled from params (its section + shared knobs)."""
    module_name, class_name = AGENTS[name].split(":")
    config_class = getattr(importlib.import_module(module_name), f"{class_name}Config")
    known = {field.name for field in dataclasses.fields(config_class)}
    section = getattr(params.train, name).model_dump()
    unknown = sorted(set(section) - known - {"warm_start_episodes"})
    if unknown:
        raise ConfigError(f"rl.train.{name}: unknown key(s) {', '.join(unknown)}")
    train = params.train
    shared = {
        "steps_per_epoch": train.steps_per_epoch,
        "eval_episodes": train.validation_episodes,
        "seed": train.seed,
        # The exploration schedule spans the whole budget, in env transitions.
        "total_env_steps": train.max_epochs
        * train.steps_per_epoch
        * section.get("train_freq", 1)
        * num_envs,
    }
    values = {key: value for key, value in section.items() if key in known}
    values.update({key: value for key, value in shared.items() if key in known})
    if "hidden_sizes" in values:
        values["hidden_sizes"] = tuple(values["hidden_sizes"])
    return config_class(**values)


def greedy_transitions(env: Any, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Returns the transitions of `episodes` greedy-baseline episodes on the treasure hunt."""
    from trainyard.tasks.rl.policies import GreedyPolicy

    policy = GreedyPolicy()
    obs = env.reset(seed=seed)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs")}
    rows["dones"] = []
    finished = 0
    while finished < episodes:
        actions = policy.act(obs, env.state())
        next_obs, reward, terminated, truncated, info = env.step(actions)
        ended = terminated | truncated
        final = np.where(ended[:, None, None], info["final_observation"], next_obs)
        for key, value in (
            ("obs", obs),
            ("actions", actions),
            ("rewards", reward),
            ("next_obs", final),
            ("dones", terminated),
        ):
            rows[key].append(value)
        finished += int(ended.sum())
        obs = next_obs
    return {key: np.concatenate(values) for key, values in rows.items()}


def build_agent(name: str, env: Any, validation: Any, params: Params) -> tuple[Any, dict]:
    """Returns a fresh agent `name` for `env` (validated on `validation`) and its hparams."""
    module_name, class_name = AGENTS[name].split(":")
    agent_class = getattr(importlib.import_module(module_name), class_name)
    config = agent_config(name, params, env.num_envs)
    module = agent_class.from_env(env, validation, config)
    warm = getattr(params.train, name).model_dump().get("warm_start_episodes", 0)
    if warm and params.env.is_treasure_hunt:
        module.warm_start(greedy_transitions(env, warm, params.train.seed))
    return module, dataclasses.asdict(config)
