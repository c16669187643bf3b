"""Estimator and baseline state carried between calls: state in, state out (the optax pattern).

A compiled graph's state is a dict keyed by node name, holding only the nodes
that have state: ``{node: {"estimator": ..., "baseline": ...}}`` (each key only
where that part is stateful). Estimators declare state through
``Estimator.init_state`` / ``update_state`` (:mod:`scg.estimators.base`);
baselines through ``init_state(node_name, q_shape)`` / ``update_state(state,
q_hat)`` and a third argument of ``__call__`` (:class:`scg.baselines.MovingAverage`).

An estimator with ``trains_state`` keeps parameters under ``state["params"]``
that are trained to minimise the variance of the gradient estimate (RELAX's
control variate): the compiled ``grad`` computes ``∂‖ĝ‖²/∂params`` (the
gradient of ``Var[ĝ]``, since ``E[ĝ]`` does not depend on them when the
estimator is unbiased; Grathwohl et al. 2018, Eq. 6) and hands it to
``update_state`` as ``StateUpdate.variance_grad``.
"""
from __future__ import annotations

import jax

from scg._program.analysis import Analysis
from scg.errors import GraphError
from scg.estimators.base import StateUpdate


def has_baseline_state(spec) -> bool:
    """Whether a node's ``baseline=`` is a stateful baseline object."""
    return spec is not None and not isinstance(spec, str) and hasattr(spec, "init_state")


def initial(analysis: Analysis, avals: dict, q_shape: tuple, key: jax.Array) -> dict:
    """The state before the first call, from each node's value shape (``avals``) and ``Q̂``'s per-sample shape."""
    out = {}
    for name in analysis.order:
        node = analysis.nodes[name]
        if node.kind != "stochastic":
            continue
        entry = {}
        s = analysis.estimators[name].init_state(name, avals[name], analysis.node_key(key, name))
        if not (isinstance(s, tuple) and s == ()):  # () is stateless
            entry["estimator"] = s
        if has_baseline_state(node.baseline):
            entry["baseline"] = node.baseline.init_state(name, q_shape)
        if entry:
            out[name] = entry
    return out


def estimator_states(state: dict) -> dict:
    return {n: s["estimator"] for n, s in state.items() if "estimator" in s}


def baseline_states(state: dict) -> dict:
    return {n: s["baseline"] for n, s in state.items() if "baseline" in s}


def trained(analysis: Analysis, state: dict) -> dict:
    """``{node: state["params"]}`` for the estimators that train their state on the variance."""
    return {
        n: s["estimator"]["params"]
        for n, s in state.items()
        if "estimator" in s and getattr(analysis.estimators[n], "trains_state", False)
    }


def with_trained(state: dict, params: dict) -> dict:
    """``state`` with the trained parameters replaced by ``params``."""
    out = dict(state)
    for n, p in params.items():
        out[n] = {**state[n], "estimator": {**state[n]["estimator"], "params": p}}
    return out


def advance(analysis: Analysis, state: dict, values: dict, q_hat: dict, variance_grads: dict) -> dict:
    """The state after a call, from the call's values and ``Q̂`` over its batch (no gradient)."""
    out = {}
    for name, entry in state.items():
        new = dict(entry)
        q = q_hat.get(name)
        if "estimator" in entry:
            batch = StateUpdate(name, values[name], q, variance_grads.get(name))
            new["estimator"] = analysis.estimators[name].update_state(entry["estimator"], batch)
        if "baseline" in entry:
            new["baseline"] = analysis.nodes[name].baseline.update_state(entry["baseline"], q)
        out[name] = new
    return jax.lax.stop_gradient(out)


def check(analysis: Analysis, state, expected: dict) -> None:
    """Raise GraphError unless ``state`` has the structure of ``expected`` (what ``init_state`` returns)."""
    if not isinstance(state, dict) or set(state) != set(expected):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise GraphError(
            f"state: expected the dict init_state returns, with stateful node(s) {sorted(expected)}, got {got}; "
            f"pass est.init_state(inputs) first and then the state each call returns"
        )
    for name in expected:
        want, got = jax.tree_util.tree_structure(expected[name]), jax.tree_util.tree_structure(state[name])
        if want != got:
            raise GraphError(f"state[{name!r}] has structure {got}, but node {name!r} keeps {want}; pass the state a call returned")


def double(tree):
    """``2 x`` on floating leaves (``float0`` leaves of integer inputs unchanged): the cotangent of ``‖ĝ‖²``."""
    return jax.tree_util.tree_map(lambda x: x if x.dtype == jax.dtypes.float0 else 2.0 * x, tree)

