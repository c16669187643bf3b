"""Exact enumeration of a discrete node: its expectation summed over its support (outside the seeds).

The exact gradient of a small discrete node ``a ~ p_θ(a)`` (Liu, Regier, Tripuraneni,
Jordan & McAuliffe 2019, "Rao-Blackwellized Stochastic Gradients for Discrete
Distributions", ICML, Eq. 2: their Rao-Blackwellised estimator with the whole support
summed; Pyro and numpyro call it ``enumerate``). With ``f(a) = Σ_{c : a ≺ c} c`` the costs downstream of
the node, re-evaluated with the node's value replaced by ``a`` and every other
draw kept (``ctx.downstream``, common random numbers)::

    ∇ E[f] = Σ_a ∇p(a) · f(a) + Σ_a p(a) · ∇f(a)                                 (1)

Both sums are computed exactly over the support ``{a}`` (``dist.enumerate_support``,
weights ``p(a) = exp Σ log p(a)`` from ``log_prob``). The node's value in the
forward pass is still a sample ``â ~ p`` (so its children, other estimators' ``Q̂``
and the costs see a proper draw), and the costs at ``â`` already carry the pathwise
gradient ``∇f(â)``; the extra term is therefore::

    extra = Σ_a p(a) sg(f(a)) + Σ_a sg(p(a)) f(a) − f(â)      (minus its own value)

The first sum is the gradient through ``p`` (through the node's parents, including
pathwise nodes upstream). Choice for the pathwise part: ``Σ_a sg(p(a)) ∇f(a) −
∇f(â)`` replaces the sample's ``∇f(â)`` by its enumeration. The difference has
mean zero (``â`` is independent of the other draws), so both choices are unbiased;
the enumeration also removes the variance the node adds to the pathwise part, and
makes the estimate exact (zero variance) when the node is the only stochastic one.
Gradients that the re-evaluation cannot see (score terms of score nodes downstream,
the ``Q̂`` of score nodes upstream) stay at the sample, and are unbiased there.
``uses_score = False``: no score term or baseline for this node. The extra term
evaluates to 0, so the surrogate's value is unchanged.

Cost: ``K + 1`` passes over the node's descendants for a support of ``K`` values,
vmapped; ``K > max_support`` is refused at trace time. A vector node is summed over
its joint support (a Bernoulli of shape [D]: ``2^D`` values); an ``enumerate_support``
that does not return ``(values, weights)`` with one value of the node's shape per
row, or fewer than ``2^n`` rows for ``n`` elements (a per-element support), is refused.
Surrogate mode only: ``mode="dice"`` and ``hvp`` ignore extra terms (``any_order = False``).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from scg.dist import Bernoulli, Categorical
from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext, total_log_prob

sg = jax.lax.stop_gradient


def _known_size(dist) -> int | None:
    """The joint support size of scg's discrete distributions, without building it."""
    if isinstance(dist, Bernoulli):
        return 2 ** int(np.prod(dist.shape))
    if isinstance(dist, Categorical):
        return dist.num_categories ** int(np.prod(dist.shape))
    return None


@dataclass(frozen=True)
class Enumerate(Estimator):
    """``max_support``: the most support values summed (each is a pass over the node's descendants)."""

    name = "enumerate"
    needs_downstream = True

    max_support: int = 1024

    def __post_init__(self):
        if not isinstance(self.max_support, int) or isinstance(self.max_support, bool) or self.max_support < 1:
            raise GraphError(f"Enumerate estimator: max_support must be a positive int, got {self.max_support!r}")

    def _too_large(self, node_name: str, size: int) -> GraphError:
        return GraphError(
            f"stochastic node {node_name!r}: estimator 'enumerate' would sum over {size} support values, more "
            f"than max_support={self.max_support}; raise enumeration(max_support=...) or use another estimator"
        )

    def check(self, node_name, dist):
        if getattr(dist, "has_rsample", False) or not hasattr(dist, "enumerate_support"):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'enumerate' needs a discrete distribution with "
                f"enumerate_support() (scg.dist.Bernoulli, Categorical), got {type(dist).__name__}"
            )
        size = _known_size(dist)
        if size is not None and size > self.max_support:
            raise self._too_large(node_name, size)

    def support(self, node_name: str, dist, value):
        """The joint support ``[K, *value.shape]`` and its probabilities ``p(a)`` ``[K]`` (differentiable)."""
        try:
            out = dist.enumerate_support()
        except ValueError as err:
            raise GraphError(f"stochastic node {node_name!r}: estimator 'enumerate': {err}") from err
        shape = jnp.shape(value)
        if not (isinstance(out, tuple) and len(out) == 2 and jnp.shape(out[0])[1:] == shape):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'enumerate' needs enumerate_support() to return "
                f"(values, weights) over the joint support, values shaped [K, *{shape}]"
            )
        values = jnp.asarray(out[0], jnp.result_type(value))
        size, n = values.shape[0], int(np.prod(shape))
        if size > self.max_support:
            raise self._too_large(node_name, size)
        if n > 1 and size < 2**n:
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'enumerate' got {size} support values for {n} "
                f"elements (fewer than 2^{n}): a per-element support, not the joint one it must sum over"
            )
        return values, jnp.exp(jax.vmap(lambda a: total_log_prob(dist, a))(values))

    def terms(self, ctx: NodeContext):
        values, p = self.support(ctx.name, ctx.dist, ctx.value)
        f = jax.vmap(ctx.downstream)(values)  # [K], with the pathwise gradient through other parents
        extra = jnp.dot(p, sg(f)) + jnp.dot(sg(p), f) - ctx.downstream(ctx.value)
        return jnp.zeros(()), extra - sg(extra)


def enumeration(max_support: int = 1024) -> Enumerate:
    """Sum a discrete node exactly over its support (Liu et al. 2019, Eq. 2)."""
    return Enumerate(max_support)
