"""CartPole-v1 in pure JAX, a transcription of gymnasium 1.4.0 ``envs/classic_control/cartpole.py``.

Dynamics (Barto, Sutton and Anderson 1983; the equations of Florian 2007,
"Correct equations for the dynamics of the cart-pole system", with the
friction terms dropped, as gymnasium does)::

    temp_t      = (F_t + m_p l theta_dot_t^2 sin theta_t) / (m_c + m_p)
    theta_acc_t = (g sin theta_t - cos theta_t temp_t) / (l (4/3 - m_p cos^2 theta_t / (m_c + m_p)))
    x_acc_t     = temp_t - m_p l theta_acc_t cos theta_t / (m_c + m_p)

integrated with explicit Euler (gymnasium's default ``kinematics_integrator="euler"``)::

    x_tp1 = x_t + tau x_dot_t,          x_dot_tp1 = x_dot_t + tau x_acc_t
    theta_tp1 = theta_t + tau theta_dot_t,  theta_dot_tp1 = theta_dot_t + tau theta_acc_t

``F_t = +force_mag`` for action 1 and ``-force_mag`` for action 0. The episode
terminates when ``|x| > 2.4`` or ``|theta| > 12 deg``; reward is 1 on every
step including the terminating one (gymnasium's default, not the
``sutton_barto_reward`` variant). ``truncated`` is set when the step counter
reaches ``max_steps_in_episode`` (``TimeLimit`` with ``max_episode_steps=500``).
Stepping a terminated state is absorbing (``Environment.step``): same state,
reward 0, ``terminated`` again; gymnasium returns reward 0 there too, and warns.
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
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


class EnvParams(NamedTuple):
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length, as in gymnasium
    force_mag: float = 10.0
    tau: float = 0.02
    theta_threshold_radians: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    max_steps_in_episode: int = 500


class CartPole(Environment):
    """CartPole-v1 (gymnasium 1.4.0). Discrete(2) actions, 4-d observation ``(x, x_dot, theta, theta_dot)``.

    Example::

        env = CartPole()
        obs, state = env.reset(jax.random.key(0))
        obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 1)
    """

    name = "CartPole-v1"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """``state_0 ~ U(-0.05, 0.05)^4`` as in gymnasium's ``reset``."""
        s = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
        state = EnvState(s[0], s[1], s[2], s[3], jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        # Same operation order as gymnasium so that float64 runs agree to the last bits.
        total_mass = params.masspole + params.masscart
        polemass_length = params.masspole * params.length
        force = jnp.where(action == 1, params.force_mag, -params.force_mag)
        costheta, sintheta = jnp.cos(state.theta), jnp.sin(state.theta)
        temp = (force + polemass_length * jnp.square(state.theta_dot) * sintheta) / total_mass
        thetaacc = (params.gravity * sintheta - costheta * temp) / (
            params.length * (4.0 / 3.0 - params.masspole * jnp.square(costheta) / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        x_tp1 = state.x + params.tau * state.x_dot
        x_dot_tp1 = state.x_dot + params.tau * xacc
        theta_tp1 = state.theta + params.tau * state.theta_dot
        theta_dot_tp1 = state.theta_dot + params.tau * thetaacc
        state_tp1 = EnvState(x_tp1, x_dot_tp1, theta_tp1, theta_dot_tp1, state.time + 1)

        terminated = self.is_terminal(state_tp1, params)
        truncated = state_tp1.time >= params.max_steps_in_episode
        reward = jnp.ones_like(x_tp1)
        return self.get_obs(state_tp1), state_tp1, reward, terminated, truncated, {}

    def is_terminal(self, state: EnvState, params: EnvParams) -> jax.Array:
        """``x < -2.4 or x > 2.4 or theta < -12 deg or theta > 12 deg`` (gymnasium's test, NaN-safe alike)."""
        return (
            (state.x < -params.x_threshold)
            | (state.x > params.x_threshold)
            | (state.theta < -params.theta_threshold_radians)
            | (state.theta > params.theta_threshold_radians)
        )

    def alive_margin(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        """``h(s) = min(1 - |x| / x_max, 1 - |θ| / θ_max)``: ≥ 0 exactly where the episode goes on (:meth:`is_terminal`)."""
        params = self.default_params if params is None else params
        return jnp.minimum(1.0 - jnp.abs(state.x) / params.x_threshold,
                           1.0 - jnp.abs(state.theta) / params.theta_threshold_radians)

    def smooth_reward(self, state: EnvState, params: EnvParams | None = None, lam: float = 1.0, alpha: float = 10.0):
        """RPG surrogate ``lam * sigmoid(alpha * h(s))`` of the reward ``1[alive]``, ``h`` = :meth:`alive_margin`.

        Levy and Ermon 2018, "Extension to discrete rewards" (:mod:`scg.envs.rewards`). The paper
        smooths the Cart Pole reward too but gives no ``h``: the alive margin is our choice.
        """
        return smooth_indicator(self.alive_margin(state, params), lam, alpha)

    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])

    def observation_space(self, params: EnvParams) -> Box:
        high = [params.x_threshold * 2, math.inf, params.theta_threshold_radians * 2, math.inf]
        return Box.make([-h for h in high], high)

    def action_space(self, params: EnvParams) -> Discrete:
        return Discrete(2)
