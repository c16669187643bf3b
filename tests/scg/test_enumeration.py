"""Exact enumeration of a discrete node (scg.estimators.enumeration) against exact gradients.

Three graphs, exact gradients by enumeration and Gauss-Hermite quadrature (``scg.testing.exact_grad``):

- ``alone``: ``a ~ Categorical(logits=θ)`` the only stochastic node, with a cost that
  depends on ``θ`` directly and through ``a``: the estimate is the exact gradient in
  every replicate (the node adds no variance, and nothing else is random);
- ``mixed``: a score Bernoulli ``u`` and a pathwise Normal ``x`` upstream of the
  enumerated categorical ``a``, a pathwise Normal ``y`` and a score Bernoulli ``b``
  downstream of it: every kind of gradient path into and out of the node;
- ``vector``: a Bernoulli of shape [3] enumerated over its 8 joint values, with a
  pathwise Normal upstream and one downstream.

Wrong variants (subclasses below) fail the same z-tests: weights normalised to the
mode instead of summing to one, and a surrogate that keeps the pathwise gradient
of the enumeration without removing the sample's (double counting).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.errors import GraphError
from scg.estimators.enumeration import Enumerate, enumeration

REPLICATES = 4 * 1024
sg = jax.lax.stop_gradient
M = jnp.array([0.5, -1.0, 1.5])  # y's mean per category of a


class ModeNormalised(Enumerate):
    """Bug: weights divided by the largest instead of summing to one (p(a) / max p)."""

    def support(self, node_name, d, value):
        values, p = super().support(node_name, d, value)
        return values, p / sg(jnp.max(p))


class DoubleCounted(Enumerate):
    """Bug: ``Σ p(a) f(a)`` with gradient through both factors, forgetting that the costs at the sample carry ``∇f(â)``."""

    def terms(self, ctx):
        values, p = self.support(ctx.name, ctx.dist, ctx.value)
        extra = jnp.dot(p, jax.vmap(ctx.downstream)(values))
        return jnp.zeros(()), extra - sg(extra)


class SamplePathwise(Enumerate):
    """The other valid choice: only the gradient through ``p`` enumerated, the pathwise part left at the sample."""

    def terms(self, ctx):
        values, p = self.support(ctx.name, ctx.dist, ctx.value)
        extra = jnp.dot(p, sg(jax.vmap(ctx.downstream)(values)))
        return jnp.zeros(()), extra - sg(extra)


def alone(estimator) -> scg.Graph:
    g = scg.Graph("alone")
    theta = g.input("theta")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), theta, estimator=estimator)
    g.cost("c", lambda t, a: (t[a] - 1.0) ** 2 + jnp.sin(t[0]) * a, theta, a)
    return g


def mixed(estimator) -> scg.Graph:
    g = scg.Graph("mixed")
    t, mu, theta, phi = g.input("t"), g.input("mu"), g.input("theta"), g.input("phi")
    u = g.stochastic("u", lambda t: dist.Bernoulli(logits=t), t, estimator="score")
    x = g.stochastic("x", lambda m, u: dist.Normal(m + u, 0.6), mu, u, estimator="pathwise")
    a = g.stochastic("a", lambda th, x: dist.Categorical(logits=th + jnp.array([0.0, 1.0, -1.0]) * x), theta, x, estimator=estimator)
    y = g.stochastic("y", lambda a, x: dist.Normal(M[a] + 0.5 * x, 0.5), a, x, estimator="pathwise")
    b = g.stochastic("b", lambda a, p: dist.Bernoulli(logits=a - 1.0 + p), a, phi, estimator="score")
    g.cost("cu", lambda u: 0.7 * u, u)
    g.cost("cy", lambda y, th, a: (y - 1.0) ** 2 + th[a] ** 2, y, theta, a)
    g.cost("cb", lambda b, x, a: b * jnp.cos(x) * (a + 1.0), b, x, a)
    return g


def vector(estimator) -> scg.Graph:
    g = scg.Graph("vector")
    mu, theta = g.input("mu"), g.input("theta")
    x = g.stochastic("x", lambda m: dist.Normal(m, 0.5), mu, estimator="pathwise")
    z = g.stochastic("z", lambda th, x: dist.Bernoulli(logits=th + x), theta, x, estimator=estimator)
    y = g.stochastic("y", lambda z, x: dist.Normal(jnp.sum(z * jnp.array([1.0, -0.5, 2.0])) + x, 0.4), z, x, estimator="pathwise")
    g.cost("c", lambda z, th, y: jnp.sum((z - 0.3) ** 2 * th) + (y - 0.5) ** 2, z, theta, y)
    return g


GRAPHS = {
    "alone": (alone, {"theta": jnp.array([0.3, -0.5, 0.8])}),
    "mixed": (mixed, {"t": jnp.array(0.2), "mu": jnp.array(-0.3), "theta": jnp.array([0.4, -0.2, 0.1]), "phi": jnp.array(0.3)}),
    "vector": (vector, {"mu": jnp.array(0.2), "theta": jnp.array([0.5, -1.0, 0.3])}),
}


@functools.lru_cache(maxsize=None)
def exact(graph: str):
    build, inputs = GRAPHS[graph]
    return testing.exact_grad(build("score"), inputs, quadrature=16)


@functools.lru_cache(maxsize=None)
def draws(graph: str, estimator, seed: int = 0):
    build, inputs = GRAPHS[graph]
    return scg.compile(build(estimator)).grad_samples(inputs, jax.random.key(seed), num_replicates=REPLICATES)


@pytest.mark.parametrize("graph", ["mixed", "vector"])
def test_unbiased(graph):
    """z-test against the exact gradient, with score and pathwise nodes up- and downstream of the node."""
    result = testing.assert_unbiased(draws(graph, enumeration()), exact(graph))
    print(graph, result)


def test_pathwise_at_the_sample_is_unbiased_too():
    """The alternative design (pathwise gradient of f from the sample alone) is unbiased, with more variance."""
    testing.assert_unbiased(draws("mixed", SamplePathwise()), exact("mixed"))
    var = lambda d: np.var(np.asarray(d["theta"], np.float64), axis=0)  # noqa: E731
    ratio = var(draws("mixed", SamplePathwise())) / var(draws("mixed", enumeration()))
    print("variance of ∂θ, pathwise at the sample / enumerated:", ratio)
    assert np.all(ratio > 1.0), ratio


@pytest.mark.parametrize("graph", ["alone", "vector"])
def test_exact_when_alone(graph):
    """With no other randomness the estimate is the exact gradient in every replicate (the vector graph's
    Normal nodes are made deterministic: scale zero is not allowed, so only ``alone`` has no other noise)."""
    if graph == "vector":
        g = scg.Graph("vector_alone")
        theta = g.input("theta")
        z = g.stochastic("z", lambda th: dist.Bernoulli(logits=th), theta, estimator=enumeration())
        g.cost("c", lambda z, th: jnp.sum((z - 0.3) ** 2 * th) + jnp.prod(z + th), z, theta)
        inputs = {"theta": jnp.array([0.5, -1.0, 0.3])}
    else:
        build, inputs = GRAPHS[graph]
        g = build(enumeration())
    want = testing.exact_grad(g, inputs)["theta"]
    got = scg.compile(g).grad_samples(inputs, jax.random.key(1), num_replicates=256)["theta"]
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("wrong", [ModeNormalised(), DoubleCounted()], ids=["mode_normalised", "double_counted"])
def test_wrong_variants_fail(wrong):
    testing.assert_biased(draws("mixed", wrong), exact("mixed"))


def test_double_counting_is_wrong_even_alone():
    g, inputs = alone(DoubleCounted()), GRAPHS["alone"][1]
    testing.assert_biased(scg.compile(g).grad_samples(inputs, jax.random.key(2), num_replicates=64), exact("alone"))


def test_variance_against_score():
    """Enumerating ``a`` (K = 3) against a score-function ``a`` in the mixed graph, no baselines."""
    var = lambda d, k: np.var(np.asarray(d[k], np.float64), axis=0)  # noqa: E731
    testing.assert_unbiased(draws("mixed", "score"), exact("mixed"))
    ratio = var(draws("mixed", "score"), "theta") / var(draws("mixed", enumeration()), "theta")
    print("variance of ∂θ, score / enumerate:", ratio)
    assert np.all(ratio > 3.0), ratio


def test_support_limit():
    g = scg.Graph()
    t = g.input("t")
    g.cost("c", lambda z: jnp.sum(z), g.stochastic("wide", lambda t: dist.Bernoulli(logits=t), t, estimator=enumeration()))
    with pytest.raises(GraphError, match=r"'wide'.*2048 support values.*max_support=1024"):
        scg.compile(g).grad({"t": jnp.zeros(11)}, jax.random.key(0))
    g = scg.Graph()
    t = g.input("t")
    g.cost("c", lambda a: a, g.stochastic("arm", lambda t: dist.Categorical(logits=t), t, estimator=enumeration(max_support=4)))
    with pytest.raises(GraphError, match=r"'arm'.*5 support values.*max_support=4"):
        scg.compile(g).grad({"t": jnp.zeros(5)}, jax.random.key(0))


class PerElement(dist.Bernoulli):
    """A Bernoulli whose enumerate_support lists each element's values, broadcast (numpyro's expand=True)."""

    def enumerate_support(self):
        values = jnp.broadcast_to(jnp.array([0.0, 1.0])[:, None], (2, *self.shape))
        return values, jnp.exp(jax.vmap(lambda v: jnp.sum(self.log_prob(v)))(values))


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda t: dist.Normal(t, 1.0), r"'n'.*discrete.*Normal"),
        (lambda t: PerElement(logits=t), r"'n'.*2 support values for 3 elements.*joint"),
    ],
    ids=["continuous", "per_element"],
)
def test_refuses_what_it_cannot_sum(make, pattern):
    g = scg.Graph()
    t = g.input("t")
    g.cost("c", lambda z: jnp.sum(z), g.stochastic("n", make, t, estimator=enumeration()))
    with pytest.raises(GraphError, match=pattern):
        scg.compile(g).grad({"t": jnp.zeros(3)}, jax.random.key(0))


def test_bad_max_support():
    with pytest.raises(GraphError, match="max_support"):
        enumeration(max_support=0)
