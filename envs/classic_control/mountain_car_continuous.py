"""MountainCarContinuous-v0 in pure JAX, a transcription of gymnasium 1.4.0
``envs/classic_control/continuous_mountain_car.py``.

Dynamics, with the force ``u_t = clip(a_t[0], -1, 1)``::

    velocity_tp1 = clip(velocity_t + u_t power - 0.0025 cos(3 position_t), -0.07, 0.07)
    position_tp1 = clip(position_t + velocity_tp1, -1.2, 0.6)
    velocity_tp1 = 0  if position_tp1 == -1.2 and velocity_tp1 < 0

with ``power = 0.0015``. Termination: ``position >= 0.45 and velocity >= 0``.
Reward ``r_t = 100 * terminated - 0.1 a_t[0]^2`` (the *unclipped* action, as in
gymnasium). ``truncated`` at ``max_steps_in_episode = 999``.

The step is differentiable in ``(state, action)`` almost everywhere (the clips
have zero slope outside their range), so ``jax.jacfwd`` of ``step`` works.

Float precision: gymnasium stores this environment's state as float32 after
every step; this version keeps the state in JAX's default float dtype (float32,
or float64 under ``jax_enable_x64``), so a float64 run differs from gymnasium
by float32 rounding (about 1e-7 per step).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment
from scg.envs.spaces import Box


class EnvState(NamedTuple):
    position: jax.Array
    velocity: jax.Array
    time: jax.Array


class EnvParams(NamedTuple):
    min_action: float = -1.0
    max_action: float = 1.0
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.45
    goal_velocity: float = 0.0
    power: float = 0.0015
    gravity: float = 0.0025
    max_steps_in_episode: int = 999


class MountainCarContinuous(Environment):
    """MountainCarContinuous-v0 (gymnasium 1.4.0). Box([-1], [1]) force, observation ``(position, velocity)``.

    Example::

        env = MountainCarContinuous()
        obs, state = env.reset(jax.random.key(0))
        obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, jnp.array([0.5]))
    """

    name = "MountainCarContinuous-v0"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """``position_0 ~ U(-0.6, -0.4)``, ``velocity_0 = 0`` as in gymnasium."""
        position = jax.random.uniform(key, (), minval=-0.6, maxval=-0.4)
        state = EnvState(position, jnp.zeros_like(position), jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        force = jnp.clip(action[0], params.min_action, params.max_action)
        velocity = state.velocity + (force * params.power - params.gravity * jnp.cos(3 * state.position))
        velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
        position = jnp.clip(state.position + velocity, params.min_position, params.max_position)
        velocity = jnp.where((position == params.min_position) & (velocity < 0), 0.0, velocity)
        state_tp1 = EnvState(position, velocity, state.time + 1)
        terminated = self.is_terminal(state_tp1, params)
        truncated = state_tp1.time >= params.max_steps_in_episode
        # gymnasium computes the penalty in Python floats: promote the action to the state's dtype first.
        reward = jnp.where(terminated, 100.0, 0.0) - jnp.asarray(action[0], position.dtype) ** 2 * 0.1
        return self.get_obs(state_tp1), state_tp1, reward, terminated, truncated, {}

    def is_terminal(self, state: EnvState, params: EnvParams) -> jax.Array:
        return (state.position >= params.goal_position) & (state.velocity >= params.goal_velocity)

    def get_obs(self, state: EnvState, params: EnvParams | None = None) -> jax.Array:
        return jnp.stack([state.position, state.velocity])

    def observation_space(self, params: EnvParams) -> Box:
        return Box.make([params.min_position, -params.max_speed], [params.max_position, params.max_speed])

    def action_space(self, params: EnvParams) -> Box:
        # Static bounds from the defaults, so the space stays static when params are traced.
        default = self.default_params
        return Box.make([default.min_action], [default.max_action])
