"""The estimator interface: one small object per way of differentiating through a node.

The compiler asks each stochastic node's estimator for two things:

- ``sample(dist, key)``: the node's value. A score-function estimator returns a
  sample with no gradient; a pathwise one a reparameterised sample.
- ``terms(ctx)``: a pair ``(score_weight, extra)`` of scalars. The compiler
  multiplies ``score_weight`` by ``stop_gradient(Q̂_w - b_w)`` (so baselines and
  credit assignment live once, in the compiler) and adds ``extra`` to the
  surrogate as it is.

Expectation nodes (``Graph.expectation``) ask their estimator for ``expect(ctx)``.

Class attributes tell the compiler how the node behaves in the graph:

- ``passes_gradient``: the value carries a gradient to its children, so the
  node counts as deterministic in ``≺ᴰ`` (Schulman 2016, §5.3.1).
- ``uses_score``: the node has a ``Q̂_w`` term, so baselines apply.
- ``needs_downstream``: ``ctx.downstream(value)`` is used (the sum of the costs
  downstream of the node, re-evaluated with the node's value replaced).

To add an estimator, write a module with a class following this protocol and
register it with :func:`scg.estimators.register`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class NodeContext(NamedTuple):
    """What an estimator sees of one node in one sample."""

    name: str
    dist: Any  # the node's distribution, built from its parents' values
    value: Any  # the value the estimator's ``sample`` returned
    key: jax.Array  # the node's key (the same one ``sample`` got)
    downstream: Callable[[Any], jax.Array] | None  # value -> sum of costs downstream, others fixed
    logp_old: jax.Array | None  # log p̂_w at the sampling parameters (importance-ratio form), else None


class ExpectationContext(NamedTuple):
    """What an estimator sees of one expectation node ``E_{a~dist}[fn(*parents, a)]``."""

    name: str
    fn: Callable
    dist: Any
    parents: tuple
    key: jax.Array
    options: dict


def total_log_prob(dist, value) -> jax.Array:
    """``log p(value)`` summed over the node's elements (its elements are independent given the parents)."""
    return jnp.sum(dist.log_prob(value))


def magic_box(x: jax.Array) -> jax.Array:
    """``exp(x - stop_gradient(x))``: evaluates to 1, differentiates to ``magic_box(x) * dx`` (Foerster et al. 2018)."""
    return jnp.exp(x - jax.lax.stop_gradient(x))


class Estimator:
    """Base class with the defaults of a score-like estimator that adds nothing."""

    name: str = "estimator"
    passes_gradient: bool = False
    uses_score: bool = False
    needs_downstream: bool = False

    def check(self, node_name: str, dist) -> None:
        """Raise :class:`scg.GraphError` (at trace time) if ``dist`` cannot be used with this estimator."""

    def sample(self, dist, key):
        return jax.lax.stop_gradient(dist.sample(key))

    def terms(self, ctx: NodeContext) -> tuple[jax.Array, jax.Array]:
        zero = jnp.zeros(())
        return zero, zero

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
