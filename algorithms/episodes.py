"""Episode bookkeeping inside compiled training loops: running returns, a window of recent episodes, the metrics record."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class EpisodeStats(NamedTuple):
    running: jax.Array  # [N] return of the episode in progress, per environment
    recent: jax.Array  # [K] returns of the K most recently finished episodes (ring buffer)
    count: jax.Array  # episodes finished so far (int)


def init(num_envs: int, window: int = 20) -> EpisodeStats:
    """No episode finished yet; ``num_envs`` running returns (0 for algorithms that score whole episodes)."""
    return EpisodeStats(jnp.zeros(num_envs), jnp.full(window, jnp.nan, jnp.float32), jnp.zeros((), jnp.int32))


def push(stats: EpisodeStats, returns: jax.Array, finished: jax.Array | None = None) -> EpisodeStats:
    """Append the ``[M]`` returns of finished episodes to the window, in order (where ``finished``, if given)."""
    assert returns.ndim == 1, returns.shape
    finished = jnp.ones(returns.shape, bool) if finished is None else finished
    window = stats.recent.shape[0]

    def one(i, carry):
        recent, count = carry
        recent = jnp.where(finished[i], recent.at[count % window].set(returns[i].astype(recent.dtype)), recent)
        return recent, count + finished[i].astype(jnp.int32)

    recent, count = jax.lax.fori_loop(0, returns.shape[0], one, (stats.recent, stats.count))
    return stats._replace(recent=recent, count=count)


def update(stats: EpisodeStats, rewards: jax.Array, done: jax.Array) -> EpisodeStats:
    """Fold ``[N, T]`` rewards and episode-end flags into ``stats``, step by step (episodes end in env order)."""

    def step(s: EpisodeStats, xs):
        r_t, d_t = xs
        running = s.running + r_t
        s = push(s._replace(running=running), running, d_t)
        return s._replace(running=jnp.where(d_t, 0.0, running)), None

    stats, _ = jax.lax.scan(step, stats, (rewards.T, done.T))
    return stats


def first_episode_mask(done_t: jax.Array) -> jax.Array:
    """``[T]`` 1.0 on the steps of the episode that starts at ``t = 0``, up to and including its first ``done``.

    One row; ``jax.vmap`` it over environments. ``sum(mask * r_t)`` is the first episode's return.
    """
    assert done_t.ndim == 1, f"done_t must be [T], got {done_t.shape}"
    done_t = done_t.astype(jnp.int32)
    return (jnp.cumsum(done_t) - done_t == 0).astype(jnp.float32)


def mean_recent(stats: EpisodeStats) -> jax.Array:
    """Mean return over the window of finished episodes (NaN before the first one ends)."""
    return jnp.nanmean(stats.recent)


def metrics(stats: EpisodeStats, *, env_steps, loss, grads=None, grad_norm=None, **extra) -> dict:
    """The record every algorithm's ``update`` returns (:mod:`scg.algorithms.base`), plus its own ``extra`` scalars.

    ``env_steps``: steps this iteration; ``mean_return`` and ``episodes`` from ``stats``; ``grad_norm``
    given, or the global norm of ``grads``.
    """
    if grad_norm is None:
        grad_norm = optax.tree_utils.tree_norm(grads)
    return {
        "env_steps": jnp.asarray(env_steps, jnp.float32),
        "mean_return": mean_recent(stats),
        "episodes": stats.count.astype(jnp.float32),
        "loss": loss,
        "grad_norm": grad_norm,
        **extra,
    }
