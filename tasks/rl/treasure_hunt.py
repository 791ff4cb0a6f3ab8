"""The cooperative multi-agent treasure hunt, B environments stepped at once with array operations.

Rules (every number is a `TreasureHuntConfig` field): `num_agents` agents and `num_treasures`
treasures on a `size` x `size` grid. Every step, simultaneously, each agent moves (`Action`); an
agent whose move would leave the grid stays and the team pays `wall_penalty` per bumping agent.
Then every remaining treasure under at least one agent is collected for `treasure_reward` (once,
however many agents stand on it), and the team pays `step_penalty` once. Agents may share a cell.
The reward is one team reward per env per step. An episode terminates when every treasure is
collected and is truncated (only if it did not terminate) after `max_steps` steps.

Positions are (row, col) with row 0 at the top. Public arrays carry the env batch first.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import numpy as np
import pandas as pd


class Action(IntEnum):
    """The five moves of one agent."""

    UP = 0  # row - 1
    DOWN = 1  # row + 1
    LEFT = 2  # col - 1
    RIGHT = 3  # col + 1
    STAY = 4


# (d_row, d_col) of every `Action`, indexed by its value.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], dtype=np.int64)


@dataclass
class TreasureHuntConfig:
    """Every knob of the treasure hunt."""

    size: int = 8  # the grid is size x size cells
    num_agents: int = 2  # agents of the one team
    num_treasures: int = 3  # treasures placed at the start of every episode
    max_steps: int = 100  # an episode is truncated after this many steps
    observation: Literal["vector", "grid"] = "vector"  # per-agent observation, see `observe`
    view_radius: int = 2  # grid observation: the egocentric window is (2r+1) x (2r+1) cells
    treasure_reward: float = 10.0  # team reward per treasure collected
    step_penalty: float = 0.1  # team cost of every step (once per step, not per agent)
    wall_penalty: float = 1.0  # team cost per agent whose move would have left the grid

    def __post_init__(self) -> None:
        problems = []
        if self.size < 2:
            problems.append(f"size must be at least 2, got {self.size}")
        if self.num_agents < 1:
            problems.append(f"num_agents must be at least 1, got {self.num_agents}")
        if self.num_treasures < 1:
            problems.append(f"num_treasures must be at least 1, got {self.num_treasures}")
        # Treasures start on distinct cells that no agent occupies, even if all agents differ.
        if self.num_treasures > self.size**2 - self.num_agents:
            problems.append(
                f"num_treasures={self.num_treasures} does not fit beside {self.num_agents} "
                f"agents on a {self.size}x{self.size} grid"
            )
        if self.max_steps < 1:
            problems.append(f"max_steps must be at least 1, got {self.max_steps}")
        if self.observation not in ("vector", "grid"):
            problems.append(f"observation must be 'vector' or 'grid', got {self.observation!r}")
        if self.view_radius < 1:
            problems.append(f"view_radius must be at least 1, got {self.view_radius}")
        if problems:
            raise ValueError("invalid TreasureHuntConfig: " + "; ".join(problems))

    @property
    def observation_size(self) -> int:
        """Returns D, the length of one agent's observation vector."""
        if self.observation == "vector":
            return 4
        return 3 * (2 * self.view_radius + 1) ** 2


@dataclass
class InitialStates:
    """A batch of initial states, e.g. a fixed evaluation scenario set."""

    agents: np.ndarray  # int [N, A, 2] (row, col) of every agent
    treasures: np.ndarray  # int [N, T, 2] (row, col) of every treasure

    def __post_init__(self) -> None:
        self.agents = np.asarray(self.agents, dtype=np.int64)
        self.treasures = np.asarray(self.treasures, dtype=np.int64)
        if self.agents.ndim != 3 or self.agents.shape[2] != 2:
            raise ValueError(f"agents must have shape [N, A, 2], got {self.agents.shape}")
        if self.treasures.ndim != 3 or self.treasures.shape[2] != 2:
            raise ValueError(f"treasures must have shape [N, T, 2], got {self.treasures.shape}")
        if len(self.agents) != len(self.treasures):
            raise ValueError(
                f"agents hold {len(self.agents)} scenarios but treasures {len(self.treasures)}"
            )

    def __len__(self) -> int:
        return len(self.agents)

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> InitialStates:
        """Returns the scenarios at `index` (positions, not labels)."""
        return InitialStates(self.agents[index], self.treasures[index])

    def to_frame(self) -> pd.DataFrame:
        """Returns one row per scenario: agent0_row, agent0_col, ..., treasure0_row, ..."""
        columns: dict[str, np.ndarray] = {}
        for name, positions in (("agent", self.agents), ("treasure", self.treasures)):
            for i in range(positions.shape[1]):
                columns[f"{name}{i}_row"] = positions[:, i, 0]
                columns[f"{name}{i}_col"] = positions[:, i, 1]
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, config: TreasureHuntConfig) -> InitialStates:
        """Returns the scenarios in `frame` (as written by `to_frame`), checked against `config`.

        Raises ValueError naming the first bad row (its index label) when a position is missing,
        not an integer, off the grid, or when treasures share a cell or start under an agent.
        """
        names = [f"agent{i}" for i in range(config.num_agents)]
        names += [f"treasure{j}" for j in range(config.num_treasures)]
        columns = [f"{name}_{axis}" for name in names for axis in ("row", "col")]
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise ValueError(
                f"scenario frame lacks columns {missing}; a config with {config.num_agents} "
                f"agents and {config.num_treasures} treasures needs {columns}"
            )
        values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        not_integer = ~np.isfinite(values) | (values != np.round(values))
        if not_integer.any():
            row, column = np.argwhere(not_integer)[0]
            raise ValueError(
                f"scenario row {frame.index[row]!r}: {columns[column]} is "
                f"{frame[columns[column]].iloc[row]!r}, expected a whole number"
            )
        positions = values.astype(np.int64).reshape(len(frame), -1, 2)
        states = cls(positions[:, : config.num_agents], positions[:, config.num_agents :])
        states.check(config, labels=list(frame.index), what="scenario row")
        return states

    def check(
        self,
        config: TreasureHuntConfig,
        labels: Sequence[Hashable] | None = None,
        what: str = "scenario",
    ) -> None:
        """Returns None if every scenario is a legal initial state of `config`, else raises.

        The ValueError names the first bad scenario as `{what} {label}` (its position by default).
        """
        expected = (config.num_agents, config.num_treasures)
        if (self.agents.shape[1], self.treasures.shape[1]) != expected:
            raise ValueError(
                f"scenarios hold {self.agents.shape[1]} agents and {self.treasures.shape[1]} "
                f"treasures, the config expects {expected[0]} and {expected[1]}"
            )
        labels = list(range(len(self))) if labels is None else labels
        off_agents = ((self.agents < 0) | (self.agents >= config.size)).any(axis=(1, 2))
        off_treasures = ((self.treasures < 0) | (self.treasures >= config.size)).any(axis=(1, 2))
        tcells = _cell_index(self.treasures, config.size)
        acells = _cell_index(self.agents, config.size)
        same = tcells[:, :, None] == tcells[:, None, :]
        shared = (same & ~np.eye(config.num_treasures, dtype=bool)).any(axis=(1, 2))
        covered = (tcells[:, :, None] == acells[:, None, :]).any(axis=(1, 2))
        for bad, problem in (
            (off_agents, f"an agent lies off the {config.size}x{config.size} grid"),
            (off_treasures, f"a treasure lies off the {config.size}x{config.size} grid"),
            (shared, "two treasures share a cell"),
            (covered, "a treasure starts under an agent"),
        ):
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{what} {labels[row]!r}: {problem} (agents {self.agents[row].tolist()}, "
                    f"treasures {self.treasures[row].tolist()})"
                )


def _cell_index(positions: np.ndarray, size: int) -> np.ndarray:
    """Returns the flat cell index row * size + col of every (row, col) in `positions`."""
    return positions[..., 0] * size + positions[..., 1]


def sample_initial_states(
    config: TreasureHuntConfig, n: int, seed: int | np.random.Generator
) -> InitialStates:
    """Returns `n` initial states drawn from `seed` (an int or a Generator, which advances).

    Agents are uniform on the grid (they may coincide); treasures take distinct cells no agent
    occupies, uniformly among those.
    """
    rng = np.random.default_rng(seed)
    size, cells, agents = config.size, config.size**2, config.num_agents
    # One draw serves both (fewer Generator calls, which dominate for small n): the first 2A
    # numbers place the agents, the rest are sort keys for a uniform random order of the cells.
    draws = rng.random((n, 2 * agents + cells))
    positions = (draws[:, : 2 * agents] * size).astype(np.int64).reshape(n, agents, 2)
    keys = draws[:, 2 * agents :]
    keys[np.arange(n)[:, None], _cell_index(positions, size)] = np.inf  # occupied cells sort last
    chosen = np.argsort(keys, axis=1)[:, : config.num_treasures]
    return InitialStates(positions, np.stack(np.divmod(chosen, size), axis=-1))


def nearest_treasure(
    agents: np.ndarray, treasures: np.ndarray, collected: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Returns each agent's nearest remaining treasure [B, A, 2] and whether one remains [B, A].

    Nearest by Manhattan distance, ties to the lowest treasure index; (-1, -1) where none remains.
    """
    distance = np.abs(agents[:, :, None, :] - treasures[:, None, :, :]).sum(axis=-1)
    # Collected treasures sit beyond any real distance, so argmin skips them.
    distance += collected[:, None, :] * (4 * np.iinfo(np.int32).max)
    nearest = distance.argmin(axis=-1)  # the first minimum: the lowest index wins ties
    target = np.take_along_axis(treasures, nearest[:, :, None], axis=1)
    found = np.broadcast_to(~collected.all(axis=1)[:, None], nearest.shape)
    return np.where(found[:, :, None], target, -1), found


def vector_observation(
    agents: np.ndarray, treasures: np.ndarray, collected: np.ndarray, size: int
) -> np.ndarray:
    """Returns float32 [B, A, 4]: own row, col and nearest remaining treasure's row, col.

    Divided by size - 1 into [0, 1]; the treasure columns are -1 where none remains.
    """
    target, found = nearest_treasure(agents, treasures, collected)
    obs = np.concatenate([agents, target], axis=-1).astype(np.float32) / np.float32(size - 1)
    obs[:, :, 2:] = np.where(found[:, :, None], obs[:, :, 2:], np.float32(-1.0))
    return obs


def grid_observation(
    agents: np.ndarray, treasures: np.ndarray, collected: np.ndarray, size: int, radius: int
) -> np.ndarray:
    """Returns float32 [B, A, 3 * (2r+1)^2]: each agent's egocentric window, flattened.

    Channels (outermost): 1 where the cell lies outside the grid, 1 where a remaining treasure
    lies, 1 where at least one other agent stands. The agent itself is at the window's centre.
    """
    batch = len(agents)
    padded = size + 2 * radius
    board = np.zeros((batch, 3, padded * padded), dtype=np.float32)
    inside = np.zeros((padded, padded), dtype=bool)
    inside[radius : radius + size, radius : radius + size] = True
    board[:, 0] = ~inside.ravel()
    envs = np.arange(batch)[:, None]
    board[envs, 1, _cell_index(treasures + radius, padded)] = ~collected
    agent_cells = (envs * padded * padded + _cell_index(agents + radius, padded)).ravel()
    board[:, 2] = np.bincount(agent_cells, minlength=batch * padded * padded).reshape(batch, -1)
    board = board.reshape(batch, 3, padded, padded)
    width = 2 * radius + 1
    windows = np.lib.stride_tricks.sliding_window_view(board, (width, width), axis=(2, 3))
    # The window of the cell at padded (r, c) starts at that cell: (row, col) of an agent is the
    # start of its window centred on (row + radius, col + radius).
    obs = windows[envs, :, agents[:, :, 0], agents[:, :, 1]]  # [B, A, 3, W, W]
    obs[:, :, 2, radius, radius] -= 1.0  # the agent is not its own "other agent"
    obs[:, :, 2] = obs[:, :, 2] > 0
    return obs.reshape(batch, agents.shape[1], -1)


def observe(
    config: TreasureHuntConfig, agents: np.ndarray, treasures: np.ndarray, collected: np.ndarray
) -> np.ndarray:
    """Returns the float32 [B, A, D] observations `config.observation` asks for."""
    if config.observation == "vector":
        return vector_observation(agents, treasures, collected, config.size)
    return grid_observation(agents, treasures, collected, config.size, config.view_radius)


# Colours of the rendered frame (RGB).
_BACKGROUND = np.array([[236, 236, 228], [222, 222, 212]], dtype=np.uint8)  # checkerboard
_GRID_LINE = np.array([180, 180, 170], dtype=np.uint8)
_GOLD = np.array([232, 181, 18], dtype=np.uint8)
_AGENT_COLOURS = np.array(
    [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14], [23, 190, 207]],
    dtype=np.uint8,
)


def render_frame(
    agents: np.ndarray, treasures: np.ndarray, collected: np.ndarray, size: int, cell: int = 32
) -> np.ndarray:
    """Returns an RGB uint8 [size*cell, size*cell, 3] picture of one env.

    Remaining treasures are gold squares, agents discs in distinct colours; an agent on a cell
    an earlier agent holds gets a smaller disc, so agents sharing a cell show as rings.
    """
    rows, cols = np.indices((size, size))
    frame = _BACKGROUND[(rows + cols) % 2].repeat(cell, axis=0).repeat(cell, axis=1)
    frame[::cell, :] = _GRID_LINE
    frame[:, ::cell] = _GRID_LINE
    inset = cell // 4
    for (row, col), taken in zip(treasures, collected, strict=True):
        if not taken:
            top, left = row * cell + inset, col * cell + inset
            frame[top : top + cell - 2 * inset, left : left + cell - 2 * inset] = _GOLD
    y, x = np.indices((cell, cell)) - (cell - 1) / 2
    for k, (row, col) in enumerate(agents):
        below = int((agents[:k] == (row, col)).all(axis=1).sum())  # earlier agents on this cell
        radius = max(cell / 2 - 3 - 4 * below, 3)
        disc = x**2 + y**2 <= radius**2
        patch = frame[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
        patch[disc] = _AGENT_COLOURS[k % len(_AGENT_COLOURS)]
    return frame


# Initial states drawn from the Generator at once for auto-resets: a draw's cost is mostly per
# call, and a batch of 1024 envs restarts a dozen or so every step.
_POOL_SIZE = 256

# Grids up to this size observe through lookup tables of about 2 * size^4 entries (3 MB at 16);
# larger grids use `vector_observation` directly.
_TABLE_MAX_SIZE = 16


@functools.lru_cache(maxsize=8)
def _move_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (next cell, bumped) for every (cell, action), flat at index cell * 5 + action."""
    rows, cols = np.divmod(np.arange(size * size), size)
    to_rows = rows[:, None] + MOVES[:, 0]
    to_cols = cols[:, None] + MOVES[:, 1]
    inside = (to_rows >= 0) & (to_rows < size) & (to_cols >= 0) & (to_cols < size)
    next_cell = np.where(inside, to_rows * size + to_cols, np.arange(size * size)[:, None])
    return next_cell.ravel().astype(np.intp), ~inside.ravel()


@functools.lru_cache(maxsize=8)
def _observation_tables(size: int, num_treasures: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Returns (cell bits b, nearest key, observation) tables for small grids' vector obs.

    Cells are 0..S-1 (S = size^2) plus S, "no treasure"; a pair of cells (a, c) is the index
    a << b | c. key[a << b | c] is the Manhattan distance from a to c shifted above the bits of
    a treasure index t and a cell, so that the minimum over treasures of key | t << b | c is the
    nearest one (the lowest t on ties) with its cell in the low b bits. observation[a << b | c]
    is the 4 floats of an agent on cell a whose nearest treasure is on c.
    """
    cells = size * size
    bits = cells.bit_length()  # enough for 0..S
    shift = bits + (num_treasures - 1).bit_length()
    rows, cols = np.divmod(np.arange(cells + 1), size)
    rows[cells] = cols[cells] = 4 * size  # "no treasure" lies beyond every real distance
    key = np.zeros((cells, 1 << bits), dtype=np.intp)
    distance = np.abs(rows[:cells, None] - rows) + np.abs(cols[:cells, None] - cols)
    key[:, : cells + 1] = distance << shift
    coords = np.stack([rows, cols], axis=-1).astype(np.float32) / np.float32(size - 1)
    coords[cells] = -1.0
    observation = np.zeros((cells, 1 << bits, 4), dtype=np.float32)
    observation[:, :, :2] = coords[:cells, None, :]
    observation[:, : cells + 1, 2:] = coords[None, :, :]
    return bits, key.ravel(), observation.reshape(-1, 4)


class TreasureHuntVecEnv:
    """B environments stepped at once with array operations (no per-env Python loop).

    With `autoreset` (the default) envs that end are reset inside `step`: the returned obs is the
    new episode's first and `info["final_observation"]` the ended one's last. New episodes draw
    from this object's own Generator (seeded by `seed`), so the same seed and the same actions
    give the same trajectories. Without `autoreset` ended envs keep their last state until
    `reset`, and stepping one raises (single-env views use this to render the final state).
    """

    num_actions: int = len(Action)

    def __init__(
        self,
        config: TreasureHuntConfig,
        num_envs: int,
        seed: int | None = None,
        autoreset: bool = True,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.config = config
        self.num_envs = num_envs
        self.num_agents = config.num_agents
        self.observation_size = config.observation_size
        self.autoreset = autoreset
        self._rng = np.random.default_rng(seed)
        self._pool: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see `_draw`
        self._pool_next = 0
        cells = config.size**2
        self._no_treasure = cells  # the cell index of collected treasures
        self._next_cell, bumped = _move_table(config.size)
        self._wall_cost = bumped * config.wall_penalty
        self._fast_observation = config.observation == "vector" and config.size <= _TABLE_MAX_SIZE
        if self._fast_observation:
            self._cell_bits, self._nearest_key, self._observation = _observation_tables(
                config.size, config.num_treasures
            )
            self._tie_break = (np.arange(config.num_treasures) << self._cell_bits)[:, None]
        # State, agent- and treasure-major so that sums over agents and treasures run over the
        # leading axis (numpy is several times slower reducing a short trailing axis).
        self._agent_cells = np.zeros((config.num_agents, num_envs), dtype=np.intp)  # [A, B]
        self._live = np.full((config.num_treasures, num_envs), cells, dtype=np.intp)  # [T, B]
        self._treasures = np.zeros((num_envs, config.num_treasures, 2), dtype=np.int64)
        self._remaining = np.zeros(num_envs, dtype=np.int64)
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._ended = np.zeros(num_envs, dtype=bool)
        self._started = False  # stepping before the first reset is an error

    def reset(
        self,
        seed: int | None = None,
        states: InitialStates | None = None,
        seeds: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Returns float32 [B, A, D] first observations of new episodes in every env.

        `seed` reseeds this object's Generator first. `states` (len == num_envs) starts env i
        from exactly states[i]; `seeds` starts env i from `sample_initial_states(config, 1,
        seeds[i])`, so a scenario set can also be a list of seeds. Otherwise states are drawn.
        """
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._pool = None
        if states is not None and seeds is not None:
            raise ValueError("pass states or seeds to reset, not both")
        if seeds is not None:
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
            drawn = [sample_initial_states(self.config, 1, int(s)) for s in seeds]
            states = InitialStates(
                np.concatenate([d.agents for d in drawn]),
                np.concatenate([d.treasures for d in drawn]),
            )
        elif states is not None:
            if len(states) != self.num_envs:
                raise ValueError(
                    f"reset got {len(states)} initial states for {self.num_envs} envs; pass "
                    "exactly one per env (pad a short scenario set and ignore the extra envs)"
                )
            states.check(self.config)
        self._start(
            np.arange(self.num_envs),
            self._draw(self.num_envs) if states is None else self._internal(states),
        )
        self._started = True
        return self._observe()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Returns obs [B,A,D] float32, reward [B] float32, terminated [B], truncated [B], info.

        `actions` is int [B, A] of `Action` values. info: "final_observation" [B,A,D] (the last
        obs of episodes that ended this step, else equal to obs), "episode_return" [B] float32
        and "episode_length" [B] int of those episodes (NaN / 0 elsewhere), and "success" [B]
        bool (ended with every treasure collected).
        """
        config = self.config
        move = self._agent_cells * self.num_actions + self._check_actions(actions).T  # [A, B]
        self._agent_cells = self._next_cell.take(move)
        wall_cost = self._wall_cost.take(move).sum(axis=0)
        # A treasure is found when any agent stands on it; collected ones hold no real cell.
        found = (self._live[:, None, :] == self._agent_cells[None, :, :]).any(axis=1)  # [T, B]
        count = found.sum(axis=0)
        np.putmask(self._live, found, self._no_treasure)
        reward = config.treasure_reward * count - wall_cost - config.step_penalty
        self._returns += reward
        self._steps += 1
        self._remaining -= count
        terminated = self._remaining == 0
        truncated = (self._steps >= config.max_steps) & ~terminated
        ended = terminated | truncated
        obs = self._observe()
        info: dict[str, Any] = {
            "final_observation": obs.copy(),
            "episode_return": np.where(ended, self._returns, np.nan).astype(np.float32),
            "episode_length": np.where(ended, self._steps, 0),
            "success": terminated.copy(),
        }
        self._ended[:] = ended
        if self.autoreset and ended.any():
            restart = np.flatnonzero(ended)
            self._start(restart, self._draw(len(restart)))
            obs[restart] = self._observe(restart)
        return obs, reward.astype(np.float32), terminated, truncated, info

    def state(self) -> dict[str, np.ndarray]:
        """Returns copies of agents [B,A,2], treasures [B,T,2], collected [B,T] and steps [B]."""
        return {
            "agents": self._positions(self._agent_cells),
            "treasures": self._treasures.copy(),
            "collected": (self._live == self._no_treasure).T.copy(),
            "steps": self._steps.copy(),
        }

    def render(self, index: int = 0) -> np.ndarray:
        """Returns an RGB uint8 [H, W, 3] frame of env `index` (32 px per cell)."""
        if not 0 <= index < self.num_envs:
            raise IndexError(f"env index {index} out of range for {self.num_envs} envs")
        state = self.state()
        return render_frame(
            state["agents"][index],
            state["treasures"][index],
            state["collected"][index],
            self.config.size,
        )

    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns the next `n` initial states of this env's Generator, as `_start` takes them.

        They are drawn ahead in blocks and kept in the internal cell form.
        """
        if self._pool is None or self._pool_next + n > self._pool[0].shape[1]:
            self._pool = self._internal(
                sample_initial_states(self.config, max(n, _POOL_SIZE), self._rng)
            )
            self._pool_next = 0
        taken = slice(self._pool_next, self._pool_next + n)
        self._pool_next += n
        agent_cells, treasure_cells, treasures = self._pool
        return agent_cells[:, taken], treasure_cells[:, taken], treasures[taken]

    def _internal(self, states: InitialStates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns `states` as agent cells [A, n], treasure cells [T, n], treasures [n, T, 2]."""
        size = self.config.size
        agent_cells = _cell_index(states.agents, size).T.astype(np.intp)
        return agent_cells, _cell_index(states.treasures, size).T.astype(np.intp), states.treasures

    def _start(self, envs: np.ndarray, starts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Returns None; puts `envs` at the start of new episodes from `_internal` states."""
        self._agent_cells[:, envs], self._live[:, envs], self._treasures[envs] = starts
        self._remaining[envs] = self.config.num_treasures
        self._steps[envs] = 0
        self._returns[envs] = 0.0
        self._ended[envs] = False

    def _observe(self, envs: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Returns the current float32 [n, A, D] observations of `envs` (default: all)."""
        agent_cells, live = self._agent_cells[:, envs], self._live[:, envs]
        if not self._fast_observation:
            return observe(
                self.config,
                self._positions(agent_cells),
                self._treasures[envs],
                (live == self._no_treasure).T,
            )
        # `vector_observation` through lookup tables, see `_observation_tables`.
        shifted = agent_cells << self._cell_bits
        key = self._nearest_key.take(shifted[None, :, :] | live[:, None, :])  # [T, A, n]
        key |= (self._tie_break | live)[:, None, :]
        nearest = key.min(axis=0) & ((1 << self._cell_bits) - 1)  # [A, n] cell, or "none"
        return self._observation.take((shifted | nearest).T, axis=0)

    def _positions(self, agent_cells: np.ndarray) -> np.ndarray:
        """Returns int64 [n, A, 2] (row, col) of agent-major cells [A, n]."""
        return np.stack(np.divmod(agent_cells.T, self.config.size), axis=-1).astype(np.int64)

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        """Returns `actions` as int64 [B, A] after checking shape, values and ended envs."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, self.num_agents):
            raise ValueError(
                f"actions must have shape [num_envs, num_agents] = "
                f"[{self.num_envs}, {self.num_agents}], got {list(actions.shape)}"
            )
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers 0..4, got dtype {actions.dtype}")
        actions = actions.astype(np.int64, copy=False)
        # Read as unsigned, negative actions become huge: one max() checks both bounds.
        if actions.view(np.uint64).max() >= self.num_actions:
            bad = (actions < 0) | (actions >= self.num_actions)
            env = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(
                f"env {env}: actions {actions[env].tolist()} outside 0..{self.num_actions - 1}"
            )
        if not self._started:
            raise ValueError("step called before reset(): call reset() first")
        if not self.autoreset and self._ended.any():
            env = int(np.flatnonzero(self._ended)[0])
            raise ValueError(f"env {env} has ended and autoreset is off: call reset() first")
        return actions
