"""Collect trajectories from any gymnasium env on the host, in the same ``Trajectory`` layout as ``scg.envs.wrappers.rollout``.

For environments with no JAX port (MuJoCo and friends): ``N`` copies run in a
``gymnasium.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP`` (gymnasium
>= 1.1), so a finished sub-env is reset inside the same ``step`` call and its
last observation arrives in ``info["final_obs"]`` (masked by
``info["_final_obs"]``); we copy that into ``next_obs``. The policy runs
jitted and batched (``vmap`` of a single-example policy); the env loop itself
is a host loop of ``T`` steps, unavoidably.

Example::

    host = HostEnv("CartPole-v1", num_envs=4, seed=0)
    policy = lambda theta, obs, key: jax.random.randint(key, (), 0, 2)
    traj = host.collect(policy, None, jax.random.key(0), num_steps=100)   # leaves (100, 4, ...)
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.spaces import Box, Discrete
from scg.envs.wrappers import Trajectory

HostPolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]  # (policy_params, obs_t, key) -> a_t, one example


def from_gymnasium(space: gymnasium.spaces.Space) -> Box | Discrete:
    """Convert a gymnasium ``Box`` or ``Discrete`` (with ``start == 0``) to an ``scg.envs.spaces`` description."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise NotImplementedError(f"Discrete space with start={space.start} is not supported")
        return Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        return Box.make(space.low, space.high, space.shape)
    raise NotImplementedError(f"cannot convert gymnasium space {space}; only Box and Discrete are supported")


class HostEnv:
    """``N`` copies of a gymnasium env, stepped on the host.

    The vector env is host-side mutable state (the current observations
    persist between ``collect`` calls, so successive calls continue the same
    episodes); everything returned is plain arrays.

    Args:
      env_id: any gymnasium id (``"CartPole-v1"``, ``"HalfCheetah-v5"``, ``"scg/HandMass-v0"``).
      num_envs: ``N``.
      seed: seeds sub-env ``i`` with ``seed + i`` at the first reset.
      **make_kwargs: passed to each ``gymnasium.make``.
    """

    def __init__(self, env_id: str, num_envs: int, *, seed: int | None = None, **make_kwargs):
        mode = getattr(getattr(gymnasium.vector, "AutoresetMode", None), "SAME_STEP", None)
        if mode is None:
            raise ImportError(f"{env_id}: HostEnv needs gymnasium >= 1.1 (vector AutoresetMode.SAME_STEP)")
        self.env_id, self.num_envs = env_id, num_envs
        self.vec = gymnasium.make_vec(
            env_id, num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, **make_kwargs
        )
        self.observation_space = from_gymnasium(self.vec.single_observation_space)
        self.action_space = from_gymnasium(self.vec.single_action_space)
        self.obs, _ = self.vec.reset(seed=seed)
        self._policies: dict = {}

    def _batched(self, policy_fn: HostPolicyFn):
        if policy_fn not in self._policies:
            batched = jax.vmap(policy_fn, in_axes=(None, 0, 0))
            self._policies[policy_fn] = jax.jit(lambda theta, obs, key: batched(theta, obs, jax.random.split(key, obs.shape[0])))
        return self._policies[policy_fn]

    def collect(self, policy_fn: HostPolicyFn, policy_params, key: jax.Array, num_steps: int) -> Trajectory:
        """Run ``num_steps`` steps of all ``N`` envs; returns a ``Trajectory`` of numpy arrays shaped ``(T, N, ...)``."""
        return self.collect_batched(self._batched(policy_fn), policy_params, key, num_steps)

    def collect_batched(self, policy, policy_params, key: jax.Array, num_steps: int) -> Trajectory:
        """:meth:`collect` with a batched ``policy(policy_params, obs [N, ...], key) -> actions [N, ...]``, called
        as given (jit it yourself) with one key per step, ``split(key, num_steps)[t]``."""
        want = (self.num_envs, *self.action_space.shape)
        steps = []
        for key_t in jax.random.split(key, num_steps):
            action = np.asarray(policy(policy_params, jnp.asarray(self.obs, jnp.float32), key_t))
            if action.shape != want:
                raise ValueError(f"{self.env_id}: policy returned actions of shape {action.shape[1:]}, expected {self.action_space.shape}")
            obs_t = self.obs
            obs, reward, terminated, truncated, info = self.vec.step(action)
            next_obs = np.array(obs, copy=True)
            if "final_obs" in info:
                for i in np.flatnonzero(info["_final_obs"]):
                    next_obs[i] = info["final_obs"][i]
            steps.append((obs_t, action, reward, terminated, truncated, next_obs))
            self.obs = obs
        obs_, act, rew, term, trunc, nxt = (np.stack(x) for x in zip(*steps))
        return Trajectory(
            obs=obs_.astype(np.float32),
            action=act,
            reward=rew.astype(np.float32),
            terminated=term.astype(bool),
            truncated=trunc.astype(bool),
            next_obs=nxt.astype(np.float32),
        )

    def close(self) -> None:
        self.vec.close()
