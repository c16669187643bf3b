"""The pathwise-derivative (reparameterisation) estimator, Schulman 2016 §5.2.1.

The node's value is ``g(parents, noise)`` with gradients flowing through it; it
adds no surrogate term of its own. Requires ``dist.has_rsample``.
"""
from __future__ import annotations

from scg.errors import GraphError
from scg.estimators.base import Estimator


class Pathwise(Estimator):
    name = "pathwise"
    passes_gradient = True

    def check(self, node_name, dist):
        if not getattr(dist, "has_rsample", False) or not hasattr(dist, "rsample"):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'pathwise' needs a reparameterisable distribution, "
                f"but {type(dist).__name__} has no rsample; use estimator='score'"
            )

    def sample(self, dist, key):
        return dist.rsample(key)
