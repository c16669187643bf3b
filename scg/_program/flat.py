"""How a checked graph turns a batch of samples into a surrogate: the flat (untimed) case.

A *program* is what a plan runs. :class:`FlatProgram` evaluates a graph once
per sample (``vmap`` over ``num_samples``); :class:`scg._program.temporal.TemporalProgram`
evaluates one time step per ``lax.scan`` iteration. Both offer the same
methods, so every compiled kernel (``grad``, ``surrogate``, ``ratio_surrogate``,
``hvp``, ...) is written once, in :mod:`scg.compiler`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg._program import surrogate as surrogate_lib
from scg._program.analysis import Analysis
from scg.errors import GraphError
from scg._program.forward import SampleTerms, evaluate, sample_terms


class Replay(NamedTuple):
    """A graph re-evaluated at recorded values (:meth:`scg.CompiledGraph.replay`), all with the record's batch axes."""

    values: dict  # every node's value (gradients flow from the inputs)
    dists: dict  # stochastic node -> its distribution at the current inputs
    log_probs: dict  # stochastic node -> log p(recorded value | parents), summed over the node's elements


class FlatProgram:
    """One evaluation of the graph per sample; Corollary 1 over the batch."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self.score_nodes = analysis.score_nodes()
        if type(self) is FlatProgram:
            for n in analysis.losses:
                if analysis.nodes[n].spec.target == "return":
                    raise GraphError(f"loss {n!r}: target='return' needs time steps; use it inside scg.Temporal")
            for n in analysis.stochastic:
                if analysis.nodes[n].kind == "stochastic" and analysis.nodes[n].spec.advantage is not None:
                    raise GraphError(f"node {n!r}: advantage= (GAE) needs time steps; use it inside scg.Temporal")

    def drawn_nodes(self) -> tuple[str, ...]:
        """Nodes whose values are draws without a gradient path (score-like and simulated): observable, fixable."""
        a = self.analysis
        return tuple(n for n in a.stochastic if not a.passes_gradient(n))

    def observable_nodes(self) -> tuple[str, ...]:
        """Drawn nodes, and pathwise nodes (their noise is inferred from the record: ``Estimator.observe``)."""
        a = self.analysis
        return tuple(n for n in a.stochastic if not a.passes_gradient(n) or a.estimators[n].observable)

    def check_observed(self, observed: dict | None) -> None:
        if not observed:
            return
        allowed = self.observable_nodes()
        for name in observed:
            if name not in allowed:
                raise GraphError(
                    f"observed names {name!r}, which is not a node that can take a recorded value "
                    f"(observable nodes: {list(allowed)}): drawn (score-function, simulated) and pathwise nodes"
                )

    q_shape: tuple = ()  # the shape of one sample's Q̂_w (a temporal graph's is [T])

    def batch_terms(self, inputs, key, num_samples, *, fixed=None, logp_old=None, states=None,
                    differentiated=True) -> SampleTerms:
        """``states``: per node, its estimator's state for this call (the same for every sample);
        ``differentiated`` (whether the caller takes a gradient) changes nothing for a flat graph."""
        keys = jax.random.split(key, num_samples)
        fn = lambda k, f, lo: sample_terms(self.analysis, inputs, k, fixed=f, logp_old=lo, states=states)
        return jax.vmap(fn)(keys, fixed, logp_old)

    def sample_values(self, inputs, key, num_samples, *, fixed=None) -> dict:
        run = lambda k, f: jax.lax.stop_gradient(evaluate(self.analysis, inputs, k, fixed=f)[0])
        if num_samples is None:
            return run(key, fixed)
        return jax.vmap(run)(jax.random.split(key, num_samples), fixed)

    def replayed_inputs(self) -> tuple[str, ...]:
        """Inputs whose values differ per recorded position (a temporal graph's carried inputs)."""
        return ()

    def replay(self, inputs: dict, values: dict, key: jax.Array, batch_ndim: int) -> "Replay":
        """Evaluate the graph once per recorded position, with every drawn node at its recorded value.

        ``values`` carries ``batch_ndim`` leading axes (samples, or samples and
        steps, or any flattening of them). Positions are independent given the
        record, so they are evaluated side by side (``vmap``), with no scan.
        """
        a = self.analysis
        recorded = {n: values[n] for n in (*self.drawn_nodes(), *self.replayed_inputs())}
        leaves = jax.tree_util.tree_leaves(recorded)
        prefix = leaves[0].shape[:batch_ndim]
        flat = jax.tree_util.tree_map(lambda x: x.reshape((-1, *x.shape[batch_ndim:])), recorded)
        static = {n: v for n, v in inputs.items() if n not in recorded}
        drawn = set(self.drawn_nodes())

        def one(rec, k):
            fixed = {n: v for n, v in rec.items() if n in drawn}
            vals, dists = evaluate(a, {**static, **{n: v for n, v in rec.items() if n not in drawn}}, k, fixed=fixed)
            logps = {w: jnp.sum(d.log_prob(vals[w])) for w, d in dists.items() if a.nodes[w].kind == "stochastic"}
            return Replay({n: vals[n] for n in a.order if n not in static}, dists, logps)

        out = jax.vmap(one)(flat, jax.random.split(key, math.prod(prefix)))
        return jax.tree_util.tree_map(lambda x: x.reshape((*prefix, *x.shape[1:])), out)

    def total_cost(self, values: dict) -> jax.Array:
        """``Σ_c c`` per sample."""
        return sum((values[c] for c in self.analysis.costs), jnp.zeros(()))

    def cost_to_go(self, values: dict) -> jax.Array:
        """A flat graph is one step: its cost to go is the total cost of the sample."""
        return self.total_cost(values)

    def q_hats(self, values: dict) -> dict:
        return surrogate_lib.q_hats(self.analysis, values)

    def advantages(self, values: dict, states: dict | None = None) -> dict:
        """``Q̂_w - b_w`` per score node (no gradient): what multiplies ``∇log p(ŵ)``."""
        q_hat = self.q_hats(values)
        terms = SampleTerms(values, dict.fromkeys(self.score_nodes), {}, {})
        b = surrogate_lib.baselines(self.analysis, terms, q_hat, states)
        return {w: jax.lax.stop_gradient(q_hat[w] - b[w]) for w in self.score_nodes}

    def emit(self, terms: SampleTerms, mode: str, *, q_hat: dict | None = None, states: dict | None = None) -> jax.Array:
        """The surrogate (``mode="surrogate"``) or magic-box objective (``"dice"``); ``states``: the baselines'."""
        if mode == "dice":
            return surrogate_lib.emit_dice(self.analysis, terms, states=states)
        return surrogate_lib.emit(self.analysis, terms, q_hat=q_hat, states=states)
