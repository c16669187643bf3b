"""MountainCar-v0 in pure JAX, a transcription of gymnasium 1.4.0 ``envs/classic_control/mountain_car.py``.

Dynamics (Moore 1990; Sutton and Barto 2018, Example 10.1), action
``a_t in {0, 1, 2}`` (push left, none, right)::

    velocity_tp1 = clip(velocity_t + (a_t - 1) force - cos(3 position_t) gravity, -0.07, 0.07)
    position_tp1 = clip(position_t + velocity_tp1, -1.2, 0.6)
    velocity_tp1 = 0  if position_tp1 == -1.2 and velocity_tp1 < 0      (inelastic left wall)

with ``force = 0.001``, ``gravity = 0.0025``. Reward is ``-1`` per step; the
episode terminates when ``position >= 0.5 and velocity >= goal_velocity (= 0)``;
``truncated`` at ``max_steps_in_episode = 200``.

``smooth_reward`` is RPG's surrogate of the goal indicator (Levy and Ermon
2018, "Extension to discrete rewards"): ``lam * sigmoid(alpha * h(s))`` with
``h(s) = position - goal_position``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment
from scg.envs.rewards import smooth_indicator
from scg.envs.spaces import Box, Discrete


class EnvState(NamedTuple):
    position: jax.Array
    velocity: jax.Array
    time: jax.Array


class EnvParams(NamedTuple):
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    max_steps_in_episode: int = 200


class MountainCar(Environment):
    """MountainCar-v0 (gymnasium 1.4.0). Discrete(3) actions, observation ``(position, velocity)``.

    Example::

        env = MountainCar()
        obs, state = env.reset(jax.random.key(0))
        obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 2)
    """

    name = "MountainCar-v0"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """``position_0 ~ U(-0.6, -0.4)``, ``velocity_0 = 0`` as in gymnasium."""
        position = jax.random.uniform(key, (), minval=-0.6, maxval=-0.4)
        state = EnvState(position, jnp.zeros_like(position), jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        velocity = state.velocity + (
            (action - 1) * params.force + jnp.cos(3 * state.position) * (-params.gravity)
        )
        velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
        position = jnp.clip(state.position + velocity, params.min_position, params.max_position)
        velocity = jnp.where((position == params.min_position) & (velocity < 0), 0.0, velocity)
        state_tp1 = EnvState(position, velocity, state.time + 1)
        terminated = self.is_terminal(state_tp1, params)
        truncated = state_tp1.time >= params.max_steps_in_episode
        reward = jnp.full_like(position, -1.0)
        return self.get_obs(state_tp1), state_tp1, reward, terminated, truncated, {}

    def is_terminal(self, state: EnvState, params: EnvParams) -> jax.Array:
        return (state.position >= params.goal_position) & (state.velocity >= params.goal_velocity)

    def smooth_reward(self, state: EnvState, params: EnvParams | None = None, lam: float = 1.0, alpha: float = 50.0):
        """RPG surrogate ``lam * sigmoid(alpha * (position - goal_position))`` of the goal indicator.

        Levy and Ermon 2018, "Extension to discrete rewards": a reward
        ``lam * 1[h(s) >= 0]`` is replaced by ``lam * sigmoid(alpha h(s))``, smooth
        for every ``alpha`` and converging pointwise to the indicator (where
        ``h != 0``) as ``alpha -> inf``. Here ``h(s) = position - goal_position``
        (the condition ``velocity >= goal_velocity`` is left out: it is a
        second, rarely binding indicator, and one sigmoid keeps ``h`` C^1). The default
        ``alpha = 50`` makes the ramp about 0.1 wide in position, on a track of length 1.8.

        Example::

            env = MountainCar()
            r = env.smooth_reward(state, lam=1.0, alpha=50.0)
            dr_dpos = jax.grad(lambda p: env.smooth_reward(state._replace(position=p)))(state.position)
        """
        params = self.default_params if params is None else params
        return smooth_indicator(state.position - params.goal_position, lam, alpha)

    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        return jnp.stack([state.position, state.velocity])

    def observation_space(self, params: EnvParams) -> Box:
        return Box.make([params.min_position, -params.max_speed], [params.max_position, params.max_speed])

    def action_space(self, params: EnvParams) -> Discrete:
        return Discrete(3)

