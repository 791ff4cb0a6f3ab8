"""RL evaluate step: every agent and baseline plays the same fixed scenario set once.

Per policy: mean return with a 95% interval, success rate, mean steps to clear (successful
episodes only) and mean episode length. Reports: metrics.json, episodes.csv, learning curves,
a return chart and, on the treasure hunt, one GIF per agent.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainyard.tasks.family import EvaluationResult, load_checkpoint
from trainyard.tasks.rl.config import METRICS, Params
from trainyard.tasks.rl.prepare import (
    BASELINES_FILE,
    ROLLOUT_ENVS,
    make_env,
    read_table,
    scenarios_of,
)

METRICS_FILE = "metrics.json"
EPISODES_FILE = "episodes.csv"
CURVES_FILE = "learning_curves.csv"
COLUMNS = ["mean_return", "return_ci95", "success_rate", "mean_steps_to_clear", "mean_length"]
# Agent kind -> "module:class" of its LightningModule (imported when used).
AGENTS = {"dqn": "trainyard.models.rl.dqn:DQN", "a2c": "trainyard.models.rl.a2c:A2C"}


class AgentPolicy:
    """A trained agent as a policy: greedy (deterministic) actions from observations."""

    def __init__(self, module: Any):
        self.module = module

    def act(self, obs: np.ndarray, state: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Returns int [N, A] actions for obs [N, A, D]."""
        return self.module.act(obs, deterministic=True)


def agent_class(kind: str) -> Any:
    """Returns the LightningModule class of agent kind `kind`."""
    module, name = AGENTS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_agent(kind: str, model_dir: Path) -> Any:
    """Returns the agent stored in model_dir, loaded as weights only (no pickled code)."""
    return load_checkpoint(agent_class(kind), model_dir, kind, "rl")


def episode_metrics(episodes: pd.DataFrame) -> dict[str, float]:
    """Returns mean return (with its 95% half-width), success rate, steps to clear, length."""
    returns = episodes["return"].to_numpy(dtype=np.float64)
    spread = returns.std(ddof=1) if len(returns) > 1 else 0.0
    cleared = episodes.loc[episodes["success"], "length"]
    return {
        "mean_return": float(returns.mean()),
        "return_ci95": float(1.96 * spread / np.sqrt(len(returns))),
        "success_rate": float(episodes["success"].mean()),
        # With no success the episodes' longest length stands in: never better than a success.
        "mean_steps_to_clear": float(cleared.mean() if len(cleared) else episodes["length"].max()),
        "mean_length": float(episodes["length"].mean()),
    }


def score_agent(module: Any, params: Params, scenarios: Any) -> pd.DataFrame:
    """Returns one row per scenario episode played greedily by `module`."""
    from trainyard.tasks.rl.policies import rollout

    env = make_env(params, ROLLOUT_ENVS, params.scenarios.seed)
    return rollout(env, AgentPolicy(module), scenarios)


def record_gif(module: Any, params: Params, scenarios: Any, index: int, path: Path) -> Path:
    """Returns the GIF of `module` playing scenario `index` of the treasure hunt."""
    from trainyard.tasks.rl.treasure_hunt import TreasureHuntVecEnv
    from trainyard.tasks.rl.views import write_gif

    env = TreasureHuntVecEnv(params.env.treasure_hunt(), 1, autoreset=False)
    obs = env.reset(states=scenarios.subset([index]))
    frames = [env.render(0)]
    policy = AgentPolicy(module)
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(policy.act(obs, env.state()))
        frames.append(env.render(0))
        done = bool(terminated[0] or truncated[0])
    return write_gif(frames, path)


def _plot_returns(scores: dict[str, dict[str, float]], path: Path) -> Path:
    from trainyard.tasks.reports import plt, save_figure

    names = sorted(scores, key=lambda n: -scores[n]["mean_return"])
    figure, axis = plt.subplots(figsize=(1.2 * len(names) + 2, 3.4))
    axis.bar(
        names,
        [scores[n]["mean_return"] for n in names],
        yerr=[scores[n]["return_ci95"] for n in names],
        capsize=4,
        color="#4c72b0",
    )
    axis.set_ylabel("mean return (95% interval)")
    axis.set_title("Scenario set: mean return per policy")
    return save_figure(figure, path)


def evaluate(
    prepared_path: Path,
    model_dirs: dict[str, Path],
    params: Params,
    report_dir: Path,
    histories: dict[str, list[dict[str, float]]] | None = None,
) -> EvaluationResult:
    """Returns scenario-set scores of the agents in `model_dirs` and the baselines, and writes
    metrics.json, episodes.csv, learning_curves.csv, plots/ and GIFs to report_dir."""
    from trainyard.tasks.reports import learning_curves, plot_learning_curves, staged_reports

    frame, _ = read_table(prepared_path)
    scenarios = scenarios_of(frame, params, str(prepared_path))
    baselines, _ = read_table(prepared_path.parent / BASELINES_FILE)
    agents = {name: load_agent(name, Path(folder)) for name, folder in model_dirs.items()}
    played = [baselines]
    for name, module in agents.items():
        episodes = score_agent(module, params, scenarios)
        episodes.insert(0, "policy", name)
        played.append(episodes)
    episodes = pd.concat(played, ignore_index=True)
    scores = {
        str(name): episode_metrics(group) for name, group in episodes.groupby("policy", sort=False)
    }
    with staged_reports(report_dir) as work:
        (work / METRICS_FILE).write_text(json.dumps(scores, indent=2, sort_keys=True))
        episodes.to_csv(work / EPISODES_FILE, index=False)
        curves = learning_curves(histories or {})
        curves.to_csv(work / CURVES_FILE, index=False)
        plots_dir = work / "plots"
        plots_dir.mkdir()
        plots = [_plot_returns(scores, plots_dir / "returns.png")]
        if not curves.empty:
            columns = ["val/return", "rollout/episode_return"]
            plots.append(plot_learning_curves(curves, plots_dir, columns, log_scale=False))
        if params.env.is_treasure_hunt:
            for name, module in agents.items():
                for index in range(min(params.evaluate.gif_episodes, len(frame))):
                    gif = plots_dir / f"{name}_scenario{index}.gif"
                    plots.append(record_gif(module, params, scenarios, index, gif))
    baseline_names = list(baselines["policy"].unique())
    return EvaluationResult(
        metrics=scores,
        baselines=baseline_names,
        report_dir=str(report_dir),
        title=f"Scenario set: {len(frame)} episodes of {params.env.name}",
        columns=COLUMNS,
        higher_is_better={**METRICS, "return_ci95": False},
        plots=[str(report_dir / "plots" / Path(p).name) for p in plots],
    )


def rescore(kind: str, model_dir: Path, prepared_path: Path, params: Params) -> float:
    """Returns agent `kind`'s gate metric on the scenario set at prepared_path."""
    frame, _ = read_table(prepared_path)
    scenarios = scenarios_of(frame, params, str(prepared_path))
    episodes = score_agent(load_agent(kind, model_dir), params, scenarios)
    return episode_metrics(episodes)[params.evaluate.metric]
