"""Algorithm 4 of Schulman (2016), an explicit backward pass, kept as a test oracle.

The compiler gets its gradient estimator by differentiating the surrogate of
Corollary 1 with ``jax.grad``. This module computes the same estimate the slow,
independent way: one backward sweep over the graph in reverse topological
order, one node at a time, accumulating

    g_v := ∂/∂v E[Σ_{c ∈ C, v ≺ c} c]

at every node that carries a gradient (Algorithm 4, thesis §5.5):

- a cost node starts at ``g_c = 1``;
- a deterministic child ``v`` sends ``(∂v/∂w)ᵀ g_v`` to its parent ``w``
  (``jax.vjp`` of that node's function alone);
- a score-function stochastic child ``v`` sends
  ``(∂/∂w log p(v̂ | PARENTS_v)) (Q̂_v - b_v)`` (Theorem 2);
- a pathwise (reparameterised) stochastic child is a deterministic function of
  its parents and its noise, ``v = loc(w) + scale(w) ε`` with the noise
  recovered from the sample, ``ε = (v̂ - loc)/scale`` (§5.2.1).

Correction to the printed algorithm: it writes ``g_w += (∂/∂w log p(v|PARENTS_v)) Q̂_w``
with ``w`` the *parent*. The right factor is ``Q̂_v``, the costs downstream of the
stochastic node ``v`` itself, as in Eq. 38 and Theorem 2. ``Q̂_w ⊇ Q̂_v`` also
holds the costs that ``w`` reaches without going through ``v``; those are
non-descendants of ``v`` and act as a (negated) baseline, so the printed form
stays unbiased but adds variance and no longer equals the derivative of the
surrogate sample by sample. ``q_of="parent"`` reproduces the printed form for
comparison. Pathwise stochastic nodes count as deterministic here ("ISSTOCHASTIC"
means: blocks gradients), matching ``≺ᴰ`` in :mod:`scg._program.analysis`.

Only the score and pathwise estimators are supported (Normal for pathwise);
expectation and loss nodes raise NotImplementedError.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scg.estimators import Pathwise, Score
from scg._program.forward import _reduce_cost


def _carries_gradient(a, name: str, value) -> bool:
    """Does ``name`` receive ``g`` from its children (input/deterministic/pathwise, floating point)?"""
    node = a.nodes[name]
    floating = all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in jax.tree_util.tree_leaves(value))
    if node.kind == "stochastic":
        return floating and isinstance(a.estimators[name], Pathwise)
    return floating and node.kind in ("input", "deterministic", "cost")


def _local(node, values: dict, targets: tuple, fn):
    """``fn`` of the node's parents, as a function of the parents in ``targets`` only (others fixed)."""

    def local(*xs):
        sub = dict(zip(targets, xs))
        return fn(*[sub.get(p, values[p]) for p in node.parents])

    return local


def _add(g: dict, name: str, cotangent):
    g[name] = cotangent if g.get(name) is None else jax.tree_util.tree_map(jnp.add, g[name], cotangent)


def backward(plan, inputs: dict, values: dict, baselines: dict | None = None, *, q_of: str = "node") -> dict:
    """Algorithm 4 for one sample: ``{input name: g_θ}``.

    Args:
        plan: ``est._plan(inputs)`` of a compiled graph (resolved estimators).
        values: every node's sampled value (one sample of ``est.sample``).
        baselines: ``b_v`` per score node (missing: 0), Theorem 2.
        q_of: ``"node"`` (Eq. 38, correct) or ``"parent"`` (the printed ``Q̂_w``).
    """
    a, baselines = plan.analysis, baselines or {}
    values = {**values, **inputs}
    q_hat = {v: sum((values[c] for c in a.downstream_costs[v]), jnp.zeros(())) for v in a.order}
    g: dict = {c: jnp.ones_like(values[c]) for c in a.costs}  # initialisation at the cost nodes
    for v in reversed(a.order):  # reverse traversal
        node = a.nodes[v]
        if node.kind == "input":
            continue
        targets = tuple(p for p in dict.fromkeys(node.parents) if _carries_gradient(a, p, values[p]))
        if not targets:
            continue
        primals = [values[p] for p in targets]
        if node.kind in ("deterministic", "cost"):
            if g.get(v) is None or not node.differentiable:
                continue
            fn = (lambda *xs: _reduce_cost(node, node.fn(*xs))) if node.kind == "cost" else node.fn
            _, vjp = jax.vjp(_local(node, values, targets, fn), *primals)
            cotangents = vjp(g[v])
        elif node.kind == "stochastic" and isinstance(a.estimators[v], Pathwise):
            if g.get(v) is None:
                continue
            d = node.fn(*[values[p] for p in node.parents])
            eps = (values[v] - d.loc) / d.scale  # the noise that produced the sample (Normal)

            def reparam(*xs):
                d = node.fn(*xs)
                return d.loc + d.scale * eps

            _, vjp = jax.vjp(_local(node, values, targets, reparam), *primals)
            cotangents = vjp(g[v])
        elif node.kind == "stochastic" and isinstance(a.estimators[v], Score):
            log_p = _local(node, values, targets, lambda *xs: jnp.sum(node.fn(*xs).log_prob(values[v])))
            scores = jax.grad(log_p, argnums=tuple(range(len(targets))))(*primals)
            b = baselines.get(v, 0.0)
            cotangents = []
            for p, s in zip(targets, scores):
                q = q_hat[p] if q_of == "parent" else q_hat[v]
                cotangents.append(jax.tree_util.tree_map(lambda s: s * (q - b), s))
        elif node.kind == "simulate":
            continue  # Condition 1: no gradient reaches a simulator
        else:
            raise NotImplementedError(f"oracle: node {v!r} ({node.kind}, {a.estimators.get(v)!r}) is not supported")
        for p, ct in zip(targets, cotangents):
            _add(g, p, ct)
    return {
        n: g[n] if g.get(n) is not None else jax.tree_util.tree_map(jnp.zeros_like, inputs[n])
        for n in plan.float_inputs
    }


def grad(est, inputs: dict, key: jax.Array, *, num_samples: int = 1, q_of: str = "node") -> dict:
    """Algorithm 4 averaged over the samples that ``est.grad(inputs, key, num_samples=...)`` uses.

    Baselines follow :func:`scg._program.surrogate.baselines`: a node's sampled value, or
    a built-in (e.g. LeaveOneOut) applied to ``Q̂_v`` over the ``num_samples``.
    """
    plan = est._plan(inputs)
    a = plan.analysis
    batch = est.sample(inputs, key, num_samples=num_samples)
    samples = [jax.tree_util.tree_map(lambda x: x[n], batch) for n in range(num_samples)]
    baselines = {}
    for v in a.score_nodes():
        spec = a.nodes[v].baseline
        q = jnp.stack([sum((s[c] for c in a.downstream_costs[v]), jnp.zeros(())) for s in samples])
        if spec is None:
            baselines[v] = jnp.zeros_like(q)
        elif isinstance(spec, str):
            baselines[v] = jnp.reshape(batch[spec], q.shape)
        else:
            baselines[v] = spec(v, q)
    grads = [
        backward(plan, inputs, s, {v: b[n] for v, b in baselines.items()}, q_of=q_of) for n, s in enumerate(samples)
    ]
    return jax.tree_util.tree_map(lambda *gs: sum(gs) / num_samples, *grads)
