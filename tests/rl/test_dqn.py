"""DQN: loss by hand, env interaction, one Lightning step, checkpoints, learning CartPole."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.rl.agent_helpers import MatchEnv, quick_trainer, single_torch_thread  # noqa: F401
from trainyard.models.rl.dqn import DQN, DQNConfig, dqn_loss, linear_epsilon
from trainyard.models.rl.networks import evaluate_episodes
from trainyard.tasks.rl.gym_envs import GymVecEnv

# --- the loss, by hand ---------------------------------------------------------------------


Q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
ACTIONS = torch.tensor([1, 0])
REWARDS = torch.tensor([1.0, 1.0])
NEXT_ONLINE = torch.tensor([[5.0, 1.0], [0.0, 2.0]])
NEXT_TARGET = torch.tensor([[2.0, 7.0], [3.0, 9.0]])
DONES = torch.tensor([0.0, 1.0])  # row 0 did not terminate (maybe truncated): it bootstraps


def test_double_dqn_picks_online_argmax_and_scores_it_with_the_target_net():
    loss, td = dqn_loss(Q, ACTIONS, REWARDS, NEXT_ONLINE, NEXT_TARGET, DONES, 0.5, double=True)
    # Online argmax of next = [0, 1]; target scores them [2, 9]; row 1 terminated, no bootstrap.
    # targets = [1 + 0.5 * 2, 1] = [2, 1]; Q(s, a) = [2, 3]; td = [0, -2]; Huber = [0, 1.5].
    torch.testing.assert_close(td, torch.tensor([0.0, -2.0]))
    torch.testing.assert_close(loss, torch.tensor(0.75))


def test_plain_dqn_takes_the_target_max():
    loss, td = dqn_loss(Q, ACTIONS, REWARDS, None, NEXT_TARGET, DONES, 0.5, double=False)
    # targets = [1 + 0.5 * 7, 1] = [4.5, 1]; td = [2.5, -2]; Huber = [2.0, 1.5].
    torch.testing.assert_close(td, torch.tensor([2.5, -2.0]))
    torch.testing.assert_close(loss, torch.tensor(1.75))


def test_importance_weights_scale_each_sample():
    weights = torch.tensor([1.0, 2.0])
    loss, _ = dqn_loss(
        Q, ACTIONS, REWARDS, NEXT_ONLINE, NEXT_TARGET, DONES, 0.5, double=True, weights=weights
    )
    torch.testing.assert_close(loss, torch.tensor((0.0 + 2 * 1.5) / 2))


def test_loss_gradient_flows_only_into_the_taken_q_values():
    q = Q.clone().requires_grad_(True)
    loss, _ = dqn_loss(q, ACTIONS, REWARDS, NEXT_ONLINE, NEXT_TARGET, DONES, 0.5, double=True)
    loss.backward()
    # d/dq of mean Huber: row 0 td = 0 -> 0; row 1 |td| > 1 -> sign(q - target) / 2 = 0.5.
    torch.testing.assert_close(q.grad, torch.tensor([[0.0, 0.0], [0.5, 0.0]]))


def test_epsilon_decays_linearly_then_stays():
    cfg = DQNConfig(total_env_steps=1000, exploration_fraction=0.5, exploration_final_eps=0.1)
    assert linear_epsilon(0, cfg) == 1.0
    assert linear_epsilon(250, cfg) == pytest.approx(0.55)
    assert linear_epsilon(500, cfg) == linear_epsilon(10_000, cfg) == pytest.approx(0.1)


# --- env interaction and Lightning steps -----------------------------------------------------


@pytest.mark.parametrize("terminate", [False, True])
def test_ended_episodes_store_their_final_observation_and_termination_only(terminate):
    env = MatchEnv(num_envs=2, episode_length=1, terminate=terminate)
    model = DQN.from_env(env, config=DQNConfig(learning_starts=0, batch_size=1))
    model._obs = env.reset(seed=0)
    episodes = model._env_interaction(epsilon=0.0)
    assert len(episodes) == 2 and model.env_steps == 2
    buffer = model.buffer
    # next_obs is the ended episode's last obs: bit set for agent 2 only, time not reset.
    np.testing.assert_array_equal(buffer.next_obs[:2, :, -1], [[0, 1], [0, 1]])
    np.testing.assert_array_equal(buffer.dones[:2], [float(terminate)] * 2)


def cartpole(num_envs: int, seed: int) -> GymVecEnv:
    return GymVecEnv("CartPole-v1", num_envs, seed)


FAST = dict(learning_starts=64, batch_size=16, steps_per_epoch=2, eval_episodes=2)


@pytest.mark.parametrize(
    "env_factory, extra",
    [
        (lambda: cartpole(2, 0), {}),
        (lambda: cartpole(2, 0), {"prioritized": True, "dueling": True, "tau": 0.5}),
        (lambda: MatchEnv(num_envs=3), {}),
    ],
    ids=["cartpole", "cartpole-per-dueling", "two-agents"],
)
def test_one_fit_step_then_checkpoint_loads_without_env(tmp_path, env_factory, extra):
    L.seed_everything(0)
    env, eval_env = env_factory(), env_factory()
    model = DQN.from_env(env, eval_env, DQNConfig(**FAST, **extra))
    trainer = quick_trainer(tmp_path)
    trainer.fit(model)

    assert trainer.global_step == 2
    assert np.isfinite(trainer.callback_metrics["val/return"].item())
    assert model.env_steps == len(model.buffer) >= 64 + 2 * env.num_envs
    if model.config.prioritized:  # beta anneals from per_beta towards 1 with env steps
        assert model.config.per_beta < model.buffer.beta < 1.0

    path = tmp_path / "dqn.ckpt"
    trainer.save_checkpoint(path)
    loaded = DQN.load_from_checkpoint(path, weights_only=True)
    assert loaded.env is None and loaded.hparams.num_agents == env.num_agents
    obs = env.reset(seed=1)
    np.testing.assert_array_equal(loaded.act(obs), model.act(obs))
    assert loaded.act(obs).shape == (env.num_envs, env.num_agents)


def test_warm_start_transitions_count_towards_learning_starts():
    env = MatchEnv(num_envs=2)
    model = DQN.from_env(env, config=DQNConfig(learning_starts=10, batch_size=4))
    obs = env.reset(seed=0)
    actions = np.zeros((10, 2), dtype=np.int64)
    model.warm_start(
        {
            "obs": np.repeat(obs[:1], 10, 0),
            "actions": actions,
            "rewards": np.ones(10, np.float32),
            "next_obs": np.repeat(obs[:1], 10, 0),
            "dones": np.zeros(10),
        }
    )
    model.on_fit_start()
    assert len(model.buffer) == 10  # no random steps were needed


def test_fit_without_env_says_how_to_fix_it(tmp_path):
    model = DQN(observation_size=4, num_actions=2)
    with pytest.raises(ValueError, match="from_env"):
        quick_trainer(tmp_path).fit(model)


def test_dqn_learns_the_two_agent_match_env(tmp_path):
    L.seed_everything(0)
    config = DQNConfig(
        hidden_sizes=(32,),
        learning_starts=200,
        total_env_steps=1_200,
        exploration_fraction=0.5,
        target_update_interval=20,
        steps_per_epoch=300,
    )
    model = DQN.from_env(MatchEnv(num_envs=4), None, config)
    quick_trainer(tmp_path, steps=300).fit(model)
    returns = evaluate_episodes(model.act, MatchEnv(num_envs=4), episodes=8, seed=5)
    # Random play scores 4 steps * 1/3; a learned policy matches nearly every step.
    assert returns.mean() > 3.5, returns


# --- learning --------------------------------------------------------------------------------


@pytest.mark.slow
def test_dqn_learns_cartpole(tmp_path):
    L.seed_everything(0)
    config = DQNConfig(hidden_sizes=(64, 64), total_env_steps=30_000, steps_per_epoch=2_500)
    model = DQN.from_env(cartpole(4, 0), cartpole(5, 7), config)
    # DQN's greedy return swings during training; keep the best validation, as the pipeline does.
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/return", mode="max")
    trainer = L.Trainer(
        max_steps=7_500,
        logger=False,
        callbacks=[best],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model)
    agent = DQN.load_from_checkpoint(best.best_model_path, weights_only=True)
    returns = evaluate_episodes(agent.act, cartpole(5, 123), episodes=10, seed=123)
    assert returns.mean() > 100, returns  # random play scores about 22
