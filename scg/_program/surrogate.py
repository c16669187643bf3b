"""Emitting the surrogate loss from a batch of samples (Schulman 2016, Corollary 1).

Three forms, all averaging over the batch of independent samples:

- ``surrogate``: ``L = Σ_w log p(ŵ|DEPS_w) · (Q̂_w - b_w) + Σ_c c`` (Corollary 1
  with the baselines of Theorem 2); its gradient is the estimator.
- ``ratio``: ``Σ_w p(ŵ|DEPS_w)/p̂_w · (Q̂_w - b_w) + Σ_c c``, the importance-ratio
  form (§5.3.2) with ``ŵ`` and ``p̂_w`` from the sampling parameters, as TRPO needs.
- ``dice``: ``Σ_c c · □(Σ_{w≺c} log p(ŵ)) + Σ_w (1 - □(log p(ŵ))) b_w``, the
  magic-box objective (Foerster et al. 2018; baseline term of Mao et al. 2019)
  whose derivatives of every order are unbiased. Differentiating the plain
  surrogate twice is not (§5.3.3 gives the Hessian-vector product idea; the
  plain form drops the cross terms between score functions).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scg._program.analysis import Analysis
from scg._program.state import has_baseline_state
from scg.estimators.base import magic_box
from scg._program.forward import SampleTerms


def _sum_costs(values: dict, costs) -> jax.Array:
    return sum((values[c] for c in costs), jnp.zeros(()))


def batch_mean(x: jax.Array) -> jax.Array:
    """Mean over the leading (sample) axis, sum over the others (time steps, in a temporal graph)."""
    x = jnp.asarray(x)
    return jnp.sum(x) / x.shape[0] if x.ndim else x


def baselines(analysis: Analysis, terms: SampleTerms, q_hat: dict, states: dict | None = None) -> dict:
    """``b_w`` per score node, shaped like the batch (zeros where none).

    A stateful baseline (:func:`scg._program.state.has_baseline_state`) reads its state from
    ``states``, or its initial state where ``states`` has none.
    """
    out = {}
    for w in terms.score_weights:
        spec = analysis.nodes[w].baseline
        if spec is None:
            out[w] = jnp.zeros_like(q_hat[w])
        elif isinstance(spec, str):
            out[w] = jax.lax.stop_gradient(terms.values[spec]).reshape(q_hat[w].shape)
        elif has_baseline_state(spec):
            state = (states or {}).get(w)
            state = spec.init_state(w, q_hat[w].shape[1:]) if state is None else state
            out[w] = jax.lax.stop_gradient(spec(w, q_hat[w], state))
        else:
            out[w] = jax.lax.stop_gradient(spec(w, q_hat[w]))
    return out


def q_hats(analysis: Analysis, values: dict) -> dict:
    """``Q̂_w`` (no gradient) per score node, over the batch.

    When every node's downstream costs are a tail of one sequence (a trajectory's
    reward-to-go) they are one reversed cumulative sum; otherwise sums are
    accumulated from the last cost backwards and shared between nodes whose
    downstream costs end alike (a trie keyed by cost). Either way the trace grows
    with the number of costs, not with (score nodes × costs).
    """
    ws = analysis.score_nodes()
    downs = [analysis.downstream_costs[w] for w in ws]
    longest = max(downs, key=len, default=())
    if len(longest) > 1 and all(d == longest[len(longest) - len(d):] for d in downs):
        stacked = jnp.stack(jnp.broadcast_arrays(*(values[c] for c in longest)), -1) + jnp.zeros(())
        to_go = jnp.flip(jnp.cumsum(jnp.flip(stacked, -1), -1), -1)
        return {w: jax.lax.stop_gradient(to_go[..., len(longest) - len(d)] if d else jnp.zeros(())) for w, d in zip(ws, downs)}
    trie: dict = {}
    out = {}
    for w in ws:
        node, tail = trie, jnp.zeros(())
        for c in reversed(analysis.downstream_costs[w]):
            if c not in node:
                node[c] = (values[c] + tail, {})
            tail, node = node[c]
        out[w] = jax.lax.stop_gradient(tail)
    return out


def emit(analysis: Analysis, terms: SampleTerms, *, q_hat: dict | None = None, states: dict | None = None) -> jax.Array:
    """Corollary 1 (or the ratio form, when ``terms.score_weights`` hold ratios) over a batch.

    Arrays have a leading sample axis (averaged) and, in temporal graphs, a
    time axis (summed); ``q_hat`` overrides the per-node ``Q̂_w``; ``states``
    holds the stateful baselines' states (:func:`baselines`).
    """
    return sum(emit_parts(analysis, terms, q_hat=q_hat, states=states).values(), jnp.zeros(()))


def emit_parts(analysis: Analysis, terms: SampleTerms, *, q_hat: dict | None = None, states: dict | None = None) -> dict:
    """The surrogate of :func:`emit` split by where its gradient comes from: ``"costs"`` (the costs and
    losses, whose gradient is the pathwise part) and one entry per stochastic node (its score term
    ``weight · (Q̂ − b)`` plus its estimator's extra term). They sum to the surrogate."""
    q_hat = q_hats(analysis, terms.values) if q_hat is None else q_hat
    b = baselines(analysis, terms, q_hat, states)
    parts = {"costs": batch_mean(_sum_costs(terms.values, analysis.costs + analysis.losses))}
    for w, more in terms.extra.items():
        parts[w] = batch_mean(more)
    for w, weight in terms.score_weights.items():
        parts[w] = parts.get(w, jnp.zeros(())) + batch_mean(weight * (q_hat[w] - b[w]))
    return parts


def emit_dice(analysis: Analysis, terms: SampleTerms, *, states: dict | None = None) -> jax.Array:
    """The magic-box objective over a batch: correct derivatives of any order."""
    q_hat = q_hats(analysis, terms.values)
    b = baselines(analysis, terms, q_hat, states)
    total = batch_mean(_sum_costs(terms.values, analysis.losses))
    for c in analysis.costs:
        upstream = [w for w in terms.log_probs if c in analysis.downstream_costs[w]]
        logp = sum((terms.log_probs[w] for w in upstream), jnp.zeros_like(terms.values[c]))
        total = total + jnp.mean(terms.values[c] * magic_box(logp))
    for w, logp in terms.log_probs.items():
        total = total + jnp.mean((1.0 - magic_box(logp)) * b[w])
    return total
