"""The `rl:` section of params.yaml, typed: environment, scenarios, train, evaluate."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from trainyard.config import (
    EvaluateBase,
    FamilySection,
    Flag,
    Number,
    Section,
    Text,
    TextList,
    TrainBase,
    WholeNumber,
    WholeNumberList,
    outside,
    too_small,
)

SECTION = "rl"
TREASURE_HUNT = "treasure_hunt"
MODEL_KINDS = ("dqn", "a2c")  # the agents train.models can name
# Evaluation metrics on the scenario set -> higher is better.
METRICS = {
    "mean_return": True,
    "success_rate": True,
    "mean_steps_to_clear": False,
    "mean_length": False,
}


class EnvConfig(Section):
    """Which environment, and the treasure hunt's rules (ignored for gymnasium ids)."""

    name: Text = TREASURE_HUNT  # "treasure_hunt", or a discrete-action gymnasium id: CartPole-v1
    size: WholeNumber = 8  # treasure hunt: the grid is size x size cells
    num_agents: WholeNumber = 2  # treasure hunt: agents of the one team
    num_treasures: WholeNumber = 3  # treasure hunt: treasures per episode
    max_steps: WholeNumber = 100  # treasure hunt: steps before an episode is truncated
    observation: Text = "vector"  # treasure hunt: "vector" (own cell + nearest treasure) | "grid"
    view_radius: WholeNumber = 2  # treasure hunt, grid observation: (2r+1)^2 egocentric cells
    treasure_reward: Number = 10.0  # team reward per treasure collected
    step_penalty: Number = 0.1  # team cost per step
    wall_penalty: Number = 1.0  # team cost per agent bumping into a wall

    @property
    def label(self) -> str:
        """Returns the environment's short name: treasure-hunt, cartpole-v1, ..."""
        return self.name.replace("_", "-").lower()

    @property
    def is_treasure_hunt(self) -> bool:
        """Returns whether this is our own grid world (else a gymnasium id)."""
        return self.name == TREASURE_HUNT

    def treasure_hunt(self) -> Any:
        """Returns the TreasureHuntConfig these params describe."""
        from trainyard.tasks.rl.treasure_hunt import TreasureHuntConfig

        return TreasureHuntConfig(
            size=self.size,
            num_agents=self.num_agents,
            num_treasures=self.num_treasures,
            max_steps=self.max_steps,
            observation=self.observation,
            view_radius=self.view_radius,
            treasure_reward=self.treasure_reward,
            step_penalty=self.step_penalty,
            wall_penalty=self.wall_penalty,
        )


class ScenarioConfig(Section):
    """The fixed evaluation scenario set every agent and baseline is scored on."""

    episodes: WholeNumber = 200  # scenarios (initial states or reset seeds), one episode each
    seed: WholeNumber = 20240  # draws the scenarios; training and validation use other seeds


class DQNSection(Section):
    """DQN agent (Double DQN; optional dueling head and prioritised replay)."""

    hidden_sizes: WholeNumberList = Field(default_factory=lambda: [64, 64])  # MLP widths
    lr: Number = 2.3e-3  # Adam step size
    gamma: Number = 0.99  # discount
    batch_size: WholeNumber = 64  # transitions per gradient step
    buffer_size: WholeNumber = 50_000  # replay capacity in transitions
    learning_starts: WholeNumber = 1_000  # random env steps before learning
    train_freq: WholeNumber = 1  # vectorised env steps per gradient step
    target_update_interval: WholeNumber = 100  # gradient steps between target syncs
    exploration_fraction: Number = 0.3  # share of the step budget epsilon decays over
    exploration_initial_eps: Number = 1.0  # epsilon at the start
    exploration_final_eps: Number = 0.05  # epsilon after the decay
    double: Flag = True  # Double DQN targets
    dueling: Flag = False  # dueling value/advantage head
    prioritized: Flag = False  # proportional prioritised replay
    per_alpha: Number = 0.6  # prioritisation exponent
    per_beta: Number = 0.4  # importance-sampling exponent (annealed to 1)
    warm_start_episodes: WholeNumber = 0  # greedy-baseline episodes put in the buffer first
    gradient_clip: Number = 10.0  # max gradient norm of DQN updates


class A2CSection(Section):
    """A2C agent (GAE; shared actor; optional centralised critic)."""

    hidden_sizes: WholeNumberList = Field(default_factory=lambda: [64, 64])  # MLP widths
    lr: Number = 1e-3  # optimiser step size
    n_steps: WholeNumber = 8  # env steps per rollout (per env)
    gamma: Number = 0.99  # discount
    gae_lambda: Number = 0.95  # GAE lambda
    ent_coef: Number = 0.01  # entropy bonus weight
    vf_coef: Number = 0.5  # value loss weight
    centralized_critic: Flag = False  # the critic sees every agent's observation
    normalize_advantage: Flag = True  # standardise advantages per batch
    gradient_clip: Number = 0.5  # max gradient norm of A2C updates


class TrainConfig(TrainBase):
    """What to train and for how long (an epoch is steps_per_epoch training steps)."""

    models: TextList = Field(default_factory=lambda: list(MODEL_KINDS))
    max_epochs: WholeNumber = 10  # upper bound; early stopping on val/return may end sooner
    patience: WholeNumber = 4  # epochs without a better val/return before stopping
    num_envs: WholeNumber = 16  # environments stepped at once while training
    steps_per_epoch: WholeNumber = 400  # training steps (gradient steps) per epoch
    validation_episodes: WholeNumber = 32  # greedy episodes per validation (not the scenarios)
    dqn: DQNSection = Field(default_factory=DQNSection)
    a2c: A2CSection = Field(default_factory=A2CSection)


class EvaluateConfig(EvaluateBase):
    """How agents and baselines are scored on the scenario set."""

    metric: Text = "mean_return"  # the gate metric, see METRICS (mean_return: higher wins)
    gif_episodes: WholeNumber = 1  # scenarios rendered as a GIF per agent (treasure hunt)


class Params(FamilySection):
    """The whole `rl:` section."""

    env: EnvConfig = Field(default_factory=EnvConfig)
    scenarios: ScenarioConfig = Field(default_factory=ScenarioConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    section_name = SECTION

    def problems(self) -> list[str]:
        """Returns what is wrong with values whatever the environment (empty when nothing is)."""
        params = self
        problems = params.train.common_problems()
        env, train = params.env, params.train
        if env.is_treasure_hunt:
            problems += too_small(
                env, "env", 1, "size", "num_agents", "num_treasures", "max_steps", "view_radius"
            )
            if env.num_treasures > env.size**2 - env.num_agents:
                problems.append(
                    f"env.num_treasures ({env.num_treasures}) does not fit beside "
                    f"{env.num_agents} agents on a {env.size}x{env.size} grid"
                )
            if env.observation not in ("vector", "grid"):
                problems.append("env.observation must be 'vector' or 'grid'")
        problems += too_small(params.scenarios, "scenarios", 1, "episodes")
        problems += too_small(params.scenarios, "scenarios", 0, "seed")
        problems += too_small(
            train, "train", 1, "num_envs", "steps_per_epoch", "validation_episodes"
        )
        for agent in ("dqn", "a2c"):
            section = getattr(train, agent)
            for name in ("lr", "gradient_clip"):
                if getattr(section, name) <= 0:
                    problems.append(
                        f"train.{agent}.{name} must be above 0, got {getattr(section, name)}"
                    )
            if not 0 < section.gamma <= 1:
                problems.append(f"train.{agent}.gamma must be in (0, 1], got {section.gamma}")
            if not section.hidden_sizes or min(section.hidden_sizes) < 1:
                problems.append(f"train.{agent}.hidden_sizes must list positive widths")
        dqn = train.dqn
        if dqn.batch_size < 1 or dqn.buffer_size < dqn.batch_size:
            problems.append(
                f"train.dqn.batch_size must be at least 1 and at most buffer_size "
                f"({dqn.buffer_size}), got {dqn.batch_size}"
            )
        for name in ("exploration_initial_eps", "exploration_final_eps", "exploration_fraction"):
            if not 0 <= getattr(dqn, name) <= 1:
                problems.append(
                    f"train.dqn.{name} must be between 0 and 1, got {getattr(dqn, name)}"
                )
        problems += too_small(dqn, "train.dqn", 1, "train_freq", "target_update_interval")
        problems += too_small(
            dqn, "train.dqn", 0, "learning_starts", "warm_start_episodes", "per_alpha"
        )
        problems += outside(dqn, "train.dqn", "per_beta", 0, 1)
        a2c = train.a2c
        problems += too_small(a2c, "train.a2c", 1, "n_steps")
        problems += outside(a2c, "train.a2c", "gae_lambda", 0, 1)
        problems += too_small(a2c, "train.a2c", 0, "ent_coef", "vf_coef")
        if params.evaluate.metric not in METRICS:
            problems.append(f"evaluate.metric must be one of {', '.join(METRICS)}")
        problems += too_small(params.evaluate, "evaluate", 0, "gif_episodes")
        return problems


load_params = Params.load
params_from_dict = Params.from_dict
