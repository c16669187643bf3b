"""Auto-reset and ``lax.scan`` rollouts over the functional interface, and the shared ``Trajectory`` type.

``Trajectory`` is the one array layout every update path consumes: the JAX
rollouts here and the host-side gymnasium collector (``envs.host``) both
return it, time-major.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from envs.core import Environment, Timestep


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


class AutoReset(Environment):
    """Reset inside ``step`` when an episode ends, branch-free so it runs under ``jit``/``vmap``/``scan``.

    The returned obs and state are the reset ones when ``terminated | truncated``;
    the last observation of the finished episode is ``info["final_obs"]``
    (gymnasium's ``SAME_STEP`` autoreset convention). The key is split into a
    step key and a reset key.

    Example:
        >>> from envs.paper import ChainMDP
        >>> env = AutoReset(ChainMDP()); params = env.default_params
        >>> obs, state = env.reset(jax.random.key(0), params)
        >>> ts = env.step(jax.random.key(1), state, jnp.int32(0), params)
        >>> sorted(ts.info)
        ['final_obs']
    """

    def __init__(self, env: Environment):
        self.env = env
        self.name = env.name

    @property
    def default_params(self):
        return self.env.default_params

    def observation_space(self, params):
        return self.env.observation_space(params)

    def action_space(self, params):
        return self.env.action_space(params)

    def reset_env(self, key, params):
        return self.env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        key_step, key_reset = jax.random.split(key)
        ts = Timestep(*self.env.step_env(key_step, state, action, params))
        obs_reset, state_reset = self.env.reset_env(key_reset, params)
        done = jnp.logical_or(ts.terminated, ts.truncated)
        pick = lambda reset, keep: jnp.where(done, reset, keep)  # noqa: E731
        state = jax.tree_util.tree_map(pick, state_reset, ts.state)
        obs = pick(obs_reset, ts.obs)
        info = dict(ts.info, final_obs=ts.obs)
        return Timestep(obs, state, ts.reward, ts.terminated, ts.truncated, info)

    def __repr__(self) -> str:
        return f"AutoReset({self.env!r})"


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
      env: any Environment (wrapped in ``AutoReset`` unless it already is).
      params: the env params (``env.default_params`` or a ``._replace`` of it).
      policy_fn: ``(obs_t, key) -> a_t`` for a single observation; close over
        the policy parameters (inside your own ``jit`` they are traced, not baked in).
      key: PRNG key.
      num_steps: static trajectory length ``T``.
      num_envs: if given, run ``N`` environments in lock-step (``vmap`` inside the scan).

    Returns:
      ``Trajectory`` with leaves of shape ``(T, ...)`` or ``(T, N, ...)``,
      the same layout as ``envs.host.HostEnv.collect``.

    Example:
        >>> from envs.paper import DeepSea
        >>> env = DeepSea()
        >>> traj = rollout(env, env.default_params, lambda o, k: jnp.int32(0), jax.random.key(0), 8)
        >>> traj.reward.shape, int(traj.terminated.sum())
        ((8,), 2)
    """
    env = env if isinstance(env, AutoReset) else AutoReset(env)
    key_reset, key_scan = jax.random.split(key)

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
