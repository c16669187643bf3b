"""The unordered set estimator (scg.estimators.unordered_set, Kool et al. 2020) against exact gradients, by hand and against score + LeaveOneOut.

Two graphs:

- ``bandit``: ``a ~ softmax(θ)`` over K = 5 arms, cost ``3 + F(a)`` (the offset is
  what a baseline must remove);
- ``mixed``: ``x ~ N(μ, 0.5²)`` (pathwise), ``a ~ softmax(θ + x w)`` over 4
  categories (unordered set, k = 3), ``y ~ Bernoulli(σ(φ + 0.7a − 1))`` (score),
  costs ``(x − a/2)²`` and ``2y(a − 1.5)``: ``a``'s downstream costs are
  re-evaluated with ``x`` and the Bernoulli's noise kept.

Exact gradients by enumeration and Gauss-Hermite quadrature (``scg.testing.exact_grad``).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import scg
from scg import dist, gumbel, testing
from scg.errors import GraphError
from scg.estimators.base import NodeContext
from scg.estimators.unordered_set import UnorderedSet, set_log_probs, unordered_set

REPLICATES = 4096
THETA = jnp.array([0.3, -0.5, 0.8, 0.0, -1.2])
F = jnp.array([1.0, -0.5, 0.2, 2.0, -1.0])
W = jnp.array([1.0, -0.5, 0.3, 0.0])
BANDIT = {"theta": THETA}
MIXED = {"mu": jnp.array(0.2), "theta": jnp.array([0.5, -0.3, 0.1, -0.8]), "phi": jnp.array(-0.4)}


def bandit(estimator, baseline=None) -> scg.Graph:
    g = scg.Graph("bandit")
    theta = g.input("theta")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), theta, estimator=estimator, baseline=baseline)
    g.cost("c", lambda a: 3.0 + F[a], a)
    return g


def mixed(estimator, baseline=None) -> scg.Graph:
    g = scg.Graph("mixed")
    mu, theta, phi = g.input("mu"), g.input("theta"), g.input("phi")
    x = g.stochastic("x", lambda m: dist.Normal(m, 0.5), mu, estimator="pathwise")
    a = g.stochastic("a", lambda t, x: dist.Categorical(logits=t + x * W), theta, x, estimator=estimator, baseline=baseline)
    y = g.stochastic("y", lambda p, a: dist.Bernoulli(logits=p + 0.7 * a - 1.0), phi, a, estimator="score")
    g.cost("c1", lambda x, a: (x - 0.5 * a) ** 2, x, a)
    g.cost("c2", lambda y, a: 2.0 * y * (a - 1.5), y, a)
    return g


GRAPHS = {"bandit": (bandit, BANDIT), "mixed": (mixed, MIXED)}


@functools.lru_cache(maxsize=None)
def exact(graph: str):
    build, inputs = GRAPHS[graph]
    return testing.exact_grad(build("score"), inputs)


@functools.lru_cache(maxsize=None)
def draws(graph: str, estimator, num_samples: int = 1, loo: bool = False, seed: int = 0):
    build, inputs = GRAPHS[graph]
    est = scg.compile(build(estimator, scg.baselines.LeaveOneOut() if loo else None))
    return est.grad_samples(inputs, jax.random.key(seed), num_replicates=REPLICATES, num_samples=num_samples)


def total_variance(samples, key="theta") -> float:
    return float(np.sum(np.var(np.asarray(samples[key], np.float64), axis=0)))


# -- unbiasedness ---------------------------------------------------------------------------
@pytest.mark.parametrize("graph,k", [("bandit", 1), ("bandit", 4), ("mixed", 2), ("mixed", 3)])
def test_unbiased(graph, k):
    """z-test of every input's gradient against the exact one (5 sigma, Bonferroni)."""
    testing.assert_unbiased(draws(graph, unordered_set(k)), exact(graph))


class NoLeaveOneOut(UnorderedSet):
    """Bug: the baseline is the set's own estimate ``Σ_{s'} p(s') R(S, s') f(s')``, which contains ``f(s)``."""

    def coefficients(self, log_p, subset, f):
        w = jnp.exp(set_log_probs(log_p, subset)[0])
        return w * (f - jnp.sum(w * f))


class ProbInsteadOfR(UnorderedSet):
    """Bug: ``Σ_{s∈S} ∇p(s) (f(s) − B(S, s))``, the weight ``p(s) R(S, s)`` replaced by ``p(s)`` (R dropped)."""

    def coefficients(self, log_p, subset, f):
        w = jnp.exp(set_log_probs(log_p, subset)[0])
        return jnp.exp(log_p[subset]) * super().coefficients(log_p, subset, f) / w


@pytest.mark.parametrize("graph,wrong", [("bandit", NoLeaveOneOut(3)), ("bandit", ProbInsteadOfR(3)), ("mixed", NoLeaveOneOut(3)),
                                         ("mixed", ProbInsteadOfR(3))])
def test_wrong_variants_fail(graph, wrong):
    testing.assert_biased(draws(graph, wrong), exact(graph))


# -- one sample by hand -----------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=1)
def literal_gradient(theta, subset: tuple, f):
    """Eq. 10 written out with masked distributions: ``Σ_s ∇p(s) R(S,s) (f(s) − Σ_{s'} p(s') R^{D∖s}(S,s') f(s'))``."""
    log_p = jax.nn.log_softmax(theta)

    def lp_set(excluded, members):  # log p^{D∖excluded}(members), unordered
        return gumbel.log_prob_unordered(log_p.at[jnp.array(excluded, int)].set(-jnp.inf), jnp.array(members, int))

    s_list = list(subset)
    coef = []
    for i, s in enumerate(s_list):
        rest = [t for t in s_list if t != s]
        r = jnp.exp(lp_set([s], rest) - lp_set([], s_list))
        b = 0.0
        for j, t in enumerate(s_list):
            r2 = 1.0 if t == s else jnp.exp(lp_set([s, t], [u for u in rest if u != t]) - lp_set([s], rest))
            b = b + jnp.exp(log_p[t]) * r2 * f[j]
        coef.append(r * (f[i] - b))
    dp = jax.jacobian(jax.nn.softmax)(theta)[jnp.array(s_list)]  # [k, K]: ∇p(s) per element of S
    return jnp.asarray(coef) @ dp


@pytest.mark.parametrize("k", [1, 3])
def test_one_sample_matches_the_paper_formula(k):
    est, key = unordered_set(k), jax.random.key(11)
    value = est.sample(dist.Categorical(logits=THETA), key)
    downstream = lambda a: 3.0 + F[a]  # noqa: E731
    ctx = lambda t: NodeContext("a", dist.Categorical(logits=t), value, key, downstream, None)  # noqa: E731
    weight, _ = est.terms(ctx(THETA))
    grad = jax.jit(jax.grad(lambda t: est.terms(ctx(t))[1]))(THETA)
    subset = est.draw_set(dist.Categorical(logits=THETA), key, value)
    assert subset[0] == value and len(set(np.asarray(subset).tolist())) == k
    if k == 1:  # no baseline: the score function f(a) ∇log p(a); Eq. 10 read literally would subtract p(a) f(a), biased
        expected = (3.0 + F[value]) * jax.grad(lambda t: jax.nn.log_softmax(t)[value])(THETA)
    else:
        expected = literal_gradient(THETA, tuple(np.asarray(subset).tolist()), 3.0 + F[subset])
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
    assert weight == 0.0


def test_value_is_a_sample_of_p_and_observed_values_complete_the_set():
    """The node's value (the set's first element) follows softmax(θ) (chi-square); an observed value is kept first."""
    est = scg.compile(bandit(unordered_set(3)))
    values = np.asarray(est.sample(BANDIT, jax.random.key(5), num_samples=20_000)["a"])
    p = np.exp(np.asarray(THETA, np.float64) - np.log(np.sum(np.exp(np.asarray(THETA, np.float64)))))
    assert stats.chisquare(np.bincount(values, minlength=5), 20_000 * p).pvalue > 1e-4
    subset = unordered_set(3).draw_set(dist.Categorical(logits=THETA), jax.random.key(0), jnp.int32(4))
    assert int(subset[0]) == 4 and len(set(np.asarray(subset).tolist())) == 3
    grad = est.grad(BANDIT, jax.random.key(1), num_samples=2, observed={"a": jnp.array([4, 1], jnp.int32)})
    assert bool(jnp.all(jnp.isfinite(grad["theta"])))


# -- variance -----------------------------------------------------------------------------------
def test_variance_against_score_with_leave_one_out():
    """At k evaluations of the downstream costs: one set of k vs k independent score samples with LeaveOneOut.

    Measured total variance ratio of θ's gradient (score+LOO / unordered set, 4096 replicates, seed 0):
    bandit, k = 4 of K = 5: 5.8x; mixed, k = 3 of 4: 2.2x (and at k = 2: 1.4x and 1.6x, measured once).
    """
    ratios = {}
    for graph, k in (("bandit", 4), ("mixed", 3)):
        ratios[graph] = total_variance(draws(graph, "score", k, loo=True)) / total_variance(draws(graph, unordered_set(k)))
    assert ratios["bandit"] > 3 and ratios["mixed"] > 1.5, ratios


def test_k_equal_to_K_is_the_exact_sum():
    """k = K: ``S = D``, ``R = 1``, ``B = E[f]``: every replicate is the exact gradient (no variance from the node)."""
    samples = draws("bandit", unordered_set(5))
    np.testing.assert_allclose(np.asarray(samples["theta"]), np.broadcast_to(exact("bandit")["theta"], (REPLICATES, 5)), atol=1e-5)
    assert total_variance(samples) < 1e-9


# -- errors --------------------------------------------------------------------------------------
def test_rejects_vector_and_non_categorical_nodes_and_too_large_k():
    def grad(fn, value, est):
        g = scg.Graph()
        t = g.input("t")
        z = g.stochastic("z", fn, t, estimator=est)
        g.cost("c", lambda z: jnp.sum(z * 1.0), z)
        return scg.compile(g).grad({"t": value}, jax.random.key(0))

    with pytest.raises(GraphError, match="'z'.*unordered_set.*scalar categorical.*shape \\(2,\\)"):
        grad(lambda t: dist.Categorical(logits=t), jnp.zeros((2, 4)), unordered_set(2))
    with pytest.raises(GraphError, match="'z'.*unordered_set.*Bernoulli"):
        grad(lambda t: dist.Bernoulli(logits=t), jnp.zeros(()), unordered_set(2))
    with pytest.raises(GraphError, match="'z'.*k = 4 distinct categories.*only 3"):
        grad(lambda t: dist.Categorical(logits=t), jnp.zeros(3), unordered_set(4))


@pytest.mark.parametrize("k", [0, 7, 2.0, True])
def test_rejects_bad_k(k):
    with pytest.raises(GraphError, match=r"k must be an int in \[1, 6\]"):
        unordered_set(k)
