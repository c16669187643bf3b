"""Evaluating one sample of a graph: node values, distributions and estimator terms.

This is the only place node functions are called. Every node draws its
randomness from ``fold_in(key, index)`` with its index in the topological
order (``Analysis.key_index``, which does not count the distribution nodes of
``scg.dist_of``), so the same key gives the same draws, and re-evaluating the
graph with one node's value replaced (``override``) keeps every other draw: the "common
random numbers" the direct and smoothing estimators rely on.

A recorded value (``fixed``, from ``observed=``) is handed to the node's
estimator (``Estimator.observe``): a draw without gradient path takes it as it
is, a pathwise node infers the noise that produced it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from scg._program import checks
from scg._program.analysis import Analysis
from scg.errors import GraphError
from scg.estimators import DEFAULT, resolve_default
from scg.estimators.base import ExpectationContext, NodeContext
from scg.graph import call_arguments


class SampleTerms(NamedTuple):
    """One sample's contribution to the surrogate, before baselines and averaging."""

    values: dict  # node name -> value
    score_weights: dict  # score node -> log p(ŵ) (or the importance ratio)
    log_probs: dict  # score node -> log p(ŵ | DEPS_w), with gradient
    extra: dict  # stochastic node -> its estimator's term added as it is (scalar per sample)


_DRAWS = ("stochastic", "simulate", "expectation")


def _estimator(analysis: Analysis, name: str, dist):
    """The node's estimator; a default not yet resolved (the structural analysis the compiler traces
    to plan) is resolved from the traced distribution, as the plan will resolve it."""
    est = analysis.estimators[name]
    return resolve_default(analysis.nodes[name].kind, dist) if est is DEFAULT else est


def _reduce_cost(node, value):
    reduce = node.spec.reduce
    if reduce == "sum":
        return jnp.sum(value)
    if reduce == "mean":
        return jnp.mean(value)
    return value


def _call(node, fn: Callable, args, *, role: str = "function"):
    """``fn(*args)``, where an exception raised while tracing it becomes a GraphError naming the node, its
    kind, its arguments with their shapes and dtypes, and the original message (chained). Node functions run
    only while tracing, so this adds nothing to the compiled code."""
    try:
        return fn(*args)
    except GraphError:
        raise
    except Exception as err:
        names = call_arguments(node.kind, node.spec, node.parents)
        if role == "dist_fn":
            names = node.parents
        names = (*names, *(f"argument {i}" for i in range(len(names), len(args))))[: len(args)]
        shown = ", ".join(f"{n!r}: {_describe(a)}" for n, a in zip(names, args)) or "no arguments"
        raise GraphError(
            f"{node.kind} node {node.name!r}: its {role} raised {type(err).__name__} while tracing, called with "
            f"({shown}): {err}"
        ) from err


def _named(node, fn: Callable, *, role: str = "function") -> Callable:
    """``fn`` called through :func:`_call`, for functions an estimator calls (an expectation's ``fn``)."""
    return lambda *args: _call(node, fn, args, role=role)


def _describe(x) -> str:
    """``float32[2]`` for an array (``key<fry>[]`` for a key), the same per leaf for a pytree."""
    leaves, tree = jax.tree_util.tree_flatten(x)
    shown = [f"{x.dtype}{list(x.shape)}" if hasattr(x, "shape") and hasattr(x, "dtype") else type(x).__name__ for x in leaves]
    if jax.tree_util.treedef_is_leaf(tree):
        return shown[0]
    return str(jax.tree_util.tree_unflatten(tree, [_Shown(s) for s in shown]))


class _Shown(str):
    def __repr__(self) -> str:  # shown without quotes inside a pytree's repr
        return str(self)


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
    for name in analysis.order:
        node = analysis.nodes[name]
        if node.kind == "input" or name in skip:
            continue
        if name in override:
            values[name] = override[name]
            continue
        args = [values[p] for p in node.parents]
        # Only nodes that draw get a key: tracing fold_in for every node costs more than the node itself.
        k = analysis.node_key(key, name) if node.kind in _DRAWS else None
        if node.kind == "deterministic":
            values[name] = _call(node, node.fn, args)
        elif node.kind == "cost":
            values[name] = _reduce_cost(node, checks.finite("cost", name, _call(node, node.fn, args)))
        elif node.kind == "loss":
            if node.spec.target is None:  # losses of the return are formed after the scan
                values[name] = checks.finite("loss", name, _call(node, node.fn, args))
        elif node.kind == "stochastic":
            dist = _call(node, node.fn, args)
            checks.distribution(name, dist)  # no-ops unless traced with checks=True (scg._program.checks)
            dists[name] = dist
            est = _estimator(analysis, name, dist)
            est.check(name, dist)  # at trace time: a GraphError before sample() can fail
            if name in fixed:
                values[name] = est.observe(name, dist, checks.observed(name, dist, fixed[name]))
            else:
                values[name] = est.sample(dist, k)
        elif node.kind == "simulate":
            values[name] = fixed[name] if name in fixed else jax.lax.stop_gradient(_call(node, node.fn, [k, *args]))
        elif node.kind == "expectation":
            dist = _call(node, node.spec.dist_fn, args, role="dist_fn")
            checks.distribution(name, dist)
            dists[name] = dist
            ctx = ExpectationContext(name, _named(node, node.fn), dist, tuple(args), k, node.spec.exact)
            values[name] = analysis.estimators[name].expect(ctx)
    return values, dists


def downstream_cost(analysis: Analysis, inputs, key, name, *, fixed=None, tail: Callable | None = None):
    """``value -> Σ_{c : name ≺ c} c [+ tail(values)]`` with the node's value replaced and all draws kept.

    ``tail`` maps the re-evaluated values to an estimate of the costs beyond the graph (a temporal
    step's bootstrapped later costs, :class:`scg._program.temporal.TemporalProgram`).
    """
    costs = analysis.downstream_costs[name]

    def fn(value):
        values, _ = evaluate(analysis, inputs, key, fixed=fixed, override={name: value})
        total = sum((values[c] for c in costs), jnp.zeros(()))
        return total if tail is None else total + tail(values)

    return fn


def _frozen_downstream(analysis: Analysis, inputs, key, name, fixed, tail):
    """:func:`downstream_cost` with ``inputs`` and ``fixed`` held constant (built when first called)."""

    def fn(value):
        held_inputs, held_fixed = jax.lax.stop_gradient((inputs, fixed))
        return downstream_cost(analysis, held_inputs, key, name, fixed=held_fixed, tail=tail)(value)

    return fn


def sample_terms(
    analysis: Analysis, inputs: dict, key: jax.Array, *, fixed=None, logp_old=None, skip: frozenset = frozenset(),
    tails: Mapping[str, Callable] | None = None, states: Mapping[str, Any] | None = None,
) -> SampleTerms:
    """One sample: values, each score node's weight and log-probability, and the estimators' extra terms.

    ``skip`` (deterministic, cost or loss nodes only) as in :func:`evaluate`; ``tails`` per node, as
    ``tail`` in :func:`downstream_cost`, for estimators that re-evaluate downstream costs; ``states``
    per node, the estimator's state of this call (``NodeContext.state``; ``()`` for nodes absent).
    """
    values, dists = evaluate(analysis, inputs, key, fixed=fixed, skip=skip)
    score_weights, log_probs, extra = {}, {}, {}
    for name in analysis.order:
        node = analysis.nodes[name]
        if node.kind != "stochastic":
            continue
        est = _estimator(analysis, name, dists[name])
        tail = None if tails is None else tails.get(name)
        downstream = frozen = None
        if est.needs_downstream:
            downstream = downstream_cost(analysis, inputs, key, name, fixed=fixed, tail=tail)
            frozen = _frozen_downstream(analysis, inputs, key, name, fixed, tail)
        old = None if logp_old is None else logp_old.get(name)
        state = () if states is None else states.get(name, ())
        ctx = NodeContext(name, dists[name], values[name], analysis.node_key(key, name), downstream, old, state, frozen)
        weight, extra[name] = est.terms(ctx)
        if est.uses_score:
            score_weights[name] = weight
            log_probs[name] = jnp.sum(dists[name].log_prob(values[name]))
    return SampleTerms(values, score_weights, log_probs, extra)
