"""Acrobot-v1 in pure JAX, a transcription of gymnasium 1.4.0 ``envs/classic_control/acrobot.py``.

Two links hanging from a pivot, torque ``a_t in {-1, 0, +1}`` on the joint
between them (Sutton 1996; Sutton and Barto 1998, "book" dynamics, which add
the ``- m2 l1 lc2 dtheta1^2 sin theta2`` term that the NIPS version lacks)::

    d1 = m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos theta2) + I1 + I2
    d2 = m2 (lc2^2 + l1 lc2 cos theta2) + I2
    phi2 = m2 lc2 g cos(theta1 + theta2 - pi/2)
    phi1 = -m2 l1 lc2 dtheta2^2 sin theta2 - 2 m2 l1 lc2 dtheta2 dtheta1 sin theta2
           + (m1 lc1 + m2 l1) g cos(theta1 - pi/2) + phi2
    ddtheta2 = (a + d2/d1 phi1 - m2 l1 lc2 dtheta1^2 sin theta2 - phi2) / (m2 lc2^2 + I2 - d2^2/d1)
    ddtheta1 = -(d2 ddtheta2 + phi1) / d1

One classic Runge-Kutta-4 step of length ``dt = 0.2`` (gymnasium's ``rk4``
over ``t = [0, dt]``), then the angles are wrapped into ``[-pi, pi]`` and the
velocities clipped to ``[-4 pi, 4 pi]`` and ``[-9 pi, 9 pi]``. The episode
terminates when the tip is above the bar, ``-cos theta1 - cos(theta1 + theta2) > 1``;
reward is ``-1`` per step and ``0`` on the terminating step; ``truncated`` at
``max_steps_in_episode = 500``. ``torque_noise_max`` is 0 in gymnasium and is
not modelled.

``smooth_reward`` is RPG's surrogate for this indicator reward (Levy and Ermon
2018, "Extension to discrete rewards"): ``lam * sigmoid(alpha * h(s))`` with
``h(s) = -cos theta1 - cos(theta1 + theta2) - 1`` the height of the tip above
the bar.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment
from scg.envs.rewards import smooth_indicator
from scg.envs.spaces import Box, Discrete


class EnvState(NamedTuple):
    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    time: jax.Array


class EnvParams(NamedTuple):
    dt: float = 0.2
    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    gravity: float = 9.8
    max_steps_in_episode: int = 500


AVAIL_TORQUE = (-1.0, 0.0, 1.0)


class Acrobot(Environment):
    """Acrobot-v1 (gymnasium 1.4.0). Discrete(3) torques, observation
    ``(cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2)``.

    Example::

        env = Acrobot()
        obs, state = env.reset(jax.random.key(0))
        obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 2)
    """

    name = "Acrobot-v1"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """``(theta1, theta2, dtheta1, dtheta2) ~ U(-0.1, 0.1)^4`` as in gymnasium."""
        s = jax.random.uniform(key, (4,), minval=-0.1, maxval=0.1)
        state = EnvState(s[0], s[1], s[2], s[3], jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        torque = jnp.asarray(AVAIL_TORQUE)[action]
        s_t = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
        s_t = jnp.concatenate([s_t, torque.astype(s_t.dtype)[None]])
        s_tp1 = _rk4(lambda s: _dsdt(s, params), s_t, params.dt)
        state_tp1 = EnvState(
            _wrap(s_tp1[0], -math.pi, math.pi),
            _wrap(s_tp1[1], -math.pi, math.pi),
            jnp.clip(s_tp1[2], -params.max_vel_1, params.max_vel_1),
            jnp.clip(s_tp1[3], -params.max_vel_2, params.max_vel_2),
            state.time + 1,
        )
        terminated = self.is_terminal(state_tp1, params)
        truncated = state_tp1.time >= params.max_steps_in_episode
        reward = jnp.where(terminated, 0.0, -1.0).astype(s_tp1.dtype)
        return self.get_obs(state_tp1), state_tp1, reward, terminated, truncated, {}

    def is_terminal(self, state: EnvState, params: EnvParams) -> jax.Array:
        """The tip is above the bar: ``height(state) > 1``."""
        return self.height(state) > 1.0

    @staticmethod
    def height(state: EnvState) -> jax.Array:
        """Height of the tip below the pivot, ``-cos theta1 - cos(theta2 + theta1)`` (gymnasium's ``_terminal``)."""
        return -jnp.cos(state.theta1) - jnp.cos(state.theta2 + state.theta1)

    def smooth_reward(self, state: EnvState, params: EnvParams | None = None, lam: float = 1.0, alpha: float = 10.0):
        """RPG surrogate ``lam * sigmoid(alpha * h(s))``, ``h(s) = -cos th1 - cos(th1 + th2) - 1``.

        Levy and Ermon 2018, "Extension to discrete rewards": the reward
        ``lam * 1[h(s) >= 0]`` of reaching the goal set is replaced by a smooth
        function that converges to it pointwise as ``alpha -> inf`` (for
        ``h(s) != 0``). Here ``h`` is the signed height of the tip above the bar,
        so ``lam`` plays the role of the goal bonus (gymnasium's reward is that
        indicator minus one per step). ``params`` is unused (kept for a uniform signature).

        Example::

            env = Acrobot()
            r = env.smooth_reward(state, lam=1.0, alpha=10.0)
            g = jax.grad(lambda th1: env.smooth_reward(state._replace(theta1=th1)))(state.theta1)
        """
        return smooth_indicator(self.height(state) - 1.0, lam, alpha)

    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        return jnp.stack(
            [
                jnp.cos(state.theta1),
                jnp.sin(state.theta1),
                jnp.cos(state.theta2),
                jnp.sin(state.theta2),
                state.dtheta1,
                state.dtheta2,
            ]
        )

    def observation_space(self, params: EnvParams) -> Box:
        high = [1.0, 1.0, 1.0, 1.0, params.max_vel_1, params.max_vel_2]
        return Box.make([-h for h in high], high)

    def action_space(self, params: EnvParams) -> Discrete:
        return Discrete(3)


def _dsdt(s_augmented: jax.Array, params: EnvParams) -> jax.Array:
    """Time derivative of ``(theta1, theta2, dtheta1, dtheta2, a)`` ("book" dynamics, see the module docstring)."""
    m1, m2 = params.link_mass_1, params.link_mass_2
    l1 = params.link_length_1
    lc1, lc2 = params.link_com_pos_1, params.link_com_pos_2
    I1 = I2 = params.link_moi
    g = params.gravity
    theta1, theta2, dtheta1, dtheta2, a = s_augmented
    # Written in gymnasium's order of operations, so float64 results agree bit for bit.
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + I2
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
        m2 * lc2**2 + I2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2, jnp.zeros_like(a)])


def _rk4(derivs, y0: jax.Array, dt: float) -> jax.Array:
    """One classic RK4 step of length ``dt`` (gymnasium's ``rk4(derivs, y0, [0, dt])``); returns the first 4 entries."""
    dt2 = dt / 2.0
    k1 = derivs(y0)
    k2 = derivs(y0 + dt2 * k1)
    k3 = derivs(y0 + dt2 * k2)
    k4 = derivs(y0 + dt * k3)
    y1 = y0 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y1[:4]


def _wrap(x: jax.Array, m: float, M: float) -> jax.Array:
    """gymnasium's ``wrap``: add or subtract ``M - m`` until ``m <= x <= M``.

    Written as ``x - k (M - m)`` with ``k`` the number of loop iterations, so it
    is differentiable (slope 1) and has no ``while_loop``; for ``|k| = 1`` (all
    reachable cases: one RK4 step moves an angle by less than ``2 pi``) the
    floating-point result is the same as gymnasium's.
    """
    diff = M - m
    k_down = jnp.maximum(jnp.ceil((x - M) / diff), 0.0)
    k_up = jnp.maximum(jnp.ceil((m - x) / diff), 0.0)
    return x - jax.lax.stop_gradient(k_down) * diff + jax.lax.stop_gradient(k_up) * diff
