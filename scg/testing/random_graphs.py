"""Seeded random stochastic computation graphs for property tests.

:func:`random_graph` draws a small DAG (Definition 3) mixing

- 1-2 float inputs, scalars or 2-vectors;
- stochastic nodes: Bernoulli (score), Categorical with 3 classes (score) and
  Normal (pathwise or score), whose parameters are smooth functions of their
  parents (``logits = a·tanh(u) + c``, ``loc = a·tanh(u) + c``,
  ``scale = s·exp(b·sin(u))``, with ``u`` a random linear projection of the
  parents; integer parents enter through a lookup table);
- smooth deterministic nodes: sums, ``tanh``, ``sin`` and products of parents;
- 1-3 scalar cost nodes;
- optionally admissible baselines (Theorem 2): a deterministic node built
  from nodes declared before the stochastic node (so it cannot be influenced
  by it), or :class:`scg.baselines.LeaveOneOut`.

Each graph stays small enough for :func:`scg.testing.exact_expectation`: at
most two Normal nodes and at most ``max_worlds`` enumerated worlds (a Normal
counts ``quadrature ** size`` Gauss-Hermite points).

Example:
    >>> import jax, scg
    >>> from scg.testing.random_graphs import random_graph
    >>> rg = random_graph(0)
    >>> est = scg.compile(rg.graph)
    >>> sorted(est.grad(rg.jax_inputs(), jax.random.key(0), num_samples=rg.num_samples)) == sorted(rg.inputs)
    True
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scg import dist
from scg.baselines import LeaveOneOut
from scg.graph import Graph


class RandomGraph(NamedTuple):
    """A random graph with inputs at which to test it."""

    graph: Graph
    inputs: dict  # input name -> numpy float64 array
    num_samples: int  # smallest num_samples the estimator accepts (2 with a LeaveOneOut baseline)
    worlds: int  # number of enumerated worlds in exact_expectation
    quadrature: int
    seed: int

    def jax_inputs(self) -> dict:
        """The inputs as jax arrays of the current default float dtype (float64 under enable_x64)."""
        return {k: jnp.asarray(v, float) for k, v in self.inputs.items()}


_PREFIX = {"bernoulli": "bern", "categorical": "cat", "normal": "norm", "deterministic": "det"}


# XLA's cheap settings: test graphs are tiny and run once, so compile time dominates
# (about 3x less than the defaults on CPU); unknown options fall back to the defaults.
QUICK_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


def quick_call(fn, *args):
    """``jax.jit(fn)(*args)``, compiled with :data:`QUICK_COMPILE`."""
    lowered = jax.jit(fn).lower(*args)
    try:
        compiled = lowered.compile(compiler_options=QUICK_COMPILE)
    except Exception:  # an XLA build without these options
        compiled = lowered.compile()
    return compiled(*args)


def replace_estimators(graph: Graph, estimators: dict) -> Graph:
    """A copy of ``graph`` with the estimator of each node named in ``estimators`` replaced."""
    out = Graph(graph.name)
    for node in graph.nodes:
        out._add(node.with_estimator(estimators[node.name]) if node.name in estimators else node)
    return out


def _k(a):
    """A numpy constant as a jax array of the current default dtype.

    Converted at call time, so one graph works both in float32 and under
    ``jax.enable_x64`` (a numpy float64 constant captured as is would be cast
    once and reused in the wrong precision).
    """
    return jnp.asarray(a, dtype=jnp.result_type(float))


def _projection(rng, parent_shape, is_int: bool, target: tuple):
    """A random map from one parent value to an array of shape ``target`` (linear in float parents)."""
    if is_int:  # a categorical index: look up a random row
        table = rng.normal(0.0, 1.0, (3,) + target)
        return lambda x: _k(table)[x]
    if parent_shape == target or parent_shape == ():
        w = rng.uniform(-1.5, 1.5, target)
        return lambda x: _k(w) * x
    w = rng.uniform(-1.5, 1.5, parent_shape)
    return lambda x: jnp.sum(_k(w) * x)  # a 2-vector projected to a scalar


def _combine(rng, shapes: list, ints: list, target: tuple):
    """``u(*parents) = Σ_i proj_i(parent_i)``, and the per-parent projections."""
    projs = [_projection(rng, s, i, target) for s, i in zip(shapes, ints)]
    bias = rng.uniform(-0.5, 0.5, target)
    return (lambda *xs: _k(bias) + sum(p(x) for p, x in zip(projs, xs))), projs


def _deterministic_fn(rng, shapes, ints, target, ops=("sum", "tanh", "sin", "product")):
    u, projs = _combine(rng, shapes, ints, target)
    op = ops[rng.integers(len(ops))]
    scale = float(rng.uniform(0.5, 1.5))
    if op == "sum":
        return lambda *xs: u(*xs)
    if op == "tanh":
        return lambda *xs: scale * jnp.tanh(u(*xs))
    if op == "sin":
        return lambda *xs: scale * jnp.sin(u(*xs))
    if op == "square":
        return lambda *xs: 0.5 * u(*xs) ** 2
    if len(projs) >= 2:  # a product of two parents
        return lambda *xs: projs[0](xs[0]) * projs[1](xs[1]) + 0.3 * u(*xs)
    return lambda *xs: u(*xs) * jnp.tanh(u(*xs))


def _stochastic_fn(rng, kind, shapes, ints, target, strength=1.5):
    u, _ = _combine(rng, shapes, ints, () if kind == "categorical" else target)
    if kind == "bernoulli":
        a, c = rng.uniform(-strength, strength, target), rng.uniform(-0.5, 0.5, target)
        return lambda *xs: dist.Bernoulli(logits=_k(a) * jnp.tanh(u(*xs)) + _k(c))
    if kind == "categorical":
        a, c = rng.uniform(-strength, strength, 3), rng.uniform(-0.5, 0.5, 3)
        return lambda *xs: dist.Categorical(logits=_k(a) * jnp.tanh(u(*xs)) + _k(c))
    a, c = rng.uniform(-1.0, 1.0, target), rng.uniform(-0.5, 0.5, target)
    s, b = float(rng.uniform(0.3, 0.8)), float(rng.uniform(-0.3, 0.3))
    return lambda *xs: dist.Normal(_k(a) * jnp.tanh(u(*xs)) + _k(c), s * jnp.exp(b * jnp.sin(u(*xs))))


def random_graph(
    seed: int,
    *,
    num_internal: tuple[int, int] = (3, 6),
    score_path: bool = False,
    baselines: bool = True,
    max_normals: int = 2,
    max_worlds: int = 10_000,
    quadrature: int = 16,
) -> RandomGraph:
    """A random graph, the same for the same arguments.

    Args:
        num_internal: inclusive range of the number of stochastic + deterministic nodes.
        score_path: make the first internal node a score-function Bernoulli or
            Categorical of the first input with strong logits, feeding the first
            cost linearly, so the score term carries a large part of the gradient.
        baselines: attach random admissible baselines to some score nodes.
    """
    rng = np.random.default_rng(seed)
    g = Graph(f"random_{seed}")
    shape: dict[str, tuple] = {}
    is_int: dict[str, bool] = {}
    inputs = {}
    for i in range(rng.integers(1, 3)):
        name = f"theta{i}"
        shape[name], is_int[name] = [(), (2,)][rng.integers(2)], False
        inputs[name] = rng.normal(0.0, 0.7, shape[name])
        g.input(name)
    worlds, normals, needs_two = 1, 0, False
    children: dict[str, int] = {n: 0 for n in inputs}
    kinds = ("bernoulli", "categorical", "normal", "deterministic")
    for i in range(rng.integers(num_internal[0], num_internal[1] + 1)):
        forced = score_path and i == 0
        kind = kinds[rng.integers(2)] if forced else kinds[rng.choice(4, p=[0.25, 0.15, 0.25, 0.35])]
        target = () if kind == "categorical" else [(), (2,)][rng.integers(2)]
        size = {"bernoulli": 2 ** int(np.prod(target)), "categorical": 3, "normal": quadrature ** int(np.prod(target))}
        if kind == "normal" and normals >= max_normals or kind != "deterministic" and worlds * size[kind] > max_worlds:
            kind = "deterministic"
        pool = list(shape)
        parents = ["theta0"] if forced else [str(p) for p in rng.choice(pool, size=min(len(pool), rng.integers(1, 3)), replace=False)]
        for p in parents:
            children[p] += 1
        ps, pi = [shape[p] for p in parents], [is_int[p] for p in parents]
        name = f"{_PREFIX[kind]}{i}"
        if kind == "deterministic":
            g.deterministic(name, _deterministic_fn(rng, ps, pi, target), *parents)
        else:
            estimator = "pathwise" if kind == "normal" and rng.random() < 0.5 else "score"
            baseline = None
            if baselines and estimator == "score" and not forced:
                r = rng.random()
                if r < 0.25:  # a deterministic node of nodes declared earlier: not influenced by this one
                    src = [str(p) for p in rng.choice(pool, size=min(len(pool), rng.integers(1, 3)), replace=False)]
                    fn = _deterministic_fn(rng, [shape[p] for p in src], [is_int[p] for p in src], (), ("tanh", "sin"))
                    baseline = g.deterministic(f"base{i}", fn, *src)
                elif r < 0.4:
                    baseline, needs_two = LeaveOneOut(), True
            fn = _stochastic_fn(rng, kind, ps, pi, target, strength=3.0 if forced else 1.5)
            g.stochastic(name, fn, *parents, estimator=estimator, baseline=baseline)
            worlds *= size[kind]
            normals += kind == "normal"
        shape[name], is_int[name], children[name] = target, kind == "categorical", 0
    # costs: every node without children feeds some cost, so the whole graph matters
    sinks = [n for n in shape if children[n] == 0 and n not in inputs]
    num_costs = int(rng.integers(1, 4))
    cost_parents: list[list[str]] = [[] for _ in range(num_costs)]
    for j, s in enumerate(sinks):
        cost_parents[j % num_costs].append(s)
    for j in range(num_costs):
        extra = rng.choice(list(shape), size=int(rng.integers(0 if cost_parents[j] else 1, 3)), replace=False)
        parents = list(dict.fromkeys(cost_parents[j] + [str(p) for p in extra]))
        if score_path and j == 0:
            first = next(n for n in shape if n not in inputs)
            parents = [first] + [p for p in parents if p != first]
        ps, pi = [shape[p] for p in parents], [is_int[p] for p in parents]
        if score_path and j == 0:
            lead = _projection(rng, ps[0], pi[0], ())
            rest = _deterministic_fn(rng, ps[1:], pi[1:], ()) if len(parents) > 1 else (lambda: 0.0)
            fn = lambda x0, *xs, lead=lead, rest=rest: 3.0 * lead(x0) + rest(*xs)
        else:
            fn = _deterministic_fn(rng, ps, pi, (), ("sum", "tanh", "sin", "product", "square"))
        g.cost(f"cost{j}", fn, *parents)
    return RandomGraph(g, inputs, 2 if needs_two else 1, worlds, quadrature, seed)
