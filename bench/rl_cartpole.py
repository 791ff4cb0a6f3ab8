"""Benchmark: our DQN and A2C against stable-baselines3 on CartPole-v1, side by side.

For each seed and algorithm, both implementations train in this process on this machine until
the mean return of 20 deterministic evaluation episodes first reaches 475. Evaluation runs every
K env steps for both (same evaluator, same eval env seeds) and its time is EXCLUDED from the
wall-clock for both: the clock runs from building the agent to the end of the training step at
which the solving evaluation happened. SB3 uses rl-baselines3-zoo's CartPole-v1 hyperparameters.

    python bench/rl_cartpole.py                # 5 seeds, both algorithms
    python bench/rl_cartpole.py --seeds 2 --algos a2c

stable-baselines3 is a bench-only dependency: product code and tests never import it.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import lightning as L
import numpy as np
import torch

from trainyard.models.rl.a2c import A2C, A2CConfig
from trainyard.models.rl.dqn import DQN, DQNConfig
from trainyard.models.rl.networks import evaluate_episodes
from trainyard.tasks.rl.gym_envs import GymVecEnv

ENV_ID = "CartPole-v1"
SOLVED = 475.0
EVAL_EPISODES = 20

# rl-baselines3-zoo hyperparams/dqn.yml and a2c.yml, CartPole-v1 (commit 22e3ff2, 2026-04).
SB3_DQN = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1_000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)
SB3_DQN_ENVS, SB3_DQN_TIMESTEPS = 1, 50_000
SB3_A2C = dict(ent_coef=0.0)
SB3_A2C_ENVS = 8

# Ours: what this benchmark found fast on CartPole (see the module docstring of each agent).
OURS_DQN = DQNConfig(hidden_sizes=(64, 64), total_env_steps=50_000, steps_per_epoch=10_000)
OURS_DQN_ENVS = 4
OURS_A2C = A2CConfig(steps_per_epoch=10_000)
OURS_A2C_ENVS = 8


@dataclass
class Result:
    """One training run: env steps and training seconds until solved (inf if never)."""

    impl: str
    algo: str
    seed: int
    steps: float
    seconds: float
    final_return: float


class SolveClock:
    """Evaluates every `every` env steps, pausing the clock; says when the agent is solved."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray], every: int, seed: int) -> None:
        self.act = act
        self.every = every
        self.next_eval = every
        self.eval_env = GymVecEnv(ENV_ID, 10, seed + 10_000)
        self.eval_seed = seed + 20_000
        self.start = time.perf_counter()
        self.eval_seconds = 0.0
        self.solved_at: tuple[float, float] | None = None
        self.last_return = float("nan")

    def check(self, env_steps: int) -> bool:
        """Returns True once the evaluation at or after `env_steps` reaches SOLVED."""
        if env_steps < self.next_eval:
            return False
        self.next_eval += self.every
        began = time.perf_counter()
        train_seconds = began - self.start - self.eval_seconds
        self.last_return = float(
            evaluate_episodes(self.act, self.eval_env, EVAL_EPISODES, seed=self.eval_seed).mean()
        )
        self.eval_seconds += time.perf_counter() - began
        if self.last_return >= SOLVED:
            self.solved_at = (env_steps, train_seconds)
            return True
        return False

    def result(self, impl: str, algo: str, seed: int) -> Result:
        steps, seconds = self.solved_at or (float("inf"), float("inf"))
        return Result(impl, algo, seed, steps, seconds, self.last_return)


def run_ours(algo: str, seed: int, every: int, max_steps: int) -> Result:
    """Returns our agent's steps and seconds to solve CartPole."""
    L.seed_everything(seed, verbose=False)
    clock = SolveClock(lambda obs: obs, every, seed)  # act is set once the agent exists
    if algo == "dqn":
        env = GymVecEnv(ENV_ID, OURS_DQN_ENVS, seed)
        model = DQN.from_env(env, None, replace(OURS_DQN, seed=seed))
    else:
        env = GymVecEnv(ENV_ID, OURS_A2C_ENVS, seed)
        model = A2C.from_env(env, None, replace(OURS_A2C, seed=seed))
    clock.act = model.act

    class Stop(L.Callback):
        def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
            if clock.check(model.env_steps) or model.env_steps >= max_steps:
                trainer.should_stop = True

    trainer = L.Trainer(
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Stop()],
    )
    trainer.fit(model)
    return clock.result("ours", algo, seed)


def run_sb3(algo: str, seed: int, every: int, max_steps: int) -> Result:
    """Returns stable-baselines3's steps and seconds to solve CartPole (zoo hyperparameters)."""
    from stable_baselines3 import A2C as SB3A2C
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    clock = SolveClock(lambda obs: obs, every, seed)
    if algo == "dqn":
        env = make_vec_env(ENV_ID, n_envs=SB3_DQN_ENVS, seed=seed)
        model = SB3DQN("MlpPolicy", env, seed=seed, device="cpu", **SB3_DQN)
    else:
        env = make_vec_env(ENV_ID, n_envs=SB3_A2C_ENVS, seed=seed)
        model = SB3A2C("MlpPolicy", env, seed=seed, device="cpu", **SB3_A2C)
    clock.act = lambda obs: model.predict(obs[:, 0, :], deterministic=True)[0][:, None]

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return not clock.check(self.num_timesteps)

    model.learn(total_timesteps=max_steps, callback=Stop())
    return clock.result("sb3", algo, seed)


def summarise(results: list[Result], algos: list[str]) -> None:
    """Prints every run, then per algorithm the medians and ours/SB3 ratios."""
    print(f"\n{'impl':5} {'algo':4} {'seed':>4} {'steps':>8} {'seconds':>8} {'last eval':>9}")
    for r in results:
        print(
            f"{r.impl:5} {r.algo:4} {r.seed:>4} {r.steps:>8.0f} {r.seconds:>8.1f} "
            f"{r.final_return:>9.1f}"
        )
    print(f"\n{'algo':4} {'impl':5} {'median steps':>12} {'median s':>9} {'solved':>6}")
    for algo in algos:
        medians = {}
        for impl in ("ours", "sb3"):
            runs = [r for r in results if r.algo == algo and r.impl == impl]
            steps = float(np.median([r.steps for r in runs]))
            seconds = float(np.median([r.seconds for r in runs]))
            solved = sum(np.isfinite(r.steps) for r in runs)
            medians[impl] = (steps, seconds)
            print(f"{algo:4} {impl:5} {steps:>12.0f} {seconds:>9.1f} {solved:>3}/{len(runs)}")
        (our_steps, our_s), (sb3_steps, sb3_s) = medians["ours"], medians["sb3"]
        print(
            f"{algo:4} ratio ours/sb3: steps {our_steps / sb3_steps:.2f}, time {our_s / sb3_s:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per implementation")
    parser.add_argument("--algos", nargs="+", default=["dqn", "a2c"], choices=["dqn", "a2c"])
    parser.add_argument("--dqn-eval-every", type=int, default=2_500, help="env steps (K)")
    parser.add_argument("--a2c-eval-every", type=int, default=1_000, help="env steps (K)")
    parser.add_argument("--dqn-max-steps", type=int, default=100_000)
    parser.add_argument("--a2c-max-steps", type=int, default=200_000)
    args = parser.parse_args()

    # Small networks: one thread avoids thread hand-off costs that exceed the matmul time.
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    results = []
    for algo in args.algos:
        every = args.dqn_eval_every if algo == "dqn" else args.a2c_eval_every
        max_steps = args.dqn_max_steps if algo == "dqn" else args.a2c_max_steps
        for seed in range(args.seeds):
            for run in (run_ours, run_sb3):
                result = run(algo, seed, every, max_steps)
                print(result, flush=True)
                results.append(result)
    summarise(results, args.algos)


if __name__ == "__main__":
    main()
