"""Pendulum-v1 in pure JAX, a transcription of gymnasium 1.4.0 ``envs/classic_control/pendulum.py``.

Torque ``u_t = clip(a_t[0], -2, 2)`` on a rigid rod of mass ``m`` and length
``l`` (``theta = 0`` is upright), semi-implicit Euler with ``dt = 0.05``::

    theta_dot_tp1 = clip(theta_dot_t + (3 g / (2 l) sin theta_t + 3 / (m l^2) u_t) dt, -8, 8)
    theta_tp1     = theta_t + theta_dot_tp1 dt
    r_t = -(normalize(theta_t)^2 + 0.1 theta_dot_t^2 + 0.001 u_t^2),  normalize(x) = ((x + pi) mod 2 pi) - pi

The reward is a function of the state *before* the step, as in gymnasium.
Never terminates; ``truncated`` at ``max_steps_in_episode = 200``. ``theta``
itself is not wrapped (the observation is ``(cos theta, sin theta, theta_dot)``).

The step is differentiable in ``(state, action)`` almost everywhere (the clips
and the ``mod`` in the cost are piecewise smooth), so ``jax.jacfwd`` of ``step`` works.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment
from scg.envs.spaces import Box


class EnvState(NamedTuple):
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


class EnvParams(NamedTuple):
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (gymnasium's name)
    max_steps_in_episode: int = 200


class Pendulum(Environment):
    """Pendulum-v1 (gymnasium 1.4.0). Box([-2], [2]) torque, observation ``(cos theta, sin theta, theta_dot)``.

    Example::

        env = Pendulum()
        obs, state = env.reset(jax.random.key(0))
        obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, jnp.array([1.0]))
    """

    name = "Pendulum-v1"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """``theta_0 ~ U(-pi, pi)``, ``theta_dot_0 ~ U(-1, 1)`` as in gymnasium."""
        high = jnp.array([math.pi, 1.0])
        s = jax.random.uniform(key, (2,), minval=-high, maxval=high)
        state = EnvState(s[0], s[1], jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        th, thdot = state.theta, state.theta_dot
        g, m, l, dt = params.g, params.m, params.l, params.dt  # noqa: E741
        u = jnp.clip(action, -params.max_torque, params.max_torque)[0]
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * g / (2 * l) * jnp.sin(th) + 3.0 / (m * l**2) * u) * dt
        newthdot = jnp.clip(newthdot, -params.max_speed, params.max_speed)
        newth = th + newthdot * dt
        state_tp1 = EnvState(newth, newthdot, state.time + 1)
        terminated = jnp.zeros((), bool)
        truncated = state_tp1.time >= params.max_steps_in_episode
        return self.get_obs(state_tp1), state_tp1, -costs, terminated, truncated, {}

    def obs_reward(self, obs: jax.Array, action: jax.Array, params: EnvParams | None = None) -> jax.Array:
        """The reward ``step`` returns, as a differentiable function of the observation *before* the step and
        the action: ``−(θ² + 0.1 θ̇² + 0.001 clip(u)²)`` with ``θ = atan2(sin θ, cos θ)`` (= ``angle_normalize``;
        at ``±π`` the two differ in sign only, which the square removes). For model-based learners (SVG(1)).
        """
        params = self.default_params if params is None else params
        theta = jnp.arctan2(obs[1], obs[0])
        u = jnp.clip(action, -params.max_torque, params.max_torque)[0]
        return -(theta**2 + 0.1 * obs[2] ** 2 + 0.001 * u**2)

    # Never terminates: ``is_terminal`` stays the base class's ``None``.
    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot])

    def observation_space(self, params: EnvParams) -> Box:
        return Box.make([-1.0, -1.0, -params.max_speed], [1.0, 1.0, params.max_speed])

    def action_space(self, params: EnvParams) -> Box:
        # Bounds come from the defaults (as in gymnasium, where they are fixed at construction),
        # so the space stays static when params are traced (jit over params).
        max_torque = self.default_params.max_torque
        return Box.make([-max_torque], [max_torque])


def angle_normalize(x: jax.Array) -> jax.Array:
    """Wrap an angle into ``[-pi, pi)``: ``((x + pi) mod 2 pi) - pi`` (gymnasium's ``angle_normalize``)."""
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi
