"""Where an estimator's variance comes from: a per-node report, to choose estimators node by node.

The surrogate is a sum of parts (:func:`scg._program.surrogate.emit_parts`):
``"costs"`` (the costs and losses themselves, whose gradient is the pathwise
part) and one part per stochastic node (its score term ``log p(ŵ)·(Q̂_w − b_w)``
plus its estimator's extra term). The gradient estimate is the sum of the
parts' gradients, so over independent replicates

    tr Var[ĝ] = Σ_parts tr Var[ĝ_part] + Σ_{part ≠ part'} tr Cov[ĝ_part, ĝ_part']

and the report gives each part's ``tr Var`` (summed over the gradient's
components), its share of the total, and the covariance remainder. A node
with a large share is where a better estimator (a baseline, enumeration, a
control variate) pays. A pathwise node adds no term of its own (its variance
is in ``"costs"``), and a part whose gradient is zero in every replicate is
left out.

Example:
    >>> import jax, scg
    >>> from scg import dist, testing
    >>> g = scg.Graph(); t = g.input("t")
    >>> x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t)
    >>> y = g.stochastic("y", lambda t: dist.Normal(t, 1.0), t)
    >>> _ = g.cost("c", lambda x, y: (x + y) ** 2, x, y)
    >>> report = testing.variance_report(scg.compile(g), {"t": 0.5}, jax.random.key(0), num_replicates=2000)
    >>> sorted(report.parts)
    ['costs', 'x']
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import numpy as np

from scg._program import state as state_lib
from scg._program import surrogate as surrogate_lib
from scg._program.plan import check_num, check_wrt
from scg._program.temporal import divisor_at_most


class VarianceReport(NamedTuple):
    """``tr Var`` of the whole estimate and of each part's gradient, over ``num_replicates`` estimates."""

    total: float
    parts: dict  # "costs" or a stochastic node's name -> tr Var of that part's gradient
    covariance: float  # total - Σ parts: the cross terms
    num_replicates: int

    @property
    def shares(self) -> dict:
        """Each part's ``tr Var`` as a fraction of the total."""
        return {k: v / self.total if self.total > 0 else 0.0 for k, v in self.parts.items()}

    def __str__(self) -> str:
        rows = [f"tr Var of the gradient over {self.num_replicates} replicates: {self.total:.4g}"]
        for name, v in sorted(self.parts.items(), key=lambda kv: -kv[1]):
            rows.append(f"  {name:>16}: {v:.4g} ({100 * self.shares[name]:.1f}%)")
        rows.append(f"  {'covariances':>16}: {self.covariance:.4g}")
        return "\n".join(rows)


def variance_report(compiled, inputs: dict, key: jax.Array, *, num_replicates: int = 1000, num_samples: int = 1,
                    wrt=None, state=None) -> VarianceReport:
    """Split the variance of ``compiled.grad(inputs, key, num_samples=)`` by node (module docs).

    Args:
        compiled: a :class:`scg.CompiledGraph` (flat or temporal; ``mode="surrogate"``).
        num_replicates: independent estimates, each from ``num_samples`` samples.
        wrt, state: as in :meth:`scg.CompiledGraph.grad`.
    """
    plan = compiled._plan(inputs)
    wrt, n, reps = check_wrt(plan, wrt), check_num(num_samples), check_num(num_replicates)
    if state is None:
        state = compiled.init_state(inputs)
    grads = jax.jit(partial(_part_grads, plan, wrt, n, reps))(inputs, key, state)
    # A part whose gradient is zero in every replicate (a pathwise node: its variance is in "costs") is left out.
    per_part = {p: _trace_var(g) for p, g in grads.items() if p == "costs" or _nonzero(g)}
    total_draws = jax.tree_util.tree_map(lambda *xs: sum(xs), *grads.values())
    total = _trace_var(total_draws)
    return VarianceReport(total, per_part, total - sum(per_part.values()), reps)


def _part_grads(plan, wrt, num_samples, num_replicates, inputs, key, state):
    program = plan.program

    def parts(d, k):
        terms = program.batch_terms(
            {**inputs, **d}, k, num_samples, states=state_lib.estimator_states(state)
        )
        return surrogate_lib.emit_parts(
            plan.analysis, terms, q_hat=program.q_hats(terms.values), states=state_lib.baseline_states(state)
        )

    diff = {n: inputs[n] for n in wrt}
    one = lambda k: jax.jacrev(parts)(diff, k)  # noqa: E731
    return jax.lax.map(one, jax.random.split(key, num_replicates), batch_size=divisor_at_most(num_replicates, 1024))


def _nonzero(draws) -> bool:
    return any(bool(np.any(np.asarray(x) != 0)) for x in jax.tree_util.tree_leaves(draws))


def _trace_var(draws) -> float:
    leaves = [np.asarray(x, np.float64).reshape(np.shape(x)[0], -1) for x in jax.tree_util.tree_leaves(draws)]
    return float(sum(np.var(x, axis=0, ddof=1).sum() for x in leaves))
