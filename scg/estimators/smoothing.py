"""Gaussian smoothing (Smoothie), Nachum et al. 2018, Eq. 9 and Theorem 1.

For ``a ~ N(μ, Σ)`` feeding costs ``Q̃`` that are already the *smoothed* action
values ``Q̃(μ, Σ) = E_{a~N(μ,Σ)}[Q(a)]`` written as functions of the mean, the
gradients are (Theorem 1, Eq. 13/15)::

    ∂Q̃/∂μ = ∂Q̃/∂a |_{a=μ}          ∂Q̃/∂Σ = ½ ∂²Q̃/∂a² |_{a=μ}

so the estimator draws nothing: the node's value is ``μ`` (with its gradient),
and the surrogate gains ``½ Σ_i stop_gradient(∂²Q̃/∂a_i²) Σ_ii``, whose gradient
with respect to ``Σ`` is the Hessian term. Only diagonal covariances (as in
:class:`scg.dist.Normal`) are supported; the off-diagonal Hessian entries would
multiply off-diagonal covariances.

Deviation: the paper learns ``Q̃`` with a critic; here ``Q̃`` is whatever the
downstream cost nodes compute. The estimator is exact (zero variance) when
they compute the true smoothed value ``Q̃(a; Σ)`` as a function of ``a`` at a
fixed ``Σ`` (as the paper's critic ``Q̃(s, a)``: the covariance must not reach
the costs along a differentiable path, or its gradient is counted twice), and
biased otherwise (e.g. for the raw ``Q``). ``tests/scg/test_smoothing.py``
checks both against closed forms.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext


@dataclass(frozen=True)
class Smoothing(Estimator):
    name = "smoothing"
    passes_gradient = True
    needs_downstream = True
    unbiased = False  # exact only when the costs are the smoothed values Q̃ (see above)
    observable = False  # its value is the mean, not a draw: there is nothing to record

    def check(self, node_name, dist):
        # Look the members up on the class: ``dist`` may hold abstract tracers here, and
        # ``hasattr`` on the instance would evaluate the properties.
        if not (hasattr(type(dist), "mean") and hasattr(type(dist), "variance")):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'smoothing' needs a Gaussian with mean and variance "
                f"(scg.dist.Normal), got {type(dist).__name__}"
            )

    def sample(self, dist, key):
        return dist.mean

    def terms(self, ctx: NodeContext):
        mean = jax.lax.stop_gradient(ctx.value)
        flat, unravel = mean.reshape(-1), lambda v: v.reshape(mean.shape)
        hessian = jax.hessian(lambda v: ctx.downstream(unravel(v)))(flat)
        curvature = jax.lax.stop_gradient(jnp.diagonal(hessian)).reshape(mean.shape)
        return jnp.zeros(()), 0.5 * jnp.sum(curvature * ctx.dist.variance)


def smoothing() -> Smoothing:
    """Gaussian smoothing (Nachum et al. 2018, Theorem 1): the value is the mean, the covariance gets the curvature."""
    return Smoothing()
