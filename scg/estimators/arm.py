"""Augment-REINFORCE-Merge (ARM) for a Bernoulli node; Yin & Zhou 2019 (ICLR), Theorem 1, Eq. 5-6 (outside the seeds).

For ``z ~ Bernoulli(σ(φ))`` with ``D`` independent elements and ``u ~ U(0, 1)^D``,
Theorem 1 writes the gradient of ``E[f(z)]`` as an expectation over ``u``
alone, with an antithetic pair of evaluations of ``f``::

    b = 1[u < σ(φ)],   b̃ = 1[u > σ(−φ)] = 1[1 − u < σ(φ)]
    ∇_φ E[f(z)] = E_u[(f(b̃) − f(b)) (u − ½)]                       (Eq. 5-6)

``b`` is a proper ``Bernoulli(σ(φ))`` draw and is the node's value; ``b̃``, the
draw of the reflected noise ``1 − u``, has the same distribution. ``f`` is the
sum of the costs downstream of the node, evaluated for both with every other
draw kept (``ctx.downstream``, common random numbers). The estimate enters the
surrogate as ``extra = Σ_d stop_gradient(g_d) φ_d`` (minus its own value, so it evaluates to 0), so the chain rule carries
``g`` to whatever ``φ`` depends on; there is no score term (``uses_score`` is
False, baselines do not apply: ``f(b̃) − f(b)`` needs none).

The noise ``u`` is read again from the node's key in ``terms`` (``sample`` got the
same key). A recorded value (``observed=``) did not come from that key, so ``u``
is redrawn given the value, uniform on ``(0, σ(φ))`` where ``b = 1`` and on
``(σ(φ), 1)`` where ``b = 0`` (:func:`bernoulli_noise`): the pair ``(b, u)`` then
has the joint law of the theorem, and for a value that the key did draw, ``u`` is
that key's noise exactly.

Bernoulli nodes of :mod:`scg.dist` only (values are floats in {0, 1}), of any
shape. Surrogate mode only (``any_order = False``: the magic-box objective of
``mode="dice"`` ignores ``extra``); no importance-ratio form (the partner of a
value drawn at other parameters is unknown; `ratio_surrogate` refuses it, as every estimator that re-evaluates the downstream costs without a score term). Unbiasedness, the variance against
the score function and against DisARM (:mod:`scg.estimators.disarm`) are
checked in ``tests/scg/test_arm.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.dist import Bernoulli
from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext


def check_bernoulli(estimator: str, node_name: str, dist) -> None:
    """GraphError naming the node unless ``dist`` is a :class:`scg.dist.Bernoulli` (with logits)."""
    if not isinstance(dist, Bernoulli):
        raise GraphError(
            f"stochastic node {node_name!r}: estimator {estimator!r} needs a Bernoulli with logits "
            f"(scg.dist.Bernoulli, any shape), got {type(dist).__name__}"
        )


def uniform_noise(dist, key: jax.Array) -> jax.Array:
    """The ``u ~ U(0, 1)`` behind a Bernoulli draw from ``key`` (as :meth:`scg.dist.Bernoulli.sample` draws it)."""
    return jax.random.uniform(key, dist.logits.shape, dist.logits.dtype)


def bernoulli_noise(dist, value, key: jax.Array) -> jax.Array:
    """``u`` uniform given ``1[u < σ(φ)] = value``, from ``key``: the key's own noise where it gives ``value``.

    Elsewhere (a recorded value) the key's noise is mapped onto the interval the
    value requires, ``(0, p)`` or ``(p, 1)``; mixed with the first case this is
    uniform on that interval, because the key is independent of the record.
    """
    p = jax.lax.stop_gradient(dist.probs)
    v = uniform_noise(dist, key)
    one = value > 0.5
    moved = jnp.where(one, p * (v - p) / (1.0 - p), p + (1.0 - p) * v / p)  # only read where (v < p) != one
    return jax.lax.stop_gradient(jnp.where((v < p) == one, v, moved))


def bernoulli_draw(dist, u: jax.Array) -> jax.Array:
    """``1[u < σ(φ)]`` in the dtype of the node's samples (floats in {0, 1}), without gradient."""
    return jax.lax.stop_gradient((u < dist.probs).astype(dist.logits.dtype))


@dataclass(frozen=True)
class ARM(Estimator):
    name = "arm"
    needs_downstream = True

    def check(self, node_name, dist):
        check_bernoulli(self.name, node_name, dist)

    def sample(self, dist, key):
        return bernoulli_draw(dist, uniform_noise(dist, key))

    def logit_gradient(self, logits, u, b, b_anti, f_b, f_anti):
        """The estimate of ``∇_φ E[f]`` per element from the pair (Eq. 5-6); :class:`DisARM` overrides it."""
        return (f_anti - f_b) * (u - 0.5)

    def terms(self, ctx: NodeContext):
        u = bernoulli_noise(ctx.dist, ctx.value, ctx.key)
        b, b_anti = bernoulli_draw(ctx.dist, u), bernoulli_draw(ctx.dist, 1.0 - u)
        f_b, f_anti = ctx.downstream(b), ctx.downstream(b_anti)
        g = jax.lax.stop_gradient(self.logit_gradient(ctx.dist.logits, u, b, b_anti, f_b, f_anti))
        extra = jnp.sum(g * ctx.dist.logits)
        return jnp.zeros(()), extra - jax.lax.stop_gradient(extra)  # evaluates to 0: the surrogate's value is kept


def arm() -> ARM:
    """ARM for a Bernoulli node (Yin & Zhou 2019, Theorem 1, Eq. 5-6)."""
    return ARM()
