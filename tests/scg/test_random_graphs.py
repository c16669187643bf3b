"""Unbiasedness on random graphs (Schulman 2016, Theorem 1, Corollary 1, Theorem 2).

On seeded random graphs (:mod:`scg.testing.random_graphs`: Bernoulli, Categorical,
pathwise and score Normal nodes, smooth deterministic nodes, node and
leave-one-out baselines) the mean of independent one-call estimates must
match ``testing.exact_grad`` (enumeration and Gauss-Hermite quadrature, in
float64) in a z-test; and an estimator that drops every score-function term
must fail the same test on graphs whose gradient flows through a score node.

The estimates are ``est.grad_samples`` draws. To keep the file fast they are
computed as ``lax.map`` of the public pure ``est.grad_fn`` over the same split
keys, compiled with XLA's cheap settings (``quick_call``); the first test checks
that this gives exactly ``est.grad_samples``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import testing
from scg.estimators import Score
from scg.testing.random_graphs import quick_call, random_graph, replace_estimators

N = 40 * 1024  # replicates per graph, a multiple of the lax.map batch (a remainder would compile the body twice)
SEEDS = range(100, 120)
SCORE_SEEDS = (0, 1, 2)


def grad_samples(est, inputs, key, *, num_replicates, num_samples):
    """``est.grad_samples`` (same keys, same draws), compiled with ``quick_call``."""
    fn = est.grad_fn(inputs, num_samples=num_samples)
    keys = jax.random.split(key, num_replicates)
    return quick_call(lambda x, ks: jax.lax.map(lambda k: fn(x, k), ks, batch_size=1024), inputs, keys)


def exact_grad(seed, **kw):
    """``∇E[Σ costs]`` in float64 (the same graph, rebuilt under ``enable_x64``)."""
    with jax.enable_x64():
        rg = random_graph(seed, **kw)
        return quick_call(lambda x: testing.exact_grad(rg.graph, x, quadrature=rg.quadrature), rg.jax_inputs())


class NoScore(Score):
    """Deliberately wrong: a score-function node whose term ``log p(ŵ)(Q̂_w - b_w)`` is dropped."""

    def terms(self, ctx):
        return jnp.zeros(()), jnp.zeros(())


def test_quick_draws_are_grad_samples():
    rg = random_graph(SEEDS[0])
    est = scg.compile(rg.graph)
    x, key = rg.jax_inputs(), jax.random.key(3)
    want = est.grad_samples(x, key, num_replicates=64, num_samples=rg.num_samples)
    got = grad_samples(est, x, key, num_replicates=64, num_samples=rg.num_samples)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_unbiased_on_random_graph(seed):
    rg = random_graph(seed)
    est = scg.compile(rg.graph)
    draws = grad_samples(est, rg.jax_inputs(), jax.random.key(seed), num_replicates=N, num_samples=rg.num_samples)
    testing.assert_unbiased(draws, exact_grad(seed))


@pytest.mark.parametrize("seed", SCORE_SEEDS)
def test_dropping_score_terms_is_detected(seed):
    """Graphs whose first node is a strong score-function node feeding a cost: without its term, bias."""
    rg = random_graph(seed, score_path=True)
    score_nodes = [n.name for n in rg.graph.nodes if n.kind == "stochastic" and n.estimator == scg.estimators.score()]
    wrong = scg.compile(replace_estimators(rg.graph, {n: NoScore() for n in score_nodes}))
    right = scg.compile(rg.graph)
    exact = exact_grad(seed, score_path=True)
    x, key = rg.jax_inputs(), jax.random.key(seed)
    testing.assert_unbiased(grad_samples(right, x, key, num_replicates=N, num_samples=rg.num_samples), exact)
    testing.assert_biased(grad_samples(wrong, x, key, num_replicates=N, num_samples=rg.num_samples), exact)
