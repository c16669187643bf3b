"""A fixed-capacity replay buffer as a pytree of arrays, for off-policy learners (DDPG, SVG(0)/SVG(1)-ER, Smoothie).

The buffer is a :class:`ReplayState`: the stored transitions ``data`` (any pytree; each leaf
``[capacity, ...]``), the next write slot ``pointer`` and the number of filled slots ``size``. It is
written by pure functions, state in and state out, so it lives in a training carry under ``jit``,
``lax.scan`` and ``vmap`` over a leading seed axis like any other state::

    state = replay.init(example_transition, capacity=10_000)
    state = replay.add(state, batch)                    # batch: leaves [B, ...], written at pointer, wrapping
    minibatch = replay.sample(state, key, batch_size=64)  # uniform over the filled slots, with replacement

The capacity is the (static) leading dimension of the leaves; ``add`` is traced once per batch size
and ``sample`` once per ``batch_size``, whatever the pointer and the contents.

Target networks, the other half of DQN's recipe that DDPG takes (Lillicrap et al. 2016, §3), need no
module of their own: the Polyak update ``θ' ← τθ + (1 − τ)θ'`` is
``optax.incremental_update(new_tensors=params, old_tensors=target_params, step_size=tau)``, newest
first (``tests/algorithms/test_replay_buffer.py`` pins that order).
"""
from __future__ import annotations

import operator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


class ReplayState(NamedTuple):
    data: PyTree  # the transitions; every leaf [capacity, ...]; slots >= size hold zeros
    pointer: jax.Array  # int32 scalar: the slot the next transition goes to
    size: jax.Array  # int32 scalar: filled slots, <= capacity


def _positive_int(value, name: str) -> int:
    """``value`` as a Python int > 0, or a ValueError naming ``name`` (it fixes a shape, so it is static)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive Python int (it fixes a shape), got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def init(example_transition: PyTree, capacity: int) -> ReplayState:
    """An empty buffer of ``capacity`` slots shaped like ``example_transition`` (zeros, same dtypes).

    Args:
      example_transition: one transition, a pytree of arrays (or ``jax.ShapeDtypeStruct``); only its
        leaves' shapes and dtypes are read.
      capacity: the number of slots, a positive Python int.

    Returns:
      ``ReplayState(data, pointer=0, size=0)`` with every leaf of ``data`` ``[capacity, *leaf.shape]``.

    One buffer per seed: ``jax.vmap(lambda _: init(example, capacity))(jnp.arange(num_seeds))``
    (``capacity`` is a shape, so it is closed over rather than mapped).

    >>> state = init({"obs": jnp.zeros(3), "reward": jnp.zeros(())}, capacity=5)
    >>> state.data["obs"].shape, int(state.size)
    ((5, 3), 0)
    """
    capacity = _positive_int(capacity, "capacity")
    leaves = jax.tree.leaves(example_transition)
    if not leaves:
        raise ValueError("example_transition has no array leaves: there is nothing to store")

    def empty(leaf):
        leaf = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else jnp.asarray(leaf)
        return jnp.zeros((capacity, *leaf.shape), leaf.dtype)

    data = jax.tree.map(empty, example_transition)
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _capacity(state: ReplayState) -> int:
    return jax.tree.leaves(state.data)[0].shape[0]


def _checked_batch(data: PyTree, batch: PyTree) -> tuple[PyTree, int]:
    """``batch`` with its leaves cast to the buffer's dtypes, and its size ``B``; errors name the leaf path.

    Shapes are static, so every check runs once, at trace time, and costs nothing per call.
    """
    if jax.tree.structure(batch) != jax.tree.structure(data):
        have = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(batch)[0]}
        want = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(data)[0]}
        detail = (f"missing {sorted(want - have)}, unexpected {sorted(have - want)}" if have != want else
                  f"{jax.tree.structure(batch)} vs the buffer's {jax.tree.structure(data)}")
        raise ValueError(f"replay add: the batch's structure differs from the buffer's: {detail}")
    sizes = set()
    out = []
    for (path, stored), leaf in zip(jax.tree_util.tree_flatten_with_path(data)[0], jax.tree.leaves(batch)):
        where = "batch" + jax.tree_util.keystr(path)
        leaf = jnp.asarray(leaf)
        if leaf.ndim != stored.ndim or leaf.shape[1:] != stored.shape[1:]:
            raise ValueError(f"replay add: {where} has shape {leaf.shape}; the buffer stores "
                             f"{stored.shape[1:]} per transition, so it must be [B, *{stored.shape[1:]}]")
        if not np.can_cast(leaf.dtype, stored.dtype, casting="same_kind"):
            raise ValueError(f"replay add: {where} has dtype {leaf.dtype}; the buffer stores {stored.dtype} "
                             "(a cast would change the kind of value)")
        sizes.add(leaf.shape[0])
        out.append(leaf.astype(stored.dtype))
    if len(sizes) > 1:
        raise ValueError(f"replay add: the batch's leaves have different leading sizes {sorted(sizes)}")
    return jax.tree.unflatten(jax.tree.structure(data), out), sizes.pop()


def add(state: ReplayState, batch: PyTree) -> ReplayState:
    """Write the ``B`` transitions of ``batch`` (leaves ``[B, ...]``) at ``pointer``, wrapping around.

    Transition ``i`` goes to slot ``(pointer + i) mod capacity``: the same as adding them one at a
    time, in order, so the oldest are overwritten first. When ``B > capacity`` only the last
    ``capacity`` of the batch are kept (the earlier ones would be overwritten within this call).

    Args:
      state: the buffer.
      batch: a pytree with the buffer's structure; each leaf ``[B, *stored_shape]``. Dtypes are cast
        to the buffer's within a kind (float64 → float32, bool → float); a cast across kinds (float
        into an int leaf) is an error, as are a wrong structure or shape (naming the leaf path).

    Returns:
      The buffer with ``pointer' = (pointer + B) mod capacity`` and ``size' = min(size + B, capacity)``.

    >>> state = add(init(jnp.zeros(()), capacity=3), jnp.arange(5.0))
    >>> state.data.tolist(), int(state.pointer), int(state.size)
    ([3.0, 4.0, 2.0], 2, 3)
    """
    capacity = _capacity(state)
    batch, n = _checked_batch(state.data, batch)
    kept = min(n, capacity)  # static: shapes decide it
    start = (state.pointer + (n - kept)) % capacity
    slots = (start + jnp.arange(kept, dtype=jnp.int32)) % capacity  # distinct, since kept <= capacity
    data = jax.tree.map(lambda stored, new: stored.at[slots].set(new[n - kept:], unique_indices=True),
                        state.data, batch)
    return ReplayState(data, (state.pointer + n) % capacity, jnp.minimum(state.size + n, capacity))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> PyTree:
    """``batch_size`` transitions drawn uniformly, with replacement, from the filled slots ``[0, size)``.

    With replacement, as DQN and DDPG sample their minibatches: draws are independent, so a small
    buffer can return one transition twice. Slot order is irrelevant to a uniform draw, so the slots
    ``[0, size)`` are exactly the stored transitions, before and after the buffer wraps.

    Args:
      state: the buffer; it should hold at least one transition (an empty one returns its zeros,
        since a traced ``size`` cannot raise: warm up before learning, e.g. until ``size >= batch_size``).
      key: a PRNG key.
      batch_size: a positive Python int (static: under ``jit``, mark it with ``static_argnames``).

    Returns:
      A pytree like ``state.data`` with every leaf ``[batch_size, ...]``.

    >>> state = add(init(jnp.zeros(()), capacity=8), jnp.array([1.0, 2.0]))
    >>> set(sample(state, jax.random.key(0), 16).tolist()) <= {1.0, 2.0}
    True
    """
    batch_size = _positive_int(batch_size, "batch_size")
    slots = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1), dtype=jnp.int32)
    return jax.tree.map(lambda stored: stored[slots], state.data)
