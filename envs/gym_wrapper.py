"""Expose a functional Environment to gymnasium: ``GymnasiumEnv``, ``GymnasiumVectorEnv``, and ``scg/<Name>`` ids.

``GymnasiumEnv`` wraps the pure ``reset``/``step`` pair as one ``gymnasium.Env``:
one jitted call per step (the key split, the step and the casts fused), one
device-to-host transfer of its outputs, numpy out; seeded through
``reset(seed=...)`` (the seed feeds gymnasium's ``np_random``, which draws the
JAX key, so the same seed gives the same episode), ``render_mode="rgb_array"``
through ``scg.envs.render``. As in gymnasium's own environments, a ``Box``
action outside the space is not an error (the environment clips it where its
physics has a bound, see ``Environment.step``; NaN is a ``ValueError``), and a
``step`` after ``terminated=True`` without ``reset`` returns reward 0 (the
functional step is absorbing there) and logs gymnasium's CartPole warning
through ``gymnasium.logger`` once per episode.

``GymnasiumVectorEnv`` is what ``gymnasium.make_vec("scg/<Name>", num_envs=N)``
returns (the spec's ``vector_entry_point``): all ``N`` environments stepped in
one jitted call through :class:`scg.envs.VecAutoReset`, with gymnasium's
``SAME_STEP`` autoreset (an ended environment's returned observation is already
the next episode's first; the last one is ``info["final_obs"][i]`` where
``info["_final_obs"][i]``). Example::

    import gymnasium, scg.envs
    env = gymnasium.make("scg/HandMass-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(2)
    venv = gymnasium.make_vec("scg/CartPole-v1", num_envs=64)

Gymnasium 1.x has no plugin entry point any more (it was removed in 1.0), so
the ``scg/`` ids exist once ``scg.envs`` is imported; without an import
statement, name the module in the id as gymnasium allows:
``gymnasium.make("scg.envs:scg/CartPole-v1")``.
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
        self._reset = jax.jit(lambda key: _reset_outputs(env, key, params))
        self._step = jax.jit(lambda key, state, action: _step_outputs(env, key, state, action, params))
        self._key = None
        self._state = None
        self._obs = None
        self._steps_beyond_terminated = None  # gymnasium CartPole's counter: None until terminated

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(2**31 - 1)))
        self._key, self._state, obs = self._reset(key)
        self._obs = np.asarray(obs)
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
        self._key, self._state, host = self._step(self._key, self._state, action)
        obs, reward, terminated, truncated, info = _unpack(host, self.observation_space.shape)
        self._obs = obs
        if terminated and self._steps_beyond_terminated is None:
            self._steps_beyond_terminated = 0
        return obs, float(reward), bool(terminated), bool(truncated), info

    def _as_action(self, action) -> np.ndarray:
        return _checked_action(self.env.name, self._space, action, ())

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from scg.envs.render import render_frame

        return render_frame(self.env, self._state, self.params, self._obs)


class GymnasiumVectorEnv(gymnasium.vector.VectorEnv):
    """``num_envs`` copies of a functional env as one ``gymnasium.vector.VectorEnv``, stepped in one jitted call.

    ``GymnasiumVectorEnv("CartPole-v1", num_envs=64)``, or ``gymnasium.make_vec("scg/CartPole-v1", num_envs=64)``.
    ``reset(seed=s)`` draws the batch from ``jax.random.key(s)`` (one key for the batch, not
    gymnasium's ``s + i`` per environment; the same seed gives the same episodes). Autoreset
    is gymnasium's ``SAME_STEP``: where an episode ended, the returned observation starts
    the next one and the last one is ``info["final_obs"][i]`` (a dense array; rows where
    ``info["_final_obs"]`` is False are the current observation). Actions are checked
    as in :class:`GymnasiumEnv`, one per environment along the leading axis.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}

    def __init__(self, env_name: str | None = None, *, num_envs: int = 1, env=None, params=None,
                 render_mode: str | None = None, max_resets: int | None = None):
        from scg.envs.wrappers import VecAutoReset

        if env is None:
            from scg.envs.registry import make

            env, default = make(env_name)
            params = default if params is None else params
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"{env.name}: render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.env, self.params, self.render_mode = env, env._check_params(params), render_mode
        venv = VecAutoReset(env, num_envs, max_resets)
        self.num_envs = venv.num_envs
        self._space = env.action_space(self.params)
        self.single_observation_space = env.observation_space(self.params).to_gymnasium()
        self.single_action_space = self._space.to_gymnasium()
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, self.num_envs)
        params = self.params
        self._reset = jax.jit(lambda key: _reset_outputs(venv, key, params))
        self._step = jax.jit(lambda key, state, action: _step_outputs(venv, key, state, action, params))
        self._key = self._state = self._obs = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._key = jax.random.key(int(seed))
        elif self._key is None:
            self._key = jax.random.key(int(np.random.SeedSequence().generate_state(1)[0] >> 1))
        self._key, self._state, obs = self._reset(self._key)
        self._obs = np.asarray(obs)
        return self._obs, {}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError(f"{self.env.name}: call reset() before step()")
        actions = _checked_action(self.env.name, self._space, actions, (self.num_envs,))
        self._key, self._state, host = self._step(self._key, self._state, actions)
        obs, reward, terminated, truncated, info = _unpack(host, self.single_observation_space.shape)
        self._obs = obs
        info["_final_obs"] = terminated | truncated
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from scg.envs.render import render_frame

        one = lambda i: jax.tree_util.tree_map(lambda x: x[i], self._state)  # noqa: E731
        return tuple(render_frame(self.env, one(i), self.params, self._obs[i]) for i in range(self.num_envs))


def _reset_outputs(env, key, params):
    """``(next key, state, obs as float32)``: a reset, fused into one jitted call."""
    key, sub = jax.random.split(key)
    obs, state = env.reset(sub, params)
    return key, state, obs.astype(jnp.float32)


def _step_outputs(env, key, state, action, params):
    """``(next key, state, (packed, info))``: the key split, the step and the packing fused into one jitted call.

    ``packed`` is ``[obs..., reward, terminated, truncated]`` as one float32 array per
    environment (:func:`_unpack` splits it on the host): one transfer of one array costs
    about a fifth of a transfer per output, which would cost more than the step itself.
    """
    key, sub = jax.random.split(key)
    obs, state, reward, terminated, truncated, info = env.step(sub, state, action, params)
    batch = reward.shape
    flags = jnp.stack([reward, terminated, truncated], axis=-1).astype(jnp.float32)
    packed = jnp.concatenate([obs.reshape(batch + (-1,)).astype(jnp.float32), flags], axis=-1)
    return key, state, (packed, info)


def _unpack(host, obs_shape: tuple[int, ...]):
    """The host side of :func:`_step_outputs`: ``(obs, reward, terminated, truncated, info)`` as numpy."""
    packed, info = host
    packed = np.array(packed)  # one copy, writable, detached from the device buffer
    batch = packed.shape[:-1]
    obs = packed[..., :-3].reshape(batch + obs_shape)
    reward, terminated, truncated = packed[..., -3], packed[..., -2] > 0.5, packed[..., -1] > 0.5
    return obs, reward, terminated, truncated, {k: np.asarray(v) for k, v in info.items()}


def _checked_action(name: str, space, action, batch: tuple[int, ...]) -> np.ndarray:
    """``action`` as the array the jitted step takes (``batch`` leading axes), or a ``ValueError`` naming ``name``."""
    if isinstance(space, Discrete):
        raw = np.asarray(action)
        if raw.shape != batch or not np.issubdtype(raw.dtype, np.integer):
            what = "an integer action" if not batch else f"integer actions of shape {batch}"
            raise ValueError(f"{name}: expected {what} in [0, {space.n}), got {action!r}")
        if ((raw < 0) | (raw >= space.n)).any():
            raise ValueError(f"{name}: action {action!r} is outside the action space Discrete({space.n})")
        return raw.astype(np.int32)
    raw = np.asarray(action, np.float32)
    if raw.shape != batch + tuple(space.shape):
        raise ValueError(f"{name}: expected an action of shape {batch + tuple(space.shape)}, got shape {raw.shape}")
    # Outside the box is the environment's to handle (it clips where its physics has a bound), as in gymnasium.
    if np.isnan(raw).any():
        raise ValueError(f"{name}: action {action!r} contains NaN")
    return raw


def register_all() -> list[str]:
    """Register ``scg/<name>`` with gymnasium for every name in ``scg.envs.registry.list_envs()`` (idempotent).

    Each id gets both entry points: ``gymnasium.make`` builds a :class:`GymnasiumEnv`,
    ``gymnasium.make_vec`` (by default) a :class:`GymnasiumVectorEnv`.
    """
    from scg.envs.registry import list_envs

    ids = []
    for name in list_envs():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=GymnasiumEnv, vector_entry_point=GymnasiumVectorEnv,
                               kwargs={"env_name": name})
        ids.append(env_id)
    return ids
