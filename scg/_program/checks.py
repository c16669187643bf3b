"""Checks of bad input: recorded values a distribution cannot produce, invalid parameters, NaN costs (internal).

Two ways in, one per kind of value:

- **Concrete** ``observed=`` values (a method called eagerly with arrays) are
  checked on the host before the call runs: :func:`support_masks` (inside a
  jitted kernel of :mod:`scg.compiler`) evaluates each observed node's
  distribution at its parents' values of the same pass, and
  :func:`first_violation` names the first impossible element. The compiler
  raises it as :class:`scg.GraphError`; with ``observed=None`` nothing runs.
- **Traced** values (``scg.compile(graph, checks=True)``): :func:`checked_jit`
  jits a kernel under ``jax.experimental.checkify`` with :func:`active` true
  while it is traced, and the hooks that :mod:`scg._program.forward` calls
  where a distribution is built (:func:`distribution`), a recorded value is
  taken (:func:`observed`) and a cost is computed (:func:`finite`) add
  ``checkify.check`` s naming the node. While :func:`active` is false
  (``checks=False``, the default) the hooks return at once and add no
  operation to the trace.

The mask and parameter rules are the distributions' own (``in_support``,
``param_errors`` in :mod:`scg.dist`); a distribution without them is not checked.

This module imports nothing of ``scg`` (its layer is the ``scg._program`` package's); raising
``GraphError`` is the caller's.
"""
from __future__ import annotations

import contextvars
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

# True while a kernel of a checks=True graph is traced: a context variable, not a global, so that
# tracing in another thread is not affected. Read at trace time only; nothing of it reaches XLA.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("scg_checks_active", default=False)


def active() -> bool:
    """Whether the function being traced emits checks (``scg.compile(graph, checks=True)``)."""
    return _ACTIVE.get()


def emitting(fn: Callable) -> Callable:
    """``fn`` with :func:`active` true while it runs: the checks it traces need ``checkify`` around it."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _ACTIVE.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    return traced


def checked_jit(fn: Callable) -> Callable:
    """``jit(checkify(fn))``, emitting checks; a call returns ``fn``'s result and raises the first failed check.

    The raise is ``err.throw()``: a ``checkify.JaxRuntimeError`` naming the node. Called inside a trace
    of the caller's own (``jit`` around a method), the error is re-embedded instead, and the caller's
    function must be wrapped in ``checkify.checkify`` itself.
    """
    jitted = jax.jit(checkify.checkify(emitting(fn)))

    def call(*args):
        err, out = jitted(*args)
        err.throw()
        return out

    call._cache_size = jitted._cache_size  # CompiledGraph.cache_size counts executables
    return call


# -- hooks, called by scg._program.forward while tracing --------------------------------
def distribution(name: str, dist) -> None:
    """Check ``dist``'s parameters (its ``param_errors()``), naming node ``name``."""
    if not active():
        return
    kind = type(dist).__name__
    for what, bad, values in getattr(dist, "param_errors", tuple)():
        _check_everywhere(~jnp.asarray(bad), values, f"node {name!r}: invalid {kind} parameters: {what}", "")


def observed(name: str, dist, value):
    """``value`` (a recorded value of node ``name``), checked to be a possible outcome of ``dist``."""
    if active() and hasattr(dist, "in_support"):
        what = (f"node {name!r}: observed value outside the support of its {type(dist).__name__} "
                f"distribution (or of probability zero)")
        _check_everywhere(dist.in_support(value), value, what, "in one sample, ")
    return value


def finite(kind: str, name: str, value):
    """``value`` (of cost or loss node ``name``, before reduction), checked to hold no NaN or inf."""
    if active():
        value = jnp.asarray(value)
        if jnp.issubdtype(value.dtype, jnp.inexact):
            _check_everywhere(jnp.isfinite(value), value, f"{kind} node {name!r}: value is not finite", "in one sample, ")
    return value


def _check_everywhere(ok, values, message: str, where: str) -> None:
    """``checkify.check`` that ``ok`` holds at every element; the message names the first failing one
    (its index within ``ok``, after ``where``: under ``vmap`` the index is within one sample)."""
    ok = jnp.asarray(ok)
    if ok.size == 0:
        return
    message = message.replace("{", "{{").replace("}", "}}")
    first = jnp.argmin(ok.ravel())  # the first False (argmin of booleans)
    at = jnp.broadcast_to(jnp.asarray(values), ok.shape).ravel()[first]
    if ok.ndim == 0:
        checkify.check(ok, f"{message} ({where}the value is {{}})", at)
        return
    index = jnp.unravel_index(first, ok.shape)
    slots = ", ".join(["{}"] * ok.ndim)
    checkify.check(jnp.all(ok), f"{message} ({where}element [{slots}] is {{}})", *index, at)


# -- concrete observed values, checked on the host ----------------------------------------
def concrete(tree) -> bool:
    """Whether no leaf of ``tree`` is a tracer: the values are known, so they can be checked before running."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def support_masks(analysis, avals: dict, inputs: dict, values: dict, observed: dict, evaluate: Callable) -> dict:
    """``{node: mask}`` for the observed stochastic nodes: where each recorded value is a possible outcome.

    Args:
        analysis, avals: the plan's (:class:`scg._program.plan.Plan`).
        values: every node's values from one pass with ``fixed=observed`` (``program.sample_values``), with
            the batch axes of ``observed`` (``[N]``, ``[N, T]`` or none); inputs absent from it (a temporal
            graph's static inputs) are taken from ``inputs``, unbatched.
        evaluate: :func:`scg._program.forward.evaluate`, passed in because that module calls this one's hooks.

    Each node's distribution is built from its parents' values in that pass (its function alone is
    evaluated, every other node overridden or skipped), so it is the one the call itself uses.
    """
    masks = {}
    for name, value in observed.items():
        node = analysis.nodes[name]
        if node.kind != "stochastic":  # a simulated node has no distribution; a carried input no node function
            continue
        batch_ndim = jnp.ndim(value) - len(avals[name].shape)
        batched = {p: values[p] for p in node.parents if p in values}
        unbatched = {p: inputs[p] for p in node.parents if p not in values}
        skip = frozenset(n for n in analysis.order if n != name and n not in node.parents)

        def one(parents, v, node=node, name=name, unbatched=unbatched, skip=skip):
            parents = {**unbatched, **parents}
            given = {p: x for p, x in parents.items() if analysis.nodes[p].kind == "input"}
            override = {p: x for p, x in parents.items() if p not in given}
            _, dists = evaluate(analysis, given, jax.random.key(0), fixed={name: v}, override=override, skip=skip)
            d = dists[name]
            return d.in_support(v) if hasattr(d, "in_support") else jnp.ones(jnp.shape(v), bool)

        prefix = jnp.shape(value)[:batch_ndim]
        flat = lambda x: jnp.reshape(x, (-1, *jnp.shape(x)[batch_ndim:]))  # noqa: E731
        if batch_ndim == 0:
            masks[name] = one(batched, value)
        else:
            mask = jax.vmap(one)(jax.tree_util.tree_map(flat, batched), flat(value))
            masks[name] = jnp.reshape(mask, (*prefix, *mask.shape[1:]))
    return masks


def first_violation(masks: dict, observed: dict) -> str | None:
    """The message for the first observed element that ``masks`` marks impossible, or None if there is none."""
    for name, mask in masks.items():
        mask = np.asarray(mask)
        if mask.all():
            continue
        bad = np.argwhere(~mask)
        index = tuple(int(i) for i in bad[0])
        value = np.asarray(observed[name])[index]
        at = f"[{', '.join(map(str, index))}]" if index else ""
        more = f", nor {len(bad) - 1} more element(s) of observed[{name!r}]" if len(bad) > 1 else ""
        return (
            f"observed[{name!r}]{at} is {value}, which the distribution of node {name!r} cannot produce "
            f"(outside its support, or of probability zero){more}. Observed values must be possible draws "
            f"of the node, such as values that sample() returned"
        )
    return None
