"""Expose a functional Environment to gymnasium: ``GymnasiumEnv``, ``GymnasiumVectorEnv``, and ``scg/<Name>`` ids.

``GymnasiumEnv`` wraps the pure ``reset``/``step`` pair as one ``gymnasium.Env``:
one jitted call per step (the key split, the step and the casts fused) that takes
and returns the PRNG key and the env state as one device buffer (:class:`_PackedCarry`),
one device-to-host transfer of its outputs, numpy out; seeded through
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

import math
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
        example = jax.eval_shape(lambda k: _reset_outputs(env, k, params), jax.random.key(0))
        self._codec = codec = _PackedCarry.of(example[:2])
        self._info_keys = tuple(jax.eval_shape(lambda k, s: env.step(k, s, self._space.sample(k), params)[5],
                                               jax.random.key(0), example[1]))
        with_info = bool(self._info_keys)
        self._reset_seeded = jax.jit(lambda seed: _carry_and_obs(codec, *_reset_outputs(env, jax.random.key(seed),
                                                                                          params)))
        self._reset_carried = jax.jit(lambda buf: _carry_and_obs(codec, *_reset_outputs(
            env, codec.unpack(buf[:codec.size])[0], params)))
        # The buffer is donated: each step's result takes the place of its argument.
        self._step = jax.jit(lambda buf, action: _carry_and_step(codec, env, buf, action, params, with_info),
                             donate_argnums=0)
        self._buf = None  # the key, the state and the last outputs, packed (_carry_and_step)
        self._obs_shape = self.observation_space.shape
        self._obs = None
        self._steps_beyond_terminated = None  # gymnasium CartPole's counter: None until terminated

    @property
    def _carry(self):
        """The packed key and state (``None`` before ``reset``)."""
        return None if self._buf is None else self._buf[:self._codec.size]

    @property
    def _state(self):
        """The functional env state (unpacked from the carry), ``None`` before ``reset``."""
        return None if self._buf is None else self._codec.unpack_jit(self._carry)[1]

    @_state.setter
    def _state(self, state):  # tests set a state to step from
        key = self._codec.unpack_jit(self._carry)[0]
        self._buf = jnp.concatenate([self._codec.pack_jit(key, state), self._buf[self._codec.size:]])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._buf is None:  # a new stream of episodes: its key from np_random
            self._buf = self._reset_seeded(np.int32(self.np_random.integers(2**31 - 1)))
        else:  # the next episode of the stream: the key carried from the last step
            self._buf = self._reset_carried(self._buf)
        self._obs = np.array(self._buf)[self._codec.size:-3].view(np.float32).reshape(self._obs_shape)
        self._steps_beyond_terminated = None
        return self._obs, {}

    def step(self, action):
        if self._buf is None:
            raise RuntimeError(f"{self.env.name}: call reset() before step()")
        action = self._as_action(action)
        if self._steps_beyond_terminated is not None:
            if self._steps_beyond_terminated == 0:
                gymnasium.logger.warn(STEP_AFTER_TERMINATED)
            self._steps_beyond_terminated += 1
        if self._info_keys:
            self._buf, info = self._step(self._buf, action)
            info = {k: np.asarray(v) for k, v in info.items()}
        else:
            self._buf, info = self._step(self._buf, action), {}
        out = np.array(self._buf)[self._codec.size:].view(np.float32)  # one copy off the device, then views
        self._obs = obs = out[:-3].reshape(self._obs_shape)
        reward, terminated, truncated = out[-3:].tolist()
        terminated, truncated = terminated > 0.5, truncated > 0.5
        if terminated and self._steps_beyond_terminated is None:
            self._steps_beyond_terminated = 0
        return obs, reward, terminated, truncated, info

    def _as_action(self, action) -> np.ndarray:
        return _checked_action(self.env.name, self._space, action, ())

    def render(self):
        if self.render_mode != "rgb_array" or self._buf is None:
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
        # As GymnasiumEnv: the key and the batched state as one buffer, donated to each step (_carry_and_step).
        self._codec = codec = _PackedCarry.of(jax.eval_shape(lambda k: _reset_outputs(venv, k, params)[:2],
                                                             jax.random.key(0)))
        obs_words = math.prod(self.single_observation_space.shape) * self.num_envs
        self._reset = jax.jit(lambda key: jnp.concatenate([  # the step's layout, flags and final_obs zero
            _carry_and_obs(codec, *_reset_outputs(venv, key, params), self.num_envs), jnp.zeros(obs_words, jnp.uint32)]))
        self._obs_size = obs_words

        def step(buf, action):  # info["final_obs"] travels in the buffer too (one transfer); other keys beside
            out, info = _carry_and_step(codec, venv, buf, action, params, True)
            info = dict(info)
            out = jnp.concatenate([out, _as_words(info.pop("final_obs"))])
            return (out, info) if info else out

        self._step = jax.jit(step, donate_argnums=0)
        example_action = jax.ShapeDtypeStruct((self.num_envs, *self._space.shape),
                                              jnp.int32 if isinstance(self._space, Discrete) else jnp.float32)
        self._other_info = isinstance(jax.eval_shape(step, jax.eval_shape(self._reset, jax.random.key(0)),
                                                     example_action), tuple)
        self._buf = self._key = self._obs = None

    @property
    def _state(self):
        """The batched functional env state, ``None`` before ``reset``."""
        return None if self._buf is None else self._codec.unpack_jit(self._buf[:self._codec.size])[1]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._key = jax.random.key(int(seed))
        elif self._key is None:
            self._key = jax.random.key(int(np.random.SeedSequence().generate_state(1)[0] >> 1))
        else:  # the next batch of episodes: the key carried from the last step
            self._key = self._codec.unpack_jit(self._buf[:self._codec.size])[0]
        self._buf = self._reset(self._key)
        self._obs = self._host_obs(np.array(self._buf))
        return self._obs, {}

    def _host_obs(self, host: np.ndarray) -> np.ndarray:
        words = host[self._codec.size:self._codec.size + self._obs_size]
        return words.view(np.float32).reshape((self.num_envs,) + self.single_observation_space.shape)

    def step(self, actions):
        if self._buf is None:
            raise RuntimeError(f"{self.env.name}: call reset() before step()")
        actions = _checked_action(self.env.name, self._space, actions, (self.num_envs,))
        if self._other_info:
            self._buf, info = self._step(self._buf, actions)
            info = {k: np.asarray(v) for k, v in info.items()}
        else:
            self._buf, info = self._step(self._buf, actions), {}
        host = np.array(self._buf)  # one copy off the device, then views
        self._obs = obs = self._host_obs(host)
        start = self._codec.size + self._obs_size
        reward, terminated, truncated = host[start:start + 3 * self.num_envs].view(np.float32).reshape(3, -1)
        terminated, truncated = terminated > 0.5, truncated > 0.5
        info["final_obs"] = host[start + 3 * self.num_envs:].view(np.float32).reshape(obs.shape)
        info["_final_obs"] = terminated | truncated
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from scg.envs.render import render_frame

        one = lambda i: jax.tree_util.tree_map(lambda x: x[i], self._state)  # noqa: E731
        return tuple(render_frame(self.env, one(i), self.params, self._obs[i]) for i in range(self.num_envs))


class _PackedCarry:
    """A PRNG key and an env state as one ``uint32`` vector, and back (``pack``/``unpack``, traceable).

    A jitted call costs a few microseconds per argument and per result buffer, more than a
    CartPole step itself, so :class:`GymnasiumEnv` hands its step one buffer for the key and
    every leaf of the state: 32-bit leaves bit-cast, 64-bit ones as two words, booleans and
    narrower integers widened (values kept). Built from the shapes of an example
    (``jax.eval_shape`` of a reset).
    """

    def __init__(self, key_impl, treedef, specs):
        self.key_impl, self.treedef, self.specs = key_impl, treedef, specs
        self.size = sum(math.prod(shape) * (2 if dtype.itemsize == 8 else 1) for shape, dtype in specs)  # words
        self.pack_jit, self.unpack_jit = jax.jit(self.pack), jax.jit(self.unpack)

    @classmethod
    def of(cls, example):
        """For ``(key, state)`` of the shapes of ``example`` (its key: JAX's default kind, as ``jax.random.key``)."""
        key = jax.random.key(0)
        leaves, treedef = jax.tree_util.tree_flatten((jax.random.key_data(key), example[1]))
        return cls(jax.random.key_impl(key), treedef, [(x.shape, jnp.dtype(x.dtype)) for x in leaves])

    @staticmethod
    def _words(x):
        if x.dtype == jnp.bool_ or x.dtype.itemsize < 4:
            x = x.astype(jnp.int32)
        return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)

    def pack(self, key, state):
        leaves = jax.tree_util.tree_leaves((jax.random.key_data(key), state))
        return jnp.concatenate([self._words(jnp.asarray(x, d)) for x, (_, d) in zip(leaves, self.specs)])

    def unpack(self, carry):
        leaves, start = [], 0
        for shape, dtype in self.specs:
            per = 2 if dtype.itemsize == 8 else 1
            size = math.prod(shape) * per
            words = carry[start:start + size]
            start += size
            if dtype.itemsize == 8:
                leaves.append(jax.lax.bitcast_convert_type(words.reshape(shape + (2,)), dtype))
            elif dtype == jnp.bool_ or dtype.itemsize < 4:
                leaves.append(jax.lax.bitcast_convert_type(words, jnp.int32).astype(dtype).reshape(shape))
            else:
                leaves.append(jax.lax.bitcast_convert_type(words, dtype).reshape(shape))
        key_data, state = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return jax.random.wrap_key_data(key_data, impl=self.key_impl), state


def _as_words(x):
    """A float32 array as ``uint32`` words (bit-cast, flattened)."""
    return jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32).reshape(-1)


def _carry_and_obs(codec: _PackedCarry, key, state, obs, num_envs: int = 1):
    """A reset as :func:`_carry_and_step`'s buffer, the flags zero (the obs bit-cast from float32)."""
    return jnp.concatenate([codec.pack(key, state), _as_words(obs), jnp.zeros(3 * num_envs, jnp.uint32)])


def _carry_and_step(codec: _PackedCarry, env, buf, action, params, with_info: bool):
    """One step from the carry at the head of ``buf``, as one ``uint32`` buffer ``[carry..., obs..., rewards..., terminated..., truncated...]``.

    One argument buffer and one result buffer per jitted call (each costs microseconds,
    more than a CartPole step), and one transfer to the host. With ``with_info`` the
    step's info dict comes back beside it.
    """
    key, state = codec.unpack(buf[:codec.size])
    key, sub = jax.random.split(key)
    obs, state, reward, terminated, truncated, info = env.step(sub, state, action, params)
    flags = jnp.stack([reward, terminated, truncated])  # (3,) or (3, num_envs)
    out = jnp.concatenate([codec.pack(key, state), _as_words(obs), _as_words(flags)])
    return (out, info) if with_info else out


def _reset_outputs(env, key, params):
    """``(next key, state, obs as float32)``: a reset, fused into one jitted call."""
    key, sub = jax.random.split(key)
    obs, state = env.reset(sub, params)
    return key, state, obs.astype(jnp.float32)


def _checked_action(name: str, space, action, batch: tuple[int, ...]) -> np.ndarray | int:
    """``action`` as the array the jitted step takes (``batch`` leading axes), or a ``ValueError`` naming ``name``."""
    if isinstance(space, Discrete):
        if not batch and isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
            if not 0 <= action < space.n:  # the common case, a plain integer, checked without numpy
                raise ValueError(f"{name}: action {action!r} is outside the action space Discrete({space.n})")
            return int(action)  # a Python int: the jitted step's cheapest argument (weakly typed int32)
        raw = np.asarray(action)
        if raw.shape != batch or not np.issubdtype(raw.dtype, np.integer):
            what = "an integer action" if not batch else f"integer actions of shape {batch}"
            raise ValueError(f"{name}: expected {what} in [0, {space.n}), got {action!r}")
        if ((raw < 0) | (raw >= space.n)).any():
            raise ValueError(f"{name}: action {action!r} is outside the action space Discrete({space.n})")
        return raw.astype(np.int32) if batch else int(raw)
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
