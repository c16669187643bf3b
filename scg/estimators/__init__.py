"""Gradient estimators, one module each; see :mod:`scg.estimators.base` for the interface."""
from __future__ import annotations

import jax

from scg.errors import GraphError
from scg.estimators.antithetic import Antithetic
from scg.estimators.base import Estimator, ExpectationContext, NodeContext, magic_box, total_log_prob
from scg.estimators.direct import Direct
from scg.estimators.pathwise import Pathwise
from scg.estimators.relaxed import Relaxed
from scg.estimators.score import Score
from scg.estimators.smoothing import Smoothing

_REGISTRY: dict[str, type] = {}


def register(name: str, cls: type) -> None:
    """Make ``estimator=name`` resolve to ``cls()`` in graph declarations."""
    _REGISTRY[name] = cls


for _cls in (Score, Pathwise, Smoothing, Direct, Relaxed, Antithetic):
    register(_cls.name, _cls)


def resolve(spec, node):
    """Turn a node's ``estimator=`` argument into an estimator object (``None``: decided per sample)."""
    if spec is None:
        return Relaxed() if node.kind == "expectation" else Auto()
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise GraphError(f"node {node.name!r}: unknown estimator {spec!r}; choose one of {sorted(_REGISTRY)}")
        return _REGISTRY[spec]()
    if not hasattr(spec, "terms") and not hasattr(spec, "expect"):
        raise GraphError(f"node {node.name!r}: estimator {spec!r} does not follow scg.estimators.base.Estimator")
    return spec


class Auto(Pathwise):
    """The default: pathwise when the distribution is reparameterisable, score otherwise.

    The choice needs the distribution, so it is resolved at trace time; for the
    influence relation ``≺ᴰ`` the compiler re-analyses once it knows.
    """

    name = "auto"

    def check(self, node_name, dist):
        pass

    def sample(self, dist, key):
        if getattr(dist, "has_rsample", False) and hasattr(dist, "rsample"):
            return dist.rsample(key)
        return jax.lax.stop_gradient(dist.sample(key))


__all__ = [
    "Estimator",
    "NodeContext",
    "ExpectationContext",
    "Score",
    "Pathwise",
    "Smoothing",
    "Direct",
    "Relaxed",
    "Antithetic",
    "register",
    "resolve",
    "magic_box",
    "total_log_prob",
]
