"""Direct optimisation through Gumbel-max (DirPG, Lorberbom et al. 2020) on a 5-armed bandit.

``θ`` are the logits of a softmax over K = 5 arms with fixed rewards ``R``; the
graph's cost is ``-R(a)``. The estimator draws ``a_opt = argmax(log π + G)`` and
``a_dir = argmax(log π + G + εR)`` with the same Gumbels ``G`` (Eq. 4, 8) and
emits ``ĝ = (∇log π(a_dir) - ∇log π(a_opt)) / ε`` (Eq. 10), which is unbiased for
the gradient of the direct objective (Eq. 11, 15)

    l(θ, ε) = (1/ε) log Σ_a π_θ(a) exp(ε R(a)),

for either sign of ε (ε < 0 is risk-averse, ε > 0 risk-seeking), not for the
expected reward ``E[R] = lim_{ε→0} l``. Sign convention: we *minimise* costs, so
the compiled gradient is ``-ĝ``, an unbiased estimate of ``-∇_θ l(θ, ε)`` with
``R = -cost``; as ε → 0 it tends to ``∇_θ E[cost]``.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.errors import GraphError
from scg.estimators import Direct

REPLICATES = 20 * 1024
THETA = jnp.array([0.3, -0.5, 0.8, 0.0, -1.2])
REWARD = jnp.array([1.0, -0.5, 0.2, 2.0, -1.0])  # R(a); the graph's cost is -R(a)


def bandit(epsilon: float) -> scg.Graph:
    g = scg.Graph("bandit")
    theta = g.input("theta")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), theta, estimator=Direct(epsilon))
    g.cost("c", lambda a: -REWARD[a], a)
    return g


@jax.jit
def direct_objective_grad(theta, epsilon):
    """``∇_θ l(θ, ε)`` with ``l = (1/ε) log Σ_a π_θ(a) exp(ε R(a))`` (Eq. 11), exactly."""
    l = lambda t: jax.nn.logsumexp(jax.nn.log_softmax(t) + epsilon * REWARD) / epsilon
    return jax.grad(l)(theta)


@jax.jit
def expected_reward_grad(theta):
    """``∇_θ E_{a~π_θ}[R(a)]``, exactly."""
    return jax.grad(lambda t: jnp.dot(jax.nn.softmax(t), REWARD))(theta)


@functools.lru_cache(maxsize=None)  # tests share draws: one compile per ε
def draws(epsilon: float, seed: int):
    est = scg.compile(bandit(epsilon))
    return est.grad_samples({"theta": THETA}, jax.random.key(seed), num_replicates=REPLICATES)


EPSILONS = [-2.0, -0.5, 0.5, 2.0]


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_direct_is_unbiased_for_the_direct_objective(epsilon):
    """Mean of the compiled gradient = ``-∇l(θ, ε)`` (costs are ``-R``), for both signs of ε."""
    samples = draws(epsilon, seed=int(10 * epsilon) % 97)
    testing.assert_unbiased(samples, {"theta": -direct_objective_grad(THETA, epsilon)})


@pytest.mark.parametrize("epsilon", [-2.0, 2.0])
def test_sign_flipped_objective_is_rejected(epsilon):
    """The sign convention is detectable: ``+∇l`` (ascent on rewards) fails the same z-test."""
    samples = draws(epsilon, seed=int(10 * epsilon) % 97)
    testing.assert_biased(samples, {"theta": direct_objective_grad(THETA, epsilon)})


def test_direct_is_biased_for_expected_reward_at_large_epsilon():
    """At ε = 2 the estimator is detectably off ``∇E[cost] = -∇E[R]`` (the exact gradient of the graph)."""
    exact = testing.exact_grad(bandit(2.0), {"theta": THETA})
    np.testing.assert_allclose(exact["theta"], -expected_reward_grad(THETA), rtol=1e-5, atol=1e-6)
    testing.assert_biased(draws(2.0, seed=20), exact)


def test_bias_shrinks_linearly_as_epsilon_goes_to_zero():
    """Eq. 14: ``l = E[R] + (ε/2) Var[R] + O(ε²)``, so ``∇l - ∇E[R] = (ε/2) ∇Var[R] + O(ε²)`` for either sign."""
    var_grad = jax.grad(lambda t: jnp.dot(jax.nn.softmax(t), REWARD**2) - jnp.dot(jax.nn.softmax(t), REWARD) ** 2)(THETA)
    base = expected_reward_grad(THETA)
    bias = {eps: float(jnp.linalg.norm(direct_objective_grad(THETA, eps) - base)) for eps in (2.0, 1.0, 0.5, 0.1, 0.01)}
    assert bias[2.0] > bias[1.0] > bias[0.5] > bias[0.1] > bias[0.01]
    for eps in (0.01, -0.01):
        slope = (direct_objective_grad(THETA, eps) - base) / eps
        np.testing.assert_allclose(slope, 0.5 * var_grad, rtol=0.05, atol=1e-3)


def test_estimator_uses_the_same_gumbels_as_the_sample():
    """``a_opt`` is the node's value: with ε tiny no reward can move the argmax, so ``ĝ = 0`` almost surely."""
    est = scg.compile(bandit(1e-4))
    samples = est.grad_samples({"theta": THETA}, jax.random.key(7), num_replicates=1024)
    nonzero = np.mean(np.any(np.asarray(samples["theta"]) != 0, axis=1))
    assert nonzero < 0.05  # a_dir ≠ a_opt only when the top two Gumbel scores are within ε·ΔR


def test_zero_epsilon_is_rejected():
    with pytest.raises(GraphError, match="epsilon"):
        Direct(0.0)
