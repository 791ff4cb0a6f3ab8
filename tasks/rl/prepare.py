"""RL prepare step: the fixed evaluation scenario set and the baselines' rollouts on it.

data/rl/prepared/scenarios.parquet holds one row per scenario: for the treasure hunt its
initial state (agent and treasure cells), for a gymnasium env its reset seed. Every agent, this
run's and the champion re-scored later, plays exactly these episodes. baselines.parquet holds
the random and greedy baselines' episodes on them (return, length, success).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainyard.errors import ConfigError, DataError
from trainyard.tasks.family import Prepared
from trainyard.tasks.prepared import check_prepared_with, file_md5, write_table
from trainyard.tasks.prepared import read_table as read_prepared_table
from trainyard.tasks.rl.config import Params

log = logging.getLogger(__name__)

SCENARIOS_FILE = "scenarios.parquet"
BASELINES_FILE = "baselines.parquet"
ROLLOUT_ENVS = 64  # envs stepped at once when scoring a policy on the scenarios


@dataclass
class RLPrepared(Prepared):
    """What the RL prepare step wrote."""

    episodes: int = 0  # scenarios in the set
    env: str = ""  # environment label

    def __post_init__(self) -> None:
        self.stats = {"episodes": self.episodes}
        self.description = (
            f"{self.source}: {self.episodes} fixed evaluation scenarios (version {self.md5[:12]})"
        )


def make_env(params: Params, num_envs: int, seed: int | None = None):
    """Returns `num_envs` environments of the configured kind (a VecEnv)."""
    from trainyard.tasks.rl.gym_envs import make_env as make

    config = params.env.treasure_hunt() if params.env.is_treasure_hunt else None
    try:
        return make(params.env.name, config, num_envs, seed)
    except ValueError as error:
        raise ConfigError(f"rl.env: {error}") from None


def scenario_frame(params: Params) -> pd.DataFrame:
    """Returns the scenario set these params draw: initial states, or reset seeds."""
    n, seed = params.scenarios.episodes, params.scenarios.seed
    if params.env.is_treasure_hunt:
        from trainyard.tasks.rl.treasure_hunt import sample_initial_states

        return sample_initial_states(params.env.treasure_hunt(), n, seed).to_frame()
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)
    return pd.DataFrame({"seed": seeds.astype(np.int64)})


def scenarios_of(frame: pd.DataFrame, params: Params, source: str):
    """Returns the scenario set in `frame` as `rollout` takes it, checked against params."""
    if params.env.is_treasure_hunt:
        from trainyard.tasks.rl.treasure_hunt import InitialStates

        try:
            return InitialStates.from_frame(frame, params.env.treasure_hunt())
        except ValueError as error:
            raise DataError(f"{source}: {error}") from None
    if "seed" not in frame.columns:
        raise DataError(f"{source}: no 'seed' column; a gymnasium scenario set is reset seeds")
    return [int(seed) for seed in frame["seed"]]


def baseline_rollouts(params: Params, scenarios) -> pd.DataFrame:
    """Returns the random (and, on the treasure hunt, greedy) baselines' episodes."""
    from trainyard.tasks.rl.policies import GreedyPolicy, RandomPolicy, rollout

    env = make_env(params, ROLLOUT_ENVS, params.scenarios.seed)
    rng = np.random.default_rng(params.scenarios.seed)
    policies = {"random": RandomPolicy(rng, env.num_actions)}
    if params.env.is_treasure_hunt:
        policies["greedy"] = GreedyPolicy()
    frames = []
    for name, policy in policies.items():
        episodes = rollout(env, policy, scenarios)
        episodes.insert(0, "policy", name)
        frames.append(episodes)
    return pd.concat(frames, ignore_index=True)


def prepare(params: Params, root: Path, out_dir: Path) -> RLPrepared:
    """Returns a summary after writing the scenario set and the baselines' rollouts."""
    frame = scenario_frame(params)
    scenarios = scenarios_of(frame, params, "scenario set")
    baselines = baseline_rollouts(params, scenarios)
    meta = {
        "env": params.env.model_dump(),
        "scenarios": params.scenarios.model_dump(),
        "source": f"environment {params.env.name!r}",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(frame, meta, out_dir / SCENARIOS_FILE)
    write_table(baselines, meta, out_dir / BASELINES_FILE)
    log.info("prepared %d scenarios of %s", len(frame), params.env.name)
    return summary_of(out_dir / SCENARIOS_FILE, params)


def summary_of(path: Path, params: Params) -> RLPrepared:
    """Returns the summary of a scenario file, checked against the env and scenario params."""
    frame, meta = read_table(path)
    sections = {"env": params.env.model_dump(), "scenarios": params.scenarios.model_dump()}
    check_prepared_with(meta, sections, path, "rl")
    return RLPrepared(
        path=str(path),
        md5=file_md5(path),
        source=meta["source"],
        episodes=len(frame),
        env=params.env.label,
    )


def prepare_input_key(params: Params, root: Path) -> str:
    """Returns a hash of what prepare reads: env and scenario params, and the env code."""
    from trainyard.tasks.rl import gym_envs, policies, treasure_hunt

    code = "".join(
        file_md5(Path(module.__file__))
        for module in (treasure_hunt, gym_envs, policies, sys.modules[__name__])
    )
    parts = f"{params.section_hash('env', 'scenarios')}|{code}"
    return hashlib.sha256(parts.encode()).hexdigest()[:16]


def read_table(path: Path) -> tuple[pd.DataFrame, dict]:
    """Returns a prepared RL table (scenarios or baselines) and its metadata."""
    return read_prepared_table(path, "rl")
