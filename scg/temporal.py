"""Time in the graph: one step declared as a graph, repeated with ``lax.scan``.

A :class:`Temporal` wraps a *step graph* (state → action distribution →
transition → cost → next state, plus baselines or critics) with a ``carry``
mapping (which node of step ``t`` becomes which input of step ``t+1``) and a
horizon. It compiles like any graph (``scg.compile``), but the compiled
function scans the step, so compile time does not grow with the horizon.

Credit assignment is Theorem 1's ``Q̂`` restricted by the time structure
(Schulman 2016, §5.10.2, Eq. 44): the score term of a node ``w`` at step ``t``
multiplies the costs of step ``t`` downstream of ``w`` plus, if ``w``
influences the carried state, every later cost the carried state influences::

    G_t = C_t + γ (1 - term_t) [(1 - trunc_t) G_{t+1} + trunc_t · boot_t]     (reverse scan)
    Q̂_w(t) = Σ_{c ∈ step t, w ≺ c} c_t + [w ≺ carry] · (G_t - C_t)

where ``C_t`` sums the step-``t`` costs downstream of the carried inputs,
``term_t``/``trunc_t`` are the episode-boundary flags (no credit crosses an
episode boundary) and ``boot_t`` the bootstrap node (an estimate of the costs
after step ``t``, e.g. ``-V(s_{t+1})``), also used after the last step.
With ``discount γ < 1`` the estimator is that of the discounted objective, a
biased estimator of the gradient of the undiscounted expected cost (the usual
trade of bias for variance); the cost term of the surrogate stays undiscounted.

Baselines are checked per step against Theorem 2 at compile time: ``b(s_t)``
is accepted; a baseline reading ``s_{t+1}``, ``a_t`` or ``r_t`` is a GraphError.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from scg import surrogate as surrogate_lib
from scg.analysis import Analysis
from scg.errors import GraphError
from scg.forward import SampleTerms, evaluate, sample_terms
from scg.graph import Graph
from scg.program import FlatProgram
from scg.returns import cost_to_go, future_costs, gae

sg = jax.lax.stop_gradient


class Temporal:
    """A step graph repeated ``horizon`` times.

    Args:
        step: the graph of one time step.
        carry: ``{input name: node name}``: the node of step ``t`` whose value
            feeds that input at step ``t + 1``.
        horizon: number of steps ``T``.
        discount: ``γ`` in ``(0, 1]`` for credit assignment (see module docs).
        init: optional ``(key, inputs) -> {carry input: value}`` drawing the
            initial carried values (e.g. an environment reset); without it the
            carried inputs are read from ``inputs`` at call time.
        terminated, truncated: names of step nodes holding the episode-end flags.
        bootstrap: name of a step node estimating the costs after the step,
            used on truncation and after the last step.

    Example:
        >>> import jax.numpy as jnp, scg
        >>> from scg import dist
        >>> step = scg.Graph("walk")
        >>> theta, s = step.input("theta"), step.input("s")
        >>> a = step.stochastic("a", lambda th: dist.Bernoulli(logits=th), theta)
        >>> s1 = step.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
        >>> _ = step.cost("c", lambda s1: s1**2, s1)
        >>> est = scg.compile(scg.Temporal(step, carry={"s": "s_next"}, horizon=5))
        >>> sorted(est.grad({"theta": 0.0, "s": 0.0}, jax.random.key(0), num_samples=8))
        ['s', 'theta']
    """

    def __init__(
        self,
        step: Graph,
        *,
        carry: dict,
        horizon: int,
        discount: float = 1.0,
        init: Callable | None = None,
        terminated: str | None = None,
        truncated: str | None = None,
        bootstrap: str | None = None,
    ):
        if not isinstance(step, Graph):
            raise GraphError(f"Temporal: step must be a scg.Graph, got {type(step).__name__}")
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise GraphError(f"Temporal {step.name!r}: horizon must be a positive int, got {horizon!r}")
        if not 0.0 < float(discount) <= 1.0:
            raise GraphError(f"Temporal {step.name!r}: discount must lie in (0, 1], got {discount!r}")
        if not carry:
            raise GraphError(f"Temporal {step.name!r}: carry must map at least one input to the node that feeds it")
        names = {n.name: n for n in step.nodes}
        carry = {_name(k): _name(v) for k, v in carry.items()}
        for src, dst in carry.items():
            if src not in names or names[src].kind != "input":
                raise GraphError(f"Temporal {step.name!r}: carry key {src!r} must be an input node of the step graph")
            if dst not in names or names[dst].kind == "input":
                raise GraphError(
                    f"Temporal {step.name!r}: carry[{src!r}] = {dst!r} must name a non-input node of the step graph"
                )
        for role, node in (("terminated", terminated), ("truncated", truncated), ("bootstrap", bootstrap)):
            if node is not None and _name(node) not in names:
                raise GraphError(f"Temporal {step.name!r}: {role}={_name(node)!r} is not a node of the step graph")
        if bootstrap is not None and names[_name(bootstrap)].kind == "cost":
            raise GraphError(f"Temporal {step.name!r}: bootstrap {_name(bootstrap)!r} must not be a cost node")
        self.step, self.carry, self.horizon, self.discount = step, carry, horizon, float(discount)
        self.init = init
        self.terminated = None if terminated is None else _name(terminated)
        self.truncated = None if truncated is None else _name(truncated)
        self.bootstrap = None if bootstrap is None else _name(bootstrap)
        self.name = step.name

    def __repr__(self) -> str:
        return f"Temporal({self.step.name!r}, carry={self.carry}, horizon={self.horizon}, discount={self.discount})"

    def _repr_svg_(self) -> str:
        return self.step._repr_svg_()


def _name(x) -> str:
    return x if isinstance(x, str) else x.name


def check_temporal(spec: Temporal, a: Analysis) -> None:
    """Checks that need the step graph's analysis: estimators, and Condition 1 across steps."""
    for name, est in a.estimators.items():
        if getattr(est, "needs_downstream", False):
            raise GraphError(
                f"node {name!r}: estimator {est.name!r} re-evaluates downstream costs, which in a temporal graph "
                f"span later steps; it is not supported inside Temporal yet (unroll the graph instead)"
            )
    for name in a.order:
        adv = a.nodes[name].options.get("advantage")
        if adv is not None and name not in a.score_nodes():
            raise GraphError(
                f"node {name!r}: advantage={adv!r} credits score-function terms, but the node's estimator "
                f"{a.estimators[name].name!r} has none; use estimator='score'"
            )
    # A carried input is differentiated-through if a differentiable input (or another such carry) reaches its source.
    tainted: set[str] = set()
    changed = True
    while changed:
        changed = False
        sources = {n for n in a.inputs if a.nodes[n].differentiable and n not in spec.carry} | tainted
        for src, dst in spec.carry.items():
            if src not in tainted and any(dst in a.det_influences[s] for s in sources):
                tainted.add(src)
                changed = True
    for src in tainted:
        for w in a.det_influences[src]:
            node = a.nodes[w]
            if node.kind == "simulate" or (node.kind in ("deterministic", "cost") and not node.differentiable):
                raise GraphError(
                    f"Condition 1 fails across time: carried input {src!r} (fed by {spec.carry[src]!r}, which a "
                    f"differentiated input reaches along a differentiable path) reaches {node.kind} node {w!r}, "
                    f"which cannot carry a gradient. Put a score-function node between them."
                )


class TemporalProgram(FlatProgram):
    """Scan one step per time index inside a ``vmap`` over samples; temporal ``Q̂``."""

    def __init__(self, spec: Temporal, analysis: Analysis):
        super().__init__(analysis)
        self.spec = spec
        a = analysis
        carried = set(spec.carry.values())
        self.carry_costs = tuple(c for c in a.costs if any(c in a.influences[s] for s in spec.carry))
        self.reaches_carry = {w: any(d in a.influences[w] for d in carried) for w in a.order}
        self.static_inputs = tuple(n for n in a.inputs if n not in spec.carry)
        self.after_scan = _after_scan(spec, a)
        self.inner = frozenset(n for n in a.order if n not in self.after_scan)

    # -- evaluation -------------------------------------------------------------------
    def replayed_inputs(self) -> tuple[str, ...]:
        return tuple(self.spec.carry)

    def _initial(self, inputs, key):
        if self.spec.init is None:
            return {k: inputs[k] for k in self.spec.carry}
        init = self.spec.init(key, inputs)
        missing = set(self.spec.carry) - set(init)
        if missing:
            raise GraphError(f"Temporal {self.spec.name!r}: init returned no value for carried input(s) {sorted(missing)}")
        return {k: init[k] for k in self.spec.carry}

    def check_observed(self, observed: dict | None) -> None:
        """Recorded values of drawn nodes (``[N, T, ...]``), and optionally initial carried values (``[N, ...]``)."""
        super().check_observed({k: v for k, v in (observed or {}).items() if k not in self.spec.carry})

    def _one_sample(self, inputs, key, fixed, logp_old, num_samples: int = 1):
        """``lax.scan`` over the horizon for one sample; arrays come back with a leading time axis."""
        init_key, scan_key = jax.random.split(key)
        fixed = dict(fixed or {})
        carry0 = self._initial(inputs, init_key)
        carry0.update({k: fixed.pop(k) for k in self.spec.carry if k in fixed})  # observed initial state
        fixed = fixed or None
        keys = jax.random.split(scan_key, self.spec.horizon)

        def step(carry, xs):
            k, f, lo = xs
            terms = sample_terms(self.analysis, {**inputs, **carry}, k, fixed=f, logp_old=lo, skip=self.after_scan)
            new_carry = {src: terms.values[dst] for src, dst in self.spec.carry.items()}
            values = {n: v for n, v in terms.values.items() if n not in self.static_inputs}
            return new_carry, terms._replace(values=values)

        _, terms = jax.lax.scan(step, carry0, (keys, fixed, logp_old))
        if not self.after_scan:
            return terms
        # The nodes the scan left out, from the recorded values (no sequential dependence): many steps per
        # batched evaluation, in chunks of about _AFTER_SCAN_ROWS (samples × steps) rows at a time.
        static = {n: inputs[n] for n in self.static_inputs}
        rest = lambda v: evaluate(self.analysis, {**static, **v}, init_key, skip=self.inner)[0]  # noqa: E731
        steps = _divisor_at_most(self.spec.horizon, max(1, _AFTER_SCAN_ROWS // num_samples))
        later = jax.lax.map(rest, terms.values, batch_size=steps)
        return terms._replace(values={**terms.values, **{n: later[n] for n in self.after_scan if n in later}})

    def batch_terms(self, inputs, key, num_samples, *, fixed=None, logp_old=None) -> SampleTerms:
        keys = jax.random.split(key, num_samples)
        terms = jax.vmap(lambda k, f, lo: self._one_sample(inputs, k, f, lo, num_samples))(keys, fixed, logp_old)
        return self._return_losses(inputs, terms)

    def _return_losses(self, inputs, terms: SampleTerms) -> SampleTerms:
        """Loss nodes with ``target="return"``: ``fn(*parents, G_t)`` over every sample and step."""
        a = self.analysis
        losses = [n for n in a.losses if a.nodes[n].options.get("target") == "return"]
        if not losses:
            return terms
        values = dict(terms.values)
        g = self.cost_to_go(values)
        for name in losses:
            node = a.nodes[name]
            stacked = [p in values for p in node.parents]
            args = [values[p] if s else inputs[p] for p, s in zip(node.parents, stacked)]
            axes = [0 if s else None for s in stacked] + [0]
            per_step = jax.vmap(node.fn, in_axes=axes)
            values[name] = jax.vmap(per_step, in_axes=axes)(*args, g)
        return terms._replace(values=values)

    def sample_values(self, inputs, key, num_samples, *, fixed=None) -> dict:
        if num_samples is None:
            one = self._one_sample(inputs, key, fixed, None)
            return sg(one.values)
        return sg(self.batch_terms(inputs, key, num_samples, fixed=fixed).values)

    def total_cost(self, values: dict) -> jax.Array:
        """``Σ_t Σ_c c_t`` per sample."""
        return jnp.sum(super().total_cost(values), axis=-1)

    # -- credit assignment --------------------------------------------------------------
    def _per_step(self, values: dict):
        """Per-step carried costs ``C_t`` and the flags and bootstrap, each ``[N, T]``, without gradient."""
        spec = self.spec
        shape = jax.tree_util.tree_leaves(values)[0].shape[:2]  # every value has a [N, T] prefix
        c = jnp.broadcast_to(sg(sum((values[n] for n in self.carry_costs), jnp.zeros(()))), shape)
        term, trunc = _flag(values, spec.terminated, c), _flag(values, spec.truncated, c)
        boot = sg(values[spec.bootstrap]).reshape(c.shape) if spec.bootstrap else jnp.zeros_like(c)
        return c, term, trunc, boot

    def future(self, values: dict) -> jax.Array:
        """``F_t = G_t - C_t``: the discounted costs after step ``t`` that the carried state influences."""
        fn = lambda *xs: future_costs(*xs, self.spec.discount)
        return jax.vmap(fn)(*self._per_step(values))

    def cost_to_go(self, values: dict) -> jax.Array:
        """``G_t = C_t + F_t`` per sample and step: the return a critic regresses on (in cost units)."""
        fn = lambda *xs: cost_to_go(*xs, self.spec.discount)
        return jax.vmap(fn)(*self._per_step(values))

    def q_hats(self, values: dict) -> dict:
        """``Q̂_w`` per score node and step: the same step's downstream costs plus, when ``w`` reaches
        the carried state, the discounted future ``F_t``; for a node with ``advantage=GAE(λ)``
        ``F_t`` is replaced by ``b_t + Â_t - C_t`` so that ``Q̂_w - b_w`` is Eq. 26's ``Â_t``."""
        a = self.analysis
        f = self.future(values)
        out = {}
        for w in self.score_nodes:
            same_step = sum((values[c] for c in a.downstream_costs[w]), jnp.zeros_like(f))
            future = f
            adv = a.nodes[w].options.get("advantage")
            if adv is not None:
                per_step = self._per_step(values)
                c = per_step[0]
                b = sg(values[a.nodes[w].baseline]).reshape(c.shape)
                fn = lambda *xs: gae(*xs, self.spec.discount, adv.lam)  # noqa: E731
                future = b + jax.vmap(fn)(*per_step, b) - c
            out[w] = sg(same_step + (future if self.reaches_carry[w] else 0.0))
        return out

    def emit(self, terms: SampleTerms, mode: str, *, q_hat: dict | None = None) -> jax.Array:
        if mode == "dice":
            raise GraphError(f"Temporal {self.spec.name!r}: mode='dice' is not supported for temporal graphs yet")
        q_hat = self.q_hats(terms.values) if q_hat is None else q_hat
        return surrogate_lib.emit(self.analysis, terms, q_hat=q_hat)


# Rows (samples × steps) per batched evaluation of the after-scan nodes. Measured on XLA:CPU (2 cores, PPO on
# CartPole, a 64-64 critic): one evaluation per step inside the scan pays per-operation overhead T times (at 16
# samples, 0.9 ms of a 4.4 ms rollout); one evaluation of all N·T rows at once runs out of cache (at 1024
# samples × 128 steps, 85 ms slower than in the scan). Chunks of ~8k rows keep both small.
_AFTER_SCAN_ROWS = 8192


def _divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)


def _after_scan(spec: Temporal, a: Analysis) -> frozenset:
    """Step nodes that need not run inside the scan: deterministic, cost and loss nodes that neither a carried
    value nor a drawing node depends on (critics, bootstraps, rewards, flags, entropy terms). They are
    evaluated after the scan, many steps per batched computation instead of ``T`` small ones."""
    inside = set(spec.carry.values()) | {n for n in a.order if a.nodes[n].kind in ("stochastic", "simulate", "expectation")}
    needed = set()
    for n in reversed(a.order):
        if n in inside or any(c in needed for c in a.children[n]):
            needed.add(n)
    return frozenset(n for n in a.order if n not in needed and a.nodes[n].kind in ("deterministic", "cost", "loss"))


def _flag(values: dict, name: str | None, like: jax.Array) -> jax.Array:
    if name is None:
        return jnp.zeros_like(like)
    return sg(values[name]).astype(like.dtype).reshape(like.shape)


def compile_temporal(spec: Temporal, *, mode: str = "surrogate"):
    """Build the compiled estimator of a temporal graph (called by :func:`scg.compile`)."""
    from scg.compiler import CompiledGraph, Plan, _check_values, _is_float

    class TemporalCompiled(CompiledGraph):
        """A :class:`scg.CompiledGraph` whose samples are trajectories; arrays carry a ``[num_samples, T]`` prefix."""

        def __init__(self):
            if mode != "surrogate":
                raise GraphError(f"Temporal {spec.name!r}: only mode='surrogate' is supported for temporal graphs")
            super().__init__(spec.step, mode=mode)
            self.spec = spec
            check_temporal(spec, self.analysis)

        def _check_inputs(self, inputs):
            if not isinstance(inputs, dict):
                raise GraphError(f"inputs must be a dict keyed by input-node name {list(self._wanted())}")
            want = self._wanted()
            missing = [n for n in want if n not in inputs]
            if missing:
                raise GraphError(f"missing value for input node(s) {missing}; pass inputs={{name: value}} for each of {list(want)}")
            extra = [n for n in inputs if n not in want]
            if extra:
                raise GraphError(f"inputs {extra} are not inputs of temporal graph {spec.name!r} (expected {list(want)})")
            return inputs

        def _wanted(self):
            carried = set(spec.carry) if spec.init is not None else set()
            return tuple(n for n in self.analysis.inputs if n not in carried)

        def _make_plan(self, inputs):
            if spec.init is not None:
                carry0 = jax.eval_shape(lambda k, i: spec.init(k, i), jax.random.key(0), inputs)
                missing = set(spec.carry) - set(carry0)
                if missing:
                    raise GraphError(f"Temporal {spec.name!r}: init returned no value for carried input(s) {sorted(missing)}")
                step_inputs = {**inputs, **{k: carry0[k] for k in spec.carry}}
            else:
                step_inputs = inputs
            analysis, avals = self._resolve(step_inputs)
            for src, dst in spec.carry.items():
                want, got = jax.tree_util.tree_map(_sd, avals[src]), jax.tree_util.tree_map(_sd, avals[dst])
                if want != got:
                    raise GraphError(
                        f"Temporal {spec.name!r}: carried node {dst!r} has shape/dtype {got} but feeds input "
                        f"{src!r}, which has {want}; they must match"
                    )
            check_temporal(spec, analysis)
            wanted = self._wanted()
            float_inputs = tuple(
                n for n in analysis.inputs if n in wanted and _is_float(avals[n]) and analysis.nodes[n].differentiable
            )
            _check_values(analysis, avals, float_inputs)
            return Plan(analysis, avals, float_inputs, TemporalProgram(spec, analysis))

        def cost_to_go(self, inputs: dict, values: dict) -> jax.Array:
            """``G_t`` per sample and step (cost units) from sampled ``values``: the target a critic regresses on.

            The same reverse scan that assigns credit (:mod:`scg.returns`); pure, usable inside ``jit``.
            """
            return self.plan(inputs).program.cost_to_go(values)

        def __repr__(self):
            return f"CompiledGraph({spec!r})"

    return TemporalCompiled()


def _sd(x):
    return (tuple(x.shape), str(jnp.dtype(x.dtype)))
