"""The score-function (likelihood-ratio, REINFORCE) estimator, Schulman 2016 Eq. 36.

Surrogate term ``log p(ŵ | DEPS_w) * (Q̂_w - b_w)`` (Corollary 1, Theorem 2), or
the importance-ratio form ``p(ŵ | DEPS_w) / p̂_w * (Q̂_w - b_w)`` when the
compiler evaluates it at parameters other than those that drew the sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext, total_log_prob


@dataclass(frozen=True)
class Score(Estimator):
    name = "score"
    uses_score = True
    any_order = True  # the magic-box objective (mode="dice") differentiates it to any order

    def check(self, node_name, dist):
        if not hasattr(dist, "log_prob") or not hasattr(dist, "sample"):
            raise GraphError(
                f"stochastic node {node_name!r}: its function returned {type(dist).__name__}, which lacks "
                f"sample/log_prob; return a distribution (scg.dist) or use g.simulate for a sampler"
            )

    def terms(self, ctx: NodeContext):
        logp = total_log_prob(ctx.dist, ctx.value)
        if ctx.logp_old is None:
            return logp, jnp.zeros(())
        return jnp.exp(logp - jax.lax.stop_gradient(ctx.logp_old)), jnp.zeros(())


def score() -> Score:
    """The score-function estimator (Schulman 2016, Eq. 36)."""
    return Score()
