"""Antithetic sampling for a Gaussian node: the score function over pairs ``μ ± σz`` (Schulman 2017 slides, "Connection to Finite Differences").

For ``θ ~ N(μ, diag σ²)`` the node's value is ``θ₊ = μ + σz``; its partner is
the reflection ``θ₋ = μ − σz = 2μ − θ₊``, which has the same distribution. The
costs downstream of the node, ``f(θ) = Σ_{c : θ ≺ c} c``, are re-evaluated at
``θ₋`` with every other draw kept (common random numbers: the slide's "same
noise ζ for both evaluations"), and the score terms of the pair are averaged::

    ĝ = ½ [∇ log p(θ₊) (f(θ₊) − b) + ∇ log p(θ₋) (f(θ₋) − b)]

Each term is a score-function estimate at a sample of ``N(μ, σ²)``, so ``ĝ``
is unbiased for ``∇ E[f]`` (Schulman 2016, Theorem 1) with any baseline ``b``
that the node does not influence (Theorem 2). With respect to ``μ``,
``∇_μ log p(θ±) = ±z/σ`` and the pair is the central finite difference

    ĝ_μ = (f(μ + σz) − f(μ − σz)) z / (2σ)

(the slide writes ``1/σ``; the mean over the pair halves it), in which ``b``
cancels, and which tends to ``z zᵀ ∇f(μ)`` as ``σ → 0`` for smooth ``f``
(bounded variance, where the plain score term's grows like ``f²/σ²``); with
respect to ``σ``, ``∇_σ log p(θ±) = (z² − 1)/σ`` and ``ĝ_σ = (½(f₊ + f₋) − b)(z² − 1)/σ``:
both members share ``z²``, so for ``σ`` a pair is no better than one draw
(worse than two independent ones at the same number of evaluations of ``f``,
measured in the tests); give ``σ`` a baseline.

It is emitted through the compiler's score term (so baselines and credit
assignment stay in one place) as weight ``½ (log p(θ₊) + log p(θ₋))`` times
``Q̂ − b`` with ``Q̂ = f(θ₊)``, plus the extra term
``½ log p(θ₋) · stop_gradient(f(θ₋) − f(θ₊))``; the two add up to ``ĝ``.
``f(θ₊)`` and ``f(θ₋)`` are evaluated downstream (two more passes over the
node's descendants; with ``f(θ₊)`` equal to ``Q̂``). Surrogate mode only: the
magic-box objective of ``mode="dice"`` ignores estimator terms and scores
``θ₊`` alone (the plain score function). Not in the importance-ratio form of ``ratio_surrogate`` (the partner of a sample
drawn at other parameters is not known). Unbiasedness and the variance
reduction are checked in ``tests/scg/test_antithetic.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext, total_log_prob


@dataclass(frozen=True)
class Antithetic(Estimator):
    name = "antithetic"
    uses_score = True
    needs_downstream = True

    def check(self, node_name, dist):
        if not (hasattr(dist, "loc") and hasattr(dist, "scale") and getattr(dist, "has_rsample", False)):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'antithetic' needs a Gaussian with loc and scale "
                f"(scg.dist.Normal), whose reflection about the mean has the same distribution; "
                f"got {type(dist).__name__}"
            )

    def sample(self, dist, key):
        return jax.lax.stop_gradient(dist.sample(key))

    def terms(self, ctx: NodeContext):
        if ctx.logp_old is not None:
            raise GraphError(
                f"stochastic node {ctx.name!r}: estimator 'antithetic' has no importance-ratio form "
                f"(ratio_surrogate); use estimator='score' there"
            )
        theta_plus = ctx.value
        theta_minus = jax.lax.stop_gradient(2.0 * ctx.dist.loc - theta_plus)
        logp_plus = total_log_prob(ctx.dist, theta_plus)
        logp_minus = total_log_prob(ctx.dist, theta_minus)
        f_plus = jax.lax.stop_gradient(ctx.downstream(theta_plus))
        f_minus = jax.lax.stop_gradient(ctx.downstream(theta_minus))
        return 0.5 * (logp_plus + logp_minus), 0.5 * logp_minus * (f_minus - f_plus)


def antithetic() -> Antithetic:
    """Antithetic pairs ``μ ± σz`` for a Gaussian node (Schulman 2017 slides, "Connection to Finite Differences")."""
    return Antithetic()
