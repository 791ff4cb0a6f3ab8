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
    rows = np.arange(n)
    keys[rows[:, None], _cell_index(positions, size)] = np.inf  # occupied cells sort last
    if config.num_treasures > _ARGMIN_MAX_TREASURES:
        chosen = np.argsort(keys, axis=1)[:, : config.num_treasures]
    else:
        # The first T of the sort order, by repeated argmin: several times faster than sorting
        # all cells, and the same cells in the same order (the keys are distinct).
        chosen = np.empty((n, config.num_treasures), dtype=np.intp)
        for j in range(config.num_treasures):
            chosen[:, j] = keys.argmin(axis=1)
            keys[rows, chosen[:, j]] = np.inf
    return InitialStates(positions, np.stack(np.divmod(chosen, size), axis=-1))


# Up to this many treasures `sample_initial_states` picks cells by repeated argmin, not argsort.
_ARGMIN_MAX_TREASURES = 8


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

# Grids up to this size observe through lookup tables (with at most _TABLE_MAX_ENTRIES keys:
# T * size^2 * 2^b for b the bits of a cell index, 3 MB for 16x16 with 3 treasures); others
# use `observe` directly.
_TABLE_MAX_SIZE = 16
_TABLE_MAX_ENTRIES = 1 << 22


@dataclass(frozen=True)
class _StepTables:
    """Lookup tables of one grid for `TreasureHuntVecEnv`, built by `_step_tables`.

    An agent on cell a is stored as a * stride, so that a * stride + action indexes a move.
    Treasure t on cell c has the code t * treasure_stride + c, c = size^2 once it is collected.
    """

    stride: int
    next_agent: np.ndarray  # int [size^2 * stride]: the stored agent after each (cell, action)
    wall_cost: np.ndarray  # float [size^2 * stride]: wall_penalty where (cell, action) bumps
    treasure_stride: int
    # int [T * treasure_stride], or None without vector tables: at code + stored agent, the
    # distance shifted above t, then the agent's cell a and the treasure's c in the low bits as
    # a * stride + c; the minimum over treasures is the nearest (lowest t on ties) and its low
    # bits (`row_mask`) index `observation`.
    nearest_key: np.ndarray | None
    row_mask: int
    observation: np.ndarray | None  # complex128 [size^2 * stride]: 4 float32 per a * stride + c


@functools.lru_cache(maxsize=8)
def _step_tables(
    size: int, num_treasures: int, wall_penalty: float, vector_tables: bool
) -> _StepTables:
    """Returns the move, wall and (if `vector_tables`) observation tables of a grid."""
    cells = size * size
    bits = cells.bit_length()  # enough for the cells 0..S-1 and S, "collected"
    # Five actions need a stride of 8; the vector tables want a * stride + c with c <= S.
    stride = 1 << bits if vector_tables else 8
    rows, cols = np.divmod(np.arange(cells), size)
    to_rows = rows[:, None] + MOVES[:, 0]
    to_cols = cols[:, None] + MOVES[:, 1]
    inside = (to_rows >= 0) & (to_rows < size) & (to_cols >= 0) & (to_cols < size)
    next_cell = np.where(inside, to_rows * size + to_cols, np.arange(cells)[:, None])
    next_agent = np.zeros((cells, stride), dtype=np.intp)
    next_agent[:, : len(Action)] = next_cell * stride
    wall_cost = np.zeros((cells, stride))
    wall_cost[:, : len(Action)] = ~inside * wall_penalty
    treasure_stride = cells * stride
    nearest_key = observation = None
    if vector_tables:
        # Cells 0..stride-1 of a treasure; those from S on stand for "collected", beyond any
        # real distance.
        t_rows, t_cols = np.divmod(np.arange(stride), size)
        t_rows[cells:] = t_cols[cells:] = 4 * size
        distance = np.abs(rows[:, None] - t_rows) + np.abs(cols[:, None] - t_cols)  # [S, stride]
        low = np.arange(cells)[:, None] * stride + np.minimum(np.arange(stride), cells)
        shift = 2 * bits + (num_treasures - 1).bit_length()
        tie = np.arange(num_treasures)[:, None, None] << (2 * bits)
        nearest_key = ((distance << shift) | low | tie).ravel().astype(np.intp)
        scale = np.float32(size - 1)
        own = np.stack([rows, cols], axis=-1).astype(np.float32) / scale
        target = np.stack([t_rows, t_cols], axis=-1).astype(np.float32) / scale
        target[cells:] = -1.0
        table = np.empty((cells, stride, 4), dtype=np.float32)
        table[:, :, :2] = own[:, None, :]
        table[:, :, 2:] = target[None, :, :]
        observation = table.reshape(-1, 4).view(np.complex128).ravel()  # one item per row
    return _StepTables(
        stride=stride,
        next_agent=next_agent.ravel(),
        wall_cost=wall_cost.ravel(),
        treasure_stride=treasure_stride,
        nearest_key=nearest_key,
        row_mask=(1 << 2 * bits) - 1,
        observation=observation,
    )


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
        self._pool: tuple[np.ndarray, np.ndarray] | None = None  # see `_draw`
        self._pool_next = 0
        agents, treasures = config.num_agents, config.num_treasures
        cells = config.size**2
        vector_tables = (
            config.observation == "vector"
            and config.size <= _TABLE_MAX_SIZE
            and treasures * cells << cells.bit_length() <= _TABLE_MAX_ENTRIES
        )
        self._tables = _step_tables(config.size, treasures, config.wall_penalty, vector_tables)
        # The whole integer state of every env in one array, a row per quantity and a column per
        # env, so that a restart is one assignment; agent- and treasure-major so that reductions
        # over agents and treasures run over the leading axis (numpy is several times slower
        # reducing a short trailing axis). Rows, each a view below:
        #   agents [A]      stored agent cells, see `_StepTables`
        #   live [T]        remaining treasures' cells in the agents' form, -1 once collected
        #   codes [T]       treasure codes, see `_StepTables`
        #   cells [T]       the treasures' cells, collected or not
        #   remaining [1]   treasures not yet collected
        #   deadline [1]    the value of `_clock` at which the episode is truncated
        self._state = np.zeros((agents + 3 * treasures + 2, num_envs), dtype=np.intp)
        self._agents = self._state[:agents]
        self._live = self._state[agents : agents + treasures]
        self._treasure_rows = self._state[agents : agents + 2 * treasures].reshape(2, treasures, -1)
        self._remaining = self._state[-2]
        self._deadline = self._state[-1]
        # What `_treasure_rows` become for a collected treasure.
        self._collected_rows = np.stack(
            [
                np.full(treasures, -1),
                np.arange(treasures) * self._tables.treasure_stride + cells,
            ]
        )[:, :, None]
        self._clock = 0  # steps taken by this object; counts episode steps through `_deadline`
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._ended = np.zeros(num_envs, dtype=bool)
        self._move = np.zeros((agents, num_envs), dtype=np.intp)  # reused by every step
        self._no_return = np.full(num_envs, np.nan, dtype=np.float32)  # copied into info
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
        block, first = self._draw(self.num_envs) if states is None else self._internal(states)
        self._state[:] = block
        self._deadline[:] = self._clock + self.config.max_steps
        self._returns[:] = 0.0
        self._ended[:] = False
        self._started = True
        return first.copy()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Returns obs [B,A,D] float32, reward [B] float32, terminated [B], truncated [B], info.

        `actions` is int [B, A] of `Action` values. info: "final_observation" [B,A,D] (the last
        obs of episodes that ended this step, else equal to obs), "episode_return" [B] float32
        and "episode_length" [B] int of those episodes (NaN / 0 elsewhere), and "success" [B]
        bool (ended with every treasure collected).
        """
        config, tables = self.config, self._tables
        move = np.add(self._agents, self._check_actions(actions).T, out=self._move)  # [A, B]
        wall_cost = tables.wall_cost.take(move).sum(axis=0)
        # Every index is in range by construction; "wrap" skips numpy's checked copy into out.
        tables.next_agent.take(move, out=self._agents, mode="wrap")
        # A treasure is found when any agent stands on it; collected ones hold no cell.
        found = (self._live[:, None, :] == self._agents).any(axis=1)  # [T, B]
        count = found.sum(axis=0)
        np.copyto(self._treasure_rows, self._collected_rows, where=found)
        reward = config.treasure_reward * count
        reward -= wall_cost
        reward -= config.step_penalty
        self._returns += reward
        self._remaining -= count
        terminated = self._remaining == 0
        self._clock += 1
        at_horizon = self._deadline == self._clock
        truncated = at_horizon > terminated  # at the horizon and not terminated
        ended = at_horizon | terminated
        obs = self._observe(self._state)
        info: dict[str, Any] = {
            "final_observation": obs.copy(),
            "episode_return": self._no_return.copy(),
            "episode_length": np.zeros(self.num_envs, dtype=np.int64),
            "success": terminated.copy(),
        }
        if not self.autoreset:
            self._ended = ended  # ended envs may not step again before `reset`
        restart = ended.nonzero()[0]
        if len(restart):
            info["episode_return"][restart] = self._returns[restart]
            steps_left = self._deadline[restart] - self._clock
            info["episode_length"][restart] = config.max_steps - steps_left
            if self.autoreset:
                block, first = self._draw(len(restart))
                block[-1] = self._clock + config.max_steps  # the deadline row
                self._state[:, restart] = block
                self._returns[restart] = 0.0
                obs[restart] = first
        return obs, reward.astype(np.float32), terminated, truncated, info

    def state(self) -> dict[str, np.ndarray]:
        """Returns copies of agents [B,A,2], treasures [B,T,2], collected [B,T] and steps [B]."""
        steps = self.config.max_steps - (self._deadline - self._clock)
        return {
            "agents": self._positions(self._agents // self._tables.stride),
            "treasures": np.ascontiguousarray(
                self._positions(self._state[self._treasure_cells_rows])
            ),
            "collected": (self._live < 0).T.copy(),
            "steps": steps.astype(np.int64),
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

    @property
    def _treasure_cells_rows(self) -> slice:
        """Returns the rows of `_state` that hold the treasures' cells."""
        start = self.num_agents + 2 * self.config.num_treasures
        return slice(start, start + self.config.num_treasures)

    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns the next `n` initial states of this env's Generator, as `_internal` does.

        They are drawn ahead in blocks, kept in the internal form with their first observations.
        """
        if self._pool is None or self._pool_next + n > self._pool[0].shape[1]:
            self._pool = self._internal(
                sample_initial_states(self.config, max(n, _POOL_SIZE), self._rng)
            )
            self._pool_next = 0
        taken = slice(self._pool_next, self._pool_next + n)
        self._pool_next += n
        block, first = self._pool
        return block[:, taken], first[taken]

    def _internal(self, states: InitialStates) -> tuple[np.ndarray, np.ndarray]:
        """Returns `states` as columns of `_state` (deadline 0) and their first observations."""
        tables, treasures = self._tables, self.config.num_treasures
        cells = _cell_index(states.treasures, self.config.size).T  # [T, n]
        block = np.zeros((len(self._state), len(states)), dtype=np.intp)
        block[: self.num_agents] = _cell_index(states.agents, self.config.size).T * tables.stride
        live_and_codes = block[self.num_agents : self.num_agents + 2 * treasures]
        live_and_codes[:treasures] = cells * tables.stride
        live_and_codes[treasures:] = cells + np.arange(treasures)[:, None] * tables.treasure_stride
        block[self._treasure_cells_rows] = cells
        block[-2] = treasures
        return block, self._observe(block)

    def _observe(self, block: np.ndarray) -> np.ndarray:
        """Returns the float32 [n, A, D] observations of the envs in `block` (`_state` columns)."""
        tables, agents = self._tables, block[: self.num_agents]
        if tables.nearest_key is None:
            collected = block[self.num_agents : self.num_agents + self.config.num_treasures] < 0
            return observe(
                self.config,
                self._positions(agents // tables.stride),
                self._positions(block[self._treasure_cells_rows]),
                collected.T,
            )
        codes = block[self.num_agents + self.config.num_treasures : self._treasure_cells_rows.start]
        key = tables.nearest_key.take(codes[:, None, :] + agents)  # [T, A, n]
        rows = np.empty((block.shape[1], self.num_agents), dtype=np.intp)
        np.minimum.reduce(key, axis=0, out=rows.T)  # env-major, as the observation is
        rows &= tables.row_mask
        return tables.observation.take(rows).view(np.float32).reshape(len(rows), self.num_agents, 4)

    def _positions(self, cells: np.ndarray) -> np.ndarray:
        """Returns int64 [n, k, 2] (row, col) of item-major cells [k, n]."""
        return np.stack(np.divmod(cells.T, self.config.size), axis=-1).astype(np.int64)

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        """Returns `actions` as int64 [B, A] after checking shape, values and ended envs."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, self.num_agents):
            raise ValueError(
                f"actions must have shape [num_envs, num_agents] = "
                f"[{self.num_envs}, {self.num_agents}], got {list(actions.shape)}"
            )
        if actions.dtype.kind not in "iu":  # signed or unsigned integers
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
