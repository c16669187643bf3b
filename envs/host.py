"""Collect trajectories from any gymnasium env on the host, in the same ``Trajectory`` layout as ``scg.envs.wrappers.rollout``.

For environments with no JAX port (MuJoCo and friends): ``N`` copies run in a
gymnasium vector env with ``AutoresetMode.SAME_STEP`` (gymnasium >= 1.1), so a
finished sub-env is reset inside the same ``step`` call and its last
observation arrives in ``info["final_obs"]`` (masked by ``info["_final_obs"]``);
we copy that into ``next_obs``. The policy runs jitted and batched (``vmap`` of
a single-example policy); the env loop itself is a host loop of ``T`` steps,
unavoidably.

The copies run either in this process, one after another
(``vectorization="sync"``, ``SyncVectorEnv``, the default), or in parallel, one
worker process per copy (``vectorization="async"``, ``AsyncVectorEnv``): worth
it when one env step costs far more than a pipe round trip (MuJoCo, not
CartPole). Both give the same ``Trajectory`` for the same seed and policy key.

Example::

    host = HostEnv("CartPole-v1", num_envs=4, seed=0)
    policy = lambda theta, obs, key: jax.random.randint(key, (), 0, 2)
    traj = host.collect(policy, None, jax.random.key(0), num_steps=100)   # leaves (100, 4, ...)

    with HostEnv("HalfCheetah-v5", num_envs=2, seed=0, vectorization="async") as host:   # 2 worker processes
        traj = host.collect(policy, theta, jax.random.key(0), num_steps=1000)
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

VECTORIZATIONS = ("sync", "async")

# Start method of the async workers. Linux's default, "fork", copies this process with whatever threads
# it runs, and JAX (XLA's thread pools) is running by the time a HostEnv is built: a forked child can
# deadlock on a lock some other thread held (JAX warns: "os.fork() ... JAX is multithreaded"). "spawn"
# starts each worker as a fresh interpreter: safe, on every OS, and leaves no process behind once close()
# has joined the workers. "forkserver" is as safe and starts workers about as fast (~1 s for 2 workers
# measured here either way) but keeps a server process alive for the rest of the program and is missing
# on Windows. Either way the script that builds an async HostEnv needs an ``if __name__ == "__main__":``
# guard, since the workers import the main module.
WORKER_START_METHOD = "spawn"


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
    episodes); everything returned is plain arrays. Call :meth:`close` when
    done (it stops the worker processes of ``"async"``), or use it as a context
    manager.

    Args:
      env_id: any gymnasium id (``"CartPole-v1"``, ``"HalfCheetah-v5"``, ``"scg/HandMass-v0"``).
      num_envs: ``N``.
      seed: seeds sub-env ``i`` with ``seed + i`` at the first reset.
      vectorization: ``"sync"`` (default): the ``N`` copies step one after another in this process
        (``gymnasium.vector.SyncVectorEnv``). ``"async"``: ``gymnasium.vector.AsyncVectorEnv``, which by
        gymnasium's design runs one worker process per copy (``N`` processes, started with
        ``WORKER_START_METHOD``), stepped in parallel; observations come back through shared memory.
        Pays off when a step is expensive (MuJoCo) and there are cores to spare; costs about a second
        to start the workers. The numbers are the same either way.
      **make_kwargs: passed to each ``gymnasium.make`` (picklable, for ``"async"``).
    """

    def __init__(self, env_id: str, num_envs: int, *, seed: int | None = None, vectorization: str = "sync",
                 **make_kwargs):
        if vectorization not in VECTORIZATIONS:
            raise ValueError(f"{env_id}: vectorization must be 'sync' or 'async', got {vectorization!r}")
        mode = getattr(getattr(gymnasium.vector, "AutoresetMode", None), "SAME_STEP", None)
        if mode is None:
            raise ImportError(f"{env_id}: HostEnv needs gymnasium >= 1.1 (vector AutoresetMode.SAME_STEP)")
        self.env_id, self.num_envs, self.vectorization = env_id, num_envs, vectorization
        vector_kwargs = {"autoreset_mode": mode}
        if vectorization == "async":
            vector_kwargs["context"] = WORKER_START_METHOD
        self.vec = gymnasium.make_vec(
            env_id, num_envs, vectorization_mode=vectorization, vector_kwargs=vector_kwargs, **make_kwargs
        )
        try:
            self.observation_space = from_gymnasium(self.vec.single_observation_space)
            self.action_space = from_gymnasium(self.vec.single_action_space)
            self.obs, _ = self.vec.reset(seed=seed)
        except BaseException:  # an unsupported space or a failing reset: do not leave workers running
            self.vec.close()
            raise
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
            steps.append((obs_t, action, reward, terminated, truncated, with_final_obs(obs, info)))
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
        """Close the ``N`` envs; for ``"async"``, stop and join the worker processes. Calling it again is a no-op."""
        self.vec.close()

    def __enter__(self) -> "HostEnv":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def with_final_obs(obs: np.ndarray, info: dict) -> np.ndarray:
    """A copy of the batched ``obs`` after a SAME_STEP ``step`` where each finished sub-env's row is its last
    observation (``info["final_obs"][i]``) rather than the first of its next episode.

    Sync and async vector envs alike deliver ``info["final_obs"]`` as a numpy *object* array of length ``N``
    (one observation per finished sub-env, ``None`` elsewhere), masked by ``info["_final_obs"]``; hence the
    row by row copy.
    """
    next_obs = np.array(obs, copy=True)
    if "final_obs" in info:
        for i in np.flatnonzero(info["_final_obs"]):
            next_obs[i] = info["final_obs"][i]
    return next_obs
