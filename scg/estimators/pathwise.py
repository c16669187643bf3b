"""The pathwise-derivative (reparameterisation) estimator, Schulman 2016 §5.2.1.

The node's value is ``x = g(parents, ε)`` with gradients flowing through it; it
adds no surrogate term of its own. Requires ``dist.has_rsample``.

An observed value (``observed=``, e.g. a recorded transition fed to a learned
model as in SVG(1) and SVG(∞), Heess et al. 2015) is explained by the noise
that would have produced it, ``ε = g⁻¹(parents, x)`` (``dist.noise(x)``; for a
Normal ``ε = (x − μ)/σ``), and the node's value is ``g(parents, stop_gradient(ε))``:
the recorded ``x`` itself, with the gradient of the parents as if ``ε`` had
been drawn. That needs ``dist.noise`` and ``dist.reparameterize`` (``ε ↦ x``).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax

from scg.errors import GraphError
from scg.estimators.base import Estimator


@dataclass(frozen=True)
class Pathwise(Estimator):
    name = "pathwise"
    passes_gradient = True
    any_order = True  # the magic-box objective (mode="dice") differentiates it to any order

    def check(self, node_name, dist):
        if not getattr(dist, "has_rsample", False) or not hasattr(dist, "rsample"):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'pathwise' needs a reparameterisable distribution, "
                f"but {type(dist).__name__} has no rsample; use estimator='score'"
            )

    def sample(self, dist, key):
        return dist.rsample(key)

    def observe(self, node_name, dist, value):
        if not (hasattr(dist, "noise") and hasattr(dist, "reparameterize")):
            raise GraphError(
                f"stochastic node {node_name!r}: observed= gives a value to a pathwise node, whose noise must be "
                f"inferred from it, but {type(dist).__name__} has no noise(value)/reparameterize(noise) (the "
                f"inverse of its reparameterisation); use estimator='score' for this node or add them"
            )
        x = dist.reparameterize(jax.lax.stop_gradient(dist.noise(value)))
        # The record exactly (x equals it up to rounding), with x's gradient.
        return jax.lax.stop_gradient(value - x) + x


def pathwise() -> Pathwise:
    """The pathwise (reparameterisation) estimator (Schulman 2016, §5.2.1)."""
    return Pathwise()
