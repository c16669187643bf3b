"""Static analysis of a graph: order, influence relations, and the checks of Ch. 5.

Everything here is structural (no node function is called). Notation follows
Schulman (2016), §5.3.1:

- ``v ≺ w`` (``influences``): a directed path from ``v`` to ``w``.
- ``v ≺ᴰ w`` (``det_influences``): such a path whose intermediate nodes all pass
  gradients (deterministic nodes, expectation nodes, and stochastic nodes whose
  estimator is pathwise-like, i.e. reparameterised: ``x = g(parents, noise)``).
- ``DEPS_v = {w ∈ Θ ∪ S : w ≺ᴰ v}``.
- ``Q̂_w`` sums the costs ``c`` with ``w ≺ c`` (``downstream_costs``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import jax

from scg._order import kahn
from scg.errors import GraphError
from scg.estimators import DEFAULT, Pathwise, Score
from scg.graph import DIST, Graph, Node


@dataclass(frozen=True)
class Analysis:
    """The relations the compiler needs, computed once per graph."""

    order: tuple[str, ...]  # topological order
    nodes: dict[str, Node]
    estimators: dict[str, object]  # per stochastic/expectation node: a value, or DEFAULT until planned
    children: dict[str, tuple[str, ...]]
    influences: Mapping[str, frozenset[str]]  # v -> {w : v ≺ w}
    det_influences: Mapping[str, frozenset[str]]  # v -> {w : v ≺ᴰ w}
    deps: Mapping[str, frozenset[str]]  # v -> DEPS_v
    downstream_costs: Mapping[str, tuple[str, ...]]  # w -> costs c with w ≺ c, in order

    # Cached: read on every call (input checks), and an analysis never changes.
    @cached_property
    def position(self) -> dict[str, int]:
        """``name -> index in the topological order``."""
        return {n: i for i, n in enumerate(self.order)}

    @cached_property
    def key_index(self) -> dict[str, int]:
        """``name -> the node's fold_in key index``: its index in the topological order, not counting the
        distribution nodes that :func:`scg.dist_of` adds (``"w.dist"``), so that reading a distribution
        leaves every draw of the graph as it was."""
        declared = [n for n in self.order if not n.endswith(DIST)]
        return {n: i for i, n in enumerate(declared)}

    def node_key(self, key: jax.Array, name: str) -> jax.Array:
        """The key node ``name`` draws with in a sample whose key is ``key``: ``fold_in(key, key_index[name])``."""
        return jax.random.fold_in(key, self.key_index[name])

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.nodes[n].kind == "input")

    @cached_property
    def costs(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.nodes[n].kind == "cost")

    @cached_property
    def losses(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.nodes[n].kind == "loss")

    @cached_property
    def stochastic(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.nodes[n].kind in ("stochastic", "simulate"))

    def passes_gradient(self, name: str) -> bool:
        return _passes_gradient(self.nodes[name], self.estimators.get(name))

    def score_nodes(self) -> tuple[str, ...]:
        """Stochastic nodes whose estimator contributes ``weight * (Q̂_w - b_w)`` terms."""
        return self._score_nodes

    @cached_property
    def _score_nodes(self) -> tuple[str, ...]:
        est = self.estimators
        return tuple(n for n in self.stochastic if n in est and est[n] is not DEFAULT and est[n].uses_score)


def _passes_gradient(node: Node, estimator) -> bool:
    if node.kind in ("deterministic", "cost", "expectation"):
        return node.differentiable
    if node.kind == "stochastic":
        # The default is resolved per input signature. Until then count it as blocking, so that structural
        # checks raise only for definite violations; the plan re-checks with the resolved estimator.
        return estimator is not DEFAULT and bool(estimator.passes_gradient)
    return False


def topological_order(graph: Graph) -> tuple[str, ...]:
    """Kahn's algorithm; raises GraphError on unknown parents or cycles, naming the nodes."""
    nodes = {n.name: n for n in graph.nodes}
    for n in nodes.values():
        for p in n.parents:
            if p not in nodes:
                raise GraphError(
                    f"node {n.name!r} names an unknown parent {p!r}; declare {p!r} in the graph "
                    f"(known nodes: {sorted(nodes)})"
                )
            if p == n.name:
                raise GraphError(f"node {n.name!r} lists itself as a parent: a cycle")
    order = _with_distributions_before_draws(nodes, kahn(_ordering_parents(nodes)))
    if len(order) != len(nodes):
        stuck = sorted(set(nodes) - set(order))
        raise GraphError(f"the graph has a cycle through nodes {stuck}; a stochastic computation graph must be acyclic")
    return tuple(order)


def _ordering_parents(nodes: dict[str, Node]) -> dict[str, tuple[str, ...]]:
    """The parents the order is computed from, distribution nodes (``"w.dist"``, :func:`scg.dist_of`) left
    out: a reader of ``"w.dist"`` follows ``w``'s parents, and ``w`` follows its declared parents. The order,
    and the draw keys with it (``Analysis.key_index``), is then the one of the same graph with the readers
    computing the distribution from ``w``'s parents themselves."""
    out = {}
    for name, n in nodes.items():
        if name.endswith(DIST):
            continue
        parents = []
        for p in n.parents:
            parents.extend(nodes[p].parents if p.endswith(DIST) and p in nodes else (p,))
        out[name] = tuple(parents)
    return out


def _with_distributions_before_draws(nodes: dict[str, Node], order: list[str]) -> list[str]:
    """``order`` with each distribution node ``"w.dist"`` inserted before the first node that reads it (``w``
    or a reader): its parents, ``w``'s, come before all of them."""
    out, placed = [], set()
    for name in order:
        for p in nodes[name].parents:
            if p.endswith(DIST) and p in nodes and p not in placed:
                out.append(p)
                placed.add(p)
        out.append(name)
    return out


def analyse(graph: Graph, *, mode: str = "surrogate") -> Analysis:
    """Check ``graph`` and compute its relations; raises GraphError naming the node on any problem."""
    if len(graph) == 0:
        raise GraphError(f"graph {graph.name!r} is empty; declare inputs, stochastic nodes and costs")
    order = topological_order(graph)
    nodes = {n.name: n for n in graph.nodes}
    for n in nodes.values():
        if n.kind == "input" and n.parents:
            raise GraphError(f"input node {n.name!r} cannot have parents")
    if not any(n.kind in ("cost", "loss") for n in nodes.values()):
        raise GraphError(f"graph {graph.name!r} has no cost node; add one with g.cost(name, fn, *parents)")
    for n in nodes.values():
        for p in n.parents:
            if nodes[p].kind == "loss":
                raise GraphError(f"node {n.name!r} depends on loss {p!r}; losses are leaves: use a cost or deterministic node")

    estimators = {}
    for name in order:
        node = nodes[name]
        if node.kind in ("stochastic", "expectation"):
            estimators[name] = est = node.estimator  # a value (DEFAULT unresolved), checked at declaration
            if mode == "dice" and not (est is DEFAULT or isinstance(est, (Score, Pathwise))):
                raise GraphError(
                    f"node {name!r}: estimator {getattr(estimators[name], 'name', estimators[name])!r} has no "
                    f"any-order (DiCE) form; use 'score' or 'pathwise' with mode='dice'"
                )

    # Every relation is an int bit mask over positions in ``order``, built in O(edges) mask operations
    # (O(n²/64) words for a chain) and decoded into a set only when read: a chain's influence sets
    # hold O(n²) members in all, most of which the compiler never looks at.
    pos = {name: i for i, name in enumerate(order)}
    children_lists: dict[str, list[str]] = {name: [] for name in order}
    for c in order:
        for p in dict.fromkeys(nodes[c].parents):
            children_lists[p].append(c)
    children = {name: tuple(cs) for name, cs in children_lists.items()}
    passes = {v: _passes_gradient(nodes[v], estimators.get(v)) for v in order}
    reach: dict[str, int] = {}
    dreach: dict[str, int] = {}
    for v in reversed(order):
        r = d = 0
        for c in children[v]:
            bit = 1 << pos[c]
            r |= bit | reach[c]
            d |= bit | (dreach[c] if passes[c] else 0)
        reach[v], dreach[v] = r, d

    # DEPS_v: roots w with w ≺ᴰ v, i.e. a parent of v, or in DEPS_p of a parent p that passes gradients.
    is_root = {v: nodes[v].kind in ("input", "stochastic", "simulate") for v in order}
    deps_masks: dict[str, int] = {}
    for v in order:
        m = 0
        for p in dict.fromkeys(nodes[v].parents):
            m |= (1 << pos[p] if is_root[p] else 0) | (deps_masks[p] if passes[p] else 0)
        deps_masks[v] = m
    cost_mask = sum(1 << pos[n] for n in order if nodes[n].kind == "cost")

    influences = _Relation(order, reach)
    det_influences = _Relation(order, dreach)
    deps = _Relation(order, deps_masks)
    downstream = _Relation(order, {v: m & cost_mask for v, m in reach.items()}, ordered=True)

    result = Analysis(order, nodes, estimators, children, influences, det_influences, deps, downstream)
    check_condition_1(result)
    check_baselines(result)
    return result


class _Relation(Mapping):
    """``name -> frozenset`` of the members of an int bit mask over ``order`` (a ``tuple`` in order if
    ``ordered``), decoded on first read and cached."""

    def __init__(self, order: tuple[str, ...], masks: dict[str, int], *, ordered: bool = False):
        self._order, self._masks, self._ordered, self._cache = order, masks, ordered, {}

    def __getitem__(self, name):
        out = self._cache.get(name)
        if out is None:
            digits = bin(self._masks[name])[:1:-1]  # digit i is node order[i]
            members = [self._order[i] for i in _ones(digits)]
            out = self._cache[name] = tuple(members) if self._ordered else frozenset(members)
        return out

    def __iter__(self):
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def _ones(digits: str):
    i = digits.find("1")
    while i >= 0:
        yield i
        i = digits.find("1", i + 1)


def check_condition_1(a: Analysis) -> None:
    """Condition 1: no input may reach a non-differentiable node through a differentiable path.

    A simulated node (unknown density) or a deterministic node declared
    ``differentiable=False`` that an input deterministically influences would
    silently receive a zero gradient; that is an error instead.
    """
    for theta in a.inputs:
        if not a.nodes[theta].differentiable:
            continue
        for w in sorted(a.det_influences[theta], key=a.position.__getitem__):
            node = a.nodes[w]
            blocked = node.kind == "simulate" or (node.kind in ("deterministic", "cost") and not node.differentiable)
            if blocked:
                via = [p for p in node.parents if p == theta or p in a.det_influences[theta]]
                raise GraphError(
                    f"Condition 1 fails: input {theta!r} reaches {node.kind} node {w!r} (through parent "
                    f"{via[0]!r}) along a differentiable path, but {w!r} cannot carry a gradient. Put a "
                    f"stochastic node with a score-function estimator between them, make {w!r} differentiable, "
                    f"or, if {theta!r} is data you never differentiate, declare g.input({theta!r}, differentiable=False)."
                )


def check_baselines(a: Analysis) -> None:
    """Theorem 2: a baseline for ``w`` may depend only on nodes that ``w`` does not influence."""
    for w in a.stochastic:
        node = a.nodes[w]
        b = node.baseline
        if b is None:
            continue
        est = a.estimators.get(w)
        if est is DEFAULT:
            pass  # decided once the distribution is known; checked again then
        elif not getattr(est, "uses_score", False):
            raise GraphError(
                f"node {w!r} has a baseline but its estimator {a.estimators[w].name!r} has no score-function "
                f"term to subtract it from; remove baseline= or use estimator='score'"
            )
        if isinstance(b, str):
            if b not in a.nodes:
                raise GraphError(f"node {w!r}: baseline names unknown node {b!r}")
            if b == w or b in a.influences[w]:
                raise GraphError(
                    f"baseline {b!r} of stochastic node {w!r} is influenced by {w!r}; Theorem 2 allows a "
                    f"baseline to depend only on nodes that {w!r} does not influence (e.g. its parents' inputs)"
                )
            if a.nodes[b].kind == "cost":
                raise GraphError(f"baseline {b!r} of node {w!r} is a cost node; use a deterministic node")
