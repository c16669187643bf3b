"""Evaluating one sample of a graph: node values, distributions and estimator terms.

This is the only place node functions are called. Every node draws its
randomness from ``fold_in(key, index)`` with its index in the topological
order, so the same key gives the same draws, and re-evaluating the graph with
one node's value replaced (``override``) keeps every other draw: the "common
random numbers" the direct and smoothing estimators rely on.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from scg._program.analysis import Analysis
from scg.estimators.base import ExpectationContext, NodeContext


class SampleTerms(NamedTuple):
    """One sample's contribution to the surrogate, before baselines and averaging."""

    values: dict  # node name -> value
    score_weights: dict  # score node -> log p(ŵ) (or the importance ratio)
    log_probs: dict  # score node -> log p(ŵ | DEPS_w), with gradient
    extra: jax.Array  # sum of estimator terms added as they are


def node_key(key: jax.Array, analysis: Analysis, name: str) -> jax.Array:
    return jax.random.fold_in(key, analysis.position[name])


_DRAWS = ("stochastic", "simulate", "expectation")


def _reduce_cost(node, value):
    reduce = node.options.get("reduce")
    if reduce == "sum":
        return jnp.sum(value)
    if reduce == "mean":
        return jnp.mean(value)
    return value


def evaluate(
    analysis: Analysis, inputs: dict, key: jax.Array, *, fixed: dict | None = None, override: dict | None = None,
    skip: frozenset = frozenset(),
):
    """Run the graph once; returns ``(values, dists)``.

    Args:
        fixed: values for sampled (score or simulated) nodes, taken instead of drawing.
        override: values that replace nodes outright (their functions are not called).
        skip: nodes not evaluated (absent from ``values`` unless ``inputs`` holds them).
    """
    fixed, override = fixed or {}, override or {}
    values: dict[str, Any] = dict(inputs)
    dists: dict[str, Any] = {}
    for index, name in enumerate(analysis.order):
        node = analysis.nodes[name]
        if node.kind == "input" or name in skip:
            continue
        if name in override:
            values[name] = override[name]
            continue
        args = [values[p] for p in node.parents]
        # Only nodes that draw get a key: tracing fold_in for every node costs more than the node itself.
        k = jax.random.fold_in(key, index) if node.kind in _DRAWS else None
        if node.kind == "deterministic":
            values[name] = node.fn(*args)
        elif node.kind == "cost":
            values[name] = _reduce_cost(node, node.fn(*args))
        elif node.kind == "loss":
            if node.options.get("target") is None:  # losses of the return are formed after the scan
                values[name] = node.fn(*args)
        elif node.kind == "stochastic":
            dist = node.fn(*args)
            dists[name] = dist
            analysis.estimators[name].check(name, dist)  # at trace time: a GraphError before sample() can fail
            values[name] = fixed[name] if name in fixed else analysis.estimators[name].sample(dist, k)
        elif node.kind == "simulate":
            values[name] = fixed[name] if name in fixed else jax.lax.stop_gradient(node.fn(k, *args))
        elif node.kind == "expectation":
            dist = node.dist_fn(*args)
            dists[name] = dist
            ctx = ExpectationContext(name, node.fn, dist, tuple(args), k, node.options)
            values[name] = analysis.estimators[name].expect(ctx)
    return values, dists


def downstream_cost(analysis: Analysis, inputs, key, name, *, fixed=None):
    """``value -> Σ_{c : name ≺ c} c`` with the node's value replaced and all draws kept."""
    costs = analysis.downstream_costs[name]

    def fn(value):
        values, _ = evaluate(analysis, inputs, key, fixed=fixed, override={name: value})
        return sum((values[c] for c in costs), jnp.zeros(()))

    return fn


def sample_terms(
    analysis: Analysis, inputs: dict, key: jax.Array, *, fixed=None, logp_old=None, skip: frozenset = frozenset()
) -> SampleTerms:
    """One sample: values, each score node's weight and log-probability, and the estimators' extra terms.

    ``skip`` (deterministic, cost or loss nodes only) as in :func:`evaluate`.
    """
    values, dists = evaluate(analysis, inputs, key, fixed=fixed, skip=skip)
    score_weights, log_probs, extra = {}, {}, jnp.zeros(())
    for index, name in enumerate(analysis.order):
        node = analysis.nodes[name]
        if node.kind != "stochastic":
            continue
        est = analysis.estimators[name]
        downstream = downstream_cost(analysis, inputs, key, name, fixed=fixed) if est.needs_downstream else None
        old = None if logp_old is None else logp_old.get(name)
        ctx = NodeContext(name, dists[name], values[name], jax.random.fold_in(key, index), downstream, old)
        weight, more = est.terms(ctx)
        extra = extra + more
        if est.uses_score:
            score_weights[name] = weight
            log_probs[name] = jnp.sum(dists[name].log_prob(values[name]))
    return SampleTerms(values, score_weights, log_probs, extra)
