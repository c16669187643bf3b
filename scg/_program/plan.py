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
import numpy as np

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
    int_inputs: tuple[str, ...]  # inputs declared differentiable whose value has no floating-point leaf
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
            carried = [n for n in missing if self.temporal is not None and n in self.temporal.carry]
            also = (f", or the initial values of carried input(s) {carried} per sample through observed="
                    f"{{name: [num_samples, ...]}}") if carried else ""
            raise GraphError(f"missing value for input node(s) {missing}; pass inputs={{name: value}} for each of {list(want)}{also}")
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
        # An input is differentiated if declared differentiable and any leaf is floating point (the integer
        # leaves of a mixed pytree get float0 zeros); a wholly integer one is refused when differentiated.
        declared = [n for n in self.wanted if analysis.nodes[n].differentiable and jax.tree_util.tree_leaves(avals[n])]
        float_inputs = tuple(n for n in declared if _has_float(avals[n]))
        int_inputs = tuple(n for n in declared if not _has_float(avals[n]))
        _check_values(analysis, avals, float_inputs)
        program = FlatProgram(analysis) if spec is None else TemporalProgram(spec, analysis)
        return Plan(analysis, avals, float_inputs, int_inputs, program)

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
    """The inputs to differentiate: ``wrt`` (a name or names), or every input declared differentiable.

    An input whose value has no floating-point leaf (an int, an integer array) has no gradient: naming it
    in ``wrt``, or leaving ``wrt`` out while it is declared differentiable (the default), is a GraphError
    rather than a gradient that silently leaves it out.
    """
    if wrt is None:
        if plan.int_inputs:
            raise _no_gradient(plan, plan.int_inputs[0], "it is declared differentiable (the default), so "
                               "grad without wrt= differentiates it")
        return plan.float_inputs
    wrt = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    for n in wrt:
        if n not in plan.analysis.inputs:
            raise GraphError(f"wrt names {n!r}, which is not an input node (inputs: {list(plan.analysis.inputs)})")
        if not plan.analysis.nodes[n].differentiable:
            raise GraphError(
                f"wrt names input {n!r}, which is declared differentiable=False: it has no gradient; drop it "
                f"from wrt, or declare g.input({n!r}) (differentiable by default) to differentiate it"
            )
        if n not in plan.float_inputs:
            raise _no_gradient(plan, n, "wrt names it")
    return wrt


def _no_gradient(plan: Plan, name: str, why: str) -> GraphError:
    dtypes = sorted({str(x.dtype) for x in jax.tree_util.tree_leaves(plan.avals.get(name))})
    return GraphError(
        f"input {name!r} has no gradient: its value is not floating point ({', '.join(dtypes) or 'no arrays'}), "
        f"and {why}. Pass a floating-point value (e.g. jnp.asarray(x, jnp.float32)) to differentiate it, or "
        f"declare g.input({name!r}, differentiable=False) if it is data (an index, a count, a seed)"
    )


def check_observed(plan: Plan, observed: dict | None, num_samples: int | None) -> dict | None:
    """``observed`` if every node it names can take a recorded value and has its shape (raises GraphError).

    The shape is the node's own (as planned) after the sample axes the program reads: ``[num_samples]``
    (none when ``num_samples`` is None, :meth:`scg.CompiledGraph.sample`), and for a step node of a
    :class:`scg.Temporal` the horizon after it, ``[num_samples, T]``; an initial carried input of a
    Temporal has ``[num_samples]`` only (:meth:`TemporalProgram.check_observed`).
    """
    plan.program.check_observed(observed)
    if not observed:
        return observed
    spec = plan.program.spec if isinstance(plan.program, TemporalProgram) else None
    lead = () if num_samples is None else (num_samples,)
    for name, value in observed.items():
        steps = () if spec is None or name in spec.carry else (spec.horizon,)
        _check_recorded(name, value, plan.avals[name], lead, steps)
    return observed


def _check_recorded(name: str, value, aval, lead: tuple, steps: tuple) -> None:
    axes = " ".join(
        ([f"num_samples={lead[0]}"] if lead else []) + ([f"horizon T={steps[0]}"] if steps else [])
    ) or "no sample axis (num_samples=None)"
    want_tree, got_tree = jax.tree_util.tree_structure(aval), jax.tree_util.tree_structure(value)
    if want_tree != got_tree:
        raise GraphError(
            f"observed[{name!r}] has structure {got_tree}, but node {name!r} has values of structure {want_tree}; "
            f"pass what sample() returns for it"
        )
    paths = jax.tree_util.tree_flatten_with_path(aval)[0]
    for (path, want), got in zip(paths, jax.tree_util.tree_leaves(value)):
        expected, shape = (*lead, *steps, *want.shape), tuple(np.shape(got))
        if shape != expected:
            where = f"observed[{name!r}]{jax.tree_util.keystr(path)}"
            raise GraphError(
                f"{where} has shape {shape}, but node {name!r} needs {expected}: leading axes [{axes}] "
                f"before its own shape {tuple(want.shape)}; pass one recorded value per sample"
            )


def check_key(key) -> None:
    """Raise GraphError unless ``key`` is one PRNG key: a typed key (``jax.random.key``), or a legacy
    ``uint32[2]`` (``jax.random.PRNGKey``). Called while tracing, so a jitted call pays nothing for it."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
        got = f"a batch of {shape} keys"
    elif dtype == jnp.uint32 and shape == (2,):
        return
    elif dtype is None:
        got = repr(key)
    else:
        got = f"an array of dtype {dtype} and shape {shape}"
    raise GraphError(
        f"argument 'key': expected one PRNG key, jax.random.key(seed) (or a legacy jax.random.PRNGKey(seed), uint32[2]), "
        f"got {got}; pass key=jax.random.key(seed) (an int seed is not a key), and split it for independent calls"
    )


def check_tangents(wrt: tuple[str, ...], inputs: dict, tangents) -> dict:
    """``tangents`` (keyed by the differentiated inputs) checked against ``inputs`` and cast for ``jax.jvp``.

    Each must have its input's pytree structure and leaf shapes (GraphError naming the input and both
    shapes). A floating-point leaf is cast to its input's dtype; an integer leaf of a mixed input takes
    a ``float0`` zero tangent, whatever was passed (it has no derivative, :meth:`scg.CompiledGraph.grad`).
    """
    if not isinstance(tangents, dict) or set(tangents) != set(wrt):
        got = list(tangents) if isinstance(tangents, dict) else type(tangents).__name__
        raise GraphError(f"hvp: tangents must be a dict keyed by the differentiated inputs {list(wrt)}, got {got}")
    out = {}
    for n in wrt:
        want_tree, got_tree = jax.tree_util.tree_structure(inputs[n]), jax.tree_util.tree_structure(tangents[n])
        if want_tree != got_tree:
            raise GraphError(f"hvp: tangents[{n!r}] has structure {got_tree}, but input {n!r} has {want_tree}")
        paths = jax.tree_util.tree_flatten_with_path(inputs[n])[0]
        leaves = []
        for (path, x), t in zip(paths, jax.tree_util.tree_leaves(tangents[n])):
            if np.shape(t) != np.shape(x):
                raise GraphError(
                    f"hvp: tangents[{n!r}]{jax.tree_util.keystr(path)} has shape {np.shape(t)}, but input {n!r}"
                    f"{jax.tree_util.keystr(path)} has shape {np.shape(x)}; a tangent is shaped like its input"
                )
            dtype = jnp.result_type(x)
            floating = jnp.issubdtype(dtype, jnp.floating)
            leaves.append(jnp.asarray(t, dtype) if floating else np.zeros(np.shape(x), jax.dtypes.float0))
        out[n] = jax.tree_util.tree_unflatten(want_tree, leaves)
    return out


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


def _has_float(aval_tree) -> bool:
    return any(jnp.issubdtype(x.dtype, jnp.floating) for x in jax.tree_util.tree_leaves(aval_tree))


def _reanalyse(graph: Graph, estimators: dict, mode: str) -> Analysis:
    return analyse(graph._with_estimators(estimators), mode=mode)


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
                    + ("" if _is_float(avals[theta]) else
                       f" Input {theta!r} has integer leaves too: if {w!r} reads only those, move them into an "
                       f"input of their own declared g.input(name, differentiable=False).")
                )
    for w in a.score_nodes():
        b = a.nodes[w].baseline
        if isinstance(b, str) and getattr(avals[b], "shape", None) not in ((),):
            raise GraphError(f"baseline {b!r} of node {w!r} must be a scalar per sample, got shape {avals[b].shape}")
