"""The one-step bimodal bandit of Smoothie (Nachum et al. 2018, §3 Fig. 1 and §6.1).

One state, one continuous action ``a``, one step. The expected reward is "a
mixture of two Gaussians, one better than the other" (§6.1)::

    r(a) = h_1 exp(-(a - c_1)^2 / (2 w^2)) + h_2 exp(-(a - c_2)^2 / (2 w^2)) (+ noise_std * ε)

The paper gives the shape only as a plot (Fig. 1/2 right), not constants; we
take the worse bump at ``c_1 = -1`` with height ``h_1 = 0.5`` (where the
paper initialises the policy mean), the better one at ``c_2 = +1`` with
``h_2 = 1``, and width ``w = 0.25`` (overlap ``exp(-32)``, so the maxima sit at
``c_1`` and ``c_2`` to float64 precision). Its Gaussian smoothing
``Q̃(μ) = E_{a ~ N(μ, σ^2)} r(a)`` (Smoothie Eq. 9) has the closed form
``Σ_i h_i w / sqrt(w^2 + σ^2) exp(-(μ - c_i)^2 / (2 (w^2 + σ^2)))``, given by
``smoothed_reward``. The reward is deterministic by default
(``noise_std = 0``) and differentiable in the action.

The action space ``[-2, 2]`` is where samplers put their mass, not a physical
bound: an action outside it is neither clipped nor an error (in JAX or through
gymnasium), and gets ``r(a)``, which is below ``exp(-0.5 / w^2) = 3e-4`` there.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box


class BimodalBanditParams(NamedTuple):
    centers: tuple = (-1.0, 1.0)
    heights: tuple = (0.5, 1.0)
    width: float = 0.25
    noise_std: float = 0.0


class BimodalBanditState(NamedTuple):
    done: jax.Array


def bimodal_reward(action: jax.Array, params: BimodalBanditParams) -> jax.Array:
    """The expected reward ``r(a)`` for a scalar action (Smoothie Fig. 1, green curve)."""
    c, h = jnp.asarray(params.centers), jnp.asarray(params.heights)
    return jnp.sum(h * jnp.exp(-((action - c) ** 2) / (2.0 * params.width**2)))


def smoothed_reward(mean: jax.Array, std: jax.Array, params: BimodalBanditParams) -> jax.Array:
    """``Q̃(μ, σ) = E_{a ~ N(μ, σ^2)} r(a)`` in closed form (Smoothie Eq. 9, Fig. 1 magenta curve)."""
    c, h = jnp.asarray(params.centers), jnp.asarray(params.heights)
    s2 = params.width**2 + std**2
    return jnp.sum(h * params.width / jnp.sqrt(s2) * jnp.exp(-((mean - c) ** 2) / (2.0 * s2)))


class BimodalBandit(Environment):
    """Example:

    >>> env = BimodalBandit(); params = env.default_params
    >>> obs, state = env.reset(jax.random.key(0), params)
    >>> float(env.step(jax.random.key(1), state, jnp.array([1.0]), params).reward)
    1.0
    """

    name = "BimodalBandit-v0"
    action_bound = 2.0

    @property
    def default_params(self) -> BimodalBanditParams:
        return BimodalBanditParams()

    def reset_env(self, key, params):
        del key
        state = BimodalBanditState(done=jnp.bool_(False))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        # The action is not clipped: the reward is defined on the whole real line and clipping would
        # zero the pathwise gradient; the Box bound only tells samplers where the mass is.
        a = action[0]
        reward = bimodal_reward(a, params) + params.noise_std * jax.random.normal(key, (), a.dtype)
        new = BimodalBanditState(done=jnp.bool_(True))
        return Timestep(self.get_obs(new, params), new, reward, jnp.bool_(True), jnp.bool_(False), {})

    def is_terminal(self, state, params):
        """After the one step."""
        return state.done

    def get_obs(self, state, params=None):
        return jnp.zeros((1,), jnp.float32)

    def observation_space(self, params):
        return Box.make(0.0, 1.0, (1,))  # the single (constant 0) observation

    def action_space(self, params):
        # Static (not a param) because ``step`` checks actions against it under ``jit``.
        return Box.make(-self.action_bound, self.action_bound, (1,))
