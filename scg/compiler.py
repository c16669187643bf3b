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

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg import _draw
from scg._program import checks as _checks
from scg._program import state as _state
from scg._program.analysis import analyse
from scg._program.forward import evaluate
from scg._program.plan import Plan, Planner, check_key, check_num, check_observed, check_tangents, check_wrt
from scg._program.temporal import check_temporal, divisor_at_most, with_observed_carry
from scg.errors import CompileTimeWarning, GraphError
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
    (the :class:`scg.Temporal`, or None), ``mode``, ``checks`` (whether kernels run
    under ``checkify``, see :func:`compile`), and ``analysis`` (the structure as
    declared, :class:`scg._program.analysis.Analysis`).
    """

    def __init__(self, graph: Graph | Temporal, *, mode: str = "surrogate", checks: bool = False, unbiased: bool = False):
        if mode not in ("surrogate", "dice"):
            raise GraphError(f"compile: mode must be 'surrogate' or 'dice', got {mode!r}")
        # A snapshot (scg.Graph._snapshot): declaring more nodes on `graph` later changes nothing compiled here.
        self.temporal = graph._snapshot() if isinstance(graph, Temporal) else None
        if self.temporal is not None and mode != "surrogate":
            raise GraphError(f"Temporal {graph.name!r}: only mode='surrogate' is supported for temporal graphs")
        self.graph = self.temporal.step if self.temporal is not None else graph
        if not isinstance(self.graph, Graph):
            raise GraphError(f"compile: expected a scg.Graph or scg.Temporal, got {type(graph).__name__}")
        self.graph = self.graph._snapshot()
        self.mode = mode
        self.checks = bool(checks)  # every kernel jitted under checkify (_kernel); fixed for the instance's caches
        self.analysis = analyse(self.graph, mode=mode)  # structural checks, as declared
        if mode == "dice":
            _check_first_order_costs(self.analysis)
        self.unbiased = bool(unbiased)
        if self.unbiased:  # the defaults resolve to score or pathwise, both unbiased: the declared ones decide
            _check_unbiased(self.analysis)
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
        and log-probabilities are recomputed at the current inputs. For a
        :class:`scg.Temporal` it may also hold the initial values of carried
        inputs, ``[num_samples, ...]``: such an input need not be in ``inputs``;
        given in both, ``observed`` wins (the input's value only sets the shape,
        and its gradient is zero).
        """
        n = None if num_samples is None else check_num(num_samples)
        inputs = self._with_carry(inputs, observed, n)
        plan = self._plan(inputs)
        self._check_support(plan, inputs, key, n, observed)
        return self._kernel(_sample, plan, n)(inputs, key, check_observed(plan, observed, n))

    def surrogate(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None, state=None) -> jax.Array:
        """The scalar surrogate loss; ``jax.grad`` of it is the gradient estimator (Corollary 1).

        ``state`` (:meth:`init_state`): the estimators' and baselines' state it reads (the initial one by default).
        """
        inputs = self._with_carry(inputs, observed, num_samples)
        plan = self._plan(inputs)
        kernel = self._kernel(_surrogate, plan, self.mode, check_num(num_samples))
        self._check_support(plan, inputs, key, num_samples, observed)
        self._check_state(plan, state)
        return kernel(inputs, key, check_observed(plan, observed, num_samples), state)

    def ratio_surrogate(self, inputs: dict, old_inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """``Σ_w p(ŵ)/p̂_w (Q̂_w - b_w) + Σ_c c`` with samples drawn at ``old_inputs`` (§5.3.2).

        With the same ``key`` the samples are the same for every ``inputs``, so a
        line search can evaluate it at many parameters; at ``inputs == old_inputs``
        its gradient equals that of :meth:`surrogate`.
        """
        inputs = self._with_carry(inputs, observed, num_samples)
        old_inputs = self._with_carry(old_inputs, observed, num_samples)
        plan = self._plan(inputs)
        if self._plan(old_inputs) is not plan:
            raise GraphError("ratio_surrogate: inputs and old_inputs must have the same shapes and structure")
        for name, est in plan.analysis.estimators.items():
            if est.needs_downstream and not est.uses_score:  # its terms would re-draw at the new parameters
                raise GraphError(
                    f"ratio_surrogate: node {name!r}: estimator {est.name!r} has no importance-ratio form (it "
                    f"re-evaluates the costs downstream at the current parameters); use estimator='score' there"
                )
        kernel = self._kernel(_ratio, plan, check_num(num_samples))
        for at in (old_inputs, inputs):  # the record is drawn at old_inputs and weighed at inputs
            self._check_support(plan, at, key, num_samples, observed)
        return kernel(inputs, old_inputs, key, check_observed(plan, observed, num_samples))

    def grad(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, wrt=None, observed=None, state=None):
        """Unbiased estimate of ``∇ E[Σ costs]``, averaged over ``num_samples`` samples.

        Returns a dict keyed by input name (every input declared differentiable,
        or those in ``wrt``), each entry shaped like that input. An input is
        differentiated through its floating-point leaves: the integer leaves of a
        mixed pytree (``{"w": 1.0, "n": 3}``) get ``float0`` zeros, as
        ``jax.grad(..., allow_int=True)`` gives them, so the result keeps the
        input's structure (an optimizer cannot add ``float0``: keep integer data in
        an input declared ``differentiable=False``). A wholly integer input that
        would be differentiated (named in ``wrt``, or declared differentiable, the
        default, with ``wrt`` left out) is a GraphError naming it: pass a float, or
        declare ``g.input(name, differentiable=False)``.

        ``state`` (from :meth:`init_state`, then from the previous call): the
        estimators' and baselines' state between calls; with it, ``grad``
        returns ``(grads, new_state)``. Without it every call reads the initial
        state and only ``grads`` is returned.

        A carried input of a :class:`scg.Temporal` whose initial values come
        through ``observed`` (:meth:`sample`) and not ``inputs`` has no entry in
        ``grads``.
        """
        given = inputs
        if observed is not None:
            inputs = self._with_carry(inputs, observed, num_samples)
        if state is not None:
            plan = self._plan(inputs)
            n = check_num(num_samples)
            self._check_state(plan, state)
            if observed is not None:
                self._check_support(plan, inputs, key, n, observed)
            kernel = self._kernel(_stateful_grad, plan, self.mode, check_wrt(plan, wrt), n)
            grads, state = kernel(inputs, key, state, check_observed(plan, observed, n))
            return _given_only(grads, given, inputs), state
        wrt = wrt if wrt is None or isinstance(wrt, str) else tuple(wrt)
        # The type is in the key: True == 1 and 2.0 == 2 hash alike, and a rejected value must not be cached.
        cache_key = (num_samples, type(num_samples), wrt)
        jitted = self._grad_kernels.get(cache_key)  # the shortest lookup: grad is the hot call
        if jitted is None:
            jitted = self._kernel(_traced_grad, self._plan, self.mode, check_num(num_samples), wrt)
            self._grad_kernels[cache_key] = jitted
        if observed is None:  # the hot path: no Python work of ours beyond the lookup above
            return jitted(inputs, key, observed)
        self._check_support(self._plan(inputs), inputs, key, check_num(num_samples), observed)  # concrete records, on the host
        return _given_only(jitted(inputs, key, observed), given, inputs)

    def init_state(self, inputs: dict, key: jax.Array | None = None) -> dict:
        """The state before the first call, for inputs shaped like ``inputs``: ``{node: {"estimator": ...,
        "baseline": ...}}`` for the nodes whose estimator or baseline keeps state (``{}`` if none).

        Pass it to ``grad(..., state=)`` (or a ``grad_fn(..., with_state=True)``), which returns the next
        state beside the gradient; a pytree of arrays, so it goes through ``jit`` and ``lax.scan``.
        ``key`` initialises learned parts (RELAX's control variate); ``jax.random.key(0)`` by default.
        """
        plan = self._plan(inputs)
        return self._kernel(_init_state, plan)(jax.random.key(0) if key is None else key)

    def _check_state(self, plan: Plan, state) -> None:
        """GraphError unless ``state`` (if given) has the structure :meth:`init_state` returns."""
        if state is not None:
            _state.check(plan.analysis, state, jax.eval_shape(lambda: self._initial_state(plan, jax.random.key(0))))

    @staticmethod
    def _initial_state(plan: Plan, key) -> dict:
        return _state.initial(plan.analysis, plan.avals, plan.program.q_shape, key)

    def _kernel(self, kernel, *static):
        """``kernel`` (a pure function below) with its static arguments bound, jitted once per ``static``.

        The one way this class jits. A call then looks up one small tuple, instead of jit hashing
        each static argument (``Plan.__hash__`` in Python among them) on every call: tens of
        microseconds on a CPU, the scale of a small graph's whole gradient.

        With ``checks=True`` the kernel is jitted under ``checkify`` instead
        (:func:`scg._program.checks.checked_jit`): a call raises the first failed check.
        """
        cache_key = (kernel, *static)
        jitted = self._kernels.get(cache_key)
        if jitted is None:
            jit = _checks.checked_jit if self.checks else jax.jit
            jitted = self._kernels[cache_key] = jit(partial(kernel, *static))
        return jitted

    def _check_support(self, plan: Plan, inputs: dict, key, num_samples, observed) -> None:
        """Raise GraphError at the first ``observed`` element that its node's distribution cannot produce.

        Only records known on the host are checked (a method called with arrays, not inside the
        caller's ``jit``): one extra jitted pass (:func:`_observed_support`) and a look at its masks.
        Without ``observed`` nothing runs; traced records are checked by ``checks=True``.
        """
        if not observed or not _checks.concrete((inputs, key, observed)):
            return
        check_observed(plan, observed, num_samples)  # unknown names and wrong shapes first, with their own messages
        cache_key = (_observed_support, plan, num_samples)
        jitted = self._kernels.get(cache_key)
        if jitted is None:  # plain jit even with checks=True: the host names the element of the whole record
            jitted = self._kernels[cache_key] = jax.jit(partial(_observed_support, plan, num_samples))
        message = _checks.first_violation(jitted(inputs, key, observed), observed)
        if message is not None:
            raise GraphError(message)

    def cache_size(self) -> int:
        """How many executables this compiled graph has traced (one per kernel, options and input shapes):
        a call with shapes seen before adds none. For no-recompile checks."""
        return sum(k._cache_size() for k in self._kernels.values())

    def grad_samples(self, inputs: dict, key: jax.Array, *, num_replicates: int, num_samples: int = 1, wrt=None, state=None) -> dict:
        """``num_replicates`` independent gradient estimates stacked on a leading axis (for variance and z-tests).

        Every replicate reads the same ``state`` (the initial state by default; it is not advanced).
        """
        plan = self._plan(inputs)
        kernel = self._kernel(_grad_samples, plan, self.mode, check_wrt(plan, wrt), check_num(num_samples), check_num(num_replicates))
        self._check_state(plan, state)
        return kernel(inputs, key, state)

    def value(self, inputs: dict, key: jax.Array, *, num_samples: int = 1, observed=None) -> jax.Array:
        """Monte Carlo estimate of ``E[Σ costs]``."""
        inputs = self._with_carry(inputs, observed, num_samples)
        plan = self._plan(inputs)
        kernel = self._kernel(_value, plan, check_num(num_samples))
        self._check_support(plan, inputs, key, num_samples, observed)
        return kernel(inputs, key, check_observed(plan, observed, num_samples))

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
        _check_any_order(self._plan(inputs).analysis)
        if mode == "dice" and self.mode != "dice":
            if self._dice is None:
                self._dice = compile(self.graph, mode="dice", checks=self.checks)
            return self._dice.hvp(inputs, tangents, key, num_samples=num_samples, wrt=wrt, observed=observed)
        plan = self._plan(inputs)
        wrt = check_wrt(plan, wrt)  # tangents are checked against the inputs in the kernel (check_tangents)
        kernel = self._kernel(_hvp, plan, mode, wrt, check_num(num_samples))
        self._check_support(plan, inputs, key, num_samples, observed)
        return kernel(inputs, tangents, key, check_observed(plan, observed, num_samples))

    # -- pure functions, for use inside a caller's own jit / scan / vmap ----------------
    def advantages(self, inputs: dict, values: dict, state=None) -> dict:
        """``{w: Q̂_w - b_w}`` per score-function node, from sampled ``values`` (no gradient).

        The weight each ``∇log p(ŵ)`` gets in the surrogate: with a node baseline,
        ``Q̂ - b``; in a temporal graph, per step, and Eq. 26's GAE for a node
        declared with ``advantage=scg.GAE(λ)``. Fixed advantages are what the
        importance-ratio objectives of TRPO and PPO multiply. Pure; use inside ``jit``.
        ``state``: where a baseline keeps state (:class:`scg.baselines.MovingAverage`), the state it reads.
        """
        return self._plan(inputs).program.advantages(values, _state.baseline_states(state or {}))

    def sample_batch(self, inputs: dict, key: jax.Array, *, num_samples: int, observed=None, state=None) -> Batch:
        """Sample ``num_samples`` times without a gradient: every node's value, the score nodes'
        log-probabilities and their advantages (:meth:`advantages`), from one forward pass.

        What an importance-ratio method (TRPO, PPO) starts from: the log-probabilities are
        ``log p̂`` at the sampling inputs. ``observed`` as in :meth:`sample`; ``state`` as in :meth:`advantages`.
        Pure; use inside ``jit``.
        """
        inputs = self._with_carry(inputs, observed, num_samples)
        plan = self._plan(inputs)
        self._check_support(plan, inputs, key, check_num(num_samples), observed)
        check_key(key)
        terms = plan.program.batch_terms(inputs, key, num_samples, fixed=check_observed(plan, observed, num_samples),
                                         differentiated=False)
        values, log_probs = jax.lax.stop_gradient((terms.values, terms.log_probs))
        return Batch(values, log_probs, plan.program.advantages(values, _state.baseline_states(state or {})))

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
        ``jax.grad`` of it w.r.t. ``inputs`` is the gradient estimator. ``observed`` is
        not checked against the support here (see :func:`compile`'s ``checks``): with
        ``checks=True`` the function emits ``checkify`` checks, so wrap the caller's
        function in ``jax.experimental.checkify.checkify`` and throw its error.
        """
        plan, n = self._plan(example_inputs), check_num(num_samples)

        def fn(inputs, key, observed=None):
            inputs = self._with_carry(inputs, observed, n)
            return _emit(plan, self.mode, inputs, key, n, check_observed(plan, observed, n))

        return _checks.emitting(fn) if self.checks else fn

    def grad_fn(self, example_inputs: dict, *, num_samples: int = 1, wrt=None, with_values: bool = False, with_state: bool = False):
        """A pure ``(inputs, key, observed=None) -> grads`` (dict keyed by input name), for a caller's jit.

        With ``with_values=True`` it returns ``(grads, values)``: the sampled
        values of every node (no gradient) from the same pass, e.g. for metrics,
        critic targets or the last carried state of a rollout. Checks as in
        :meth:`surrogate_fn`: with ``checks=True``, checkify the caller's function.

        With ``with_state=True`` the function is ``(inputs, key, state, observed=None) -> (grads, state)``
        (``(grads, values, state)`` with ``with_values``), for the state of :meth:`init_state`.
        """
        plan, n = self._plan(example_inputs), check_num(num_samples)
        wrt = check_wrt(plan, wrt)
        if with_state:
            def stateful(inputs, key, state, observed=None):
                full = self._with_carry(inputs, observed, n)
                grads, values, new = _grad_values_state(plan, self.mode, wrt, n, full, key, state, check_observed(plan, observed, n))
                grads = _given_only(grads, inputs, full)
                return (grads, values, new) if with_values else (grads, new)

            return _checks.emitting(stateful) if self.checks else stateful

        def fn(inputs, key, observed=None):
            full = self._with_carry(inputs, observed, n)
            if with_values:
                grads, values = _grad_and_values(plan, self.mode, wrt, n, full, key, check_observed(plan, observed, n))
                return _given_only(grads, inputs, full), values
            return _given_only(_grad_body(plan, self.mode, wrt, n, full, key, check_observed(plan, observed, n)), inputs, full)

        return _checks.emitting(fn) if self.checks else fn

    def _with_carry(self, inputs, observed, num_samples):
        """``inputs`` with the carried inputs of a Temporal that only ``observed`` gives, as placeholders
        (:func:`scg._program.temporal.with_observed_carry`); ``inputs`` itself otherwise."""
        if self.temporal is None or not observed:
            return inputs
        return with_observed_carry(self.temporal, inputs, observed, None if num_samples is None else check_num(num_samples))

    def _repr_svg_(self) -> str:
        a = self.analysis  # as declared: scg.render.to_svg(graph, compiled=, inputs=) shows the resolved estimators
        return _draw.svg(self.graph.name, _draw.describe(self.graph.nodes, a.estimators), _draw.caption(a))

    def __repr__(self) -> str:
        if self.temporal is not None:
            return f"CompiledGraph({self.temporal!r})"
        return f"CompiledGraph({self.graph.name!r}, mode={self.mode!r}, {len(self.graph)} nodes)"


def compile(
    graph, *, mode: str = "surrogate", example_inputs: dict | None = None, checks: bool = False, unbiased: bool = False
) -> CompiledGraph:
    """Check ``graph`` (a :class:`Graph` or a :class:`scg.Temporal`) and return its :class:`CompiledGraph`.

    The compiled graph keeps an immutable snapshot of ``graph`` as it is now (for a
    Temporal, of its step graph and settings too): nodes declared on ``graph``
    afterwards change nothing compiled, before or after its first call; compile
    again to use them. A flat graph with ``SLOW_COMPILE_DRAWS`` (100) or more
    nodes that draw warns (:class:`scg.errors.CompileTimeWarning`): its first call
    compiles for tens of seconds to minutes; a repeated step belongs in a Temporal.

    Args:
        mode: ``"surrogate"`` (Corollary 1) or ``"dice"`` (any-order magic box).
        example_inputs: if given, plan now so that shape-dependent errors are
            raised here rather than at the first call.
        checks: check values while running, for debugging: every jitted method
            runs under ``jax.experimental.checkify`` and raises
            ``checkify.JaxRuntimeError`` naming the node at the first invalid
            distribution parameter (each distribution's ``param_errors()``:
            a Normal scale ``<= 0`` or not finite, Bernoulli probs outside
            ``[0, 1]``, Categorical probs negative or not summing to 1, NaN
            logits), recorded (``observed``) value outside its distribution's
            support, or NaN/inf in a cost or loss (with the first bad element).
            Costs extra time; ``False`` (the default) adds nothing to the
            compiled code. Called inside the caller's own ``jit``, or through
            :meth:`CompiledGraph.grad_fn` / :meth:`~CompiledGraph.surrogate_fn`,
            the checks need the caller's function wrapped in ``checkify.checkify``.
            Either way, ``observed`` arrays passed eagerly to a method are
            checked against the support before it runs (a :class:`GraphError`).

        unbiased: refuse (GraphError naming the node) any node whose estimator is
            not unbiased for the gradient of the expected cost (``Estimator.unbiased``:
            Gumbel-softmax, straight-through, smoothing, direct, relaxed).

    Raises:
        GraphError: naming the node, for any malformed graph.

    Example:
        >>> import jax, jax.numpy as jnp, scg
        >>> from scg import dist
        >>> g = scg.Graph("bad_scale")
        >>> theta = g.input("theta")
        >>> x = g.stochastic("x", lambda t: dist.Normal(t, -1.0), theta)
        >>> _ = g.cost("f", lambda x: x**2, x)
        >>> scg.compile(g, checks=True).grad({"theta": 0.0}, jax.random.key(0))
        Traceback (most recent call last):
        ...
        jax._src.checkify.JaxRuntimeError: node 'x': invalid Normal parameters: scale must be positive and finite ...
    """
    compiled = CompiledGraph(graph, mode=mode, checks=checks, unbiased=unbiased)
    if compiled.temporal is None:
        _warn_if_slow_to_compile(compiled.analysis, compiled.graph.name)
    if example_inputs is not None:
        compiled._plan(example_inputs)
    return compiled


# A flat graph is unrolled into one XLA computation, whose compile time grows faster than the graph. First call
# of grad (trace, lower, XLA compile) on a chain x_i ~ p(. | x_{i-1}) with one cost per node, on 2 shared CPU
# cores (XLA:CPU, jax 0.10), for 10 / 25 / 50 / 100 drawing nodes: Normal (pathwise) 1.7 / 3.1 / 6.8 / 20 s,
# Bernoulli (score) 2.5 / 7.7 / 9.0 / 15 s; on a more loaded machine 7 s at 10 and ~97 s at 100. XLA's compile
# alone of bench_compiler's chain (bench/results/compiler.json): 4 s at 98 nodes, 21 s at 298, 368 s at 998,
# growing as n^1.9. A Temporal compiles its step once (lax.scan), whatever the horizon.
SLOW_COMPILE_DRAWS = 100


def _warn_if_slow_to_compile(analysis, name: str) -> None:
    """Warn (:class:`scg.errors.CompileTimeWarning`) when a flat graph has ``SLOW_COMPILE_DRAWS`` or more nodes
    that draw (stochastic, simulate, expectation): a structural count, so compiling stays cheap."""
    draws = sum(analysis.nodes[n].kind in ("stochastic", "simulate", "expectation") for n in analysis.order)
    if draws >= SLOW_COMPILE_DRAWS:
        warnings.warn(
            f"graph {name!r} has {draws} nodes that draw (stochastic, simulate, expectation) in one flat graph, "
            f"all unrolled into one XLA computation: its first call may compile for tens of seconds, and the time "
            f"grows as about the square of the graph (on 2 CPU cores: 15-97 s at 100, about 6 minutes at 1,000). If it repeats one "
            f"step, declare the step once as a scg.Graph and compile scg.Temporal(step, carry=..., horizon=T), "
            f"which runs as a lax.scan and compiles one step whatever T",
            CompileTimeWarning,
            stacklevel=3,
        )


def _check_unbiased(analysis) -> None:
    for name, est in analysis.estimators.items():
        if not getattr(est, "unbiased", True):
            raise GraphError(
                f"node {name!r}: estimator {est.name!r} is biased for the gradient of the expected cost, and the "
                f"graph was compiled with unbiased=True; choose an unbiased estimator for it (e.g. 'score', "
                f"'pathwise', 'rebar', 'relax', 'arm', 'enumerate'), or compile without unbiased=True"
            )


def _given_only(grads: dict, given, completed) -> dict:
    """``grads`` less the inputs :meth:`CompiledGraph._with_carry` added (placeholders, not the caller's)."""
    if completed is given:
        return grads
    return {k: v for k, v in grads.items() if k in given}


def _check_first_order_costs(analysis) -> None:
    """GraphError at a :meth:`scg.Graph.log_prob_cost`: the term it leaves out has mean zero in the gradient
    only, so the magic-box objective (``mode="dice"``, ``hvp``) would give biased second derivatives."""
    for name in analysis.costs:
        of = analysis.nodes[name].spec.log_prob_of
        if of is not None:
            raise GraphError(
                f"cost {name!r} is g.log_prob_cost of {of!r}: it leaves out the score of the density of {of!r}, "
                f"whose mean is zero in the gradient but not in second derivatives, so mode='dice' and hvp would be "
                f"biased; for them declare it as a plain cost, g.cost({name!r}, lambda d, z: jnp.sum(d.log_prob(z)), "
                f"scg.dist_of({of!r}), {of!r})"
            )


def _check_any_order(analysis) -> None:
    for name, est in analysis.estimators.items():
        if not getattr(est, "any_order", False):
            raise GraphError(
                f"hvp: node {name!r}: estimator {est.name!r} has no unbiased second derivative (its gradient is "
                f"not part of the magic-box objective); use estimator='score' or 'pathwise' for {name!r} to get "
                f"Hessian-vector products"
            )


# -- the kernels ---------------------------------------------------------------------
# Pure functions of their static arguments (a plan, options) and arrays (``inputs``, ``key``,
# ``observed``: a dict of arrays with a leading num_samples axis, or None). CompiledGraph._kernel binds
# the static arguments and jits each combination once.
def _emit(plan: Plan, mode: str, inputs, key, num_samples, observed, state=None):
    check_key(key)  # here and in every kernel: while tracing, so a jitted call pays nothing for it
    program = plan.program
    state = CompiledGraph._initial_state(plan, jax.random.key(0)) if state is None else state
    terms = program.batch_terms(inputs, key, num_samples, fixed=observed, states=_state.estimator_states(state))
    return program.emit(terms, mode, states=_state.baseline_states(state))


def _init_state(plan, key):
    return CompiledGraph._initial_state(plan, key)


def _stateful_grad(plan, mode, wrt, num_samples, inputs, key, state, observed):
    check_key(key)
    grads, _, new = _grad_values_state(plan, mode, wrt, num_samples, inputs, key, state, observed)
    return grads, new


def _grad_values_state(plan, mode, wrt, num_samples, inputs, key, state, observed=None):
    """``(grads, values, next state)`` of one call; for estimators that train their state, the gradient of
    ``‖ĝ‖²`` with respect to their parameters goes to ``update_state`` (:mod:`scg._program.state`)."""
    program = plan.program
    diff = {n: inputs[n] for n in wrt}

    def loss(d, st):
        terms = program.batch_terms({**inputs, **d}, key, num_samples, fixed=observed, states=_state.estimator_states(st))
        q_hat = program.q_hats(terms.values)
        out = program.emit(terms, mode, q_hat=q_hat, states=_state.baseline_states(st))
        return out, jax.lax.stop_gradient((terms.values, q_hat))

    grad_of = jax.grad(loss, has_aux=True, allow_int=True)
    trained = _state.trained(plan.analysis, state)
    if not trained:
        grads, (values, q_hat) = grad_of(diff, state)
        variance_grads = {}
    else:
        at = lambda params: grad_of(diff, _state.with_trained(state, params))  # noqa: E731
        grads, pullback, (values, q_hat) = jax.vjp(at, trained, has_aux=True)
        variance_grads = pullback(_state.double(grads))[0]
    return grads, values, _state.advance(plan.analysis, state, values, q_hat, variance_grads)


def _sample(plan, num_samples, inputs, key, observed):
    check_key(key)
    return plan.program.sample_values(inputs, key, num_samples, fixed=observed)


def _surrogate(plan, mode, num_samples, inputs, key, observed, state=None):
    return _emit(plan, mode, inputs, key, num_samples, observed, state)


def _traced_grad(planner: Planner, mode, num_samples, wrt, inputs, key, observed):
    """The body of :meth:`CompiledGraph.grad`. Planning and checks run while tracing, so a call whose
    shapes were seen before is one dispatch of jit's C++ cache, with no Python work of ours."""
    check_key(key)
    plan = planner(inputs)
    wrt, observed = check_wrt(plan, wrt), check_observed(plan, observed, num_samples)
    return _grad_body(plan, mode, wrt, num_samples, inputs, key, observed)


def _grad_body(plan, mode, wrt, num_samples, inputs, key, observed=None, state=None):
    diff = {n: inputs[n] for n in wrt}
    # allow_int: the integer leaves of a mixed pytree input get float0 zeros (CompiledGraph.grad)
    return jax.grad(lambda d: _emit(plan, mode, {**inputs, **d}, key, num_samples, observed, state), allow_int=True)(diff)


def _grad_and_values(plan, mode, wrt, num_samples, inputs, key, observed=None):
    check_key(key)
    program = plan.program

    def loss(d):
        terms = program.batch_terms({**inputs, **d}, key, num_samples, fixed=observed)
        return program.emit(terms, mode), jax.lax.stop_gradient(terms.values)

    return jax.grad(loss, has_aux=True, allow_int=True)({n: inputs[n] for n in wrt})


def _grad_samples(plan, mode, wrt, num_samples, num_replicates, inputs, key, state=None):
    check_key(key)
    one = lambda k: _grad_body(plan, mode, wrt, num_samples, inputs, k, None, state)  # noqa: E731
    # the largest divisor up to 1024: a remainder batch would compile the body twice
    return jax.lax.map(one, jax.random.split(key, num_replicates), batch_size=divisor_at_most(num_replicates, 1024))


def _value(plan, num_samples, inputs, key, observed):
    check_key(key)
    values = plan.program.sample_values(inputs, key, num_samples, fixed=observed)
    return jnp.mean(plan.program.total_cost(values))


def _ratio(plan, num_samples, inputs, old_inputs, key, observed):
    check_key(key)
    program = plan.program
    old = jax.lax.stop_gradient(program.batch_terms(old_inputs, key, num_samples, fixed=observed, differentiated=False))
    drawn = {n: old.values[n] for n in program.drawn_nodes()}
    terms = program.batch_terms(inputs, key, num_samples, fixed=drawn, logp_old=old.log_probs)
    return program.emit(terms, "surrogate", q_hat=program.q_hats(old.values))


def _hvp(plan, mode, wrt, num_samples, inputs, tangents, key, observed):
    check_key(key)
    diff, tangents = {n: inputs[n] for n in wrt}, check_tangents(wrt, inputs, tangents)
    grad_fn = lambda d: _grad_body(plan, mode, wrt, num_samples, {**inputs, **d}, key, observed)  # noqa: E731
    return jax.jvp(grad_fn, (diff,), (tangents,))[1]


def _observed_support(plan, num_samples, inputs, key, observed):
    """``{node: mask}``: where each observed value of a stochastic node is a possible outcome of its
    distribution, built at its parents' values of the pass the call itself makes (same key, same record)."""
    check_key(key)
    values = plan.program.sample_values(inputs, key, num_samples, fixed=observed)
    return _checks.support_masks(plan.analysis, plan.avals, inputs, values, observed, evaluate)
