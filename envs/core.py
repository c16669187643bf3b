"""The functional environment interface (gymnax style).

An environment is a pair of pure functions over explicit pytrees::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

``params`` (physical constants, horizon) are kept apart from ``state`` so that
``jax.vmap`` over keys, states or params is one line, and a ``state`` can be
copied and stepped twice from the same point (DirPG branches a search tree
this way). Environment objects hold no mutable state: they are namespaces of
pure functions plus static space descriptions.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.spaces import Box, Discrete

Params = Any
State = Any


class Timestep(NamedTuple):
    """What ``step`` returns, as a named tuple (it unpacks like gymnasium's 6-tuple minus nothing)."""

    obs: jax.Array
    state: State
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict


class Environment:
    """Base class: subclasses implement ``default_params``, ``reset_env``, ``step_env`` and the spaces.

    ``step`` and ``reset`` are the public entry points; they validate their
    arguments at trace time (shapes, params structure) so that bad input is a
    clear error rather than a silent NaN, then call the subclass.
    """

    name: str = "Environment"

    # -- to implement -------------------------------------------------------
    @property
    def default_params(self) -> Params:
        raise NotImplementedError  # abstract

    def reset_env(self, key: jax.Array, params: Params) -> tuple[jax.Array, State]:
        raise NotImplementedError  # abstract

    def step_env(self, key: jax.Array, state: State, action: jax.Array, params: Params) -> Timestep:
        raise NotImplementedError  # abstract

    def observation_space(self, params: Params) -> Box | Discrete:
        raise NotImplementedError  # abstract

    def action_space(self, params: Params) -> Box | Discrete:
        raise NotImplementedError  # abstract

    # -- public -------------------------------------------------------------
    def reset(self, key: jax.Array, params: Params | None = None) -> tuple[jax.Array, State]:
        params = self._check_params(params)
        return self.reset_env(key, params)

    def step(self, key: jax.Array, state: State, action, params: Params | None = None) -> Timestep:
        """One transition. An action outside the action space is handled as follows.

        * concrete (not traced) action: ``ValueError`` naming the environment and the space;
        * traced ``Box`` action: passed to ``step_env`` as is; each environment
          then does what its gymnasium original does (Pendulum and
          MountainCarContinuous clip the torque/force);
        * traced ``Discrete`` action: a compiled program cannot raise, and
          silently clamping to a valid action would hide the bug, so every
          floating leaf of ``obs``, ``state`` and ``reward`` becomes NaN. The
          NaN then reaches any loss built on the rollout, and
          ``jax.debug_nans`` or ``checkify.checkify(..., errors=checkify.nan_checks)``
          locate it.
        """
        params = self._check_params(params)
        traced = isinstance(action, jax.core.Tracer)
        action = self._check_action(action, params)
        space = self.action_space(params)
        if not traced and not bool(space.contains(action)):
            raise ValueError(f"{self.name}: action {action!r} is outside the action space {space}")
        ts = Timestep(*self.step_env(key, state, action, params))
        if traced and isinstance(space, Discrete):
            ts = _nan_unless(space.contains(action), ts)
        return ts

    def _check_params(self, params: Params | None) -> Params:
        default = self.default_params
        if params is None:
            return default
        want, got = jax.tree_util.tree_structure(default), jax.tree_util.tree_structure(params)
        if want != got:
            raise TypeError(
                f"{self.name}: params have structure {got}, expected {want}; "
                f"start from env.default_params and use ._replace(...)"
            )
        return params

    def _check_action(self, action, params: Params) -> jax.Array:
        space = self.action_space(params)
        action = jnp.asarray(action)
        if action.shape != space.shape:
            raise ValueError(
                f"{self.name}: action has shape {action.shape}, expected {space.shape} "
                f"for action space {space}; batch with jax.vmap, not by adding axes"
            )
        if isinstance(space, Discrete) and not jnp.issubdtype(action.dtype, jnp.integer):
            raise TypeError(f"{self.name}: discrete action must be an integer array, got dtype {action.dtype}")
        return action

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _nan_unless(valid: jax.Array, ts: Timestep) -> Timestep:
    """Replace every floating leaf of ``obs``, ``state`` and ``reward`` by NaN where ``valid`` is False."""

    # 0 * inf creates the NaN inside an arithmetic primitive, so that checkify's
    # nan_checks reports it (a NaN literal passed through `where` would not be).
    nan_unless_valid = jnp.where(valid, 0.0, jnp.inf) * 0.0

    def poison(x):
        x = jnp.asarray(x)
        return x + nan_unless_valid.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    obs, state, reward = jax.tree_util.tree_map(poison, (ts.obs, ts.state, ts.reward))
    return ts._replace(obs=obs, state=state, reward=reward)
