"""Plain nn.Modules shared by the RL agents (Q-network, actor and critic MLPs) and the episode
evaluator they share.

Every network takes observations shaped [N, A, D] (N envs or samples, A agents, D features) and
returns one output per agent, so single-agent (A=1) and multi-agent agents share one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def build_mlp(
    input_size: int,
    hidden_sizes: Sequence[int],
    output_size: int,
    activation: str = "relu",
) -> nn.Sequential:
    """Returns an MLP: Linear + activation per hidden size, then a linear output layer."""
    layers: list[nn.Module] = []
    size = input_size
    for hidden in hidden_sizes:
        layers += [nn.Linear(size, hidden), ACTIVATIONS[activation]()]
        size = hidden
    layers.append(nn.Linear(size, output_size))
    return nn.Sequential(*layers)


def orthogonal_init(mlp: nn.Sequential, output_gain: float) -> None:
    """Returns None after initialising an MLP as A2C/PPO baselines do (orthogonal, zero bias).

    Hidden layers get gain sqrt(2); the output layer gets `output_gain` (small for a policy so
    the first policy is near uniform, 1 for a value head).
    """
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        gain = output_gain if i == len(linears) - 1 else float(np.sqrt(2))
        nn.init.orthogonal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)


def with_agent_id(obs: Tensor) -> Tensor:
    """Returns obs [N, A, D] with each agent's one-hot id appended: [N, A, D + A] (A > 1 only).

    One network is shared by all agents, so the id is what lets it act differently per agent.
    """
    n, num_agents, _ = obs.shape
    if num_agents == 1:
        return obs
    ids = torch.eye(num_agents, dtype=obs.dtype, device=obs.device).expand(n, -1, -1)
    return torch.cat([obs, ids], dim=-1)


def agent_input_size(observation_size: int, num_agents: int) -> int:
    """Returns the per-agent input width of a shared network (observation plus one-hot id)."""
    return observation_size + (num_agents if num_agents > 1 else 0)


class QNetwork(nn.Module):
    """MLP Q-network shared by all agents, optionally with a dueling value/advantage head."""

    def __init__(
        self,
        observation_size: int,
        num_actions: int,
        num_agents: int = 1,
        hidden_sizes: Sequence[int] = (64, 64),
        dueling: bool = False,
    ) -> None:
        super().__init__()
        self.dueling = dueling
        in_size = agent_input_size(observation_size, num_agents)
        if dueling:
            *trunk, last = hidden_sizes
            self.trunk = nn.Sequential(build_mlp(in_size, trunk, last), nn.ReLU())
            self.value = nn.Linear(last, 1)
            self.advantage = nn.Linear(last, num_actions)
        else:
            self.trunk = build_mlp(in_size, hidden_sizes, num_actions)

    def forward(self, obs: Tensor) -> Tensor:
        """Returns Q-values [N, A, num_actions] for observations [N, A, D]."""
        features = self.trunk(with_agent_id(obs))
        if not self.dueling:
            return features
        advantage = self.advantage(features)
        # Subtracting the mean advantage makes V and A identifiable (Wang et al., 2016).
        return self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)


class Actor(nn.Module):
    """Policy MLP shared by all agents: action logits per agent."""

    def __init__(
        self,
        observation_size: int,
        num_actions: int,
        num_agents: int = 1,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.net = build_mlp(
            agent_input_size(observation_size, num_agents), hidden_sizes, num_actions, activation
        )
        orthogonal_init(self.net, output_gain=0.01)

    def forward(self, obs: Tensor) -> Tensor:
        """Returns action logits [N, A, num_actions] for observations [N, A, D]."""
        return self.net(with_agent_id(obs))


class Critic(nn.Module):
    """State-value MLP: per-agent by default, or centralised over all agents of an env.

    The centralised critic sees the concatenation of every agent's observation of its env plus
    the agent's one-hot id, so each agent still gets its own value (and its own advantage).
    """

    def __init__(
        self,
        observation_size: int,
        num_agents: int = 1,
        hidden_sizes: Sequence[int] = (64, 64),
        centralized: bool = False,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.centralized = centralized and num_agents > 1
        if self.centralized:
            in_size = observation_size * num_agents + num_agents
        else:
            in_size = agent_input_size(observation_size, num_agents)
        self.net = build_mlp(in_size, hidden_sizes, 1, activation)
        orthogonal_init(self.net, output_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        """Returns values [N, A] for observations [N, A, D]."""
        if self.centralized:
            n, num_agents, _ = obs.shape
            joint = obs.reshape(n, 1, -1).expand(n, num_agents, -1)
            ids = torch.eye(num_agents, dtype=obs.dtype, device=obs.device).expand(n, -1, -1)
            return self.net(torch.cat([joint, ids], dim=-1)).squeeze(-1)
        return self.net(with_agent_id(obs)).squeeze(-1)


def evaluate_episodes(
    act: Callable[[np.ndarray], np.ndarray], env: object, episodes: int, seed: int | None = None
) -> np.ndarray:
    """Returns the returns of `episodes` complete episodes of `act` on a vectorised env.

    Each env b contributes (episodes + b) // num_envs episodes, so short episodes do not crowd out
    long ones when several envs run in parallel (the scheme stable-baselines3 uses).
    """
    num_envs = env.num_envs
    targets = np.array([(episodes + b) // num_envs for b in range(num_envs)])
    counts = np.zeros(num_envs, dtype=int)
    returns: list[float] = []
    obs = env.reset(seed=seed)
    while (counts < targets).any():
        obs, _, _, _, info = env.step(act(obs))
        ended = ~np.isnan(info["episode_return"])
        for b in np.flatnonzero(ended & (counts < targets)):
            returns.append(float(info["episode_return"][b]))
            counts[b] += 1
    return np.asarray(returns, dtype=np.float64)
