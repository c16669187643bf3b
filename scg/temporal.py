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

Estimators that re-evaluate the costs downstream of their node (smoothing,
direct) work per step: a node that does not reach the carried state sees its
step's downstream costs, exactly; one that does sees the one-step bootstrapped
objective ``Σ_{c ∈ step t, w ≺ c} c_t + γ (1 - term_t) boot_t``, every term
re-evaluated with the node's value replaced (``G_{t+1}`` replaced by the
bootstrap's estimate), and needs a ``bootstrap`` node that it reaches (else a
GraphError at compile time).

Baselines are checked per step against Theorem 2 at compile time: ``b(s_t)``
is accepted; a baseline reading ``s_{t+1}``, ``a_t`` or ``r_t`` is a GraphError.
"""
from __future__ import annotations

from typing import Callable

from scg import _draw
from scg import graph as _graph
from scg.errors import GraphError
from scg.graph import Graph


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
            carried inputs are read from ``inputs`` at call time, or from
            ``observed=`` (initial values per sample, ``[num_samples, ...]``,
            e.g. recorded start states), which then need not be in ``inputs``.
            Given in both, ``observed`` wins: the input's value only sets the
            shape, and its gradient is zero. ``observed`` overrides ``init``'s
            draws alike.
        terminated, truncated: names of step nodes holding the episode-end flags.
        bootstrap: name of a step node estimating the costs after the step,
            used on truncation and after the last step.

    Example:
        >>> import jax, jax.numpy as jnp, scg
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

    def _snapshot(self) -> "Temporal":
        """A copy over a frozen snapshot of the step graph (:meth:`scg.Graph._snapshot`) and a copy of
        ``carry``: what :func:`scg.compile` keeps, so later edits of this Temporal or its step change nothing compiled."""
        return Temporal(
            self.step._snapshot(), carry=dict(self.carry), horizon=self.horizon, discount=self.discount,
            init=self.init, terminated=self.terminated, truncated=self.truncated, bootstrap=self.bootstrap,
        )

    def __repr__(self) -> str:
        return f"Temporal({self.step.name!r}, carry={self.carry}, horizon={self.horizon}, discount={self.discount})"

    def _repr_svg_(self) -> str:
        """Jupyter's picture: the step graph in a frame with the carry edges, the horizon and the discount."""
        if _graph.resolved_svg is not None:
            return _graph.resolved_svg(self)
        return _draw.svg(self.name, _draw.describe(self.step.nodes), frame=_draw.frame_of(self))


def _name(x) -> str:
    return x if isinstance(x, str) else x.name
