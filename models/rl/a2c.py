"""Advantage actor-critic (A2C) agent as a LightningModule.

A `RolloutDataset` is the batch generator: each item is an n-step rollout of every env, collected
with the current policy, with GAE advantages and bootstrapped returns already computed. So
`training_step` is pure loss. Several agents share one actor (with an agent-id input) and the team
reward; each agent gets its own advantage from a per-agent or centralised critic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical
from torch.utils.data import DataLoader, IterableDataset

from trainyard.models.rl.networks import Actor, Critic, evaluate_episodes


@dataclass
class A2CConfig:
    """Every A2C knob; defaults follow stable-baselines3's A2C (tuned on CartPole)."""

    n_steps: int = 5  # env steps per env in one rollout (one gradient step per rollout)
    gamma: float = 0.99  # discount per env step
    gae_lambda: float = 1.0  # GAE lambda: 1 = n-step returns, 0 = one-step TD
    ent_coef: float = 0.0  # weight of the entropy bonus
    vf_coef: float = 0.5  # weight of the value loss
    lr: float = 7e-4  # learning rate
    optimizer: str = "rmsprop"  # "rmsprop" (alpha 0.99, eps 1e-5, as in A2C) or "adam"
    hidden_sizes: tuple[int, ...] = (64, 64)  # actor and critic hidden layer widths
    activation: str = "tanh"  # hidden activation: "tanh" or "relu"
    centralized_critic: bool = False  # critic sees all agents' observations of its env
    normalize_advantage: bool = False  # standardise advantages within each rollout
    gradient_clip: float = 0.5  # max global gradient norm
    steps_per_epoch: int = 100  # rollouts (= gradient steps) per Lightning epoch
    eval_episodes: int = 10  # greedy episodes per validation
    seed: int = 0  # seeds env resets


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    last_value: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Returns GAE advantages and returns (advantages + values), both shaped like `rewards`.

    rewards, values, dones: [T, ...]; last_value: [...] is V of the observation after step T-1.
    dones[t] says the episode ended at step t, so nothing after it is bootstrapped. A truncated
    episode should carry gamma * V(final observation) in its last reward (see RolloutDataset).
    """
    advantages = torch.zeros_like(rewards)
    gae = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(rewards.shape[0])):
        not_done = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        gae = delta + gamma * lam * not_done * gae
        advantages[t] = gae
        next_value = values[t]
    return advantages, advantages + values


def a2c_loss(
    log_probs: Tensor,
    values: Tensor,
    advantages: Tensor,
    returns: Tensor,
    entropy: Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Returns the A2C loss and its parts (policy_loss, value_loss, entropy).

    loss = -mean(A * log pi(a|s)) + vf_coef * mean((V - R)^2) - ent_coef * mean(H).
    """
    policy_loss = -(advantages.detach() * log_probs).mean()
    value_loss = F.mse_loss(values, returns.detach())
    mean_entropy = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * mean_entropy
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": mean_entropy}


class RolloutDataset(IterableDataset):
    """Yields `num_rollouts` batches, each made by calling `collect` (one fresh rollout)."""

    def __init__(self, collect: Callable[[], dict[str, Tensor]], num_rollouts: int) -> None:
        self.collect = collect
        self.num_rollouts = num_rollouts

    def __len__(self) -> int:
        # A known length stops Lightning prefetching: each rollout must use the latest policy.
        return self.num_rollouts

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for _ in range(self.num_rollouts):
            yield self.collect()


class A2C(L.LightningModule):
    """A2C agent: synchronous n-step rollouts of B envs, one actor-critic update per rollout."""

    def __init__(
        self,
        env: Any = None,
        eval_env: Any = None,
        observation_size: int = 0,
        num_actions: int = 0,
        num_agents: int = 1,
        **config: Any,
    ) -> None:
        super().__init__()
        if observation_size <= 0 or num_actions <= 0:
            raise ValueError(
                "A2C needs observation_size and num_actions > 0; build it with "
                "A2C.from_env(env, eval_env, config) so the sizes come from the environment."
            )
        self.config = A2CConfig(**config)
        # Only primitives go into hparams so a checkpoint loads without any environment.
        self.save_hyperparameters(
            {
                "observation_size": observation_size,
                "num_actions": num_actions,
                "num_agents": num_agents,
                **asdict(self.config),
            }
        )
        self.env = env
        self.eval_env = eval_env
        cfg = self.config
        self.actor = Actor(
            observation_size, num_actions, num_agents, cfg.hidden_sizes, cfg.activation
        )
        self.critic = Critic(
            observation_size, num_agents, cfg.hidden_sizes, cfg.centralized_critic, cfg.activation
        )
        self.env_steps = 0  # env steps collected so far, summed over envs
        self._obs: np.ndarray | None = None
        self._finished_episodes: list[tuple[float, float]] = []  # (return, length) since last log

    @classmethod
    def from_env(cls, env: Any, eval_env: Any = None, config: A2CConfig | None = None) -> A2C:
        """Returns an A2C whose input and output sizes are read from the vectorised env."""
        return cls(
            env=env,
            eval_env=eval_env,
            observation_size=env.observation_size,
            num_actions=env.num_actions,
            num_agents=env.num_agents,
            **asdict(config or A2CConfig()),
        )

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Returns action logits [N, A, num_actions] and values [N, A] for obs [N, A, D]."""
        return self.actor(obs), self.critic(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Returns actions [N, A] for observations [N, A, D]: most likely, or sampled."""
        was_training = self.training
        self.eval()
        logits = self.actor(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        self.train(was_training)
        if deterministic:
            return logits.argmax(dim=-1).cpu().numpy()
        return Categorical(logits=logits).sample().cpu().numpy()

    @torch.no_grad()
    def collect_rollout(self) -> dict[str, Tensor]:
        """Returns one flattened n-step rollout of every env with advantages and returns.

        Keys: obs [T*B, A, D], actions [T*B, A], advantages [T*B, A], returns [T*B, A].
        """
        cfg = self.config
        steps, num_envs, num_agents = cfg.n_steps, self.env.num_envs, self.hparams.num_agents
        obs = torch.zeros((steps, *self._obs.shape))
        actions = torch.zeros((steps, num_envs, num_agents), dtype=torch.long)
        rewards = torch.zeros((steps, num_envs, num_agents))
        values = torch.zeros((steps, num_envs, num_agents))
        dones = torch.zeros((steps, num_envs, 1))
        for t in range(steps):
            obs[t] = torch.as_tensor(self._obs)
            # The rollout is kept on the CPU (the env's side); only the forward runs on device.
            logits, value = self(obs[t].to(self.device))
            values[t] = value.cpu()
            actions[t] = Categorical(logits=logits).sample().cpu()
            next_obs, reward, terminated, truncated, info = self.env.step(actions[t].numpy())
            rewards[t] = torch.as_tensor(reward).unsqueeze(-1)
            cut_short = truncated & ~terminated
            if cut_short.any():
                # Time ran out, the episode did not end: bootstrap from its final observation.
                final_obs = torch.as_tensor(
                    info["final_observation"][cut_short], device=self.device
                )
                final_value = self.critic(final_obs).cpu()
                rewards[t, torch.as_tensor(cut_short)] += cfg.gamma * final_value
            ended = terminated | truncated
            dones[t, :, 0] = torch.as_tensor(ended)
            self._finished_episodes += [
                (float(info["episode_return"][b]), float(info["episode_length"][b]))
                for b in np.flatnonzero(ended)
            ]
            self._obs = next_obs
        self.env_steps += steps * num_envs
        last_value = self.critic(torch.as_tensor(self._obs, device=self.device)).cpu()
        advantages, returns = compute_gae(
            rewards, values, dones, last_value, cfg.gamma, cfg.gae_lambda
        )
        return {
            "obs": obs.flatten(0, 1),
            "actions": actions.flatten(0, 1),
            "advantages": advantages.flatten(0, 1),
            "returns": returns.flatten(0, 1),
        }

    def on_fit_start(self) -> None:
        if self.env is None:
            raise ValueError(
                "A2C.fit needs a training environment: build the module with "
                "A2C.from_env(env, eval_env, config) (a loaded checkpoint has no env; set "
                "module.env = env before calling trainer.fit)."
            )
        self._obs = self.env.reset(seed=self.config.seed)

    def train_dataloader(self) -> DataLoader:
        dataset = RolloutDataset(self.collect_rollout, self.config.steps_per_epoch)
        return DataLoader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        # One dummy item: validation_step plays whole episodes itself.
        return DataLoader([0] if self.eval_env is not None else [], batch_size=None)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits, values = self(batch["obs"])
        dist = Categorical(logits=logits)
        advantages = batch["advantages"]
        if self.config.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        loss, parts = a2c_loss(
            dist.log_prob(batch["actions"]),
            values,
            advantages,
            batch["returns"],
            dist.entropy(),
            self.config.vf_coef,
            self.config.ent_coef,
        )
        if self._is_logging_step():
            self.log("train/loss", loss, prog_bar=True)
            for name, value in parts.items():
                self.log(f"train/{name}", value)
            if self._finished_episodes:
                returns, lengths = np.mean(self._finished_episodes, axis=0)
                self.log("rollout/episode_return", float(returns), prog_bar=True)
                self.log("rollout/episode_length", float(lengths))
                self._finished_episodes = []
        return loss

    def _is_logging_step(self) -> bool:
        """Returns True on the steps whose on-step metrics the Trainer sends to its logger.

        `self.log` costs about a millisecond here, as much as a whole update of these small
        networks, so metrics are only computed on the steps where they would be written anyway.
        """
        return (self.global_step + 1) % self.trainer.log_every_n_steps == 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        returns = evaluate_episodes(
            self.act, self.eval_env, self.config.eval_episodes, seed=self.config.seed + 1
        )
        self.log("val/return", float(returns.mean()), on_epoch=True, prog_bar=True, batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.config.optimizer == "rmsprop":
            return torch.optim.RMSprop(self.parameters(), lr=self.config.lr, alpha=0.99, eps=1e-5)
        if self.config.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.config.lr, fused=True)
        raise ValueError(
            f"A2CConfig.optimizer must be 'rmsprop' or 'adam', got {self.config.optimizer!r}"
        )

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # The clip norm is an agent hyperparameter, so it travels with the checkpoint.
        self.clip_gradients(optimizer, self.config.gradient_clip, "norm")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["env_steps"] = self.env_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.env_steps = int(checkpoint.get("env_steps", 0))
