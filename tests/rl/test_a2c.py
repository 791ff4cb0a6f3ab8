"""A2C: GAE and loss on hand-computed tensors, rollouts, Lightning steps, checkpoints, CartPole."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.rl.agent_helpers import MatchEnv, quick_trainer, single_torch_thread  # noqa: F401
from trainyard.models.rl.a2c import A2C, A2CConfig, a2c_loss, compute_gae
from trainyard.models.rl.networks import Critic, evaluate_episodes
from trainyard.tasks.rl.gym_envs import GymVecEnv

# One env, three steps; the episode ends at step 1; V(after step 2) = 2.
REWARDS = torch.tensor([[1.0], [1.0], [1.0]])
VALUES = torch.tensor([[0.5], [0.5], [0.5]])
DONES = torch.tensor([[0.0], [1.0], [0.0]])
LAST_VALUE = torch.tensor([2.0])


def test_gae_with_lambda_one_gives_discounted_returns_cut_at_episode_end():
    advantages, returns = compute_gae(REWARDS, VALUES, DONES, LAST_VALUE, gamma=0.5, lam=1.0)
    # returns: t0 = 1 + 0.5 * 1 (ends at t1); t1 = 1; t2 = 1 + 0.5 * 2 (bootstrap).
    torch.testing.assert_close(returns, torch.tensor([[1.5], [1.0], [2.0]]))
    torch.testing.assert_close(advantages, returns - VALUES)


def test_gae_with_lambda_zero_gives_one_step_td_errors():
    advantages, _ = compute_gae(REWARDS, VALUES, DONES, LAST_VALUE, gamma=0.5, lam=0.0)
    # delta_t = r + 0.5 * V(next) * (1 - done) - V: [1 + 0.25 - 0.5, 1 - 0.5, 1 + 1 - 0.5].
    torch.testing.assert_close(advantages, torch.tensor([[0.75], [0.5], [1.5]]))


def test_gae_with_intermediate_lambda():
    advantages, _ = compute_gae(REWARDS, VALUES, DONES, LAST_VALUE, gamma=0.5, lam=0.5)
    # t0: 0.75 + 0.5 * 0.5 * A1 = 0.75 + 0.25 * 0.5.
    torch.testing.assert_close(advantages, torch.tensor([[0.875], [0.5], [1.5]]))


def test_a2c_loss_parts_by_hand():
    loss, parts = a2c_loss(
        log_probs=torch.tensor([-1.0, -2.0]),
        values=torch.tensor([1.0, 2.0]),
        advantages=torch.tensor([1.0, -1.0]),
        returns=torch.tensor([2.0, 2.0]),
        entropy=torch.tensor([0.5, 0.7]),
        vf_coef=0.5,
        ent_coef=0.01,
    )
    # policy = -mean([1 * -1, -1 * -2]) = -0.5; value = mean([1, 0]) = 0.5; entropy = 0.6.
    torch.testing.assert_close(parts["policy_loss"], torch.tensor(-0.5))
    torch.testing.assert_close(parts["value_loss"], torch.tensor(0.5))
    torch.testing.assert_close(parts["entropy"], torch.tensor(0.6))
    torch.testing.assert_close(loss, torch.tensor(-0.5 + 0.25 - 0.006))


def test_centralized_critic_sees_the_other_agents_observations():
    critic = Critic(observation_size=2, num_agents=2, hidden_sizes=(8,), centralized=True)
    obs = torch.zeros(1, 2, 2)
    changed = obs.clone()
    changed[0, 1] = 1.0  # only agent 2's observation changes
    assert not torch.allclose(critic(obs)[0, 0], critic(changed)[0, 0])
    per_agent = Critic(observation_size=2, num_agents=2, hidden_sizes=(8,), centralized=False)
    torch.testing.assert_close(per_agent(obs)[0, 0], per_agent(changed)[0, 0])


@pytest.mark.parametrize("terminate", [False, True])
def test_rollout_bootstraps_truncated_episodes_but_not_terminated_ones(terminate):
    # One action, so every step earns reward 1; episodes end after 2 steps, at t = 1.
    env = MatchEnv(num_envs=2, num_agents=1, num_actions=1, episode_length=2, terminate=terminate)
    model = A2C.from_env(env, config=A2CConfig(n_steps=2, gamma=0.5, gae_lambda=1.0))
    with torch.no_grad():  # a critic that says 3 everywhere
        model.critic.net[-1].weight.zero_()
        model.critic.net[-1].bias.fill_(3.0)
    model._obs = env.reset(seed=0)
    batch = model.collect_rollout()
    # Truncated: R1 = 1 + 0.5 * V(final obs) = 2.5; terminated: R1 = 1. Then R0 = 1 + 0.5 * R1.
    last = 1.0 if terminate else 2.5
    expected = torch.tensor([[1 + 0.5 * last], [1 + 0.5 * last], [last], [last]])
    torch.testing.assert_close(batch["returns"], expected)
    torch.testing.assert_close(batch["advantages"], expected - 3.0)
    assert batch["obs"].shape == (4, 1, 2) and batch["actions"].shape == (4, 1)
    assert model.env_steps == 4


def cartpole(num_envs: int, seed: int) -> GymVecEnv:
    return GymVecEnv("CartPole-v1", num_envs, seed)


FAST = dict(steps_per_epoch=2, eval_episodes=2)


@pytest.mark.parametrize(
    "env_factory, extra",
    [
        (lambda: cartpole(4, 0), {}),
        (lambda: MatchEnv(num_envs=3), {"normalize_advantage": True, "optimizer": "adam"}),
        (lambda: MatchEnv(num_envs=3), {"centralized_critic": True}),
    ],
    ids=["cartpole", "two-agents", "two-agents-centralized"],
)
def test_one_fit_step_then_checkpoint_loads_without_env(tmp_path, env_factory, extra):
    L.seed_everything(0)
    env, eval_env = env_factory(), env_factory()
    model = A2C.from_env(env, eval_env, A2CConfig(**FAST, **extra))
    trainer = quick_trainer(tmp_path)
    trainer.fit(model)

    assert trainer.global_step == 2
    assert np.isfinite(trainer.callback_metrics["val/return"].item())
    assert model.env_steps == 2 * model.config.n_steps * env.num_envs

    path = tmp_path / "a2c.ckpt"
    trainer.save_checkpoint(path)
    loaded = A2C.load_from_checkpoint(path, weights_only=True)
    assert (
        loaded.env is None and loaded.hparams.centralized_critic == model.config.centralized_critic
    )
    obs = env.reset(seed=1)
    np.testing.assert_array_equal(loaded.act(obs), model.act(obs))
    assert loaded.act(obs, deterministic=False).shape == (env.num_envs, env.num_agents)


def test_a2c_overfits_the_two_agent_match_env(tmp_path):
    L.seed_everything(0)
    env = MatchEnv(num_envs=8)
    config = A2CConfig(lr=3e-3, optimizer="adam", ent_coef=0.0, steps_per_epoch=300)
    model = A2C.from_env(env, None, config)
    quick_trainer(tmp_path, steps=300).fit(model)
    returns = evaluate_episodes(model.act, MatchEnv(num_envs=4), episodes=8, seed=5)
    # Random play scores 4 steps * 1/3; a learned policy matches nearly every step.
    assert returns.mean() > 3.5, returns


@pytest.mark.slow
def test_a2c_learns_cartpole(tmp_path):
    L.seed_everything(0)
    model = A2C.from_env(cartpole(8, 0), cartpole(5, 7), A2CConfig(steps_per_epoch=250))
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/return", mode="max")
    trainer = L.Trainer(
        max_steps=1_000,
        logger=False,
        callbacks=[best],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model)
    agent = A2C.load_from_checkpoint(best.best_model_path, weights_only=True)
    returns = evaluate_episodes(agent.act, cartpole(5, 123), episodes=10, seed=123)
    assert returns.mean() > 100, returns  # random play scores about 22
