"""The chain MDP of Schulman's policy-optimisation tutorial (2017, "Reward Shaping" slides).

States ``S = {-m, ..., n}``, actions ``A = {←, →}`` (0 = left, 1 = right),
start ``s_0 = 0``; ``-m`` and ``n`` are terminal and the only reward is::

    R(s, a, s') = 1  if (s, a, s') = (n - 1, →, n),  else 0.

The slides leave ``m`` and ``n`` open; we default to ``m = 3, n = 7`` and cut
episodes at ``horizon = 20`` steps (``truncated``; the time is not in the
observation). A uniform random walk reaches ``n`` before ``-m`` with
probability ``m / (m + n) = 0.3`` when unbounded in time; always-right
reaches ``n`` in ``n`` steps with return 1. Observation: ``[s]`` as a float.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box, Discrete


class ChainMDPParams(NamedTuple):
    m: int = 3
    n: int = 7
    horizon: int = 20


class ChainMDPState(NamedTuple):
    s: jax.Array
    t: jax.Array


class ChainMDP(Environment):
    """Example:

    >>> env = ChainMDP(); params = env.default_params
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> env.step(jax.random.key(1), state, jnp.int32(1), params).obs.tolist()
    [1.0]
    """

    name = "ChainMDP-v0"

    @property
    def default_params(self) -> ChainMDPParams:
        return ChainMDPParams()

    def reset_env(self, key, params):
        del key
        state = ChainMDPState(s=jnp.int32(0), t=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        del key
        s = state.s + 2 * action.astype(jnp.int32) - 1
        new = ChainMDPState(s=s, t=state.t + 1)
        reward = (s == params.n).astype(jnp.float32)
        terminated = self.is_terminal(new, params)
        truncated = (new.t >= params.horizon) & ~terminated
        return Timestep(self.get_obs(new), new, reward, terminated, truncated, {})

    def is_terminal(self, state: ChainMDPState, params) -> jax.Array:
        """``s`` is one of the two ends ``-m`` and ``n``."""
        return (state.s == params.n) | (state.s == -params.m)

    def get_obs(self, state: ChainMDPState, params=None) -> jax.Array:
        return state.s.astype(jnp.float32)[None]

    def observation_space(self, params):
        return Box.make(float(-params.m), float(params.n), (1,))

    def action_space(self, params):
        return Discrete(2)
