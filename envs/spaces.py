"""Observation and action spaces that compiled code can read.

A space is a frozen description (static, hashable) with the three things an
algorithm needs: what a valid element looks like, how to draw one with an
explicit key, and the matching `gymnasium.spaces` object for the wrappers.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """The integers ``0, ..., n - 1``."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self):
        return jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, self.n, dtype=jnp.int32)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.logical_and(x >= 0, x < self.n)

    def to_gymnasium(self) -> gymnasium.spaces.Discrete:
        return gymnasium.spaces.Discrete(self.n)


@dataclass(frozen=True)
class Box:
    """A box ``low <= x <= high`` of a fixed shape (bounds stored as tuples so the space is hashable)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    shape: tuple[int, ...]
    dtype: type = jnp.float32

    @classmethod
    def make(cls, low, high, shape=None, dtype=jnp.float32) -> "Box":
        low_a, high_a = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if shape is None:
            shape = np.broadcast_shapes(low_a.shape, high_a.shape)
        low_a, high_a = np.broadcast_to(low_a, shape), np.broadcast_to(high_a, shape)
        return cls(tuple(low_a.ravel().tolist()), tuple(high_a.ravel().tolist()), tuple(shape), dtype)

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, dtype=np.float64).reshape(self.shape)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, dtype=np.float64).reshape(self.shape)

    def sample(self, key: jax.Array) -> jax.Array:
        low = np.where(np.isfinite(self.low_array), self.low_array, -1.0)
        high = np.where(np.isfinite(self.high_array), self.high_array, 1.0)
        return jax.random.uniform(key, self.shape, self.dtype, jnp.asarray(low), jnp.asarray(high))

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all(jnp.logical_and(x >= self.low_array, x <= self.high_array))

    def to_gymnasium(self) -> gymnasium.spaces.Box:
        return gymnasium.spaces.Box(
            self.low_array.astype(np.float32), self.high_array.astype(np.float32), self.shape, np.float32
        )
