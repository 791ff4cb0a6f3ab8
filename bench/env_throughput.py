"""Benchmarks TreasureHuntVecEnv against a per-agent Python-loop treasure hunt, side by side.

Both implement the same rules, observation and auto-reset, and both are driven by the same
pre-drawn uniformly random actions in one process, so the agent-steps/s are comparable. The loop
version steps B separate envs one after another, as a course-style implementation would. Run
from the project root:

    .venv/bin/python bench/env_throughput.py                  # batches 1, 64, 1024 (~15 s)
    .venv/bin/python bench/env_throughput.py --seconds 0.3    # quicker, noisier
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainyard.tasks.rl.treasure_hunt import TreasureHuntConfig, TreasureHuntVecEnv

# (d_row, d_col) of UP, DOWN, LEFT, RIGHT, STAY, as plain tuples for the loop version.
LOOP_MOVES = [(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]


class LoopTreasureHunt:
    """REFERENCE implementation: one env, Python lists, a loop per agent and per treasure.

    Written the way course material writes such an environment; it exists only as the
    benchmark's baseline. Same rules, vector observation and auto-reset as TreasureHuntVecEnv;
    like it, it hands back float32 arrays, the form a policy network takes.
    """

    def __init__(self, config: TreasureHuntConfig, seed: int):
        self.config = config
        self.rng = random.Random(seed)
        self.reset()

    def reset(self) -> np.ndarray:
        size = self.config.size
        self.agents = [
            [self.rng.randrange(size), self.rng.randrange(size)]
            for _ in range(self.config.num_agents)
        ]
        free = [[r, c] for r in range(size) for c in range(size) if [r, c] not in self.agents]
        self.treasures = self.rng.sample(free, self.config.num_treasures)
        self.steps = 0
        self.total = 0.0
        return self.observe()

    def observe(self) -> np.ndarray:
        scale = self.config.size - 1
        observations = []
        for row, col in self.agents:
            best, best_distance = None, None
            for treasure in self.treasures:
                distance = abs(treasure[0] - row) + abs(treasure[1] - col)
                if best_distance is None or distance < best_distance:
                    best, best_distance = treasure, distance
            if best is None:
                observations.append([row / scale, col / scale, -1.0, -1.0])
            else:
                observations.append([row / scale, col / scale, best[0] / scale, best[1] / scale])
        return np.array(observations, dtype=np.float32)

    def step(self, actions: list[int]) -> tuple[np.ndarray, float, bool, bool, dict]:
        config = self.config
        reward = 0.0
        for agent, action in zip(self.agents, actions, strict=True):
            d_row, d_col = LOOP_MOVES[action]
            row, col = agent[0] + d_row, agent[1] + d_col
            if 0 <= row < config.size and 0 <= col < config.size:
                agent[0], agent[1] = row, col
            else:
                reward -= config.wall_penalty
        remaining = []
        for treasure in self.treasures:
            if treasure in self.agents:
                reward += config.treasure_reward
            else:
                remaining.append(treasure)
        self.treasures = remaining
        reward -= config.step_penalty
        self.steps += 1
        self.total += reward
        terminated = not self.treasures
        truncated = self.steps >= config.max_steps and not terminated
        obs = self.observe()
        info = {}
        if terminated or truncated:
            info = {"final_observation": obs, "episode_return": self.total, "length": self.steps}
            obs = self.reset()
        return obs, reward, terminated, truncated, info


@dataclass
class Measurement:
    """Agent-steps taken and the seconds they took."""

    agent_steps: int
    seconds: float

    @property
    def rate(self) -> float:
        """Returns agent-steps per second."""
        return self.agent_steps / self.seconds


def measure(step: Callable[[int], None], agent_steps_per_call: int, seconds: float) -> Measurement:
    """Returns the throughput of calling step(i), i = 0, 1, ..., for at least `seconds`."""
    for i in range(3):  # warm-up
        step(i)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10):
            step(calls)
            calls += 1
    return Measurement(calls * agent_steps_per_call, elapsed)


def bench_batch(config: TreasureHuntConfig, batch: int, seconds: float) -> tuple[float, float]:
    """Returns agent-steps/s of (vectorised, loop) at `batch` envs, random actions."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, size=(256, batch, config.num_agents))
    action_lists = actions.tolist()  # the loop version gets plain lists, as it would

    vectorised = TreasureHuntVecEnv(config, batch, seed=0)
    vectorised.reset()
    fast = measure(lambda i: vectorised.step(actions[i % 256]), batch * config.num_agents, seconds)

    loops = [LoopTreasureHunt(config, seed) for seed in range(batch)]

    def loop_step(i: int) -> None:
        for env, env_actions in zip(loops, action_lists[i % 256], strict=True):
            env.step(env_actions)

    slow = measure(loop_step, batch * config.num_agents, seconds)
    return fast.rate, slow.rate


def check_same_results(config: TreasureHuntConfig, batch: int = 64, steps: int = 300) -> int:
    """Returns the number of env-steps on which both versions agreed; raises if one differs.

    Both start from the same states and take the same random actions; an env that ends restarts
    each version from its own generator, so the loop env is then put on the vectorised one's
    new state.
    """
    vectorised = TreasureHuntVecEnv(config, batch, seed=1)
    obs = vectorised.reset()
    loops = [LoopTreasureHunt(config, seed) for seed in range(batch)]

    def sync(env: int) -> None:
        state = vectorised.state()
        loop = loops[env]
        loop.agents = state["agents"][env].tolist()
        remaining = ~state["collected"][env]
        loop.treasures = state["treasures"][env][remaining].tolist()
        loop.steps, loop.total = 0, 0.0

    for env in range(batch):
        sync(env)
        assert np.array_equal(loops[env].observe(), obs[env])
    actions = np.random.default_rng(1).integers(0, 5, size=(steps, batch, config.num_agents))
    for step_actions in actions:
        obs, reward, terminated, truncated, info = vectorised.step(step_actions)
        for env, loop in enumerate(loops):
            l_obs, l_reward, l_term, l_trunc, l_info = loop.step(step_actions[env].tolist())
            agree = np.isclose(l_reward, reward[env]) and (l_term, l_trunc) == (
                terminated[env],
                truncated[env],
            )
            if l_term or l_trunc:
                agree = agree and np.isclose(l_info["episode_return"], info["episode_return"][env])
                agree = agree and np.array_equal(
                    l_info["final_observation"], info["final_observation"][env]
                )
                sync(env)
            else:
                agree = agree and np.array_equal(l_obs, obs[env])
            if not agree:
                raise AssertionError(f"loop and vectorised treasure hunts differ at env {env}")
    return steps * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per cell")
    args = parser.parse_args()
    config = TreasureHuntConfig()  # the loop reference computes the vector observation
    print(
        f"treasure hunt {config.size}x{config.size}, {config.num_agents} agents, "
        f"{config.num_treasures} treasures, max_steps {config.max_steps}, "
        f"{config.observation} observation, random actions"
    )
    header = (
        f"{'batch':>6} {'vectorised agent-steps/s':>26} {'loop agent-steps/s':>20} {'ratio':>8}"
    )
    print(f"same results on {check_same_results(config):,} env-steps (loop vs vectorised)")
    print(header)
    print("-" * len(header))
    for batch in args.batches:
        fast, slow = bench_batch(config, batch, args.seconds)
        print(f"{batch:>6} {fast:>26,.0f} {slow:>20,.0f} {fast / slow:>7.1f}x")


if __name__ == "__main__":
    main()
