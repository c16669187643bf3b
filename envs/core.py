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
    """Base class: subclasses implement ``default_params``, ``reset_env``, ``step_env`` and the spaces,
    and ``is_terminal`` and ``get_obs`` if they can terminate.

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

    # -- to implement where the environment can terminate --------------------
    def is_terminal(self, state: State, params: Params) -> jax.Array | None:
        """Whether ``state`` is terminal (a boolean scalar), which makes ``step`` from it absorbing.

        ``None`` (the default) means the environment has no terminal states to
        guard: Pendulum never terminates, and ``AutoReset`` resets instead.
        Every other environment in ``scg.envs`` implements it, consistently
        with the ``terminated`` flag its ``step_env`` returns.
        """
        return None

    def get_obs(self, state: State, params: Params) -> jax.Array:
        """The observation of ``state``; needed only where ``is_terminal`` is implemented."""
        raise NotImplementedError  # abstract

    # -- public -------------------------------------------------------------
    def reset(self, key: jax.Array, params: Params | None = None) -> tuple[jax.Array, State]:
        params = self._check_params(params)
        return self.reset_env(key, params)

    def step(self, key: jax.Array, state: State, action, params: Params | None = None) -> Timestep:
        """One transition ``(s_t, a_t) -> (o_{t+1}, s_{t+1}, r_t, terminated, truncated, info)``.

        Stepping a terminated state (one that ``is_terminal``, i.e. that a step
        returned with ``terminated=True``) without a reset is absorbing: the
        same state and its observation come back with reward 0,
        ``terminated=True`` and ``truncated=False`` (gymnasium's CartPole also
        returns reward 0 there, and warns; ``GymnasiumEnv`` warns likewise).
        ``AutoReset`` and ``VecAutoReset``, which the rollouts and training use,
        reset instead, so they never step a terminated state.

        An action outside the action space is handled as follows.

        * ``Box`` action, concrete or traced: passed to ``step_env`` as is;
          each environment then does what its gymnasium original does
          (Pendulum clips the torque, MountainCarContinuous the force and
          HandMassContinuous the hand velocity; BimodalBandit's reward is
          defined on the whole real line and takes the action unclipped). A
          concrete action containing NaN is a ``ValueError``; a traced NaN
          propagates into obs and reward.
        * concrete ``Discrete`` action: ``ValueError`` naming the environment and the space;
        * traced ``Discrete`` action: a compiled program cannot raise, and
          silently clamping to a valid action would hide the bug, so every
          floating leaf of ``obs``, ``state`` and ``reward`` becomes NaN. The
          NaN then reaches any loss built on the rollout, and
          ``jax.debug_nans`` or ``checkify.checkify(..., errors=checkify.nan_checks)``
          locate it.

        Example:
            >>> from scg.envs.classic_control import CartPole
            >>> env = CartPole(); params = env.default_params
            >>> _, state = env.reset(jax.random.key(0), params)
            >>> tipped = state._replace(theta=jnp.float32(0.5))  # past the 12 degree limit: terminal
            >>> ts = env.step(jax.random.key(1), tipped, 1, params)
            >>> float(ts.reward), bool(ts.terminated), bool(ts.state.theta == tipped.theta)
            (0.0, True, True)
        """
        return self._step(key, state, action, params, absorbing=True)

    def _step(self, key: jax.Array, state: State, action, params: Params | None, *, absorbing: bool) -> Timestep:
        """``step``; ``absorbing=False`` skips the terminated-state guard, for a caller whose states never are."""
        params = self._check_params(params)
        traced = isinstance(action, jax.core.Tracer)
        action = self._check_action(action, params)
        space = self.action_space(params)
        if not traced:
            if isinstance(space, Discrete) and not bool(space.contains(action)):
                raise ValueError(f"{self.name}: action {action!r} is outside the action space {space}")
            if isinstance(space, Box) and bool(jnp.isnan(action).any()):
                raise ValueError(f"{self.name}: action {action!r} contains NaN")
        ts = Timestep(*self.step_env(key, state, action, params))
        was_terminal = self.is_terminal(state, params) if absorbing else None
        if was_terminal is not None:
            ts = _absorb(was_terminal, self.get_obs(state, params), state, ts)
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


def _absorb(was_terminal: jax.Array, obs: jax.Array, state: State, ts: Timestep) -> Timestep:
    """``ts`` where ``was_terminal`` is False, else the absorbing step: ``(obs, state)`` unchanged, reward 0, terminated."""

    def keep(old, new):  # in step_env's dtype, as without the guard
        return jnp.where(was_terminal, jnp.asarray(old, jnp.result_type(new)), new)

    obs_tp1, state_tp1 = jax.tree_util.tree_map(keep, (obs, state), (ts.obs, ts.state))
    return ts._replace(
        obs=obs_tp1,
        state=state_tp1,
        reward=jnp.where(was_terminal, jnp.zeros_like(ts.reward), ts.reward),
        terminated=jnp.logical_or(was_terminal, ts.terminated),
        truncated=jnp.logical_and(jnp.logical_not(was_terminal), ts.truncated),
    )


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
