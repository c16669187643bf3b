"""brax environments (MJX and brax's own pipelines) in scg's functional interface: ``env, params = from_brax("hopper")``.

A brax environment is a pair of pure functions over one ``brax.envs.State``
pytree (``reset(rng) -> State``, ``step(state, action) -> State``, the
observation, reward and ``done`` being fields of the state). The adapter
keeps that whole ``State`` as our state and its ``obs`` as our observation:

* ``from_brax("hopper")`` builds the environment with brax's
  ``envs.create(..., auto_reset=False)``: brax's ``EpisodeWrapper`` counts
  steps up to ``episode_length`` and does not reset, so our
  ``AutoReset``/``VecAutoReset`` do the resetting as they do for our own
  environments;
* ``done`` and ``info["truncation"]`` become ``terminated`` and ``truncated`` (``_flags``);
* brax environments have no separate parameters: ``params`` is the empty ``NoParams()``.

brax is imported only when an environment is adapted (``pip install "scg-jax[brax]"``).

Example::

    env, params = from_brax("hopper", backend="mjx")
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, jnp.zeros(3), params)
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box

_INSTALL = 'pip install "scg-jax[brax]"'


class NoParams(NamedTuple):
    """The params of a brax environment: none (its physical constants live in ``env.sys``, fixed at construction)."""


def _import_brax_envs():
    try:
        from brax import envs
    except ImportError as err:
        raise ImportError(f"scg.envs.brax_adapter needs brax; install it with {_INSTALL} ({err})") from err
    return envs


def _action_space(env) -> Box:
    """``Box(ctrl_range)`` of the actuators where the env has a MuJoCo system, else brax's convention ``[-1, 1]``."""
    actuator = getattr(getattr(env, "sys", None), "actuator", None)
    ctrl_range = getattr(actuator, "ctrl_range", None)
    if ctrl_range is None:
        return Box.make(-1.0, 1.0, (int(env.action_size),))
    ctrl_range = np.asarray(ctrl_range, dtype=np.float64)
    return Box.make(ctrl_range[:, 0], ctrl_range[:, 1])


class BraxEnv(Environment):
    """A brax environment as an ``scg.envs.Environment``; build it with :func:`from_brax`.

    Flags: where the state's ``info`` has ``"truncation"`` (brax's
    ``EpisodeWrapper``, which ``from_brax`` adds for an id),
    ``truncated = info["truncation"] != 0`` and
    ``terminated = done != 0 and not truncated``. brax sets ``truncation``
    only where the time limit ends an episode that did not also end by itself
    (``1 - done`` at the limit), so a natural termination on the last step
    stays ``terminated``. Without ``"truncation"`` (an unwrapped env object),
    ``terminated = done != 0`` and ``truncated`` is always False.

    brax's step takes no key (its dynamics are deterministic given the state),
    so the step key is unused; the reset key is brax's ``rng``. The info of a
    step is brax's per-step ``metrics`` (reward terms). The adapter has no
    ``is_terminal``: a terminated state stepped without a reset does what
    brax's ``step`` does from it; ``AutoReset``, ``VecAutoReset`` and training
    never step one.
    """

    def __init__(self, env, name: str | None = None):
        for method in ("reset", "step"):
            if not callable(getattr(env, method, None)):
                raise TypeError(f"from_brax: {env!r} has no {method}(); pass a brax Env or a brax environment name")
        self.env = env
        self.name = f"brax/{name or type(getattr(env, 'unwrapped', env)).__name__}"
        state = jax.eval_shape(env.reset, jax.random.key(0))
        if not isinstance(state.obs, jax.ShapeDtypeStruct):
            raise NotImplementedError(f"{self.name}: observations are a {type(state.obs).__name__}, not one array; "
                                      f"make the brax env with obs_mode='ndarray' (dict observations have no "
                                      f"counterpart in scg.envs.spaces)")
        self._obs_space = Box.make(-np.inf, np.inf, tuple(state.obs.shape), dtype=state.obs.dtype)
        self._act_space = _action_space(env)
        self._has_truncation = "truncation" in state.info

    @property
    def default_params(self) -> NoParams:
        return NoParams()

    def reset_env(self, key: jax.Array, params: NoParams) -> tuple[jax.Array, Any]:
        state = self.env.reset(key)
        return state.obs, state

    def step_env(self, key: jax.Array, state, action, params: NoParams) -> Timestep:
        del key  # brax's step is deterministic
        state_tp1 = self.env.step(state, action)
        terminated, truncated = self._flags(state_tp1)
        return Timestep(state_tp1.obs, state_tp1, state_tp1.reward, terminated, truncated, dict(state_tp1.metrics))

    def _flags(self, state_tp1) -> tuple[jax.Array, jax.Array]:
        """``(terminated, truncated)`` of brax's float ``done`` and ``info["truncation"]`` (class docstring)."""
        done = state_tp1.done != 0
        if not self._has_truncation:
            return done, jnp.zeros_like(done)
        truncated = state_tp1.info["truncation"] != 0
        return done & ~truncated, truncated

    def observation_space(self, params: NoParams) -> Box:
        return self._obs_space

    def action_space(self, params: NoParams) -> Box:
        return self._act_space

    def __repr__(self) -> str:
        return f"BraxEnv({self.name})"


def from_brax(name_or_env, *, episode_length: int = 1000, **kwargs) -> tuple[BraxEnv, NoParams]:
    """Wrap a brax environment (or create one by name) as an ``scg.envs.Environment``.

    Args:
      name_or_env: a brax name such as ``"hopper"``, created with
        ``brax.envs.create(name, episode_length, auto_reset=False, **kwargs)``
        (``kwargs`` go to the environment, e.g. ``backend="mjx"``), or a brax
        ``Env`` object, used as it is (wrap it in
        ``brax.envs.wrappers.training.EpisodeWrapper`` for a time limit).
      episode_length: the time limit of a created environment, in steps.

    Returns:
      ``(env, NoParams())``, the pair every algorithm takes.

    Example:
        >>> env, params = from_brax("fast", episode_length=10)
        >>> env.name, env.action_space(params).shape
        ('brax/fast', (1,))
    """
    envs = _import_brax_envs()
    if isinstance(name_or_env, str):
        try:
            env = envs.create(name_or_env, episode_length=episode_length, auto_reset=False, **kwargs)
        except KeyError as err:  # brax's registry lookup
            raise ValueError(f"from_brax: unknown brax environment {name_or_env!r}; brax.envs.register_environment "
                             f"adds one, or pass the Env object") from err
        return BraxEnv(env, name_or_env), NoParams()
    if kwargs:
        raise TypeError(f"from_brax: {sorted(kwargs)} configure a created environment; {name_or_env!r} is built already")
    return BraxEnv(name_or_env), NoParams()
