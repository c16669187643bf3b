"""``scg.compile``: check a graph and return jitted estimator functions.

Compilation happens in two stages. ``compile(graph)`` checks the structure
(names, cycles, costs, Condition 1, Theorem 2) with the estimators as
declared. The first call with inputs of a given shape then *plans*: it traces
the graph abstractly (``jax.eval_shape``, nothing runs) to learn every node's
shape and dtype and the distribution each stochastic node returns, resolves
the default estimators (pathwise if reparameterisable, else score), re-checks
with that knowledge (pathwise on a discrete distribution, integer values on a
differentiable path, non-scalar costs) and caches the plan. Later calls with
the same shapes reuse the plan and the compiled XLA code: no re-tracing.
"""
from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from scg._program.analysis import Analysis, analyse
from scg.errors import GraphError
from scg.estimators import DEFAULT, resolve_default
from scg._program.forward import evaluate
from scg._program.flat import FlatProgram
from scg.graph import Graph


class Batch(NamedTuple):
    """A batch sampled without a gradient (:meth:`CompiledGraph.sample_batch`); every entry has the sample axes."""

    values: dict  # every node's value
    log_probs: dict  # score node -> log p(value | parents) at the sampling inputs, summed over the node's elements
    advantages: dict  # score node -> Q̂_w - b_w: the weight of ∇log p(ŵ) in the surrogate (GAE where declared)


class Plan(NamedTuple):
    """A checked graph for one input signature (hashable by identity, a static jit argument)."""

    analysis: Analysis
    avals: dict  # node name -> jax.ShapeDtypeStruct (or pytree of them)
    float_inputs: tuple[str, ...]
    program: Any  # FlatProgram or TemporalProgram: how samples become a surrogate

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


def _signature(inputs: dict):
    # dtype objects, not str(dtype): formatting a dtype costs microseconds on every call.
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    return treedef, tuple((getattr(x, "shape", None), x.dtype if hasattr(x, "dtype") else type(x)) for x in leaves)


def _is_float(aval_tree) -> bool:
    leaves = jax.tree_util.tree_leaves(aval_tree)
    return bool(leaves) and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)


class CompiledGraph:
    """The estimator of one graph: ``grad``, ``surrogate``, ``sample``, ``hvp`` and friends, all jitted.

    Every method takes ``inputs`` (a dict keyed by input-node name, values any
    pytree of arrays) and an explicit ``key``.
    """

    def __init__(self, graph: Graph, *, mode: str = "surrogate"):
        if mode not in ("surrogate", "dice"):
            raise GraphError(f"compile: mode must be 'surrogate' or 'dice', got {mode!r}")
        self.graph = graph
        self.mode = mode
        self.analysis = analyse(graph, mode=mode)  # structural checks, as declared
        self._plans: dict = {}
        self._kernels: dict = {}  # (kernel, *static arguments) -> jitted kernel, see _kernel
        self.trace_count = 0  # how many times a function was traced (for no-retrace tests)

    # -- planning -------------------------------------------------------------
    def _check_inputs(self, inputs) -> dict:
        if not isinstance(inputs, dict):
            raise GraphError(f"inputs must be a dict keyed by input-node name {list(self.analysis.inputs)}")
        want = self.analysis.inputs
        missing = [n for n in want if n not in inputs]
        if missing:
            raise GraphError(f"missing value for input node(s) {missing}; pass inputs={{name: value}} for each of {list(want)}")
        extra = [n for n in inputs if n not in want]
        if extra:
            raise GraphError(f"inputs {extra} are not input nodes of the graph (input nodes: {list(want)})")
        return inputs

    def plan(self, inputs: dict) -> Plan:
        """Check the graph against inputs of these shapes; cached per shape signature."""
        sig = _signature(inputs)
        plan = self._plans.get(sig)
        if plan is None:  # the signature holds the dict's keys: inputs that hit a plan were checked already
            self._check_inputs(inputs)
            plan = self._plans[sig] = self._make_plan(inputs)
        return plan

    def _make_plan(self, inputs: dict) -> Plan:
        analysis, avals = self._resolve(inputs)
        float_inputs = tuple(n for n in analysis.inputs if _is_float(avals[n]) and analysis.nodes[n].differentiable)
        _check_values(analysis, avals, float_inputs)
        return Plan(analysis, avals, float_inputs, FlatProgram(analysis))

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

    def _wrt(self, plan: Plan, wrt) -> tuple[str, ...]:
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

    # -- public API -------------------------------------------------------------
    def _observed(self, plan: Plan, observed):
        plan.program.check_observed(observed)
        return observed

    def sample(self, inputs: dict, key: jax.Array, *, num_samples: int | None = None, observed=None) -> dict:
        """Draw every node's value: ``{name: value}`` (with a leading ``num_samples`` axis if given).

        ``observed`` (every method takes it) maps sampled nodes without a
        gradient path (score-function or simulated) to recorded values with a
        leading ``num_samples`` axis: those values are used instead of drawing,
        and log-probabilities are recomputed at the current inputs.
        """
        plan = self.plan(inputs)
        n = None if num_samples is None else _num(num_samples)
        return _sample(self, plan, n, inputs, key, self._observed(plan, observed))

    def surrogate(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """The scalar surrogate loss; ``jax.grad`` of it is the gradient estimator (Corollary 1)."""
        plan = self.plan(inputs)
        kernel = self._kernel(_surrogate, plan, self.mode, _num(num_samples))
        return kernel(inputs, key, self._observed(plan, observed))

    def ratio_surrogate(self, inputs: dict, old_inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """``Σ_w p(ŵ)/p̂_w (Q̂_w - b_w) + Σ_c c`` with samples drawn at ``old_inputs`` (§5.3.2).

        With the same ``key`` the samples are the same for every ``inputs``, so a
        line search can evaluate it at many parameters; at ``inputs == old_inputs``
        its gradient equals that of :meth:`surrogate`.
        """
        plan = self.plan(inputs)
        if self.plan(old_inputs) is not plan:
            raise GraphError("ratio_surrogate: inputs and old_inputs must have the same shapes and structure")
        return _ratio(self, plan, _num(num_samples), inputs, old_inputs, key, self._observed(plan, observed))

    def grad(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, wrt=None, observed=None) -> dict:
        """Unbiased estimate of ``∇ E[Σ costs]``, averaged over ``num_samples`` samples.

        Returns a dict keyed by input name (every floating-point input, or those
        in ``wrt``), each entry shaped like that input.
        """
        wrt = wrt if wrt is None or isinstance(wrt, str) else tuple(wrt)
        kernel = self._kernels.get((num_samples, wrt))
        if kernel is None:
            kernel = self._kernels[(num_samples, wrt)] = jax.jit(partial(self._traced_grad, num_samples, wrt))
        return kernel(inputs, key, observed)

    def _traced_grad(self, num_samples, wrt, inputs, key, observed):
        """The body of :meth:`grad`: planning and checks run while tracing, so a call whose shapes were
        seen before is a dict lookup and one dispatch of jit's C++ cache, with no Python work of ours
        (static arguments are bound, not hashed by jit on each call)."""
        self.trace_count += 1
        plan = self.plan(inputs)
        wrt = self._wrt(plan, wrt)
        return _grad_body(plan, self.mode, wrt, _num(num_samples), inputs, key, self._observed(plan, observed))

    def _kernel(self, jitted, *static):
        """``jitted`` (a kernel below) with its static arguments bound, jitted once per ``static``.

        A call then looks up one small tuple, instead of jit hashing each static argument
        (``Plan.__hash__`` in Python among them) on every call: tens of microseconds on a CPU,
        the scale of a small graph's whole gradient.
        """
        cache_key = (jitted, *static)
        kernel = self._kernels.get(cache_key)
        if kernel is None:
            kernel = self._kernels[cache_key] = jax.jit(partial(jitted.__wrapped__, self, *static))
        return kernel

    def grad_samples(self, inputs: dict, key: jax.Array, *, num_replicates: int, num_samples: int = 1, wrt=None) -> dict:
        """``num_replicates`` independent gradient estimates stacked on a leading axis (for variance and z-tests)."""
        plan = self.plan(inputs)
        return _grad_samples(self, plan, self.mode, self._wrt(plan, wrt), _num(num_samples), _num(num_replicates), inputs, key)

    def value(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """Monte Carlo estimate of ``E[Σ costs]``."""
        plan = self.plan(inputs)
        return _value(self, plan, _num(num_samples), inputs, key, self._observed(plan, observed))

    def hvp(self, inputs: dict, tangents: dict, key: jax.Array, *, num_samples: int = 1, wrt=None, mode: str = "dice", observed=None) -> dict:
        """Hessian-vector product estimate ``H v`` of ``E[Σ costs]`` (§5.3.3).

        ``mode="dice"`` (default) differentiates the magic-box objective twice:
        unbiased. ``mode="surrogate"`` differentiates the plain surrogate twice:
        biased (it misses the products of score functions), kept for comparison.
        """
        if mode not in ("dice", "surrogate"):
            raise GraphError(f"hvp: mode must be 'dice' or 'surrogate', got {mode!r}")
        if mode == "dice" and self.mode != "dice":
            if getattr(self, "_dice", None) is None:
                self._dice = compile(self.graph, mode="dice")
            return self._dice.hvp(inputs, tangents, key, num_samples=num_samples, wrt=wrt, observed=observed)
        plan = self.plan(inputs)
        wrt = self._wrt(plan, wrt)
        if set(tangents) != set(wrt):
            raise GraphError(f"hvp: tangents must be keyed by {list(wrt)}, got {list(tangents)}")
        return _hvp(self, plan, mode, wrt, _num(num_samples), inputs, tangents, key, self._observed(plan, observed))

    # -- pure functions, for use inside a caller's own jit / scan / vmap ----------------
    def advantages(self, inputs: dict, values: dict) -> dict:
        """``{w: Q̂_w - b_w}`` per score-function node, from sampled ``values`` (no gradient).

        The weight each ``∇log p(ŵ)`` gets in the surrogate: with a node baseline,
        ``Q̂ - b``; in a temporal graph, per step, and Eq. 26's GAE for a node
        declared with ``advantage=scg.GAE(λ)``. Fixed advantages are what the
        importance-ratio objectives of TRPO and PPO multiply. Pure; use inside ``jit``.
        """
        return self.plan(inputs).program.advantages(values)

    def sample_batch(self, inputs: dict, key: jax.Array, *, num_samples: int, observed=None) -> Batch:
        """Sample ``num_samples`` times without a gradient: every node's value, the score nodes'
        log-probabilities and their advantages (:meth:`advantages`), from one forward pass.

        What an importance-ratio method (TRPO, PPO) starts from: the log-probabilities are
        ``log p̂`` at the sampling inputs. ``observed`` as in :meth:`sample`. Pure; use inside ``jit``.
        """
        plan = self.plan(inputs)
        terms = plan.program.batch_terms(inputs, key, _num(num_samples), fixed=self._observed(plan, observed))
        values, log_probs = jax.lax.stop_gradient((terms.values, terms.log_probs))
        return Batch(values, log_probs, plan.program.advantages(values))

    def cost_to_go(self, inputs: dict, values: dict) -> jax.Array:
        """The cost to go of sampled ``values``, no gradient: per sample ``Σ_c c`` for a flat graph; per sample
        and step ``G_t`` (discounted, bootstrapped: the target a critic regresses on) for a temporal one. Pure."""
        return jax.lax.stop_gradient(self.plan(inputs).program.cost_to_go(values))

    def replay(self, inputs: dict, values: dict, *, key: jax.Array | None = None, batch_ndim: int | None = None):
        """Evaluate the graph again at recorded ``values`` ("teacher forcing"): ``Replay(values, dists, log_probs)``.

        Every drawn node (score-function or simulated; see :meth:`sample`) takes its
        recorded value and, in a temporal graph, each step's carried inputs are the
        recorded ones, so every position is evaluated independently (``vmap``, no
        scan) and the result keeps the record's batch axes, ``[N]`` or ``[N, T]``,
        or any flattening of them (``batch_ndim``: how many leading axes are batch;
        inferred from the first drawn node by default). ``inputs`` supplies the
        parameters, at which the distributions and log-probabilities are computed
        with gradient: the ratio ``p_θ(ŵ)/p_θold(ŵ)`` of TRPO and PPO, and their
        ``KL`` (:func:`scg.dist.kl_divergence`), on any minibatch of positions. Pure.
        """
        plan = self.plan(inputs)
        program = plan.program
        if batch_ndim is None:
            name = (program.drawn_nodes() or (None,))[0]
            if name is None:
                raise GraphError("replay: the graph has no drawn (score-function or simulated) node to replay")
            per_sample = jax.tree_util.tree_leaves(plan.avals[name])[0].ndim
            batch_ndim = jax.tree_util.tree_leaves(values[name])[0].ndim - per_sample
        missing = [n for n in (*program.drawn_nodes(), *program.replayed_inputs()) if n not in values]
        if missing:
            raise GraphError(f"replay: values has no record of node(s) {missing}; pass the values that sample() returned")
        return program.replay(inputs, values, jax.random.key(0) if key is None else key, batch_ndim)

    def surrogate_fn(self, example_inputs: dict, *, num_samples: int = 1):
        """A pure ``(inputs, key) -> scalar`` surrogate for inputs shaped like ``example_inputs``.

        Not jitted: compose it into a larger jitted function (a training step);
        ``jax.grad`` of it w.r.t. ``inputs`` is the gradient estimator.
        """
        plan, n = self.plan(example_inputs), _num(num_samples)
        return lambda inputs, key, observed=None: _emit(plan, self.mode, inputs, key, n, observed)

    def grad_fn(self, example_inputs: dict, *, num_samples: int = 1, wrt=None, with_values: bool = False):
        """A pure ``(inputs, key, observed=None) -> grads`` (dict keyed by input name), for a caller's jit.

        With ``with_values=True`` it returns ``(grads, values)``: the sampled
        values of every node (no gradient) from the same pass, e.g. for metrics,
        critic targets or the last carried state of a rollout.
        """
        plan, n = self.plan(example_inputs), _num(num_samples)
        wrt = self._wrt(plan, wrt)
        if not with_values:
            return lambda inputs, key, observed=None: _grad_body(plan, self.mode, wrt, n, inputs, key, observed)
        return lambda inputs, key, observed=None: _grad_and_values(plan, self.mode, wrt, n, inputs, key, observed)

    def _repr_svg_(self) -> str:
        from scg.render import to_svg

        return to_svg(self.graph, compiled=self)

    def __repr__(self) -> str:
        return f"CompiledGraph({self.graph.name!r}, mode={self.mode!r}, {len(self.graph)} nodes)"


def compile(graph, *, mode: str = "surrogate", example_inputs: dict | None = None) -> CompiledGraph:
    """Check ``graph`` (a :class:`Graph` or a :class:`scg.Temporal`) and return its :class:`CompiledGraph`.

    Args:
        mode: ``"surrogate"`` (Corollary 1) or ``"dice"`` (any-order magic box).
        example_inputs: if given, plan now so that shape-dependent errors are
            raised here rather than at the first call.

    Raises:
        GraphError: naming the node, for any malformed graph.
    """
    from scg._program.temporal import compile_temporal
    from scg.temporal import Temporal

    compiled = compile_temporal(graph, mode=mode) if isinstance(graph, Temporal) else CompiledGraph(graph, mode=mode)
    if example_inputs is not None:
        compiled.plan(example_inputs)
    return compiled


# -- checks that need shapes ----------------------------------------------------------
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


def _num(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphError(f"num_samples/num_replicates must be a positive int, got {n!r}")
    return n


# -- the jitted kernels ------------------------------------------------------------------
# Each takes the CompiledGraph and its plan as static arguments; ``observed`` is a
# dict of arrays (leading axis num_samples) or None.
def _keys(key, n):
    return jax.random.split(key, n)


def _emit(plan: Plan, mode: str, inputs, key, num_samples, observed):
    program = plan.program
    return program.emit(program.batch_terms(inputs, key, num_samples, fixed=observed), mode)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _sample(self, plan, num_samples, inputs, key, observed):
    self.trace_count += 1
    return plan.program.sample_values(inputs, key, num_samples, fixed=observed)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _surrogate(self, plan, mode, num_samples, inputs, key, observed):
    self.trace_count += 1
    return _emit(plan, mode, inputs, key, num_samples, observed)


def _grad_body(plan, mode, wrt, num_samples, inputs, key, observed=None):
    diff = {n: inputs[n] for n in wrt}
    return jax.grad(lambda d: _emit(plan, mode, {**inputs, **d}, key, num_samples, observed))(diff)


def _grad_and_values(plan, mode, wrt, num_samples, inputs, key, observed=None):
    program = plan.program

    def loss(d):
        terms = program.batch_terms({**inputs, **d}, key, num_samples, fixed=observed)
        return program.emit(terms, mode), jax.lax.stop_gradient(terms.values)

    return jax.grad(loss, has_aux=True)({n: inputs[n] for n in wrt})


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _grad_samples(self, plan, mode, wrt, num_samples, num_replicates, inputs, key):
    self.trace_count += 1
    one = lambda k: _grad_body(plan, mode, wrt, num_samples, inputs, k)
    return jax.lax.map(one, _keys(key, num_replicates), batch_size=_batch_size(num_replicates))


def _batch_size(n: int, limit: int = 1024) -> int:
    """The largest divisor of ``n`` up to ``limit``: a remainder batch would compile the body twice."""
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _value(self, plan, num_samples, inputs, key, observed):
    self.trace_count += 1
    values = plan.program.sample_values(inputs, key, num_samples, fixed=observed)
    return jnp.mean(plan.program.total_cost(values))


@partial(jax.jit, static_argnums=(0, 1, 2))
def _ratio(self, plan, num_samples, inputs, old_inputs, key, observed):
    self.trace_count += 1
    program = plan.program
    old = jax.lax.stop_gradient(program.batch_terms(old_inputs, key, num_samples, fixed=observed))
    drawn = {n: old.values[n] for n in program.drawn_nodes()}
    terms = program.batch_terms(inputs, key, num_samples, fixed=drawn, logp_old=old.log_probs)
    return program.emit(terms, "surrogate", q_hat=program.q_hats(old.values))


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _hvp(self, plan, mode, wrt, num_samples, inputs, tangents, key, observed):
    self.trace_count += 1
    diff = {n: inputs[n] for n in wrt}
    grad_fn = lambda d: _grad_body(plan, mode, wrt, num_samples, {**inputs, **d}, key, observed)
    return jax.jvp(grad_fn, (diff,), (tangents,))[1]
