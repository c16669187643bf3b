"""gymnax environments in scg's functional interface: ``env, params = from_gymnax("CartPole-v1")``.

A gymnax environment is already a pair of pure functions over explicit
``(state, params)`` pytrees, so the adapter only renames and splits:

* it calls gymnax's ``reset_env``/``step_env``, which do not reset, not
  ``step``, which auto-resets itself; our ``AutoReset``/``VecAutoReset`` then
  reset the adapted environment exactly as they reset ours (and keep the last
  observation of an episode in ``info["final_obs"]``);
* gymnax's ``step_env`` returns five values ``(obs, state, reward, done, info)``;
  ``done`` becomes our two flags ``terminated`` and ``truncated`` (``_flags``);
* gymnax ``Discrete``/``Box`` spaces become ours (``convert_space``).

gymnax is imported only when an environment is adapted (``pip install "scg-jax[gymnax]"``).

Example::

    env, params = from_gymnax("CartPole-v1")
    obs, state = env.reset(jax.random.key(0), params)
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 1, params)
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box, Discrete

_INSTALL = 'pip install "scg-jax[gymnax]"'
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _import_gymnax():
    try:
        import gymnax
    except ImportError as err:
        raise ImportError(f"scg.envs.gymnax_adapter needs gymnax; install it with {_INSTALL} ({err})") from err
    return gymnax


def _unbounded(bound) -> np.ndarray:
    """gymnax writes an infinite bound as ``±finfo(float32).max`` (CartPole's velocities); ours are ``±inf``."""
    bound = np.asarray(bound, dtype=np.float64)
    return np.where(np.abs(bound) >= _FLOAT32_MAX, np.sign(bound) * np.inf, bound)


def convert_space(space, env_name: str) -> Box | Discrete:
    """Our description of a gymnax ``spaces.Discrete`` or ``spaces.Box``.

    A ``Box`` keeps its bounds (``±finfo(float32).max`` read as ``±inf``) and
    shape, and its dtype where that is floating; a boolean or integer ``Box``
    (MinAtar's observations) is described as a float32 box, while the
    observations themselves keep gymnax's dtype. ``Dict`` and ``Tuple`` spaces
    have no counterpart in ``scg.envs.spaces`` and raise ``NotImplementedError``.
    """
    from gymnax.environments import spaces

    if isinstance(space, spaces.Discrete):
        return Discrete(int(space.n))
    if isinstance(space, spaces.Box):
        floating = jnp.issubdtype(space.dtype, jnp.floating)
        return Box.make(_unbounded(space.low), _unbounded(space.high), tuple(space.shape),
                        dtype=space.dtype if floating else jnp.float32)
    raise NotImplementedError(f"{env_name}: cannot convert the gymnax space {space!r}; only Discrete and Box "
                              f"have a counterpart in scg.envs.spaces")


class GymnaxEnv(Environment):
    """A gymnax environment as an ``scg.envs.Environment``; build it with :func:`from_gymnax`.

    ``terminated`` and ``truncated`` come from gymnax's ``done`` as follows.

    * gymnax >= 1.0 (its environments define ``is_truncated``): ``done`` is
      the natural termination alone, so ``terminated = done`` and
      ``truncated = env.is_truncated(s_{t+1}, params)``, which is
      ``s_{t+1}.time >= params.max_steps_in_episode`` unless the environment
      overrides it: the flags gymnax's own ``step`` returns. Both can be True
      at once, as in gymnasium's ``TimeLimit`` and our CartPole.
    * older gymnax (0.0.x): ``done`` conflates termination and the time limit.
      Where the state has ``time`` and the params ``max_steps_in_episode``,
      ``truncated = done & (s_{t+1}.time >= max_steps_in_episode)`` and
      ``terminated = done & ~truncated``; a natural termination on the last
      step of the time limit then reads as a truncation (``done`` cannot tell
      them apart), so that one step bootstraps from a terminal state. Where
      those fields do not exist, ``terminated = done`` and ``truncated`` is
      always False: an episode end that is really a time limit inside the
      environment reads as a termination.

    Rewards are cast to the default float dtype and the flags to bool. The
    adapter has no ``is_terminal``: a terminated state stepped without a reset
    does what gymnax's ``step_env`` does from it (CartPole: reward 0, the pole
    keeps falling), not our absorbing step; ``AutoReset``, ``VecAutoReset``
    and training never step one.
    """

    def __init__(self, env, params):
        for method in ("reset_env", "step_env", "observation_space", "action_space"):
            if not callable(getattr(env, method, None)):
                raise TypeError(f"from_gymnax: {env!r} has no {method}(); pass a gymnax Environment or a gymnax id")
        self.env, self._params = env, params
        self.name = f"gymnax/{env.name}"
        self._split_done = callable(getattr(env, "is_truncated", None))
        _, state = jax.eval_shape(env.reset_env, jax.random.key(0), params)
        self._has_time_limit = hasattr(state, "time") and hasattr(params, "max_steps_in_episode")
        self.observation_space(params), self.action_space(params)  # an unsupported space fails here, not in a rollout

    @property
    def default_params(self) -> Any:
        return self._params

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, Any]:
        return self.env.reset_env(key, params)

    def step_env(self, key: jax.Array, state, action, params) -> Timestep:
        obs, state_tp1, reward, done, info = self.env.step_env(key, state, action, params)
        terminated, truncated = self._flags(jnp.asarray(done, bool), state_tp1, params)
        return Timestep(obs, state_tp1, jnp.asarray(reward, float), terminated, truncated, dict(info))

    def _flags(self, done: jax.Array, state_tp1, params) -> tuple[jax.Array, jax.Array]:
        """``(terminated, truncated)`` of gymnax's ``done`` (the rules in the class docstring)."""
        if self._split_done:
            return done, jnp.asarray(self.env.is_truncated(state_tp1, params), bool)
        if not self._has_time_limit:
            return done, jnp.zeros_like(done)
        truncated = done & (state_tp1.time >= params.max_steps_in_episode)
        return done & ~truncated, truncated

    def observation_space(self, params) -> Box | Discrete:
        return convert_space(self.env.observation_space(params), self.name)

    def action_space(self, params) -> Box | Discrete:
        return convert_space(self.env.action_space(params), self.name)

    def __repr__(self) -> str:
        return f"GymnaxEnv({self.env.name})"


def from_gymnax(env_or_id, params=None) -> tuple[GymnaxEnv, Any]:
    """Wrap a gymnax environment (or make one from its gymnax id) as an ``scg.envs.Environment``.

    Args:
      env_or_id: a gymnax id such as ``"CartPole-v1"`` (``gymnax.make``), or a
        gymnax ``Environment`` object.
      params: gymnax params for it; default the environment's ``default_params``.

    Returns:
      ``(env, params)``, the pair every algorithm takes:
      ``scg.algorithms.make_train("reinforce", env, params, {...})``.

    Example:
        >>> env, params = from_gymnax("CartPole-v1")
        >>> env.name, env.action_space(params)
        ('gymnax/CartPole-v1', Discrete(n=2))
    """
    gymnax = _import_gymnax()
    if isinstance(env_or_id, str):
        try:
            env, default = gymnax.make(env_or_id)
        except ValueError as err:
            known = ", ".join(getattr(gymnax, "registered_envs", []))
            raise ValueError(f"from_gymnax: unknown gymnax id {env_or_id!r}; known: {known}") from err
    else:
        env = env_or_id
        default = getattr(env, "default_params", None)
    params = default if params is None else params
    return GymnaxEnv(env, params), params
