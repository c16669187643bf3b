"""Second derivatives (Schulman 2016, §5.3.3; DiCE, Foerster et al. 2018; baseline term of Mao et al. 2019).

On a small discrete graph, ``θ ∈ R²``:

    z1 ~ Bernoulli(logits = θ0 - 0.5 θ1)
    z2 ~ Categorical(logits = [θ1 z1, 0.3 - θ0, 0.5 θ0 θ1])
    c1 = (z1 - θ0)²,   c2 = t[z2] sin(θ1) + z1 θ0 θ1

the exact Hessian is ``jax.hessian`` of ``testing.exact_expectation``.
Hessian-vector products from ``est.hvp(mode="dice")`` for the two basis
tangents (so every entry of the Hessian) must be unbiased in a z-test, with
and without a baseline for ``z2``; differentiating the plain surrogate twice
(``mode="surrogate"``) drops the products of score functions and must fail the
same test. DiCE's first derivative equals the surrogate's on the same samples.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.testing.random_graphs import quick_call

N = 20_000
TABLE = jnp.array([1.0, -2.0, 0.5])


def chain(baseline: bool) -> scg.Graph:
    g = scg.Graph("bernoulli_categorical_chain")
    theta = g.input("theta")
    z1 = g.stochastic("z1", lambda t: dist.Bernoulli(logits=t[0] - 0.5 * t[1]), theta, estimator="score")
    b = g.deterministic("b", lambda t, z1: 0.5 * z1 + jnp.sin(t[0]), theta, z1) if baseline else None
    z2 = g.stochastic(
        "z2",
        lambda t, z1: dist.Categorical(logits=jnp.stack([t[1] * z1, 0.3 - t[0], 0.5 * t[0] * t[1]])),
        theta,
        z1,
        estimator="score",
        baseline=b,
    )
    g.cost("c1", lambda z1, t: (z1 - t[0]) ** 2, z1, theta)
    g.cost("c2", lambda z1, z2, t: TABLE[z2] * jnp.sin(t[1]) + z1 * t[0] * t[1], z1, z2, theta)
    return g


THETA = np.array([0.4, -0.7])


def exact_hessian(g):
    with jax.enable_x64():
        hessian = jax.hessian(lambda t: testing.exact_expectation(g, {"theta": t}))
        return np.asarray(quick_call(hessian, jnp.asarray(THETA)))


def hvp_draws(g, mode):
    """``N`` independent estimates of ``H e_i`` for both basis vectors: ``{"theta": [N, 2, 2]}``, row i = ``H e_i``."""
    est = scg.compile(g)
    inputs = {"theta": jnp.asarray(THETA, jnp.float32)}

    def one(key):
        rows = [est.hvp(inputs, {"theta": e}, key, mode=mode)["theta"] for e in jnp.eye(2)]
        return {"theta": jnp.stack(rows)}

    return quick_call(jax.vmap(one), jax.random.split(jax.random.key(11), N))


@pytest.mark.parametrize("baseline", [False, True])
def test_dice_hvp_unbiased_and_plain_surrogate_biased(baseline):
    g = chain(baseline)
    exact = {"theta": exact_hessian(g).T}  # row i: H e_i
    testing.assert_unbiased(hvp_draws(g, "dice"), exact)
    testing.assert_biased(hvp_draws(g, "surrogate"), exact)


@pytest.mark.parametrize("baseline", [False, True])
def test_dice_first_derivative_equals_surrogate(baseline):
    g = chain(baseline)
    with jax.enable_x64():
        inputs = {"theta": jnp.asarray(THETA)}
        plain, dice = scg.compile(g), scg.compile(g, mode="dice")
        keys = jax.random.split(jax.random.key(5), 16)
        both = lambda k: (plain.grad(inputs, k, num_samples=4), dice.grad(inputs, k, num_samples=4))
        a, b = quick_call(jax.vmap(both), keys)
    np.testing.assert_allclose(a["theta"], b["theta"], rtol=1e-12, atol=1e-12)
    assert np.std(np.asarray(a["theta"])) > 0.1  # the samples differ: the check is not vacuous


def pathwise_and_score() -> scg.Graph:
    """A pathwise Normal node feeding a score Bernoulli node: both claim ``any_order`` (DiCE)."""
    g = scg.Graph("normal_bernoulli")
    theta = g.input("theta")
    y = g.stochastic("y", lambda t: dist.Normal(t[0], 0.5 + 0.1 * t[1] ** 2), theta, estimator="pathwise")
    z = g.stochastic("z", lambda t, y: dist.Bernoulli(logits=t[1] * y), theta, y, estimator="score")
    g.cost("c", lambda y, z, t: (y - 1.0) ** 2 + z * (t[0] + y), y, z, theta)
    return g


def test_dice_hvp_with_a_pathwise_node_is_unbiased():
    """``hvp`` differentiates through the reparameterised value twice; against quadrature × enumeration."""
    g = pathwise_and_score()
    draws = hvp_draws(g, "dice")
    testing.assert_unbiased(draws, {"theta": exact_hessian(g)})
