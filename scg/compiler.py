"""``scg.compile``: check a graph and return jitted estimator functions.

Compilation happens in two stages. ``compile(graph)`` checks the structure
(names, cycles, costs, Condition 1, Theorem 2) with the estimators as
declared. The first call with inputs of a given shape then *plans*
(:mod:`scg._program.plan`): it traces the graph abstractly, resolves the
default estimators, re-checks with the shapes and caches the plan. Later calls
with the same shapes reuse the plan and the compiled XLA code: no re-tracing.

Every jitted function is a kernel below: a pure function of static
configuration (a plan, a mode, sample counts) and arrays, jitted once per
configuration by :meth:`CompiledGraph._kernel`.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg import _draw
from scg._program.analysis import analyse
from scg._program.plan import Plan, Planner, check_num, check_observed, check_wrt
from scg._program.temporal import check_temporal, divisor_at_most
from scg.errors import GraphError
from scg.graph import Graph
from scg.temporal import Temporal


class Batch(NamedTuple):
    """A batch sampled without a gradient (:meth:`CompiledGraph.sample_batch`); every entry has the sample axes."""

    values: dict  # every node's value
    log_probs: dict  # score node -> log p(value | parents) at the sampling inputs, summed over the node's elements
    advantages: dict  # score node -> Q̂_w - b_w: the weight of ∇log p(ŵ) in the surrogate (GAE where declared)


class CompiledGraph:
    """The estimator of one graph, flat or temporal: ``grad``, ``surrogate``, ``sample``, ``hvp`` and friends, jitted.

    Every method takes ``inputs`` (a dict keyed by input-node name, values any
    pytree of arrays) and an explicit ``key``. For a :class:`scg.Temporal` the
    samples are trajectories: arrays carry a ``[num_samples, T]`` prefix, and
    what differs from a flat graph lives in the program the plan holds
    (:class:`scg._program.temporal.TemporalProgram`), not in this class.

    Attributes: ``graph`` (the graph, or a Temporal's step graph), ``temporal``
    (the :class:`scg.Temporal`, or None), ``mode``, and ``analysis`` (the
    structure as declared, :class:`scg._program.analysis.Analysis`).
    """

    def __init__(self, graph: Graph | Temporal, *, mode: str = "surrogate"):
        if mode not in ("surrogate", "dice"):
            raise GraphError(f"compile: mode must be 'surrogate' or 'dice', got {mode!r}")
        self.temporal = graph if isinstance(graph, Temporal) else None
        if self.temporal is not None and mode != "surrogate":
            raise GraphError(f"Temporal {graph.name!r}: only mode='surrogate' is supported for temporal graphs")
        self.graph = graph.step if self.temporal is not None else graph
        if not isinstance(self.graph, Graph):
            raise GraphError(f"compile: expected a scg.Graph or scg.Temporal, got {type(graph).__name__}")
        self.mode = mode
        self.analysis = analyse(self.graph, mode=mode)  # structural checks, as declared
        if self.temporal is not None:
            check_temporal(self.temporal, self.analysis)  # again when planned, with the resolved estimators
        self._plan = Planner(self.graph, self.analysis, mode, self.temporal)  # inputs -> Plan, cached per shape
        self._kernels: dict = {}  # (kernel, *static arguments) -> its jitted function, see _kernel
        self._grad_kernels: dict = {}  # (num_samples, wrt) -> the same jitted functions, for grad
        self._dice: CompiledGraph | None = None  # the same graph in mode="dice", for hvp

    # -- public API -------------------------------------------------------------
    def sample(self, inputs: dict, key: jax.Array, *, num_samples: int | None = None, observed=None) -> dict:
        """Draw every node's value: ``{name: value}`` (with a leading ``num_samples`` axis if given).

        ``observed`` (every method takes it) maps sampled nodes without a
        gradient path (score-function or simulated) to recorded values with a
        leading ``num_samples`` axis: those values are used instead of drawing,
        and log-probabilities are recomputed at the current inputs.
        """
        plan = self._plan(inputs)
        n = None if num_samples is None else check_num(num_samples)
        return self._kernel(_sample, plan, n)(inputs, key, check_observed(plan, observed))

    def surrogate(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """The scalar surrogate loss; ``jax.grad`` of it is the gradient estimator (Corollary 1)."""
        plan = self._plan(inputs)
        kernel = self._kernel(_surrogate, plan, self.mode, check_num(num_samples))
        return kernel(inputs, key, check_observed(plan, observed))

    def ratio_surrogate(self, inputs: dict, old_inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """``Σ_w p(ŵ)/p̂_w (Q̂_w - b_w) + Σ_c c`` with samples drawn at ``old_inputs`` (§5.3.2).

        With the same ``key`` the samples are the same for every ``inputs``, so a
        line search can evaluate it at many parameters; at ``inputs == old_inputs``
        its gradient equals that of :meth:`surrogate`.
        """
        plan = self._plan(inputs)
        if self._plan(old_inputs) is not plan:
            raise GraphError("ratio_surrogate: inputs and old_inputs must have the same shapes and structure")
        return self._kernel(_ratio, plan, check_num(num_samples))(inputs, old_inputs, key, check_observed(plan, observed))

    def grad(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, wrt=None, observed=None) -> dict:
        """Unbiased estimate of ``∇ E[Σ costs]``, averaged over ``num_samples`` samples.

        Returns a dict keyed by input name (every floating-point input, or those
        in ``wrt``), each entry shaped like that input.
        """
        wrt = wrt if wrt is None or isinstance(wrt, str) else tuple(wrt)
        jitted = self._grad_kernels.get((num_samples, wrt))  # the shortest lookup: grad is the hot call
        if jitted is None:
            jitted = self._kernel(_traced_grad, self._plan, self.mode, num_samples, wrt)
            self._grad_kernels[(num_samples, wrt)] = jitted
        return jitted(inputs, key, observed)

    def _kernel(self, kernel, *static):
        """``kernel`` (a pure function below) with its static arguments bound, jitted once per ``static``.

        The one way this class jits. A call then looks up one small tuple, instead of jit hashing
        each static argument (``Plan.__hash__`` in Python among them) on every call: tens of
        microseconds on a CPU, the scale of a small graph's whole gradient.
        """
        cache_key = (kernel, *static)
        jitted = self._kernels.get(cache_key)
        if jitted is None:
            jitted = self._kernels[cache_key] = jax.jit(partial(kernel, *static))
        return jitted

    def cache_size(self) -> int:
        """How many executables this compiled graph has traced (one per kernel, options and input shapes):
        a call with shapes seen before adds none. For no-recompile checks."""
        return sum(k._cache_size() for k in self._kernels.values())

    def grad_samples(self, inputs: dict, key: jax.Array, *, num_replicates: int, num_samples: int = 1, wrt=None) -> dict:
        """``num_replicates`` independent gradient estimates stacked on a leading axis (for variance and z-tests)."""
        plan = self._plan(inputs)
        kernel = self._kernel(_grad_samples, plan, self.mode, check_wrt(plan, wrt), check_num(num_samples), check_num(num_replicates))
        return kernel(inputs, key)

    def value(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """Monte Carlo estimate of ``E[Σ costs]``."""
        plan = self._plan(inputs)
        return self._kernel(_value, plan, check_num(num_samples))(inputs, key, check_observed(plan, observed))

    def hvp(self, inputs: dict, tangents: dict, key: jax.Array, *, num_samples: int = 1, wrt=None, mode: str = "dice", observed=None) -> dict:
        """Hessian-vector product estimate ``H v`` of ``E[Σ costs]`` (§5.3.3).

        ``mode="dice"`` (default) differentiates the magic-box objective twice:
        unbiased. ``mode="surrogate"`` differentiates the plain surrogate twice:
        biased (it misses the products of score functions), kept for comparison.
        """
        if mode not in ("dice", "surrogate"):
            raise GraphError(f"hvp: mode must be 'dice' or 'surrogate', got {mode!r}")
        if self.temporal is not None:
            raise GraphError(
                f"hvp: Temporal {self.temporal.name!r}: the Hessian of a temporal objective is not supported yet "
                f"(differentiating one step would drop the horizon, the carry and the discount); unroll the graph "
                f"into a flat scg.Graph to get it"
            )
        if mode == "dice" and self.mode != "dice":
            if self._dice is None:
                self._dice = compile(self.graph, mode="dice")
            return self._dice.hvp(inputs, tangents, key, num_samples=num_samples, wrt=wrt, observed=observed)
        plan = self._plan(inputs)
        wrt = check_wrt(plan, wrt)
        if set(tangents) != set(wrt):
            raise GraphError(f"hvp: tangents must be keyed by {list(wrt)}, got {list(tangents)}")
        kernel = self._kernel(_hvp, plan, mode, wrt, check_num(num_samples))
        return kernel(inputs, tangents, key, check_observed(plan, observed))

    # -- pure functions, for use inside a caller's own jit / scan / vmap ----------------
    def advantages(self, inputs: dict, values: dict) -> dict:
        """``{w: Q̂_w - b_w}`` per score-function node, from sampled ``values`` (no gradient).

        The weight each ``∇log p(ŵ)`` gets in the surrogate: with a node baseline,
        ``Q̂ - b``; in a temporal graph, per step, and Eq. 26's GAE for a node
        declared with ``advantage=scg.GAE(λ)``. Fixed advantages are what the
        importance-ratio objectives of TRPO and PPO multiply. Pure; use inside ``jit``.
        """
        return self._plan(inputs).program.advantages(values)

    def sample_batch(self, inputs: dict, key: jax.Array, *, num_samples: int, observed=None) -> Batch:
        """Sample ``num_samples`` times without a gradient: every node's value, the score nodes'
        log-probabilities and their advantages (:meth:`advantages`), from one forward pass.

        What an importance-ratio method (TRPO, PPO) starts from: the log-probabilities are
        ``log p̂`` at the sampling inputs. ``observed`` as in :meth:`sample`. Pure; use inside ``jit``.
        """
        plan = self._plan(inputs)
        terms = plan.program.batch_terms(inputs, key, check_num(num_samples), fixed=check_observed(plan, observed))
        values, log_probs = jax.lax.stop_gradient((terms.values, terms.log_probs))
        return Batch(values, log_probs, plan.program.advantages(values))

    def resolved_estimators(self, inputs: dict) -> dict:
        """``{node: estimator}`` for inputs shaped like ``inputs``: the defaults resolved (pathwise where the
        distribution is reparameterisable, else score), as the compiled functions use them."""
        return dict(self._plan(inputs).analysis.estimators)

    def cost_to_go(self, inputs: dict, values: dict) -> jax.Array:
        """The cost to go of sampled ``values``, no gradient: per sample ``Σ_c c`` for a flat graph; per sample
        and step ``G_t`` (discounted, bootstrapped: the target a critic regresses on) for a temporal one. Pure."""
        return jax.lax.stop_gradient(self._plan(inputs).program.cost_to_go(values))

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
        plan = self._plan(inputs)
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
        plan, n = self._plan(example_inputs), check_num(num_samples)
        return lambda inputs, key, observed=None: _emit(plan, self.mode, inputs, key, n, observed)

    def grad_fn(self, example_inputs: dict, *, num_samples: int = 1, wrt=None, with_values: bool = False):
        """A pure ``(inputs, key, observed=None) -> grads`` (dict keyed by input name), for a caller's jit.

        With ``with_values=True`` it returns ``(grads, values)``: the sampled
        values of every node (no gradient) from the same pass, e.g. for metrics,
        critic targets or the last carried state of a rollout.
        """
        plan, n = self._plan(example_inputs), check_num(num_samples)
        wrt = check_wrt(plan, wrt)
        if not with_values:
            return lambda inputs, key, observed=None: _grad_body(plan, self.mode, wrt, n, inputs, key, observed)
        return lambda inputs, key, observed=None: _grad_and_values(plan, self.mode, wrt, n, inputs, key, observed)

    def _repr_svg_(self) -> str:
        a = self.analysis  # as declared: scg.render.to_svg(graph, compiled=, inputs=) shows the resolved estimators
        return _draw.svg(self.graph.name, _draw.describe(self.graph.nodes, a.estimators), _draw.caption(a))

    def __repr__(self) -> str:
        if self.temporal is not None:
            return f"CompiledGraph({self.temporal!r})"
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
    compiled = CompiledGraph(graph, mode=mode)
    if example_inputs is not None:
        compiled._plan(example_inputs)
    return compiled


# -- the kernels ---------------------------------------------------------------------
# Pure functions of their static arguments (a plan, options) and arrays (``inputs``, ``key``,
# ``observed``: a dict of arrays with a leading num_samples axis, or None). CompiledGraph._kernel binds
# the static arguments and jits each combination once.
def _emit(plan: Plan, mode: str, inputs, key, num_samples, observed):
    program = plan.program
    return program.emit(program.batch_terms(inputs, key, num_samples, fixed=observed), mode)


def _sample(plan, num_samples, inputs, key, observed):
    return plan.program.sample_values(inputs, key, num_samples, fixed=observed)


def _surrogate(plan, mode, num_samples, inputs, key, observed):
    return _emit(plan, mode, inputs, key, num_samples, observed)


def _traced_grad(planner: Planner, mode, num_samples, wrt, inputs, key, observed):
    """The body of :meth:`CompiledGraph.grad`. Planning and checks run while tracing, so a call whose
    shapes were seen before is one dispatch of jit's C++ cache, with no Python work of ours."""
    plan = planner(inputs)
    wrt, num_samples, observed = check_wrt(plan, wrt), check_num(num_samples), check_observed(plan, observed)
    return _grad_body(plan, mode, wrt, num_samples, inputs, key, observed)


def _grad_body(plan, mode, wrt, num_samples, inputs, key, observed=None):
    diff = {n: inputs[n] for n in wrt}
    return jax.grad(lambda d: _emit(plan, mode, {**inputs, **d}, key, num_samples, observed))(diff)


def _grad_and_values(plan, mode, wrt, num_samples, inputs, key, observed=None):
    program = plan.program

    def loss(d):
        terms = program.batch_terms({**inputs, **d}, key, num_samples, fixed=observed)
        return program.emit(terms, mode), jax.lax.stop_gradient(terms.values)

    return jax.grad(loss, has_aux=True)({n: inputs[n] for n in wrt})


def _grad_samples(plan, mode, wrt, num_samples, num_replicates, inputs, key):
    one = lambda k: _grad_body(plan, mode, wrt, num_samples, inputs, k)  # noqa: E731
    # the largest divisor up to 1024: a remainder batch would compile the body twice
    return jax.lax.map(one, jax.random.split(key, num_replicates), batch_size=divisor_at_most(num_replicates, 1024))


def _value(plan, num_samples, inputs, key, observed):
    values = plan.program.sample_values(inputs, key, num_samples, fixed=observed)
    return jnp.mean(plan.program.total_cost(values))


def _ratio(plan, num_samples, inputs, old_inputs, key, observed):
    program = plan.program
    old = jax.lax.stop_gradient(program.batch_terms(old_inputs, key, num_samples, fixed=observed))
    drawn = {n: old.values[n] for n in program.drawn_nodes()}
    terms = program.batch_terms(inputs, key, num_samples, fixed=drawn, logp_old=old.log_probs)
    return program.emit(terms, "surrogate", q_hat=program.q_hats(old.values))


def _hvp(plan, mode, wrt, num_samples, inputs, tangents, key, observed):
    diff = {n: inputs[n] for n in wrt}
    grad_fn = lambda d: _grad_body(plan, mode, wrt, num_samples, {**inputs, **d}, key, observed)  # noqa: E731
    return jax.jvp(grad_fn, (diff,), (tangents,))[1]
