"""scg.gumbel against closed forms: truncated Gumbels, Gumbel-max, Gumbel-top-k and the probabilities of samples without replacement.

Distributional checks are Kolmogorov-Smirnov tests (scipy.stats.kstest) against
exact CDFs and chi-square tests (scipy.stats.chisquare) of frequencies against
exact probabilities, with fixed seeds, each rejecting at p < 1e-4 (so a correct
sampler fails about once in 10⁴ seeds, a wrong one for sure at these sizes).
"""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from scg import gumbel

ALPHA = 1e-4
N = 40_000


def softmax64(logits) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def sequential_prob(p: np.ndarray, order) -> float:
    """``p(i₁) p(i₂)/(1 − p(i₁)) ...``: the probability of an ordered draw without replacement, by hand (float64)."""
    prob, left = 1.0, 1.0
    for i in order:
        prob *= p[i] / left
        left -= p[i]
    return prob


# -- truncated Gumbels --------------------------------------------------------------------
CASES = [  # (location, bound): truncation far below, near, above and far above the location
    (0.0, -30.0), (0.0, -3.0), (1.5, 1.0), (0.0, 0.0), (-2.0, 1.0), (0.0, 40.0), (25.0, -25.0), (-1e3, 1e3),
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16])
def test_truncated_never_exceeds_the_bound(dtype):
    """Many draws per (location, bound), including bounds 30-1000 away on either side and the float16/32 limits."""
    limit = float(jnp.finfo(dtype).max)
    cases = CASES + [(0.0, limit), (limit / 2, -limit / 2), (-limit / 2, limit / 2), (0.0, float(jnp.finfo(dtype).tiny))]
    loc = jnp.asarray([c[0] for c in cases], dtype)[:, None]
    bound = jnp.asarray([c[1] for c in cases], dtype)[:, None]
    x = gumbel.truncated_gumbel(jax.random.key(0), jnp.broadcast_to(loc, (len(cases), N)), bound)
    assert x.dtype == dtype
    assert bool(jnp.all(x <= bound)), np.asarray(jnp.max(x - bound, axis=1))
    assert bool(jnp.all(jnp.isfinite(x)))


def test_truncated_infinite_arguments():
    key = jax.random.key(1)
    free = gumbel.truncated_gumbel(key, jnp.zeros(5), jnp.inf)
    np.testing.assert_array_equal(free, gumbel.gumbel(key, jnp.zeros(5)))  # no truncation: the Gumbel itself
    assert bool(jnp.all(gumbel.truncated_gumbel(key, -jnp.inf, jnp.zeros(5)) == -jnp.inf))  # a masked category
    assert bool(jnp.all(gumbel.truncated_gumbel(key, jnp.zeros(5), -jnp.inf) == -jnp.inf))


def truncated_cdf(x, loc, bound):
    """``exp(−e^{−(x−μ)}) / exp(−e^{−(b−μ)})`` for ``x ≤ b`` (1 above), in log space for far-below bounds."""
    x = np.minimum(np.asarray(x, np.float64), bound)
    return np.exp(-np.exp(-(x - loc)) + np.exp(-(bound - loc)))


@pytest.mark.parametrize("loc,bound", [(0.0, -3.0), (1.5, 1.0), (0.0, 0.0), (-2.0, 1.0), (0.3, 6.0)])
def test_truncated_matches_the_truncated_cdf(loc, bound):
    """KS test of ``truncated_gumbel`` against the CDF of a Gumbel(μ) conditioned on ``≤ b``."""
    x = np.asarray(gumbel.truncated_gumbel(jax.random.key(2), jnp.full(N, loc, jnp.float32), bound), np.float64)
    result = stats.kstest(x, lambda v: truncated_cdf(v, loc, bound))
    assert result.pvalue > ALPHA, result


def test_wrong_truncation_is_rejected():
    """The KS test has power: clipping a Gumbel at the bound (a plausible bug) is not the conditional law."""
    x = np.minimum(np.asarray(gumbel.gumbel(jax.random.key(3), jnp.zeros(N)), np.float64), 1.0)
    assert stats.kstest(x, lambda v: truncated_cdf(v, 0.0, 1.0)).pvalue < ALPHA


# -- Gumbel-max ---------------------------------------------------------------------------
MU = np.array([0.5, -1.0, 2.0, 0.0, -0.3])


def test_max_is_gumbel_of_logsumexp_and_argmax_is_softmax():
    """``max_i (μ_i + G_i) ~ Gumbel(logsumexp μ)`` (KS) and ``argmax ~ softmax(μ)`` (chi-square)."""
    g = gumbel.gumbel(jax.random.key(4), jnp.asarray(MU, jnp.float32), (N, MU.size))
    top = np.asarray(jnp.max(g, axis=1), np.float64)
    ks = stats.kstest(top, stats.gumbel_r(loc=float(jax.nn.logsumexp(MU))).cdf)
    assert ks.pvalue > ALPHA, ks
    counts = np.bincount(np.asarray(jnp.argmax(g, axis=1)), minlength=MU.size)
    chi = stats.chisquare(counts, N * softmax64(MU))
    assert chi.pvalue > ALPHA, chi
    assert stats.kstest(top, stats.gumbel_r(loc=float(np.max(MU))).cdf).pvalue < ALPHA  # the max location is wrong


# -- Gumbel-top-k and the probabilities of its samples -------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_top_k_frequencies_match_sequential_sampling(k):
    """Chi-square over all ordered k-tuples of K = 4: frequencies of ``gumbel_top_k`` vs ``p(i₁) p(i₂)/(1−p(i₁)) ...``."""
    logits = jnp.asarray([0.4, -0.6, 1.1, 0.0], jnp.float32)
    p = softmax64(logits)
    keys = jax.random.split(jax.random.key(5 + k), N)
    idx, values = jax.jit(jax.vmap(lambda key: gumbel.gumbel_top_k(key, logits, k)))(keys)
    assert idx.shape == (N, k) and idx.dtype == jnp.int32
    assert bool(jnp.all(values[:, :-1] >= values[:, 1:]))  # decreasing perturbed values
    tuples = list(itertools.permutations(range(4), k))
    codes = np.asarray(idx) @ (4 ** np.arange(k)[::-1])
    counts = np.array([np.sum(codes == np.dot(t, 4 ** np.arange(k)[::-1])) for t in tuples])
    assert counts.sum() == N  # every draw is k distinct categories
    expected = N * np.array([sequential_prob(p, t) for t in tuples])
    chi = stats.chisquare(counts, expected)
    assert chi.pvalue > ALPHA, chi


def test_log_prob_ordered_is_the_sequential_probability():
    logits = jnp.asarray([0.4, -0.6, 1.1, 0.0, -2.0])
    p = softmax64(logits)
    for order in [(2,), (0, 3), (4, 1, 2), (1, 2, 3, 4, 0)]:
        np.testing.assert_allclose(gumbel.log_prob_ordered(logits, jnp.array(order)), math.log(sequential_prob(p, order)), rtol=1e-5)
    shifted = gumbel.log_prob_ordered(logits + 7.0, jnp.array([4, 1, 2]))  # unnormalised logits are fine
    np.testing.assert_allclose(shifted, gumbel.log_prob_ordered(logits, jnp.array([4, 1, 2])), rtol=1e-5)


def test_log_prob_ordered_is_stable_when_the_first_draw_takes_all_the_mass():
    """``p = (1 − 2ε, ε, ε)``, ε ≈ 1e-13: after drawing 0, category 1 has probability exactly ½ (``log(1 − Σp)`` loses it in float32)."""
    logits = jnp.array([0.0, -30.0, -30.0], jnp.float32)
    np.testing.assert_allclose(gumbel.log_prob_ordered(logits, jnp.array([0, 1])), -math.log(2.0), rtol=1e-6)
    grad = jax.grad(lambda t: gumbel.log_prob_unordered(t, jnp.array([0, 1, 2])))(logits)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)  # the full set has probability 1 whatever the logits


@pytest.mark.parametrize("num,k", [(5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (7, 6)])
def test_log_prob_unordered_sums_to_one_over_all_subsets(num, k):
    logits = jnp.asarray(np.linspace(-1.0, 1.3, num) ** 2 - 0.5, jnp.float32)
    subsets = jnp.asarray(list(itertools.combinations(range(num), k)), jnp.int32)
    total = jnp.sum(jnp.exp(jax.jit(jax.vmap(lambda s: gumbel.log_prob_unordered(logits, s)))(subsets)))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_unordered_limits():
    with pytest.raises(ValueError, match="k <= 6"):
        gumbel.log_prob_unordered(jnp.zeros(8), jnp.arange(7))
    with pytest.raises(ValueError, match="k must be an int"):
        gumbel.gumbel_top_k(jax.random.key(0), jnp.zeros(3), 4)
    with pytest.raises(ValueError, match=r"logits \[K\]"):
        gumbel.log_prob_ordered(jnp.zeros((2, 3)), jnp.arange(2))


def test_gumbel_shapes_and_keys():
    key = jax.random.key(9)
    assert gumbel.gumbel(key, 0.0, (3, 2)).shape == (3, 2)
    assert gumbel.gumbel(key, jnp.zeros(4, jnp.float16)).dtype == jnp.float16
    np.testing.assert_array_equal(gumbel.gumbel(key, jnp.ones(4)), gumbel.gumbel(key, jnp.ones(4)))  # same key, same draw
    assert gumbel.gumbel(key, -jnp.inf, (2,)).tolist() == [-np.inf, -np.inf]
