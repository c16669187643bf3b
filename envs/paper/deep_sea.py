"""DeepSea as adapted by DirPG (Lorberbom et al. 2020, §6.2 and App. C.2).

A ``size x size`` grid; the agent starts in the top-left cell ``(row, col) =
(0, 0)`` and every step moves one row down, so an episode lasts ``size - 1``
steps (``LLLL`` / ``RRRR`` on the paper's 5x5 grid). Action 0 (L) moves
down-left (clipped at the left wall) with reward 0; action 1 (R) moves
down-right with reward ``-move_cost``, except that the move into the
bottom-right corner pays ``r ~ N(goal_mean, goal_std^2)`` instead::

    col_{t+1} = clip(col_t - 1, 0, size - 1)   if a_t = L,   r_t = 0
    col_{t+1} = col_t + 1                       if a_t = R,   r_t = -1/3, or N(1, 1) at (size-1, size-1)

The paper's constants (``move_cost = 1/3``, ``N(1, 1)``) are not scaled with
the size: on the 5x5 grid ``LLLL`` returns exactly 0 and ``RRRR`` returns
``N(0, 1)``, so both (and any mixture of them) are optimal with expected return
0 but different variance, which is what the risk-sensitivity experiment needs.
For another size set ``move_cost = 1 / (size - 2)`` to keep that tie.
(Osband et al.'s original DeepSea randomises which action is "right" per cell;
the DirPG adaptation does not, and neither do we.)

The observation is ``(row, col)`` as floats, so ``size`` can stay a traced
parameter; a tabular policy one-hot encodes ``row * size + col`` itself.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box, Discrete


class DeepSeaParams(NamedTuple):
    size: int = 5
    move_cost: float = 1.0 / 3.0
    goal_mean: float = 1.0
    goal_std: float = 1.0


class DeepSeaState(NamedTuple):
    row: jax.Array
    col: jax.Array


class DeepSea(Environment):
    """DirPG's DeepSea. Example:

    >>> env = DeepSea(); params = env.default_params
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> obs, state, r, term, trunc, info = env.step(jax.random.key(1), state, jnp.int32(0), params)
    >>> obs.tolist(), float(r)
    ([1.0, 0.0], 0.0)
    """

    name = "DeepSea-v0"

    @property
    def default_params(self) -> DeepSeaParams:
        return DeepSeaParams()

    def reset_env(self, key, params):
        del key  # deterministic start
        state = DeepSeaState(row=jnp.int32(0), col=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        right = action == 1
        row = state.row + 1
        col = jnp.where(right, state.col + 1, jnp.maximum(state.col - 1, 0))
        col = jnp.minimum(col, params.size - 1)
        at_goal = right & (row == params.size - 1) & (col == params.size - 1)
        goal_reward = params.goal_mean + params.goal_std * jax.random.normal(key, (), jnp.float32)
        reward = jnp.where(at_goal, goal_reward, jnp.where(right, -params.move_cost, 0.0)).astype(jnp.float32)
        new = DeepSeaState(row=row, col=col)
        done = self.is_terminal(new, params)
        return Timestep(self.get_obs(new), new, reward, done, jnp.zeros_like(done), {})

    def is_terminal(self, state: DeepSeaState, params) -> jax.Array:
        """The bottom row is reached."""
        return state.row >= params.size - 1

    def episode_length(self, params: DeepSeaParams | None = None) -> int:
        """Every episode is exactly ``size - 1`` steps (static: ``params.size`` must be a Python int here)."""
        return int((params or self.default_params).size) - 1

    def num_states(self, params: DeepSeaParams | None = None) -> int:
        """Size of the tabular index :meth:`state_index`: the ``size²`` cells."""
        return int((params or self.default_params).size) ** 2

    def state_index(self, state: DeepSeaState, params: DeepSeaParams | None = None) -> jax.Array:
        """``row · size + col``: the one-hot state of the paper's linear policy FC(25, 2) (App. C.2, ~L412)."""
        return state.row * (params or self.default_params).size + state.col

    def get_obs(self, state: DeepSeaState, params=None) -> jax.Array:
        return jnp.stack([state.row, state.col]).astype(jnp.float32)

    def observation_space(self, params):
        return Box.make(0.0, float(params.size - 1), (2,))

    def action_space(self, params):
        return Discrete(2)
