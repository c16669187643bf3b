"""The relaxed-expectation estimator of RPG, Levy & Ermon 2018, Eq. 5 and Theorem 3 / Eq. 8.

An expectation node ``x' = E_{a~π(·|x)}[f(x, a)]`` (the relaxed dynamics) gets
its gradient from one sampled action ``â``::

    ∂x'/∂x ≈ ∂f(x, â)/∂x + f(x, â) ∂log π(â|x)/∂x

pathwise through ``x`` and score function through ``a``. It is emitted as
``f(x, â) * magic_box(log π(â|x))`` (value ``f``, derivative as above).

The node's option (``g.expectation(..., exact=...)``, read here as ``ctx.exact``):

- ``exact=True``: the node's *value* is the exact expectation
  ``Σ_a π(a|x) f(x, a)`` (finite support, via ``enumerate_support``) while the
  gradient uses the single sample: the estimator "evaluated along x̄" whose
  product of independent per-step Jacobian estimates is unbiased for the
  gradient of ``r(x̄_T)``.
- ``exact=False`` (default): the value is ``f(x, â)``, a sampled real
  transition: the paper's Algorithm 1, along sampled real trajectories
  (Algorithm 1 scores ``f̂_t = x_{t+1} - x_t``; write the node as
  ``E[f(x, a) - x]`` plus a deterministic ``x + ·`` for that form). The paper
  calls it unbiased, but it is unbiased for neither ``∇ r(x̄_T)`` (the relaxed
  objective) nor ``∇ E[r(x_T)]`` (the real system): the per-step Jacobian
  estimates are then evaluated at states that depend on earlier actions, so
  their product no longer factorises in expectation. On the toy of
  ``tests/scg/test_relaxed.py`` its mean misses both (relative errors from 5%
  to 250%, |z| of 50-300 over 200k replicates, depending on the setting;
  ``bench/rpg_algorithm1_gap.py`` measures it).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.estimators.base import Estimator, ExpectationContext, magic_box, total_log_prob


@dataclass(frozen=True)
class Relaxed(Estimator):
    name = "relaxed"
    passes_gradient = True
    unbiased = False  # unbiased only for the relaxed objective with exact=True (see above)

    def check(self, node_name, dist):
        if not hasattr(dist, "log_prob"):
            raise GraphError(f"expectation node {node_name!r}: its distribution lacks log_prob")

    def expect(self, ctx: ExpectationContext):
        a_hat = jax.lax.stop_gradient(ctx.dist.sample(ctx.key))
        f_hat = ctx.fn(*ctx.parents, a_hat)
        estimate = jax.tree_util.tree_map(
            lambda f: f * magic_box(total_log_prob(ctx.dist, a_hat)).astype(f.dtype), f_hat
        )
        if not ctx.exact:
            return estimate
        if not hasattr(ctx.dist, "enumerate_support"):
            raise GraphError(f"expectation node {ctx.name!r}: exact=True needs a distribution with a finite support")
        support, weights = ctx.dist.enumerate_support()
        values = jax.vmap(lambda a: ctx.fn(*ctx.parents, a))(support)
        exact = jax.tree_util.tree_map(lambda v: jnp.tensordot(weights, v, axes=1), values)
        return jax.tree_util.tree_map(
            lambda x, e, f: jax.lax.stop_gradient(x - f) + e, exact, estimate, f_hat
        )


def relaxed() -> Relaxed:
    """The relaxed-expectation estimator of RPG (Levy & Ermon 2018, Theorem 3 / Eq. 8)."""
    return Relaxed()
