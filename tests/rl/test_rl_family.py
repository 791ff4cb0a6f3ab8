"""The RL family's steps: scenario set and baselines, training one agent, evaluation reports,
the pyfunc's input checks, and the errors a user can meet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainyard.errors import ConfigError, DataError, MissingStepError
from trainyard.tasks.rl.config import params_from_dict
from trainyard.tasks.rl.family import RL
from trainyard.tasks.rl.prepare import BASELINES_FILE, SCENARIOS_FILE, prepare, summary_of
from trainyard.tasks.rl.serving import observations_from_frame
from trainyard.tasks.training import train_model

TINY = {
    "scenarios": {"episodes": 24, "seed": 5},
    "train": {
        "models": ["dqn"],
        "max_epochs": 2,
        "steps_per_epoch": 20,
        "num_envs": 4,
        "validation_episodes": 4,
        "dqn": {"learning_starts": 64, "batch_size": 16},
    },
}


def test_prepare_writes_a_reproducible_scenario_set_and_baseline_episodes(tmp_path: Path):
    params = params_from_dict(TINY)
    first = prepare(params, tmp_path, tmp_path / "one")
    second = prepare(params, tmp_path, tmp_path / "two")
    assert first.md5 == second.md5  # same seed, same scenarios, same bytes
    scenarios = pd.read_parquet(tmp_path / "one" / SCENARIOS_FILE)
    assert len(scenarios) == 24
    assert {"agent0_row", "agent1_col", "treasure2_row"} <= set(scenarios.columns)
    episodes = pd.read_parquet(tmp_path / "one" / BASELINES_FILE)
    assert set(episodes["policy"]) == {"random", "greedy"}
    assert (episodes.groupby("policy").size() == 24).all()
    means = episodes.groupby("policy")["return"].mean()
    assert means["greedy"] > means["random"] + 10
    other = prepare(
        params_from_dict({**TINY, "scenarios": {"episodes": 24, "seed": 6}}),
        tmp_path,
        tmp_path / "three",
    )
    assert other.md5 != first.md5


def test_prepared_scenarios_from_other_params_are_refused(tmp_path: Path):
    prepare(params_from_dict(TINY), tmp_path, tmp_path)
    changed = params_from_dict({**TINY, "env": {"num_treasures": 2}})
    with pytest.raises(MissingStepError, match=r"env.num_treasures differ.*prepare --family rl"):
        summary_of(tmp_path / SCENARIOS_FILE, changed)


def test_a_gymnasium_env_gets_a_seed_scenario_set_and_a_random_baseline(tmp_path: Path):
    params = params_from_dict({**TINY, "env": {"name": "CartPole-v1"}})
    prepare(params, tmp_path, tmp_path)
    assert list(pd.read_parquet(tmp_path / SCENARIOS_FILE).columns) == ["seed"]
    episodes = pd.read_parquet(tmp_path / BASELINES_FILE)
    assert set(episodes["policy"]) == {"random"}
    assert 8 < episodes["return"].mean() < 60  # random CartPole lasts ~22 steps


def test_an_unknown_environment_is_a_config_error_before_anything_is_written(tmp_path: Path):
    params = params_from_dict({"env": {"name": "NoSuchEnv-v9"}})
    with pytest.raises(ConfigError, match="NoSuchEnv-v9"):
        RL.check(params)
    assert not list(tmp_path.iterdir())


def test_impossible_values_name_their_key():
    with pytest.raises(ConfigError, match=r"env.num_treasures \(70\) does not fit"):
        params_from_dict({"env": {"num_treasures": 70}})
    with pytest.raises(ConfigError, match="train.dqn.exploration_final_eps must be between"):
        params_from_dict({"train": {"dqn": {"exploration_final_eps": 2}}})
    with pytest.raises(ConfigError, match="evaluate.metric must be one of"):
        params_from_dict({"evaluate": {"metric": "accuracy"}})
    with pytest.raises(ConfigError, match=r"train.a2c: unknown key\(s\) nsteps"):
        params_from_dict({"train": {"a2c": {"nsteps": 4}}})


def test_every_agent_knob_reaches_the_agent_config():
    """A key in params.yaml that the agent ignored would be a silent no-op."""
    from trainyard.tasks.rl.agents import agent_config

    params = params_from_dict({})
    for name in ("dqn", "a2c"):
        config = agent_config(name, params, num_envs=4)
        section = getattr(params.train, name).model_dump()
        for key, value in section.items():
            if key == "warm_start_episodes":
                continue
            got = getattr(config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, (name, key)


def test_observations_from_a_table_are_checked_and_name_the_row():
    columns = [f"agent{a}_obs{d}" for a in range(2) for d in range(4)]
    frame = pd.DataFrame(np.zeros((3, 8)), columns=columns)
    assert observations_from_frame(frame, 2, 4).shape == (3, 2, 4)
    with pytest.raises(DataError, match="missing column.*agent1_obs3"):
        observations_from_frame(frame.drop(columns="agent1_obs3"), 2, 4)
    frame = frame.astype(object)
    frame.loc[2, "agent0_obs1"] = "far"
    with pytest.raises(DataError, match="row 2: agent0_obs1 is 'far'"):
        observations_from_frame(frame, 2, 4)


@pytest.mark.slow
def test_a_trained_agent_is_evaluated_with_baselines_plots_and_a_gif(tmp_path: Path):
    params = params_from_dict(TINY)
    prepared = prepare(params, tmp_path, tmp_path / "prepared")
    result = train_model(RL, "dqn", Path(prepared.path), params, tmp_path / "models")
    assert result.monitor == "val/return" and len(result.history) == 2
    assert (tmp_path / "models" / "dqn" / "best.ckpt").exists()
    evaluation = RL.evaluate(
        prepared,
        {"dqn": tmp_path / "models" / "dqn"},
        params,
        tmp_path / "reports",
        {"dqn": result.history},
    )
    assert set(evaluation.metrics) == {"dqn", "random", "greedy"}
    assert evaluation.baselines == ["random", "greedy"]
    assert evaluation.best_baseline("mean_return") == "greedy"
    scores = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert 0 <= scores["dqn"]["success_rate"] <= 1
    assert scores["greedy"]["success_rate"] == 1.0
    episodes = pd.read_csv(tmp_path / "reports" / "episodes.csv")
    assert (episodes.groupby("policy").size() == 24).all()  # every policy, the same episodes
    assert (tmp_path / "reports" / "plots" / "dqn_scenario0.gif").stat().st_size > 0
    assert (tmp_path / "reports" / "plots" / "learning_curves.png").exists()
    # The gate re-scores a registered agent on the scenario set: the same number as evaluate.
    rescored = RL.rescore(
        {"kind": "dqn", "params": params.to_dict()},
        {"model_dir": tmp_path / "models" / "dqn"},
        prepared,
        params,
    )
    assert rescored == pytest.approx(scores["dqn"]["mean_return"])


def test_a_truncated_checkpoint_is_named_in_the_error(tmp_path: Path):
    from trainyard.tasks.rl.evaluate import load_agent

    folder = tmp_path / "dqn"
    folder.mkdir()
    (folder / "best.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"dqn/best.ckpt: the dqn checkpoint cannot be loaded"):
        load_agent("dqn", folder)


def test_dqn_warm_start_fills_the_replay_buffer_with_greedy_episodes():
    from trainyard.tasks.rl.agents import build_agent, greedy_transitions
    from trainyard.tasks.rl.prepare import make_env

    params = params_from_dict(
        {
            **TINY,
            "train": {**TINY["train"], "dqn": {**TINY["train"]["dqn"], "warm_start_episodes": 3}},
        }
    )
    env = make_env(params, 4, seed=1)
    transitions = greedy_transitions(env, episodes=3, seed=1)
    assert transitions["obs"].shape[1:] == (2, 4) and transitions["dones"].sum() >= 3
    # Greedy episodes collect treasures: their rewards include +10s.
    assert (transitions["rewards"] > 9).any()
    module, hparams = build_agent("dqn", make_env(params, 4, seed=1), None, params)
    assert len(module.buffer) >= len(transitions["obs"]) // 2
    assert hparams["batch_size"] == 16
