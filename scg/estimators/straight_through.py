"""The straight-through Gumbel estimator of a discrete node; biased. Outside the seeds.

Jang, Gu & Poole 2017, §2.2 ("Straight-Through Gumbel-Softmax Estimator"); Bengio,
Léonard & Courville 2013 (the straight-through idea). The forward value is the
exact discrete draw of the noise, the backward pass the gradient of the
Gumbel-softmax relaxation of the same noise (:mod:`scg.estimators.gumbel_softmax`)::

    Bernoulli:    z = 1[logits + L > 0],                 y = σ((logits + L)/τ)
    Categorical:  z = one_hot(argmax(log π + G)),        y = softmax((log π + G)/τ)
    value = z + (y − stop_gradient(y))                   (= z exactly, ∂value = ∂y)

``z`` is a ``Bernoulli(σ(logits))`` draw (logistic noise ``L``), resp. a
``softmax(log π)`` draw (Gumbel-max): children see only values the real system
produces, but ``f(z)`` is differentiated as if ``∂z = ∂y``, so the estimate is
biased for ``∇ E[f(z)]`` at every τ (``unbiased = False``); as ``τ → 0`` its
variance grows without its bias vanishing in general. (For a cost of degree ≤ 2
in each Bernoulli element the τ → 0 limit is unbiased: ``½(f'(0) + f'(1)) = f(1) − f(0)``.)
``bench/estimator_bias.py`` measures it.

As in :mod:`scg.estimators.gumbel_softmax`, a Categorical node's value is a
one-hot VECTOR ``[*dist.shape, K]`` (floats, exactly 0 or 1), not an index; a
Bernoulli node's value is a float in {0, 1} of the node's shape. First order only,
no ``observed=``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from scg.estimators.gumbel_softmax import GumbelSoftmax, relax


def straight_through_value(hard, soft):
    """``hard`` in value, ``soft``'s derivative: ``hard + (soft − sg(soft))`` (the bracket is exactly 0)."""
    return hard + (soft - jax.lax.stop_gradient(soft))


@dataclass(frozen=True)
class StraightThrough(GumbelSoftmax):
    """Gumbel-softmax's checks and flags; the hard draw as the value."""

    temperature: float = 1.0

    name = "straight_through"

    def sample(self, dist, key):
        soft, hard = relax(dist, key, self.temperature)
        return straight_through_value(hard, soft)


def straight_through(temperature: float = 1.0) -> StraightThrough:
    """The straight-through Gumbel estimator (Jang et al. 2017, §2.2; Bengio et al. 2013): biased."""
    return StraightThrough(temperature)
