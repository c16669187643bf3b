"""Measure-valued derivatives of a Normal node (scg.estimators.measure_valued) against exact gradients.

Graphs, with ``θ ~ N(μ, σ²)`` the measure-valued node and ``σ = exp(log σ)``:

- ``mixed``: a score Bernoulli ``u`` shifts the mean of ``θ ∈ R²``; a score Bernoulli
  ``b`` downstream reads ``θ``; smooth costs on ``θ``, ``b`` and ``u``;
- ``layered``: a scalar ``θ`` whose mean and scale are computed from the inputs by a
  deterministic node, and a pathwise Normal ``y`` downstream;
- ``step``: the indicator cost ``1[θ > c]``, whose expectation ``Φ((μ − c)/σ)`` is in
  closed form: measure-valued derivatives need ``f`` only at points, so they are
  unbiased where the pathwise gradient (zero almost surely) is not.

Exact gradients of ``mixed`` and ``layered`` by Gauss-Hermite quadrature
(``scg.testing.exact_grad``). Wrong variants (subclasses below): the mean's constant
``1/σ`` without the ``1/√(2π)``, and a Maxwell variable without its random sign.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import scg
from scg import dist, testing
from scg.errors import GraphError
from scg.estimators.measure_valued import MeasureValued, measure_valued

REPLICATES = 8 * 1024
sg = jax.lax.stop_gradient


class WrongConstant(MeasureValued):
    """Bug: ``c_μ = 1/σ`` (the scale's constant) for the mean too."""

    def constants(self, sigma):
        return 1.0 / sigma, 1.0 / sigma


class OneSidedMaxwell(MeasureValued):
    """Bug: ``M = +sqrt(ε² + G₁² + G₂²)``, the one-sided Maxwell, for the scale's positive part."""

    def weak_parts(self, key, eps):
        w, m = super().weak_parts(key, eps)
        return w, jnp.abs(m)


class Fixed(MeasureValued):
    """``W = 1`` and ``M = 2`` in every element: deterministic given the sample, for a check by hand."""

    def weak_parts(self, key, eps):
        return jnp.ones_like(eps), 2.0 * jnp.ones_like(eps)


def mixed(estimator) -> scg.Graph:
    g = scg.Graph("mixed")
    t, mu, log_sigma = g.input("t"), g.input("mu"), g.input("log_sigma")
    u = g.stochastic("u", lambda t: dist.Bernoulli(logits=t), t, estimator="score")
    theta = g.stochastic("theta", lambda m, s, u: dist.Normal(m + 0.5 * u, jnp.exp(s)), mu, log_sigma, u, estimator=estimator)
    b = g.stochastic("b", lambda th: dist.Bernoulli(logits=th[0] - th[1]), theta, estimator="score")
    g.cost("f", lambda th: jnp.sin(2.0 * th[0]) + th[0] * th[1] + 0.5 * th[1] ** 2, theta)
    g.cost("cb", lambda b, th: b * (1.0 + th[1]), b, theta)
    g.cost("cu", lambda u: 0.3 * u, u)
    return g


def layered(estimator) -> scg.Graph:
    g = scg.Graph("layered")
    w, v = g.input("w"), g.input("v")
    h = g.deterministic("h", lambda w, v: jnp.stack([jnp.tanh(w + v), jax.nn.softplus(v - w)]), w, v)
    theta = g.stochastic("theta", lambda h: dist.Normal(h[0], h[1]), h, estimator=estimator)
    y = g.stochastic("y", lambda th: dist.Normal(jnp.cos(th), 0.3), theta, estimator="pathwise")
    g.cost("c", lambda th, y, w: 2.0 + (y - 0.5) ** 2 + w * th**2, theta, y, w)
    return g


GRAPHS = {
    "mixed": (mixed, {"t": jnp.array(-0.4), "mu": jnp.array([0.3, -0.6]), "log_sigma": jnp.log(jnp.array([0.8, 0.5]))}),
    "layered": (layered, {"w": jnp.array(0.4), "v": jnp.array(0.2)}),
}
STEP = {"mu": jnp.array(0.1), "log_sigma": jnp.log(jnp.array(0.6))}


def step(estimator) -> scg.Graph:
    g = scg.Graph("step")
    mu, log_sigma = g.input("mu"), g.input("log_sigma")
    theta = g.stochastic("theta", lambda m, s: dist.Normal(m, jnp.exp(s)), mu, log_sigma, estimator=estimator)
    g.cost("c", lambda th: (th > 0.2).astype(jnp.float32), theta)
    return g


def step_exact():
    return jax.grad(lambda p: norm.cdf((p["mu"] - 0.2) / jnp.exp(p["log_sigma"])))(STEP)


@functools.lru_cache(maxsize=None)
def exact(graph: str):
    build, inputs = GRAPHS[graph]
    return testing.exact_grad(build("score"), inputs, quadrature=20)


@functools.lru_cache(maxsize=None)
def draws(graph: str, estimator, seed: int = 0):
    build, inputs = {**GRAPHS, "step": (step, STEP)}[graph]
    return scg.compile(build(estimator)).grad_samples(inputs, jax.random.key(seed), num_replicates=REPLICATES)


@pytest.mark.parametrize("graph", ["mixed", "layered"])
def test_unbiased(graph):
    print(graph, testing.assert_unbiased(draws(graph, measure_valued()), exact(graph)))


def test_unbiased_for_a_step_function_where_pathwise_is_not():
    print("step", testing.assert_unbiased(draws("step", measure_valued()), step_exact()))
    testing.assert_biased(draws("step", "pathwise"), step_exact())


@pytest.mark.parametrize("wrong,graph", [(WrongConstant(), "layered"), (OneSidedMaxwell(), "mixed")], ids=["constant", "one_sided"])
def test_wrong_variants_fail(wrong, graph):
    testing.assert_biased(draws(graph, wrong), exact(graph))


def test_one_sample_by_hand():
    """With ``W = 1``, ``M = 2``: ``ĝ_μi = (f(μᵢ + σᵢ) − f(μᵢ − σᵢ)) / (σᵢ√(2π))`` and ``ĝ_σi = (f(μᵢ + 2σᵢ) − f(θ)) / σᵢ``,
    each with the other element at its sampled value; through ``σ = exp(log σ)``, ``∂/∂log σ = σ ĝ_σ``."""
    g = scg.Graph()
    mu, log_sigma = g.input("mu"), g.input("log_sigma")
    theta = g.stochastic("theta", lambda m, s: dist.Normal(m, jnp.exp(s)), mu, log_sigma, estimator=Fixed())
    f = lambda th: jnp.sin(2.0 * th[0]) + th[0] * th[1] + 0.5 * th[1] ** 2  # noqa: E731
    g.cost("f", f, theta)
    inputs = {"mu": jnp.array([0.3, -0.6]), "log_sigma": jnp.log(jnp.array([0.8, 0.5]))}
    est, key = scg.compile(g), jax.random.key(5)
    grads = est.grad(inputs, key)
    x = est.sample(inputs, key, num_samples=1)["theta"][0]  # grad draws from the same split key
    m, s = inputs["mu"], jnp.exp(inputs["log_sigma"])
    at = lambda i, v: f(x.at[i].set(v))  # noqa: E731
    g_mu = jnp.array([(at(i, m[i] + s[i]) - at(i, m[i] - s[i])) / (s[i] * math.sqrt(2 * math.pi)) for i in range(2)])
    g_sigma = jnp.array([(at(i, m[i] + 2 * s[i]) - f(x)) / s[i] for i in range(2)])
    np.testing.assert_allclose(grads["mu"], g_mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["log_sigma"], s * g_sigma, rtol=1e-5, atol=1e-6)


def test_variance_against_score_and_pathwise():
    """On ``layered`` (no baselines): measure-valued ≪ score, and comparable to pathwise.

    Measured (seed 0, 8192 replicates), variance ratios for ``(w, v)``: score / measure-valued
    ≈ (26, 85); measure-valued / pathwise ≈ (1.17, 0.30): lower than pathwise for ``v``, which
    reaches ``θ`` through both its mean and its scale. Per sample the measure-valued estimator
    evaluates the costs downstream 4 times (3D + 1, D = 1) where the others evaluate them once.
    """
    var = lambda d: np.array([np.var(np.asarray(d[k], np.float64)) for k in ("w", "v")])  # noqa: E731
    testing.assert_unbiased(draws("layered", "score"), exact("layered"))
    testing.assert_unbiased(draws("layered", "pathwise"), exact("layered"))
    mvd, sf, pw = var(draws("layered", measure_valued())), var(draws("layered", "score")), var(draws("layered", "pathwise"))
    print("score / measure-valued:", sf / mvd, "measure-valued / pathwise:", mvd / pw)
    assert np.all(sf / mvd > 2.0), (sf, mvd)
    assert np.all((mvd / pw > 0.1) & (mvd / pw < 3.0)), (mvd, pw)


def test_rejects_non_normal():
    g = scg.Graph()
    t = g.input("t")
    g.cost("c", lambda z: jnp.sum(z), g.stochastic("coin", lambda t: dist.Bernoulli(logits=t), t, estimator=measure_valued()))
    with pytest.raises(GraphError, match=r"'coin'.*measure_valued.*Normal.*Bernoulli"):
        scg.compile(g).grad({"t": jnp.zeros(2)}, jax.random.key(0))
