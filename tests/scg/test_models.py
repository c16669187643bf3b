"""The models of Schulman (2016) §5.10.1 — NVIL and the VAE — against exact gradients.

NVIL (Eq. 42-43): Bernoulli latents ``h1, h2`` (and ``h3``), per-node
baselines ``b1(x)``, ``b2(h1)`` as deterministic nodes with their own
parameters. The expected cost (the negated variational bound) is an exact sum
over the 2⁴ (2⁶) latent configurations, so the estimator is z-tested against
the exact gradient for the generative parameters ``θ`` and the inference
parameters ``φ``. Theorem 2 is checked both ways: a baseline for ``h1`` that
reads ``h2`` or the cost ``c1`` is a compile-time GraphError naming both
nodes, and the surrogate of Eq. 43 built by hand with such a baseline (the
compiler bypassed) is detectably biased. The hand-built surrogate is first
shown to reproduce the compiled estimator sample by sample with the legal
baselines, so the bias comes from the baseline alone.

VAE: reparameterised Gaussian latent (2-d), Gaussian likelihood; the bound is
a polynomial in the latent, so Gauss-Hermite quadrature is exact. Pathwise and
score-function estimators are both unbiased; the pathwise one has far lower
variance (§5.2.1, property 3).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import testing
from scg.testing import examples

N = 20_000
WRT = ("theta", "phi")
sg = jax.lax.stop_gradient


def replicate(fn, seed: int, n: int = N):
    """``fn(key)`` for ``n`` independent keys, vmapped under one ``jit``."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))


def exact_grad(graph, inputs):
    return jax.jit(lambda i: testing.exact_grad(graph, i, wrt=WRT))(inputs)


# -- NVIL --------------------------------------------------------------------------------------
def log_bernoulli(layer, below, value):
    """``log p(value | below)`` for a Bernoulli layer with logits ``W below + b``, summed over units."""
    logits = layer["W"] @ below + layer["b"]
    return jnp.sum(value * jax.nn.log_sigmoid(logits) + (1 - value) * jax.nn.log_sigmoid(-logits))


def nvil_surrogate_by_hand(theta, phi, psi, x, h1, h2, *, b1_reads: str):
    """Eq. 43 written out for two layers: ``Σ c + log q(h1|x)(Q̂1 - b1) + log q(h2|h1)(Q̂2 - b2)``."""
    log_q1 = log_bernoulli(phi["q1"], x, h1)
    log_q2 = log_bernoulli(phi["q2"], h1, h2)
    log_prior = jnp.sum(h2 * jax.nn.log_sigmoid(theta["top"]) + (1 - h2) * jax.nn.log_sigmoid(-theta["top"]))
    c1 = log_q1 - log_bernoulli(theta["p1"], h1, x)
    c2 = log_q2 - log_bernoulli(theta["p2"], h2, h1) - log_prior
    q1_hat, q2_hat = sg(c1 + c2), sg(c2)
    b1 = sg(jnp.sum(psi["w1"] * {"x": x, "c1": c1}[b1_reads]) + psi["v1"])
    b2 = sg(psi["w2"] @ h1 + psi["v2"])
    return c1 + c2 + log_q1 * (q1_hat - b1) + log_q2 * (q2_hat - b2)


def hand_grads(inputs, samples, *, b1_reads: str):
    """Per-sample gradients of the hand-built surrogate, for ``samples`` with a leading axis."""
    def one(h1, h2):
        def surrogate(d):
            return nvil_surrogate_by_hand(d["theta"], d["phi"], inputs["psi"], inputs["x"], h1, h2, b1_reads=b1_reads)

        return jax.grad(surrogate)({"theta": inputs["theta"], "phi": inputs["phi"]})

    return jax.jit(jax.vmap(one))(samples["h1"], samples["h2"])


@functools.lru_cache(maxsize=None)
def nvil_case():
    g, inputs = examples.nvil(num_layers=2)
    est = scg.compile(g)
    draws, samples = replicate(
        lambda key: (est.grad(inputs, key, wrt=WRT), est.sample(inputs, key, num_samples=1)), seed=7
    )
    samples = jax.tree_util.tree_map(lambda v: v[:, 0], samples)
    return g, inputs, exact_grad(g, inputs), draws, samples


def test_nvil_unbiased_for_theta_and_phi():
    g, inputs, exact, draws, _ = nvil_case()
    assert set(draws) == set(WRT)
    assert jax.tree_util.tree_structure(draws["phi"]) == jax.tree_util.tree_structure(inputs["phi"])
    testing.assert_unbiased(draws, exact)


@pytest.mark.slow
def test_nvil_three_layers_unbiased():
    g, inputs = examples.nvil(num_layers=3)
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key, wrt=WRT), seed=8)
    testing.assert_unbiased(draws, exact_grad(g, inputs))


@pytest.mark.parametrize("reads", ["h2", "c1"])
def test_nvil_influenced_baseline_is_graph_error(reads):
    """Theorem 2: ``b1`` may not depend on what ``h1`` influences (``h2``, ``r1``)."""
    g, _ = examples.nvil(h1_baseline_reads=reads)
    with pytest.raises(scg.GraphError) as err:
        scg.compile(g)
    message = str(err.value)
    assert "'b1'" in message and "'h1'" in message, message


def test_nvil_hand_built_surrogate_matches_compiler_and_influenced_baseline_is_biased():
    g, inputs, exact, draws, samples = nvil_case()
    legal = hand_grads(inputs, samples, b1_reads="x")
    for got, want in zip(jax.tree_util.tree_leaves(draws), jax.tree_util.tree_leaves(legal)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The same surrogate with b1 = w·c1 + v: the baseline reads the cost h1 influences.
    forced = hand_grads(inputs, samples, b1_reads="c1")
    testing.assert_biased(forced, exact)


# -- VAE ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def vae_draws(estimator):
    g, inputs = examples.vae(estimator=estimator)
    est = scg.compile(g)
    return g, inputs, replicate(lambda key: est.grad(inputs, key, wrt=WRT), seed=9)


@pytest.mark.parametrize("estimator", [None, "score"])
def test_vae_unbiased(estimator):
    g, inputs, draws = vae_draws(estimator)
    testing.assert_unbiased(draws, exact_grad(g, inputs))


def total_variance(tree) -> float:
    return float(sum(jnp.sum(jnp.var(v, axis=0)) for v in jax.tree_util.tree_leaves(tree)))


def test_vae_pathwise_has_lower_variance_than_score():
    _, _, pathwise = vae_draws(None)
    _, _, score = vae_draws("score")
    ratio = total_variance(score["phi"]) / total_variance(pathwise["phi"])
    print(f"VAE: Var[score ∇φ] / Var[pathwise ∇φ] = {ratio:.1f}")
    assert ratio > 1.0, f"pathwise variance should be lower, ratio {ratio}"
    # Same keys, same draws of h: θ enters only through the costs, so the θ-gradients agree draw by draw.
    for got, want in zip(jax.tree_util.tree_leaves(score["theta"]), jax.tree_util.tree_leaves(pathwise["theta"])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
