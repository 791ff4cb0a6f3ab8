"""An MLflow pyfunc that picks every agent's action for a batch of observations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from trainyard.errors import DataError


def observation_columns(num_agents: int, observation_size: int) -> list[str]:
    """Returns the input columns: agent{a}_obs{d} for every agent a and feature d."""
    return [f"agent{a}_obs{d}" for a in range(num_agents) for d in range(observation_size)]


def observations_from_frame(
    frame: pd.DataFrame, num_agents: int, observation_size: int
) -> np.ndarray:
    """Returns float32 [N, A, D] observations from one row per environment state."""
    columns = observation_columns(num_agents, observation_size)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"model input: missing column(s) {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}; give one row per environment state with "
            f"columns {columns[0]} .. {columns[-1]}"
        )
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DataError(
            f"model input row {row}: {columns[column]} is {frame[columns].iloc[row, column]!r}, "
            "not a finite number; every observation value must be one"
        )
    return values.reshape(len(frame), num_agents, observation_size).astype(np.float32)


class AgentModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a trained agent (DQN or A2C).

    Input: one row per environment state, columns agent{a}_obs{d}. Output: one row per state
    with the greedy action of every agent, columns agent{a}_action.
    """

    def load_context(self, context: Any) -> None:
        from trainyard.tasks.rl.evaluate import load_agent

        self.kind = context.model_config["kind"]
        self.module = load_agent(self.kind, Path(context.artifacts["model_dir"]))
        self.num_agents = int(self.module.hparams.num_agents)
        self.observation_size = int(self.module.hparams.observation_size)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        obs = observations_from_frame(model_input, self.num_agents, self.observation_size)
        actions = self.module.act(obs, deterministic=True)
        return pd.DataFrame(
            {f"agent{a}_action": actions[:, a].astype(np.int64) for a in range(self.num_agents)}
        )
