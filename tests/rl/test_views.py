"""The gymnasium and PettingZoo views pass their libraries' API checkers; GIFs are written."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from pettingzoo.test import parallel_api_test
from PIL import Image

from trainyard.tasks.rl.treasure_hunt import Action, InitialStates, TreasureHuntConfig
from trainyard.tasks.rl.views import TreasureHuntGymEnv, TreasureHuntParallelEnv, write_gif


@pytest.mark.parametrize(
    "config",
    [
        None,  # one agent: Discrete(5)
        TreasureHuntConfig(num_agents=3, observation="grid", view_radius=1),  # MultiDiscrete
    ],
    ids=["single-agent", "joint-grid"],
)
def test_gym_view_passes_check_env(config):
    env = TreasureHuntGymEnv(config, render_mode="rgb_array")
    with warnings.catch_warnings():
        # It has no registry spec, so the checker cannot try other render modes: expected.
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(env)


def test_gym_view_plays_a_scenario_to_its_end_and_renders_the_final_state():
    config = TreasureHuntConfig(num_agents=1, num_treasures=1, size=4)
    env = TreasureHuntGymEnv(config, render_mode="rgb_array")
    scenario = InitialStates(np.array([[[0, 0]]]), np.array([[[0, 2]]]))
    obs, _ = env.reset(options={"states": scenario})
    assert obs.tolist() == pytest.approx([0, 0, 0, 2 / 3])
    env.step(Action.RIGHT)
    obs, reward, terminated, truncated, info = env.step(Action.RIGHT)
    assert terminated and not truncated and info == {"success": True}
    assert reward == pytest.approx(9.9)
    assert obs.tolist() == pytest.approx([0, 2 / 3, -1, -1])
    frame = env.render()
    assert frame.shape == (128, 128, 3)
    assert tuple(frame[16, 2 * 32 + 16]) == (31, 119, 180)  # the agent, on the emptied cell


def test_parallel_view_passes_parallel_api_test():
    env = TreasureHuntParallelEnv(TreasureHuntConfig(max_steps=30), render_mode="rgb_array")
    parallel_api_test(env, num_cycles=100)


def test_parallel_view_gives_every_agent_the_team_reward_and_ends_them_together():
    config = TreasureHuntConfig(num_agents=2, num_treasures=1, size=4)
    env = TreasureHuntParallelEnv(config)
    scenario = InitialStates(np.array([[[0, 0], [3, 3]]]), np.array([[[0, 1]]]))
    obs, infos = env.reset(seed=0, options={"states": scenario})
    assert set(obs) == {"agent_0", "agent_1"} and obs["agent_0"].shape == (4,)
    _, rewards, terminations, truncations, infos = env.step(
        {"agent_0": Action.RIGHT, "agent_1": Action.DOWN}
    )
    assert rewards == {"agent_0": pytest.approx(10 - 1 - 0.1), "agent_1": pytest.approx(8.9)}
    assert terminations == {"agent_0": True, "agent_1": True}
    assert env.agents == []
    with pytest.raises(ValueError, match="reset"):
        env.step({})


def test_write_gif_writes_a_readable_animation(tmp_path):
    env = TreasureHuntGymEnv(render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    for action in [Action.DOWN, Action.RIGHT, Action.UP]:
        env.step(action)
        frames.append(env.render())
    path = write_gif(frames, tmp_path / "episodes" / "hunt.gif", fps=5)
    assert path == tmp_path / "episodes" / "hunt.gif"
    assert list(path.parent.iterdir()) == [path]  # no partial file left beside it
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (256, 256)
        assert gif.info["duration"] == 200
        gif.seek(3)
        last = np.asarray(gif.convert("RGB"))
    assert np.abs(last.astype(int) - frames[3].astype(int)).mean() < 3  # palette rounding only


def test_write_gif_refuses_no_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "empty.gif")
