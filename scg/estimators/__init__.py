"""Gradient estimators, one module each; see :mod:`scg.estimators.base` for the interface.

Each estimator is an immutable value built by a factory. A node's ``estimator=``
takes such a value, a registered name (``"score"``: the factory called with no
arguments), or ``None`` for the default, which is :data:`DEFAULT` until planning
resolves it with :func:`resolve_default` (pathwise if the distribution is
reparameterisable, else score).

Unbiased, any order (valid in ``hvp``): ``score()`` (Schulman 2016, Eq. 9),
``pathwise()``. Unbiased, first order: ``antithetic()``, ``enumeration()``
(name ``"enumerate"``), ``arm()``, ``disarm()`` (Bernoulli), ``unordered_set(k)``
(Categorical), ``measure_valued()`` (Normal), and with trained state ``rebar()``,
``relax()`` (Bernoulli). Biased (refused by ``scg.compile(g, unbiased=True)``):
``smoothing()``, ``direct(epsilon)``, ``gumbel_softmax(temperature)``,
``straight_through(temperature)``. For expectation nodes: ``relaxed()``. The
README's estimator table gives node kinds and papers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from scg.errors import GraphError
from scg.estimators.antithetic import Antithetic, antithetic
from scg.estimators.arm import ARM, arm
from scg.estimators.base import (
    Estimator,
    ExpectationContext,
    NodeContext,
    StateUpdate,
    magic_box,
    total_log_prob,
)
from scg.estimators.direct import Direct, direct
from scg.estimators.disarm import DisARM, disarm
from scg.estimators.enumeration import Enumerate, enumeration
from scg.estimators.gumbel_softmax import GumbelSoftmax, gumbel_softmax
from scg.estimators.measure_valued import MeasureValued, measure_valued
from scg.estimators.pathwise import Pathwise, pathwise
from scg.estimators.rebar import REBAR, rebar
from scg.estimators.relax import RELAX, relax
from scg.estimators.relaxed import Relaxed, relaxed
from scg.estimators.score import Score, score
from scg.estimators.smoothing import Smoothing, smoothing
from scg.estimators.straight_through import StraightThrough, straight_through
from scg.estimators.unordered_set import UnorderedSet, unordered_set


@dataclass(frozen=True)
class Default:
    """The unresolved default of a stochastic node (``estimator=None``); not an estimator.

    Analysis counts it as blocking the gradient (so structural checks raise
    only for definite violations); planning replaces it with
    :func:`resolve_default` once the node's distribution is known.
    """

    name = "auto"  # how pictures and messages show it

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()

_REGISTRY: dict[str, Callable[[], object]] = {}


def register(name: str, factory: Callable[[], object]) -> None:
    """Make ``estimator=name`` resolve to ``factory()`` in graph declarations."""
    _REGISTRY[name] = factory


for _name, _factory in (
    ("score", score),
    ("pathwise", pathwise),
    ("smoothing", smoothing),
    ("direct", direct),
    ("relaxed", relaxed),
    ("antithetic", antithetic),
    ("enumerate", enumeration),
    ("arm", arm),
    ("disarm", disarm),
    ("unordered_set", unordered_set),
    ("measure_valued", measure_valued),
    ("gumbel_softmax", gumbel_softmax),
    ("straight_through", straight_through),
    ("rebar", rebar),
    ("relax", relax),
):
    register(_name, _factory)


def resolve_default(node_kind: str, dist) -> Estimator:
    """The estimator a node declared with ``estimator=None`` gets once its distribution is known.

    An expectation node: :func:`relaxed`. A stochastic node: :func:`pathwise`
    if ``dist`` is reparameterisable (``has_rsample`` and ``rsample``), else
    :func:`score`.
    """
    if node_kind == "expectation":
        return relaxed()
    if getattr(dist, "has_rsample", False) and hasattr(dist, "rsample"):
        return pathwise()
    return score()


def as_estimator(spec, node_name: str, node_kind: str):
    """A node's ``estimator=`` argument as a value: an estimator, or :data:`DEFAULT` for a stochastic node's ``None``.

    Raises:
        GraphError: naming the node, for an unknown name or an object that is no estimator.
    """
    if spec is None or spec is DEFAULT:
        return relaxed() if node_kind == "expectation" else DEFAULT
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise GraphError(f"node {node_name!r}: unknown estimator {spec!r}; choose one of {sorted(_REGISTRY)}")
        return _REGISTRY[spec]()
    method = "expect" if node_kind == "expectation" else "terms"
    if not hasattr(spec, method):
        raise GraphError(
            f"node {node_name!r}: estimator {spec!r} has no {method}() and does not follow "
            f"scg.estimators.base.Estimator; pass a name such as 'score' or a value such as scg.estimators.score()"
        )
    return spec


__all__ = [
    "Estimator",
    "NodeContext",
    "ExpectationContext",
    "StateUpdate",
    "DEFAULT",
    "Default",
    "Score",
    "Pathwise",
    "Smoothing",
    "Direct",
    "Relaxed",
    "Antithetic",
    "Enumerate",
    "ARM",
    "DisARM",
    "UnorderedSet",
    "MeasureValued",
    "GumbelSoftmax",
    "StraightThrough",
    "REBAR",
    "RELAX",
    "score",
    "pathwise",
    "smoothing",
    "direct",
    "relaxed",
    "antithetic",
    "enumeration",
    "arm",
    "disarm",
    "unordered_set",
    "measure_valued",
    "gumbel_softmax",
    "straight_through",
    "rebar",
    "relax",
    "register",
    "resolve_default",
    "as_estimator",
    "magic_box",
    "total_log_prob",
]
