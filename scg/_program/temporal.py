"""Running a :class:`scg.Temporal`: one step graph per ``lax.scan`` iteration, with the temporal credit assignment.

Internal; the declaration and the credit-assignment equations are documented in :mod:`scg.temporal`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scg._program import surrogate as surrogate_lib
from scg._program.analysis import Analysis
from scg._program.flat import FlatProgram
from scg._program.forward import SampleTerms, evaluate, sample_terms
from scg.errors import GraphError
from scg.returns import cost_to_go, future_costs, gae
from scg.temporal import Temporal


def _reaches_carry(spec: Temporal, a: Analysis, w: str) -> bool:
    """Whether step node ``w`` influences the state carried to the next step (or is carried itself)."""
    return any(d == w or d in a.influences[w] for d in spec.carry.values())


def check_temporal(spec: Temporal, a: Analysis) -> None:
    """Checks that need the step graph's analysis: estimators, and Condition 1 across steps.

    An estimator that re-evaluates the costs downstream of its node (smoothing, direct, antithetic) is
    accepted where those costs are known within the step: the node does not reach the carried state, or
    it does and it reaches the Temporal's ``bootstrap`` node, which stands in for the later costs
    (:meth:`TemporalProgram.tails`).
    """
    for name, est in a.estimators.items():
        if getattr(est, "needs_downstream", False) and _reaches_carry(spec, a, name):
            if spec.bootstrap is None or spec.bootstrap not in a.influences[name]:
                why = "the Temporal has no bootstrap= node" if spec.bootstrap is None else (
                    f"it does not reach the bootstrap node {spec.bootstrap!r}")
                raise GraphError(
                    f"node {name!r}: estimator {est.name!r} re-evaluates the costs downstream of the node, and "
                    f"{name!r} reaches the carried state, so those costs span later steps; {why}. Give the Temporal "
                    f"a bootstrap= node of the next state that {name!r} reaches (an estimate of the later costs, "
                    f"e.g. -V(s_next)), keep {name!r} off the carried state, or unroll the graph"
                )
    for name in a.order:
        node = a.nodes[name]
        adv = node.spec.advantage if node.kind == "stochastic" else None
        if adv is not None and name not in a.score_nodes():
            raise GraphError(
                f"node {name!r}: advantage={adv!r} credits score-function terms, but the node's estimator "
                f"{a.estimators[name].name!r} has none; use estimator='score'"
            )
    tainted = differentiated_carries(spec, a)
    for src in tainted:
        for w in a.det_influences[src]:
            node = a.nodes[w]
            if node.kind == "simulate" or (node.kind in ("deterministic", "cost") and not node.differentiable):
                raise GraphError(
                    f"Condition 1 fails across time: carried input {src!r} (fed by {spec.carry[src]!r}, which a "
                    f"differentiated input reaches along a differentiable path) reaches {node.kind} node {w!r}, "
                    f"which cannot carry a gradient. Put a score-function node between them."
                )


def differentiated_carries(spec: Temporal, a: Analysis, *, initial: bool = False) -> set:
    """Carried inputs differentiated through: a differentiable input (or another such carry) reaches the node
    that feeds them along a differentiable path, so gradients cross from one step to the next. With
    ``initial``, a carried input declared differentiable counts as such an input too (the gradient with
    respect to the initial state)."""
    tainted: set[str] = set()
    changed = True
    while changed:
        changed = False
        sources = {n for n in a.inputs if a.nodes[n].differentiable and (initial or n not in spec.carry)} | tainted
        for src, dst in spec.carry.items():
            if src not in tainted and any(dst in a.det_influences[s] for s in sources):
                tainted.add(src)
                changed = True
    return tainted


def terms_from_record(spec: Temporal, a: Analysis) -> bool:
    """Whether a step's estimator terms can be formed after the scan, from the recorded values, every step at
    once: no gradient crosses steps (:func:`differentiated_carries` is empty, the initial state's
    counted), no node is differentiated pathwise through a draw or an expectation, and no estimator
    re-evaluates the downstream costs (which would redraw later nodes). Then the scan only records, and the terms with their gradients come from one
    batched re-evaluation of the step graph at the record (as :meth:`FlatProgram.replay` does): the same
    values and gradients without differentiating back through ``T`` sequential steps."""
    if differentiated_carries(spec, a, initial=True):
        return False
    for name in a.order:
        node, est = a.nodes[name], a.estimators.get(name)
        if node.kind == "expectation":
            return False
        if node.kind == "stochastic" and (est is None or est.passes_gradient or est.needs_downstream):
            return False
    return True


def with_observed_carry(spec: Temporal, inputs, observed, num_samples: int | None):
    """``inputs`` completed with the carried inputs that only ``observed`` gives (their initial values per sample).

    ``observed[k]`` (``[num_samples, ...]``) replaces the initial value of carried input ``k`` in every sample
    (:meth:`TemporalProgram._scan_start`), so ``k`` need not be in ``inputs``: here it gets a placeholder of one
    sample's shape and dtype (zeros), which only sets the plan's signature. Returns ``inputs`` itself when
    nothing is missing (a Temporal with ``init=`` draws its carried inputs, none are read from ``inputs``).
    """
    if spec.init is not None or not observed or not isinstance(inputs, dict):
        return inputs
    missing = [k for k in spec.carry if k not in inputs and k in observed]
    if not missing:
        return inputs
    return {**inputs, **{k: _one_sample_placeholder(k, observed[k], num_samples) for k in missing}}


def _one_sample_placeholder(name: str, record, num_samples: int | None):
    def zeros(x):
        shape = jnp.shape(x)
        if num_samples is not None and (not shape or shape[0] != num_samples):
            raise GraphError(
                f"observed[{name!r}] has shape {shape}, but as the initial value of carried input {name!r} it needs "
                f"a leading num_samples={num_samples} axis, one initial value per sample"
            )
        return jnp.zeros(shape if num_samples is None else shape[1:], jnp.result_type(x))

    return jax.tree_util.tree_map(zeros, record)


class TemporalProgram(FlatProgram):
    """Scan one step per time index inside a ``vmap`` over samples; temporal ``Q̂``."""

    def __init__(self, spec: Temporal, analysis: Analysis):
        super().__init__(analysis)
        self.spec = spec
        a = analysis
        self.carry_costs = tuple(c for c in a.costs if any(c in a.influences[s] for s in spec.carry))
        self.reaches_carry = {w: _reaches_carry(spec, a, w) for w in a.order}
        self.static_inputs = tuple(n for n in a.inputs if n not in spec.carry)
        self.after_scan = _after_scan(spec, a)
        self.inner = frozenset(n for n in a.order if n not in self.after_scan)
        self.tails = self._tails()
        self.from_record = terms_from_record(spec, a)

    def _tails(self) -> dict:
        """Per downstream-evaluating node that reaches the carried state: the later costs, bootstrapped.

        Such an estimator (smoothing, direct) sees the one-step bootstrapped objective::

            downstream_t(v) = Σ_{c ∈ step t, w ≺ c} c_t(v) + γ (1 - term_t(v)) boot_t(v)

        every term re-evaluated with the node's value replaced by ``v`` and the step's other draws
        kept: ``G_{t+1}`` in ``G_t = C_t + γ (1 - term_t) G_{t+1}`` (:mod:`scg.temporal`) replaced by
        the bootstrap node's estimate of it (truncated or not, the tail is then the same). A node off
        the carried state sees the same-step costs only, which is then exact.
        """
        a, spec = self.analysis, self.spec
        gamma = self.spec.discount

        def tail(values):
            boot = jnp.reshape(values[spec.bootstrap], ())
            if spec.terminated is None:
                return gamma * boot
            return gamma * (1.0 - jnp.reshape(values[spec.terminated], ()).astype(boot.dtype)) * boot

        return {w: tail for w, est in a.estimators.items() if est.needs_downstream and self.reaches_carry[w]}

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

    def _scan_start(self, inputs, key, fixed):
        """``(init_key, carry0, fixed, step keys)`` of one sample's scan: the initial carried values (observed
        ones taken from ``fixed``, which keeps the per-step records only, or None) and one key per step."""
        init_key, scan_key = jax.random.split(key)
        fixed = dict(fixed or {})
        carry0 = self._initial(inputs, init_key)
        carry0.update({k: fixed.pop(k) for k in self.spec.carry if k in fixed})  # observed initial state
        return init_key, carry0, fixed or None, jax.random.split(scan_key, self.spec.horizon)

    def _one_sample(self, inputs, key, fixed, logp_old, num_samples: int = 1, states=None):
        """``lax.scan`` over the horizon for one sample; arrays come back with a leading time axis."""
        init_key, carry0, fixed, keys = self._scan_start(inputs, key, fixed)

        def step(carry, xs):
            k, f, lo = xs
            terms = sample_terms(
                self.analysis, {**inputs, **carry}, k, fixed=f, logp_old=lo, skip=self.after_scan, tails=self.tails,
                states=states,
            )
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
        steps = divisor_at_most(self.spec.horizon, max(1, _AFTER_SCAN_ROWS // num_samples))
        later = jax.lax.map(rest, terms.values, batch_size=steps)
        return terms._replace(values={**terms.values, **{n: later[n] for n in self.after_scan if n in later}})

    def batch_terms(self, inputs, key, num_samples, *, fixed=None, logp_old=None, states=None,
                    differentiated=True) -> SampleTerms:
        """Every sample's terms, ``[N, T, ...]``; formed after the scan from the record where
        :func:`terms_from_record` allows it, else inside the scan.

        ``differentiated=False`` (the caller takes no gradient: ``sample_batch``, a ratio objective's
        old terms) keeps the terms in the scan unless a drawn node is observed: the scan evaluates each
        step's distributions to draw anyway, so its log-probabilities cost nothing more there, while
        the record path would evaluate every distribution a second time (PPO on CartPole at 256 envs:
        the policy network twice, 26 ms against 18 ms for the hand-written rollout). With observed
        draws the scan need not evaluate the distributions at all, and the record path stays the faster."""
        keys = jax.random.split(key, num_samples)
        in_scan = not differentiated and not set(fixed or {}) & set(self.drawn_nodes())
        if self.from_record and not in_scan:
            values, step_keys = jax.vmap(lambda k, f: self._record(inputs, k, f))(keys, fixed)
            terms = self._terms_at_record(inputs, values, step_keys, logp_old, states)
        else:
            one = lambda k, f, lo: self._one_sample(inputs, k, f, lo, num_samples, states)  # noqa: E731
            terms = jax.vmap(one)(keys, fixed, logp_old)
        return self._return_losses(inputs, terms)

    def _record(self, inputs, key, fixed):
        """The scan of :meth:`_one_sample` without gradient and without estimator terms: every step's values
        (after-scan nodes left out) and the step keys, for :meth:`_terms_at_record`."""
        inputs = jax.lax.stop_gradient(inputs)
        _, carry0, fixed, keys = self._scan_start(inputs, key, fixed)

        def step(carry, xs):
            k, f = xs
            values, _ = evaluate(self.analysis, {**inputs, **carry}, k, fixed=f, skip=self.after_scan)
            new_carry = {src: values[dst] for src, dst in self.spec.carry.items()}
            return new_carry, {n: v for n, v in values.items() if n not in self.static_inputs}

        _, values = jax.lax.scan(step, carry0, (keys, fixed))
        return values, keys

    def _terms_at_record(self, inputs, values, step_keys, logp_old, states) -> SampleTerms:
        """Each step's :func:`sample_terms` at the recorded carried inputs and draws (``[N, T]`` record), all
        steps side by side, in chunks of about ``_RECORD_ROWS`` rows (``lax.map`` over steps)."""
        static = {n: inputs[n] for n in self.static_inputs}
        drawn = self.drawn_nodes()

        def one(v, k, lo):
            carried = {c: v[c] for c in self.spec.carry}
            terms = sample_terms(self.analysis, {**static, **carried}, k, fixed={d: v[d] for d in drawn}, logp_old=lo,
                                 states=states)
            return terms._replace(values={n: x for n, x in terms.values.items() if n not in self.static_inputs})

        record = {n: values[n] for n in (*self.spec.carry, *drawn)}
        per_step = jax.vmap(one)  # over samples, at one step
        steps = divisor_at_most(self.spec.horizon, max(1, _RECORD_ROWS // step_keys.shape[0]))
        time_major = jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), (record, step_keys, logp_old))
        terms = jax.lax.map(lambda xs: per_step(*xs), time_major, batch_size=steps)
        return jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), terms)

    def _return_losses(self, inputs, terms: SampleTerms) -> SampleTerms:
        """Loss nodes with ``target="return"``: ``fn(*parents, G_t)`` over every sample and step."""
        a = self.analysis
        losses = [n for n in a.losses if a.nodes[n].spec.target == "return"]
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
            return jax.lax.stop_gradient(one.values)
        return jax.lax.stop_gradient(self.batch_terms(inputs, key, num_samples, fixed=fixed, differentiated=False).values)

    def total_cost(self, values: dict) -> jax.Array:
        """``Σ_t Σ_c c_t`` per sample."""
        return jnp.sum(super().total_cost(values), axis=-1)

    # -- credit assignment --------------------------------------------------------------
    def _per_step(self, values: dict):
        """Per-step carried costs ``C_t`` and the flags and bootstrap, each ``[N, T]``, without gradient."""
        spec = self.spec
        shape = jax.tree_util.tree_leaves(values)[0].shape[:2]  # every value has a [N, T] prefix
        c = jnp.broadcast_to(jax.lax.stop_gradient(sum((values[n] for n in self.carry_costs), jnp.zeros(()))), shape)
        term, trunc = _flag(values, spec.terminated, c), _flag(values, spec.truncated, c)
        boot = jax.lax.stop_gradient(values[spec.bootstrap]).reshape(c.shape) if spec.bootstrap else jnp.zeros_like(c)
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
            adv = a.nodes[w].spec.advantage
            if adv is not None:
                per_step = self._per_step(values)
                c = per_step[0]
                b = jax.lax.stop_gradient(values[a.nodes[w].baseline]).reshape(c.shape)
                fn = lambda *xs: gae(*xs, self.spec.discount, adv.lam)  # noqa: E731
                future = b + jax.vmap(fn)(*per_step, b) - c
            out[w] = jax.lax.stop_gradient(same_step + (future if self.reaches_carry[w] else 0.0))
        return out

    @property
    def q_shape(self) -> tuple:
        return (self.spec.horizon,)

    def emit(self, terms: SampleTerms, mode: str, *, q_hat: dict | None = None, states: dict | None = None) -> jax.Array:
        if mode == "dice":
            raise GraphError(f"Temporal {self.spec.name!r}: mode='dice' is not supported for temporal graphs yet")
        q_hat = self.q_hats(terms.values) if q_hat is None else q_hat
        return surrogate_lib.emit(self.analysis, terms, q_hat=q_hat, states=states)


# Rows (samples × steps) per batched evaluation of the after-scan nodes. Measured on XLA:CPU (2 cores, PPO on
# CartPole, a 64-64 critic): one evaluation per step inside the scan pays per-operation overhead T times (at 16
# samples, 0.9 ms of a 4.4 ms rollout); one evaluation of all N·T rows at once runs out of cache (at 1024
# samples × 128 steps, 85 ms slower than in the scan). Chunks of ~8k rows keep both small.
_AFTER_SCAN_ROWS = 8192
# The same for the estimator terms formed at the record (TemporalProgram._terms_at_record), which carry a backward
# pass: REINFORCE on CartPole with one value epoch, 64 envs × 200 steps, took 1.27× the hand-written update in
# chunks of 8k rows (two chunks) and 1.07× in one chunk of 12.8k (2 CPU cores).
_RECORD_ROWS = 32768


def divisor_at_most(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is at most ``k`` (batch sizes that split ``n`` without a remainder)."""
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
    return jax.lax.stop_gradient(values[name]).astype(like.dtype).reshape(like.shape)


def check_carry(spec: Temporal, avals: dict) -> None:
    """Each carried node has the shape and dtype of the input it feeds at the next step."""
    for src, dst in spec.carry.items():
        want, got = jax.tree_util.tree_map(_sd, avals[src]), jax.tree_util.tree_map(_sd, avals[dst])
        if want != got:
            raise GraphError(
                f"Temporal {spec.name!r}: carried node {dst!r} has shape/dtype {got} but feeds input "
                f"{src!r}, which has {want}; they must match"
            )


def _sd(x):
    return (tuple(x.shape), str(jnp.dtype(x.dtype)))
