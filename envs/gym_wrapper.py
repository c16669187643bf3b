"""Expose a functional Environment as a ``gymnasium.Env``, and register every scg env as ``scg/<Name>``.

One thin class, ``GymnasiumEnv``, wraps the pure ``reset``/``step`` pair:
``jit``-compiled once per instance, numpy in and out, seeded through
``reset(seed=...)`` (the seed feeds gymnasium's ``np_random``, which draws the
JAX key, so the same seed gives the same episode), ``render_mode="rgb_array"``
through ``scg.envs.render``. As in gymnasium's own environments, a ``Box``
action outside the space is not an error (the environment clips it where its
physics has a bound, see ``Environment.step``; NaN is a ``ValueError``), and a
``step`` after ``terminated=True`` without ``reset`` returns reward 0 (the
functional step is absorbing there) and logs gymnasium's CartPole warning
through ``gymnasium.logger`` once per episode. Example::

    import gymnasium, envs
    env = gymnasium.make("scg/HandMass-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(2)
"""
from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.spaces import Discrete

NAMESPACE = "scg"
# gymnasium 1.4.0's CartPole message, word for word.
STEP_AFTER_TERMINATED = (
    "You are calling 'step()' even though this environment has already returned terminated = True. "
    "You should always call 'reset()' once you receive 'terminated = True' -- any further steps are undefined behavior."
)


class GymnasiumEnv(gymnasium.Env):
    """A gymnasium view of a functional env: ``GymnasiumEnv("DeepSea-v0")`` or ``GymnasiumEnv(env=..., params=...)``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, env_name: str | None = None, *, env=None, params=None, render_mode: str | None = None):
        if env is None:
            from scg.envs.registry import make

            env, default = make(env_name)
            params = default if params is None else params
        self.env = env
        self.params = env._check_params(params)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"{env.name}: render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self._space = env.action_space(self.params)
        self.observation_space = env.observation_space(self.params).to_gymnasium()
        self.action_space = self._space.to_gymnasium()
        # Params are fixed per instance, so they are closed over (compile-time constants): this also
        # lets an env whose spaces read params be stepped under jit.
        params = self.params
        self._reset = jax.jit(lambda key: env.reset(key, params))
        self._step = jax.jit(lambda key, state, action: env.step(key, state, action, params))
        self._key = None
        self._state = None
        self._obs = None
        self._steps_beyond_terminated = None  # gymnasium CartPole's counter: None until terminated

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._key = jax.random.key(int(self.np_random.integers(2**31 - 1)))
        self._key, key = jax.random.split(self._key)
        obs, self._state = self._reset(key)
        self._obs = np.asarray(obs, np.float32)
        self._steps_beyond_terminated = None
        return self._obs, {}

    def step(self, action):
        if self._state is None:
            raise RuntimeError(f"{self.env.name}: call reset() before step()")
        action = self._as_action(action)
        if self._steps_beyond_terminated is not None:
            if self._steps_beyond_terminated == 0:
                gymnasium.logger.warn(STEP_AFTER_TERMINATED)
            self._steps_beyond_terminated += 1
        self._key, key = jax.random.split(self._key)
        obs, self._state, reward, terminated, truncated, info = self._step(key, self._state, action)
        self._obs = np.asarray(obs, np.float32)
        info = {k: np.asarray(v) for k, v in info.items()}
        if terminated and self._steps_beyond_terminated is None:
            self._steps_beyond_terminated = 0
        return self._obs, float(reward), bool(terminated), bool(truncated), info

    def _as_action(self, action) -> jax.Array:
        if isinstance(self._space, Discrete):
            raw = np.asarray(action)
            if raw.shape != () or not np.issubdtype(raw.dtype, np.integer):
                raise ValueError(f"{self.env.name}: expected an integer action in [0, {self._space.n}), got {action!r}")
            if not self.action_space.contains(np.asarray(raw, self.action_space.dtype)):
                raise ValueError(f"{self.env.name}: action {action!r} is outside the action space {self.action_space}")
            return jnp.asarray(raw, jnp.int32)
        raw = np.asarray(action, np.float32)
        if raw.shape != self._space.shape:
            raise ValueError(f"{self.env.name}: expected an action of shape {self._space.shape}, got shape {raw.shape}")
        # Outside the box is the environment's to handle (it clips where its physics has a bound), as in gymnasium.
        if np.isnan(raw).any():
            raise ValueError(f"{self.env.name}: action {action!r} contains NaN")
        return jnp.asarray(raw)

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from scg.envs.render import render_frame

        return render_frame(self.env, self._state, self.params, self._obs)


def register_all() -> list[str]:
    """Register ``scg/<name>`` with gymnasium for every name in ``scg.envs.registry.list_envs()`` (idempotent)."""
    from scg.envs.registry import list_envs

    ids = []
    for name in list_envs():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=GymnasiumEnv, kwargs={"env_name": name})
        ids.append(env_id)
    return ids
