"""Episode bookkeeping inside compiled training loops: running returns and a window of recent episodes."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class EpisodeStats(NamedTuple):
    running: jax.Array  # [N] return of the episode in progress, per environment
    recent: jax.Array  # [K] returns of the K most recently finished episodes (ring buffer)
    count: jax.Array  # episodes finished so far (int)


def init(num_envs: int, window: int = 20) -> EpisodeStats:
    return EpisodeStats(jnp.zeros(num_envs), jnp.full(window, jnp.nan), jnp.zeros((), jnp.int32))


def update(stats: EpisodeStats, rewards: jax.Array, done: jax.Array) -> EpisodeStats:
    """Fold ``[N, T]`` rewards and episode-end flags into ``stats``, step by step (episodes end in env order)."""

    def step(s: EpisodeStats, xs):
        r_t, d_t = xs
        running = s.running + r_t
        window = s.recent.shape[0]

        def push(i, carry):
            recent, count = carry
            finished = d_t[i]
            recent = jnp.where(finished, recent.at[count % window].set(running[i]), recent)
            return recent, count + finished.astype(jnp.int32)

        recent, count = jax.lax.fori_loop(0, r_t.shape[0], push, (s.recent, s.count))
        return EpisodeStats(jnp.where(d_t, 0.0, running), recent, count), None

    stats, _ = jax.lax.scan(step, stats, (rewards.T, done.T))
    return stats


def mean_recent(stats: EpisodeStats) -> jax.Array:
    """Mean return over the window of finished episodes (NaN before the first one ends)."""
    return jnp.nanmean(stats.recent)
