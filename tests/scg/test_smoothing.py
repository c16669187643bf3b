"""Gaussian smoothing (Smoothie, Nachum et al. 2018) against closed forms.

Setting: ``a ~ N(μ, σ²)`` (scalar, and 2-dimensional with diagonal covariance)
and a Gaussian bump ``Q(a) = exp(-(a - c)² / (2w²))``. Its smoothed value (Eq. 9)

    Q̃(μ; σ²) = E_{ã~N(μ,σ²)}[Q(ã)] = w / sqrt(w² + σ²) · exp(-(μ - c)² / (2(w² + σ²)))

(a product over dimensions in 2-d) is in closed form. As in the paper, the
graph's cost is ``Q̃`` written as a function of the node's value (the mean
action ``a = μ``) at a fixed ``σ²``: the critic ``Q̃(s, a)`` does not take ``Σ``
as an argument.

Theorem 1 (Eq. 14) says ``∂Q̃(a)/∂Σ = ½ ∂²Q̃(a)/∂a²`` for all ``a``: ``Q̃`` solves
the heat equation in ``(a, Σ)``. So the gradient of the expected cost
``Q̃(μ)`` is ``∂Q̃/∂a|_{a=μ}`` for the mean (Eq. 13) and ``½ ∂²Q̃/∂a²|_{a=μ}``
for the variance (Eq. 15), both deterministic. The tests check

1. the estimator against the closed-form ``∂Q̃/∂μ`` and ``∂Q̃/∂σ²`` (float
   tolerance; also under a ``log σ`` parameterisation, where the chain rule
   gives ``2σ² ∂Q̃/∂σ²``);
2. consistency with the plain world: Monte Carlo pathwise and score-function
   estimates of ``∇ E_{a~N(μ,σ²)}[Q(a)]`` for the *raw* bump agree with the
   smoothing estimator's values (z-test);
3. a wrong variant fails: applying the smoothing estimator to the raw ``Q``
   instead of ``Q̃`` (a critic that learned ``Q`` rather than ``Q̃``) is biased.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing

REPLICATES = 20 * 1024
CASES = {
    # name: (mean μ, variance σ², bump centre c, bump width w)
    "scalar": (jnp.array(0.4), jnp.array(0.3), jnp.array(1.0), jnp.array(0.7)),
    "diag2": (jnp.array([0.4, -0.2]), jnp.array([0.3, 0.6]), jnp.array([1.0, 0.5]), jnp.array([0.7, 1.2])),
}


def bump(a, c, w):
    """``Q(a)``: the raw action value, a Gaussian bump (product over dimensions)."""
    return jnp.prod(jnp.exp(-((a - c) ** 2) / (2 * w**2)))


def smoothed_bump(a, sigma2, c, w):
    """``Q̃(a; σ²) = E_{ã~N(a,σ²)}[Q(ã)]`` in closed form (Eq. 9)."""
    v = w**2 + sigma2
    return jnp.prod(w / jnp.sqrt(v) * jnp.exp(-((a - c) ** 2) / (2 * v)))


def closed_form_grads(mu, sigma2, c, w):
    """``∂Q̃/∂μ = -Q̃ d/v`` and ``∂Q̃/∂σ² = ½ Q̃ (d²/v² - 1/v)`` per dimension (``d = μ - c``, ``v = w² + σ²``)."""
    q, d, v = smoothed_bump(mu, sigma2, c, w), mu - c, w**2 + sigma2
    return {"mu": -q * d / v, "sigma2": 0.5 * q * (d**2 / v**2 - 1 / v)}


def graph(cost_fn, *, estimator, log_sigma: bool = False) -> scg.Graph:
    """``a ~ N(μ, σ²)`` with ``σ²`` (or ``log σ``) an input, one cost ``cost_fn(a)``."""
    g = scg.Graph("smoothie")
    mu, s = g.input("mu"), g.input("log_sigma" if log_sigma else "sigma2")
    scale = jnp.exp if log_sigma else jnp.sqrt
    a = g.stochastic("a", lambda mu, s: dist.Normal(mu, scale(s)), mu, s, estimator=estimator)
    g.cost("q", cost_fn, a)
    return g


@functools.lru_cache(maxsize=None)
def smoothing_grad(case):
    """The smoothing estimator's gradient w.r.t. ``(μ, σ²)`` with cost ``Q̃(a; σ²)`` at the case's fixed ``σ²``."""
    mu, sigma2, c, w = CASES[case]
    est = scg.compile(graph(lambda a: smoothed_bump(a, sigma2, c, w), estimator="smoothing"))
    return est, est.grad({"mu": mu, "sigma2": sigma2}, jax.random.key(0))


@functools.lru_cache(maxsize=None)  # shared by the unbiased and the biased test: one compile each
def raw_draws(case, estimator):
    """Monte Carlo gradient estimates for the raw bump ``E_{a~N(μ,σ²)}[Q(a)]``, ``estimator`` at node ``a``."""
    mu, sigma2, c, w = CASES[case]
    plain = scg.compile(graph(lambda a: bump(a, c, w), estimator=estimator))
    return plain.grad_samples({"mu": mu, "sigma2": sigma2}, jax.random.key(3), num_replicates=REPLICATES)


@pytest.mark.parametrize("case", list(CASES))
def test_theorem1_holds_for_the_closed_form(case):
    """``∂Q̃/∂σ² = ½ ∂²Q̃/∂a²`` (Eq. 14) for the bump, by autodiff of the closed form at several points."""
    _, sigma2, c, w = CASES[case]

    @jax.jit
    def both_sides(a):
        d_sigma = jax.grad(smoothed_bump, argnums=1)(a, sigma2, c, w)
        curvature = jnp.diagonal(jnp.atleast_2d(jax.hessian(smoothed_bump)(a, sigma2, c, w)))
        return d_sigma, 0.5 * curvature.reshape(jnp.shape(a))

    for a in (CASES[case][0], c, c + 2 * w):
        np.testing.assert_allclose(*both_sides(a), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_smoothing_matches_closed_form(case):
    """Eq. 13 and Eq. 15: the estimator returns ``∂Q̃/∂μ`` and ``½ ∂²Q̃/∂a² = ∂Q̃/∂σ²``, deterministically."""
    mu, sigma2, c, w = CASES[case]
    est, grad = smoothing_grad(case)
    exact = closed_form_grads(mu, sigma2, c, w)
    for k in exact:
        np.testing.assert_allclose(grad[k], exact[k], rtol=1e-5, atol=1e-7)
    other = est.grad({"mu": mu, "sigma2": sigma2}, jax.random.key(1))  # no randomness in it
    for k in exact:
        np.testing.assert_array_equal(other[k], grad[k])
    np.testing.assert_allclose(est.value({"mu": mu, "sigma2": sigma2}, jax.random.key(2)), smoothed_bump(mu, sigma2, c, w), rtol=1e-6)
    # the Gauss-Hermite reference of scg.testing for the raw bump agrees with the closed form too
    raw = graph(lambda a: bump(a, c, w), estimator="pathwise")
    quad = jax.jit(lambda inputs: testing.exact_grad(raw, inputs, quadrature=40))({"mu": mu, "sigma2": sigma2})
    for k in exact:
        np.testing.assert_allclose(quad[k], exact[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_smoothing_under_log_sigma_parameterisation(case):
    """With ``σ = exp(s)`` as the input, the gradient is ``2σ² ∂Q̃/∂σ²`` (chain rule through ``Σ``)."""
    mu, sigma2, c, w = CASES[case]
    est = scg.compile(graph(lambda a: smoothed_bump(a, sigma2, c, w), estimator="smoothing", log_sigma=True))
    grad = est.grad({"mu": mu, "log_sigma": 0.5 * jnp.log(sigma2)}, jax.random.key(0))
    exact = closed_form_grads(mu, sigma2, c, w)
    np.testing.assert_allclose(grad["mu"], exact["mu"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad["log_sigma"], 2 * sigma2 * exact["sigma2"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("estimator", ["pathwise", "score"])
def test_plain_world_monte_carlo_agrees_with_smoothing(case, estimator):
    """MC estimates of ``∇ E_{a~N(μ,σ²)}[Q(a)]`` for the raw bump agree with the smoothing estimator's values."""
    _, smooth = smoothing_grad(case)
    testing.assert_unbiased(raw_draws(case, estimator), smooth)


@pytest.mark.parametrize("case", list(CASES))
def test_smoothing_on_the_raw_value_is_biased(case):
    """Feeding ``Q`` instead of ``Q̃`` (a critic of the unsmoothed values) gives a wrong gradient."""
    mu, sigma2, c, w = CASES[case]
    wrong = scg.compile(graph(lambda a: bump(a, c, w), estimator="smoothing")).grad({"mu": mu, "sigma2": sigma2}, jax.random.key(0))
    testing.assert_biased(raw_draws(case, "pathwise"), wrong)
