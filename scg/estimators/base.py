"""The estimator interface: one small, immutable value per way of differentiating through a node.

An estimator is a frozen dataclass (hashable and comparable, so plans that
hold one can be cached), built by a factory in :mod:`scg.estimators`
(``score()``, ``direct(epsilon=0.5)``, ...). Its fields are its
hyperparameters; what it does is in its methods. The compiler asks each
stochastic node's estimator for:

- ``sample(dist, key)``: the node's value. A score-function estimator returns a
  sample with no gradient; a pathwise one a reparameterised sample.
- ``observe(node_name, dist, value)``: the node's value when ``observed=``
  records ``value`` for it. A draw without a gradient path takes the record as
  it is; the pathwise estimator infers the noise that produced it
  (:meth:`scg.estimators.Pathwise.observe`).
- ``terms(ctx)``: a pair ``(score_weight, extra)`` of scalars. The compiler
  multiplies ``score_weight`` by ``stop_gradient(Q̂_w - b_w)`` (so baselines and
  credit assignment live once, in the compiler) and adds ``extra`` to the
  surrogate as it is.

Expectation nodes (``Graph.expectation``) ask their estimator for ``expect(ctx)``.

Class attributes (``ClassVar``, not fields) tell the compiler how the node behaves:

- ``passes_gradient``: the value carries a gradient to its children, so the
  node counts as deterministic in ``≺ᴰ`` (Schulman 2016, §5.3.1).
- ``uses_score``: the node has a ``Q̂_w`` term, so baselines apply.
- ``needs_downstream``: ``ctx.downstream(value)`` is used (the sum of the costs
  downstream of the node, re-evaluated with the node's value replaced).
- ``observable``: the node's value may be given by ``observed=``.
- ``unbiased``: the estimator's expectation is the exact gradient of the
  expected cost (False for relaxations such as Gumbel-softmax): a graph
  compiled with ``scg.compile(g, unbiased=True)`` refuses a node whose
  estimator is not.
- ``any_order``: its terms are valid in the magic-box (DiCE) objective, so
  ``hvp`` (second derivatives) is unbiased; ``hvp`` refuses a node whose
  estimator is not.

State. An estimator may carry state between calls (a learned control
variate), threaded by the compiled methods as ``state in, state out`` (the
optax pattern; :meth:`scg.CompiledGraph.init_state`, ``grad(..., state=)``,
``grad_fn(..., with_state=True)``):

- ``init_state(node_name, value_aval, key) -> pytree``: the initial state,
  from the shape and dtype of one value of the node (``jax.ShapeDtypeStruct``;
  a temporal graph's is one step's) and a key for random initialisation. The
  default, ``()``, means stateless.
- ``ctx.state``: the state this call reads (:class:`NodeContext`), the same
  for every sample of the call.
- ``update_state(state, batch: StateUpdate) -> pytree``: the next state, from
  the node's values and ``Q̂_w`` over the whole batch of the call, without
  gradient. The default returns ``state``.
- ``trains_state`` (class attribute): the state is a dict whose ``"params"``
  are trained to minimise the variance of the gradient estimate; the compiled
  ``grad`` then passes ``batch.variance_grad = ∂‖ĝ‖²/∂params`` to
  ``update_state``, which takes the optimiser step.

An estimator that needs none of this overrides nothing; the built-ins are stateless.

To add an estimator, write a frozen dataclass subclassing :class:`Estimator`,
a factory returning it, and register the factory with
:func:`scg.estimators.register` for the string shorthand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp


class NodeContext(NamedTuple):
    """What an estimator sees of one node in one sample."""

    name: str
    dist: Any  # the node's distribution, built from its parents' values
    value: Any  # the value the estimator's ``sample`` (or ``observe``) returned
    key: jax.Array  # the node's key (the same one ``sample`` got)
    downstream: Callable[[Any], jax.Array] | None  # value -> sum of costs downstream, others fixed
    logp_old: jax.Array | None  # log p̂_w at the sampling parameters (importance-ratio form), else None
    state: Any = ()  # the estimator's state for this call (see the module docs); () when stateless
    # ``downstream`` with the graph's inputs (and observed values) held constant: its gradient flows only
    # through ``value``, to any order (a control variate that must not send gradient to other parameters)
    frozen_downstream: Callable[[Any], jax.Array] | None = None


class ExpectationContext(NamedTuple):
    """What an estimator sees of one expectation node ``E_{a~dist}[fn(*parents, a)]``."""

    name: str
    fn: Callable
    dist: Any
    parents: tuple
    key: jax.Array
    exact: bool  # the node's ``exact=`` (``Graph.expectation``): its value is the exact expectation
    state: Any = ()


class StateUpdate(NamedTuple):
    """What ``update_state`` sees of one node over a call's batch (leading sample axis), without gradient."""

    name: str
    values: Any  # the node's values, [N, ...] (or [N, T, ...] in a temporal graph)
    q_hat: jax.Array | None  # Q̂_w per sample (and step) for a score node, else None
    variance_grad: Any = None  # ∂‖ĝ‖²/∂state["params"] for an estimator with trains_state, else None


def total_log_prob(dist, value) -> jax.Array:
    """``log p(value)`` summed over the node's elements (its elements are independent given the parents)."""
    return jnp.sum(dist.log_prob(value))


def magic_box(x: jax.Array) -> jax.Array:
    """``exp(x - stop_gradient(x))``: evaluates to 1, differentiates to ``magic_box(x) * dx`` (Foerster et al. 2018)."""
    return jnp.exp(x - jax.lax.stop_gradient(x))


@dataclass(frozen=True)
class Estimator:
    """Base class with the defaults of a score-like estimator that adds nothing."""

    name: ClassVar[str] = "estimator"
    passes_gradient: ClassVar[bool] = False
    uses_score: ClassVar[bool] = False
    needs_downstream: ClassVar[bool] = False
    observable: ClassVar[bool] = True
    unbiased: ClassVar[bool] = True
    any_order: ClassVar[bool] = False
    trains_state: ClassVar[bool] = False

    def check(self, node_name: str, dist) -> None:
        """Raise :class:`scg.GraphError` (at trace time) if ``dist`` cannot be used with this estimator."""

    def sample(self, dist, key):
        return jax.lax.stop_gradient(dist.sample(key))

    def observe(self, node_name: str, dist, value):
        """The node's value when the record says ``value``: a draw without gradient path takes it as it is."""
        return value

    def terms(self, ctx: NodeContext) -> tuple[jax.Array, jax.Array]:
        zero = jnp.zeros(())
        return zero, zero

    def init_state(self, node_name: str, value_aval, key: jax.Array) -> Any:
        """The state before the first call; ``()``: stateless."""
        return ()

    def update_state(self, state, batch: StateUpdate) -> Any:
        """The state after a call over ``batch``; stateless estimators return ``state``."""
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
