"""The `rl:` section: values no environment can make work are refused when the params load,
each naming its dotted key and the allowed range."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainyard.errors import ConfigError
from trainyard.tasks.rl.config import load_params, params_from_dict


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train": {"num_envs": 0}}, "params.train.num_envs must be at least 1, got 0"),
        ({"train": {"max_epochs": 0}}, "params.train.max_epochs must be at least 1, got 0"),
        ({"train": {"patience": -2}}, "params.train.patience must be at least 1, got -2"),
        ({"train": {"steps_per_epoch": 0}}, "params.train.steps_per_epoch must be at least 1"),
        (
            {"train": {"dqn": {"batch_size": 0}}},
            "params.train.dqn.batch_size must be at least 1 and at most buffer_size (50000), got 0",
        ),
        ({"train": {"dqn": {"gamma": 1.5}}}, "params.train.dqn.gamma must be in (0, 1], got 1.5"),
        ({"train": {"a2c": {"gamma": -0.1}}}, "params.train.a2c.gamma must be in (0, 1]"),
        ({"train": {"a2c": {"lr": 0}}}, "params.train.a2c.lr must be above 0, got 0.0"),
        ({"train": {"dqn": {"train_freq": 0}}}, "params.train.dqn.train_freq must be at least 1"),
        (
            {"train": {"dqn": {"target_update_interval": 0}}},
            "params.train.dqn.target_update_interval must be at least 1, got 0",
        ),
        (
            {"train": {"dqn": {"learning_starts": -1}}},
            "params.train.dqn.learning_starts must be at least 0, got -1",
        ),
        ({"train": {"dqn": {"per_beta": 1.5}}}, "params.train.dqn.per_beta must be in [0, 1]"),
        (
            {"train": {"a2c": {"gae_lambda": 1.2}}},
            "params.train.a2c.gae_lambda must be in [0, 1], got 1.2",
        ),
        ({"train": {"a2c": {"ent_coef": -0.1}}}, "params.train.a2c.ent_coef must be at least 0"),
        ({"train": {"a2c": {"n_steps": 0}}}, "params.train.a2c.n_steps must be at least 1, got 0"),
        (
            {"train": {"a2c": {"gradient_clip": 0}}},
            "params.train.a2c.gradient_clip must be above 0, got 0.0",
        ),
        ({"scenarios": {"episodes": 0}}, "params.scenarios.episodes must be at least 1, got 0"),
        ({"scenarios": {"seed": -5}}, "params.scenarios.seed must be at least 0, got -5"),
        ({"env": {"size": 0}}, "params.env.size must be at least 1, got 0"),
        ({"evaluate": {"gif_episodes": -1}}, "params.evaluate.gif_episodes must be at least 0"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_allowed_range(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        params_from_dict(values)

    assert message in str(caught.value)


def test_value_problems_in_a_file_name_the_file_and_the_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"rl": {"train": {"num_envs": 0}}}))

    with pytest.raises(ConfigError, match=r"params.yaml: rl.train.num_envs must be at least 1"):
        load_params(path)
