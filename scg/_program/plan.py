"""Planning: a graph checked against inputs of one shape signature (internal).

``scg.compile`` checks the structure with the estimators as declared. The first
call with inputs of a given shape then *plans*: it traces the graph abstractly
(``jax.eval_shape``, nothing runs) to learn every node's shape and dtype and
the distribution each stochastic node returns, resolves the default estimators
(pathwise if reparameterisable, else score), re-checks with that knowledge
(pathwise on a discrete distribution, integer values on a differentiable path,
non-scalar costs) and picks the program that runs the plan: a
:class:`~scg._program.flat.FlatProgram`, or for a :class:`scg.Temporal` a
:class:`~scg._program.temporal.TemporalProgram` (whose initial carry ``init``
may draw, and whose carried shapes must match). A :class:`Planner` caches one
plan per signature.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from scg._program.analysis import Analysis, analyse
from scg._program.flat import FlatProgram
from scg._program.forward import evaluate
from scg._program.temporal import TemporalProgram, check_carry, check_temporal
from scg.errors import GraphError
from scg.estimators import DEFAULT, resolve_default
from scg.graph import Graph
from scg.temporal import Temporal


class Plan(NamedTuple):
    """A checked graph for one input signature (hashed by identity: a key of the compiled graph's kernel cache)."""

    analysis: Analysis  # with the default estimators resolved
    avals: dict  # node name -> jax.ShapeDtypeStruct (or pytree of them)
    float_inputs: tuple[str, ...]  # the inputs a gradient is taken with respect to by default
    program: FlatProgram | TemporalProgram  # how samples become a surrogate

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


class Planner:
    """The plans of one graph, flat (``temporal=None``) or the step graph of ``temporal``: ``planner(inputs)``."""

    def __init__(self, graph: Graph, analysis: Analysis, mode: str, temporal: Temporal | None = None):
        self.graph, self.analysis, self.mode, self.temporal = graph, analysis, mode, temporal
        drawn = set(temporal.carry) if temporal is not None and temporal.init is not None else set()
        self.wanted = tuple(n for n in analysis.inputs if n not in drawn)  # less the carried inputs init draws
        self._plans: dict = {}

    def __call__(self, inputs: dict) -> Plan:
        """The plan for inputs of these shapes; made (and ``inputs`` checked) at the first call per signature."""
        sig = _signature(inputs)
        plan = self._plans.get(sig)
        if plan is None:  # the signature holds the dict's keys: inputs that hit a plan were checked already
            self._check_inputs(inputs)
            plan = self._plans[sig] = self._make(inputs)
        return plan

    def _check_inputs(self, inputs) -> None:
        want = self.wanted
        if not isinstance(inputs, dict):
            raise GraphError(f"inputs must be a dict keyed by input-node name {list(want)}")
        missing = [n for n in want if n not in inputs]
        if missing:
            raise GraphError(f"missing value for input node(s) {missing}; pass inputs={{name: value}} for each of {list(want)}")
        extra = [n for n in inputs if n not in want]
        if extra:
            raise GraphError(f"inputs {extra} are not input nodes of graph {self.graph.name!r} (input nodes: {list(want)})")

    def _make(self, inputs: dict) -> Plan:
        spec = self.temporal
        step_inputs = inputs
        if spec is not None and spec.init is not None:  # the shapes of the drawn initial carry
            carry0 = jax.eval_shape(lambda k, i: spec.init(k, i), jax.random.key(0), inputs)
            missing = set(spec.carry) - set(carry0)
            if missing:
                raise GraphError(f"Temporal {spec.name!r}: init returned no value for carried input(s) {sorted(missing)}")
            step_inputs = {**inputs, **{k: carry0[k] for k in spec.carry}}
        analysis, avals = self._resolve(step_inputs)
        if spec is not None:
            check_carry(spec, avals)
            check_temporal(spec, analysis)
        float_inputs = tuple(
            n for n in self.wanted if _is_float(avals[n]) and analysis.nodes[n].differentiable
        )
        _check_values(analysis, avals, float_inputs)
        program = FlatProgram(analysis) if spec is None else TemporalProgram(spec, analysis)
        return Plan(analysis, avals, float_inputs, program)

    def _resolve(self, inputs: dict) -> tuple[Analysis, dict]:
        """Trace the graph abstractly once; resolve default estimators; re-analyse with them."""
        a = self.analysis
        seen: dict[str, Any] = {}

        def discover(inputs, key):
            values, dists = evaluate(a, inputs, key)
            seen.update(dists)
            return values

        avals = jax.eval_shape(discover, inputs, jax.random.key(0))
        estimators = dict(a.estimators)
        for name, est in a.estimators.items():
            node, dist = a.nodes[name], seen.get(name)
            if est is DEFAULT:
                est = estimators[name] = resolve_default(node.kind, dist)
                est.check(name, dist)  # declared estimators were checked while tracing (forward.evaluate)
            if node.kind == "stochastic" and est.passes_gradient and not _is_float(avals[name]):
                raise GraphError(f"stochastic node {name!r}: estimator {est.name!r} needs floating-point values")
        if all(estimators[n] is a.estimators[n] for n in estimators):
            return a, avals
        return _reanalyse(self.graph, estimators, self.mode), avals


# -- checks of a call's options against a plan ------------------------------------------
def check_wrt(plan: Plan, wrt) -> tuple[str, ...]:
    """The inputs to differentiate: ``wrt`` (a name or names), or every floating-point input."""
    if wrt is None:
        return plan.float_inputs
    wrt = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    for n in wrt:
        if n not in plan.analysis.inputs:
            raise GraphError(f"wrt names {n!r}, which is not an input node (inputs: {list(plan.analysis.inputs)})")
        if n not in plan.float_inputs:
            raise GraphError(
                f"wrt names input {n!r}, which is declared differentiable=False or whose value is not "
                f"floating point: it has no gradient"
            )
    return wrt


def check_observed(plan: Plan, observed: dict | None) -> dict | None:
    """``observed`` if every node it names can take a recorded value (raises GraphError otherwise)."""
    plan.program.check_observed(observed)
    return observed


def check_num(n) -> int:
    """``n`` if it is a positive int (``num_samples``, ``num_replicates``)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphError(f"num_samples/num_replicates must be a positive int, got {n!r}")
    return n


# -- checks that need shapes ----------------------------------------------------------
def _signature(inputs: dict):
    # dtype objects, not str(dtype): formatting a dtype costs microseconds on every call.
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    return treedef, tuple((getattr(x, "shape", None), x.dtype if hasattr(x, "dtype") else type(x)) for x in leaves)


def _is_float(aval_tree) -> bool:
    leaves = jax.tree_util.tree_leaves(aval_tree)
    return bool(leaves) and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)


def _reanalyse(graph: Graph, estimators: dict, mode: str) -> Analysis:
    nodes = [n.with_estimator(estimators[n.name]) if n.name in estimators else n for n in graph.nodes]
    g = Graph(graph.name)
    for n in nodes:
        g._add(n)
    return analyse(g, mode=mode)


def _check_values(a: Analysis, avals: dict, float_inputs) -> None:
    for c in a.costs + tuple(n for n in a.losses if n in avals):
        shape = getattr(avals[c], "shape", None)
        if shape != ():
            raise GraphError(
                f"cost node {c!r} has shape {shape}; costs must be scalars: reduce it in the function "
                f"or declare g.cost({c!r}, ..., reduce='sum' or 'mean')"
            )
    for theta in float_inputs:
        for w in a.det_influences[theta]:
            node = a.nodes[w]
            if node.kind in ("deterministic", "cost", "expectation") and not _is_float(avals[w]):
                raise GraphError(
                    f"Condition 1 fails: input {theta!r} reaches node {w!r} along a differentiable path, but "
                    f"{w!r} returns non-floating values ({jax.tree_util.tree_leaves(avals[w])[0].dtype}), which "
                    f"carry no gradient. Insert a stochastic node (score function) before it, or declare it "
                    f"differentiable=False and keep inputs off its path."
                )
    for w in a.score_nodes():
        b = a.nodes[w].baseline
        if isinstance(b, str) and getattr(avals[b], "shape", None) not in ((),):
            raise GraphError(f"baseline {b!r} of node {w!r} must be a scalar per sample, got shape {avals[b].shape}")
