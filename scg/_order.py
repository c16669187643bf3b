"""Topological order of named nodes (Kahn's algorithm), shared by the analysis and the drawing (internal)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def kahn(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The nodes in an order where every node comes after its parents, ties in the mapping's order.

    Every parent must be a key of ``parents``. Nodes on or below a cycle are left out, so the
    result is shorter than ``parents`` exactly when the graph has a cycle.
    """
    indegree = {v: len(set(ps)) for v, ps in parents.items()}
    children: dict[str, list[str]] = {v: [] for v in parents}
    for v, ps in parents.items():
        for p in dict.fromkeys(ps):
            children[p].append(v)
    ready, order = [v for v in parents if indegree[v] == 0], []
    while ready:
        v = ready.pop(0)
        order.append(v)
        for c in children[v]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    return order
