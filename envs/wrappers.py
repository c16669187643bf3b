"""Auto-reset and ``lax.scan`` rollouts over the functional interface, and the shared ``Trajectory`` type.

``Trajectory`` is the one array layout every update path consumes: the JAX
rollouts here and the host-side gymnasium collector (``scg.envs.host``) both
return it, time-major.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment, Timestep


class Trajectory(NamedTuple):
    """Stacked transitions, time-major: ``(T, ...)`` for one env, ``(T, N, ...)`` for ``N`` envs.

    ``next_obs[t]`` is the true successor of ``obs[t]``, also when the episode
    ended at ``t`` (then ``obs[t + 1]`` is already the next episode's first
    observation). Bootstrapping uses ``next_obs`` with ``1 - terminated``.
    """

    obs: jax.Array  # s_t
    action: jax.Array  # a_t
    reward: jax.Array  # r_t
    terminated: jax.Array  # s_{t+1} is terminal
    truncated: jax.Array  # cut by a time limit at s_{t+1}
    next_obs: jax.Array  # s_{t+1}, before any reset


class _Delegating:
    """Params and spaces of the wrapped ``self.env`` (the spaces of one environment, also for a batch)."""

    env: Environment

    @property
    def default_params(self):
        return self.env.default_params

    def observation_space(self, params):
        return self.env.observation_space(params)

    def action_space(self, params):
        return self.env.action_space(params)


class AutoReset(_Delegating, Environment):
    """Reset inside ``step`` when an episode ends, branch-free so it runs under ``jit``/``vmap``/``scan``.

    The returned obs and state are the reset ones when ``terminated | truncated``;
    the last observation of the finished episode is ``info["final_obs"]``
    (gymnasium's ``SAME_STEP`` autoreset convention). The key is split into a
    step key and a reset key. Since it never returns a terminated state, the
    absorbing rule of ``Environment.step`` for those does not apply to it
    (``is_terminal`` is ``None``; pass it states it returned, or reset ones).

    Example:
        >>> from scg.envs.paper import ChainMDP
        >>> env = AutoReset(ChainMDP()); params = env.default_params
        >>> obs, state = env.reset(jax.random.key(0), params)
        >>> ts = env.step(jax.random.key(1), state, jnp.int32(0), params)
        >>> sorted(ts.info)
        ['final_obs']
    """

    def __init__(self, env: Environment):
        self.env = env
        self.name = env.name

    def reset_env(self, key, params):
        return self.env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        key_step, key_reset = jax.random.split(key)
        ts = Timestep(*self.env.step_env(key_step, state, action, params))
        obs, state = _where_done(ts.terminated | ts.truncated, self.env.reset_env(key_reset, params), (ts.obs, ts.state))
        return Timestep(obs, state, ts.reward, ts.terminated, ts.truncated, dict(ts.info, final_obs=ts.obs))

    def __repr__(self) -> str:
        return f"AutoReset({self.env!r})"


def _where_done(done: jax.Array, reset, keep):
    """``reset`` where ``done`` else ``keep``, leaf by leaf; ``done`` has the leading (batch) shape of the leaves."""

    def pick(r, k):
        return jnp.where(done.reshape(done.shape + (1,) * (jnp.ndim(k) - done.ndim)), r, k)

    return jax.tree_util.tree_map(pick, reset, keep)


class VecAutoReset(_Delegating):
    """``num_envs`` copies of an environment stepped in lock-step, with auto-reset drawn only for the ended ones.

    ``AutoReset`` works on one environment, so under ``vmap`` every environment
    draws a fresh initial state at every step and keeps it only where its
    episode ended: on CPU that PRNG work costs more than the dynamics (about 4x
    the time of CartPole without reset at 4,096 environments, bench/README.md).
    This wrapper sees the whole batch, so it can do better and stay exact: it
    gathers the indices of the ended environments (``jnp.nonzero`` with a
    static ``size=max_resets``), draws ``max_resets`` initial states and
    scatters them in. When more than ``max_resets`` episodes end in the same
    step, a ``lax.cond`` takes the ``AutoReset`` path instead (a fresh draw for
    every environment, kept where ended), so the result is always exact: every
    ended environment restarts from an independent draw of ``reset``, and the
    others are untouched. (Under an outer ``vmap`` the ``cond`` becomes a
    ``select`` and both paths run; the result is the same.)

    The draws differ from those of ``vmap(AutoReset(env))`` with the same key:
    the same distribution, not the same numbers.

    The interface is batched: one key per call, leading axis ``num_envs`` on
    ``obs``, ``state``, ``action``, ``reward`` and the flags (the spaces are
    those of one environment); the finished
    episode's last observation is ``info["final_obs"]`` as in ``AutoReset``,
    and, as ``AutoReset``, it never returns a terminated state, so the absorbing
    rule of ``Environment.step`` for those is skipped (pass it states it
    returned, or reset ones).

    Args:
      env: an Environment (not already wrapped in ``AutoReset``).
      num_envs: the batch size ``N``.
      max_resets: resets drawn per step on the cheap path; default
        ``ceil(N / 16)`` (CartPole under random actions ends about 4% of its
        episodes per step).

    Example:
        >>> from scg.envs.classic_control import CartPole
        >>> venv = VecAutoReset(CartPole(), num_envs=8)
        >>> obs, state = venv.reset(jax.random.key(0))
        >>> ts = venv.step(jax.random.key(1), state, jnp.zeros(8, jnp.int32))
        >>> ts.obs.shape, ts.info["final_obs"].shape
        ((8, 4), (8, 4))
    """

    def __init__(self, env: Environment, num_envs: int, max_resets: int | None = None):
        if isinstance(env, (AutoReset, VecAutoReset)):
            raise TypeError(f"VecAutoReset: {env!r} already resets itself; pass the bare environment")
        if int(num_envs) < 1:
            raise ValueError(f"VecAutoReset: num_envs must be >= 1, got {num_envs}")
        self.env, self.name, self.num_envs = env, env.name, int(num_envs)
        self.max_resets = -(-self.num_envs // 16) if max_resets is None else int(max_resets)
        if not 1 <= self.max_resets <= self.num_envs:
            raise ValueError(f"VecAutoReset: max_resets must be in [1, num_envs={self.num_envs}], got {max_resets}")

    def _reset_batch(self, key, n, params):
        return jax.vmap(self.env.reset, in_axes=(0, None))(jax.random.split(key, n), params)

    def reset(self, key: jax.Array, params=None):
        """``num_envs`` independent initial observations and states, each with a leading ``num_envs`` axis."""
        return self._reset_batch(key, self.num_envs, self.env._check_params(params))

    def step(self, key: jax.Array, state, action, params=None) -> Timestep:
        """Step every environment with its own key; restart the ended ones from fresh, independent resets."""
        params = self.env._check_params(params)
        action = jnp.asarray(action)
        if action.ndim == 0 or action.shape[0] != self.num_envs:
            raise ValueError(
                f"VecAutoReset({self.name}): action has shape {action.shape}; expected a leading axis of "
                f"num_envs={self.num_envs} (one action per environment)"
            )
        key_step, key_reset = jax.random.split(key)
        # Its states are never terminated (ended ones are reset below), so the absorbing guard is skipped: the
        # same numbers, without a select per leaf.
        step = jax.vmap(functools.partial(self.env._step, absorbing=False), in_axes=(0, 0, 0, None))
        ts = step(jax.random.split(key_step, self.num_envs), state, action, params)
        done = ts.terminated | ts.truncated
        stepped = (ts.obs, ts.state)

        def reset_ended(_):
            (idx,) = jnp.nonzero(done, size=self.max_resets, fill_value=self.num_envs)  # padding is out of range
            fresh = self._reset_batch(key_reset, self.max_resets, params)
            return jax.tree_util.tree_map(lambda x, x0: x.at[idx].set(x0, mode="drop"), stepped, fresh)

        def reset_all(_):
            return _where_done(done, self._reset_batch(key_reset, self.num_envs, params), stepped)

        obs, state = jax.lax.cond(done.sum() <= self.max_resets, reset_ended, reset_all, None)
        return Timestep(obs, state, ts.reward, ts.terminated, ts.truncated, dict(ts.info, final_obs=ts.obs))

    def __repr__(self) -> str:
        return f"VecAutoReset({self.env!r}, num_envs={self.num_envs}, max_resets={self.max_resets})"


PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]  # (obs_t, key) -> a_t, for one example


def rollout(
    env: Environment,
    params,
    policy_fn: PolicyFn,
    key: jax.Array,
    num_steps: int,
    *,
    num_envs: int | None = None,
) -> Trajectory:
    """Run ``policy_fn`` for ``num_steps`` steps from a fresh reset in one ``lax.scan``, resetting episodes as they end.

    Args:
      env: any Environment (wrapped in ``AutoReset`` unless it already is),
        or a ``VecAutoReset``, which sets the number of environments itself
        and resets only the ended ones (faster for large batches).
      params: the env params (``env.default_params`` or a ``._replace`` of it).
      policy_fn: ``(obs_t, key) -> a_t`` for a single observation; close over
        the policy parameters (inside your own ``jit`` they are traced, not baked in).
      key: PRNG key.
      num_steps: static trajectory length ``T``.
      num_envs: if given, run ``N`` environments in lock-step (``vmap`` inside the scan).

    Returns:
      ``Trajectory`` with leaves of shape ``(T, ...)`` or ``(T, N, ...)``,
      the same layout as ``scg.envs.host.HostEnv.collect``.

    Example:
        >>> from scg.envs.paper import DeepSea
        >>> env = DeepSea()
        >>> traj = rollout(env, env.default_params, lambda o, k: jnp.int32(0), jax.random.key(0), 8)
        >>> traj.reward.shape, int(traj.terminated.sum())
        ((8,), 2)
    """
    key_reset, key_scan = jax.random.split(key)
    if isinstance(env, VecAutoReset):
        if num_envs not in (None, env.num_envs):
            raise ValueError(f"rollout: num_envs={num_envs} but the VecAutoReset runs {env.num_envs}")
        return _vec_rollout(env, params, policy_fn, key_reset, key_scan, num_steps)
    env = env if isinstance(env, AutoReset) else AutoReset(env)

    def step(carry, key_t):
        obs_t, state_t = carry
        key_pi, key_env = jax.random.split(key_t)
        a_t = policy_fn(obs_t, key_pi)
        ts = env.step(key_env, state_t, a_t, params)
        return (ts.obs, ts.state), Trajectory(obs_t, a_t, ts.reward, ts.terminated, ts.truncated, ts.info["final_obs"])

    if num_envs is None:
        init = env.reset(key_reset, params)
        keys = jax.random.split(key_scan, num_steps)
        body = step
    else:
        init = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)
        keys = jax.random.split(key_scan, (num_steps, num_envs))
        body = jax.vmap(step)
    _, traj = jax.lax.scan(body, init, keys)
    return traj


def _vec_rollout(venv: VecAutoReset, params, policy_fn: PolicyFn, key_reset, key_scan, num_steps: int) -> Trajectory:
    """``rollout`` for a ``VecAutoReset``: the policy is vmapped, the environment batch steps with one key."""
    policy = jax.vmap(policy_fn)

    def step(carry, key_t):
        obs_t, state_t = carry
        key_pi, key_env = jax.random.split(key_t)
        a_t = policy(obs_t, jax.random.split(key_pi, venv.num_envs))
        ts = venv.step(key_env, state_t, a_t, params)
        return (ts.obs, ts.state), Trajectory(obs_t, a_t, ts.reward, ts.terminated, ts.truncated, ts.info["final_obs"])

    _, traj = jax.lax.scan(step, venv.reset(key_reset, params), jax.random.split(key_scan, num_steps))
    return traj
