"""The RL family: an environment -> DQN/A2C agents scored on a fixed scenario set."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from trainyard.tasks.family import EvaluationResult, Family, PyfuncSpec, TrainingSetup
from trainyard.tasks.rl import prepare as preparation
from trainyard.tasks.rl.config import METRICS, MODEL_KINDS, Params, params_from_dict

VALIDATION_SEED_OFFSET = 1_000_003  # validation episodes never reuse the scenario set's draws


class RLFamily(Family):
    """Agents of one environment; the gate metric is mean return on the scenarios."""

    name = "rl"
    section = Params
    registry_suffix = "agent"
    metrics = METRICS
    serving_requirements = ("gymnasium", "pyarrow")
    prepared_type = preparation.RLPrepared

    def label(self, params: Params) -> str:
        """Returns the environment's short name, e.g. treasure-hunt."""
        return params.env.label

    def model_kinds(self) -> list[str]:
        """Returns dqn and a2c."""
        return list(MODEL_KINDS)

    def check(self, params: Params) -> None:
        """Raises ConfigError when the environment cannot be made (unknown id, wrong spaces)."""
        preparation.make_env(params, 1, params.train.seed)

    # Writes the scenario set and the baselines' episodes on it; cached by a hash of the env
    # and scenario params and the environment code.
    prepare = staticmethod(preparation.prepare)
    prepare_key = staticmethod(preparation.prepare_input_key)

    def prepared(self, params: Params, out_dir: Path) -> preparation.RLPrepared:
        """Returns the summary of the scenario file in out_dir (checked against params)."""
        return preparation.summary_of(out_dir / preparation.SCENARIOS_FILE, params)

    def setup(self, name: str, prepared_path: Path, params: Params) -> TrainingSetup:
        """Returns agent `name` with its training and validation environments."""
        from trainyard.tasks.rl.agents import build_agent

        train = params.train
        env = preparation.make_env(params, train.num_envs, train.seed)
        validation = preparation.make_env(
            params,
            min(train.validation_episodes, preparation.ROLLOUT_ENVS),
            params.scenarios.seed + VALIDATION_SEED_OFFSET,
        )
        module, hparams = build_agent(name, env, validation, params)
        return TrainingSetup(module, None, None, hparams, monitor="val/return", mode="max")

    def evaluate(
        self,
        prepared: preparation.RLPrepared,
        model_dirs: dict[str, Path],
        params: Params,
        report_dir: Path,
        histories: dict[str, list[dict[str, float]]],
    ) -> EvaluationResult:
        """Returns scenario-set scores of every agent and baseline; writes the reports."""
        from trainyard.tasks.rl.evaluate import evaluate

        return evaluate(Path(prepared.path), model_dirs, params, report_dir, histories)

    def evaluation_key(self, prepared: preparation.RLPrepared, params: Params) -> str:
        """Returns a hash naming the scenario set: its data version."""
        return hashlib.sha256(f"{prepared.md5}|episodes".encode()).hexdigest()[:12]

    def dataset_frame(self, prepared: preparation.RLPrepared) -> tuple[pd.DataFrame, None]:
        """Returns the scenario table (no target)."""
        frame, _ = preparation.read_table(Path(prepared.path))
        return frame, None

    def pyfunc(
        self, name: str, model_dir: Path, prepared: preparation.RLPrepared, params: Params
    ) -> PyfuncSpec:
        """Returns agent `name` as a pyfunc: observations in, every agent's action out."""
        from trainyard.tasks.rl.serving import AgentModel, observation_columns

        env = preparation.make_env(params, 4, params.scenarios.seed)
        obs = env.reset(seed=params.scenarios.seed)
        # float64: what JSON and pandas give a caller; the agent casts to float32 itself.
        example = pd.DataFrame(
            obs.reshape(len(obs), -1).astype("float64"),
            columns=observation_columns(env.num_agents, env.observation_size),
        )
        return PyfuncSpec(
            python_model=AgentModel,
            artifacts={"model_dir": str(model_dir)},
            model_config={"kind": name, "params": params.to_dict()},
            input_example=example,
        )

    def rescore(
        self,
        model_config: dict[str, Any],
        artifacts: dict[str, Path],
        prepared: preparation.RLPrepared,
        params: Params,
    ) -> float | None:
        """Returns a registered agent's gate metric on this scenario set, or None when it was
        trained for another environment or observation and cannot play these scenarios."""
        from trainyard.tasks.rl.evaluate import rescore

        theirs = params_from_dict(model_config["params"])
        if theirs.env != params.env:
            return None
        return rescore(model_config["kind"], artifacts["model_dir"], Path(prepared.path), params)


RL = RLFamily()
