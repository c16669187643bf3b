"""Replaying recorded samples (teacher forcing) and closed-form KL divergences: what TRPO and PPO read."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist
from scg.dist import kl_divergence


def _flat():
    g = scg.Graph("flat")
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta, estimator="score")
    z = g.stochastic("z", lambda x, t: dist.Categorical(logits=jnp.stack([x, -x, t])), x, theta)
    g.cost("f", lambda x, z: x**2 + z, x, z)
    return scg.compile(g)


def test_replay_reproduces_the_sampled_values_and_log_probs():
    est = _flat()
    inputs = {"theta": jnp.float32(0.4)}
    values = est.sample(inputs, jax.random.key(1), num_samples=32)
    rep = est.replay(inputs, values)
    np.testing.assert_allclose(rep.values["f"], values["f"], rtol=1e-6)
    want = dist.Normal(0.4, 1.0).log_prob(values["x"])
    np.testing.assert_allclose(rep.log_probs["x"], want, rtol=1e-5)
    # At new parameters the recorded draws are kept and the log-probabilities move with theta.
    rep2 = est.replay({"theta": jnp.float32(0.9)}, values)
    np.testing.assert_allclose(rep2.values["x"], values["x"])
    np.testing.assert_allclose(rep2.log_probs["x"], dist.Normal(0.9, 1.0).log_prob(values["x"]), rtol=1e-5)
    grad = jax.grad(lambda t: jnp.mean(est.replay({"theta": t}, values).log_probs["x"]))(jnp.float32(0.4))
    np.testing.assert_allclose(grad, jnp.mean(values["x"] - 0.4), rtol=1e-4)


def _walk():
    g = scg.Graph("walk")
    theta, s = g.input("theta"), g.input("s", differentiable=False)
    a = g.stochastic("a", lambda th, s: dist.Bernoulli(logits=th * s), theta, s)
    s1 = g.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    g.cost("c", lambda s1: s1**2, s1)
    return scg.compile(scg.Temporal(g, carry={"s": s1}, horizon=7))


def test_temporal_replay_evaluates_every_step_without_a_scan():
    est = _walk()
    inputs = {"theta": jnp.float32(0.3), "s": jnp.float32(1.0)}
    values = est.sample(inputs, jax.random.key(0), num_samples=5)
    rep = est.replay(inputs, values)
    assert rep.log_probs["a"].shape == (5, 7)
    np.testing.assert_allclose(rep.values["c"], values["c"])
    logits = 0.3 * values["s"]
    np.testing.assert_allclose(rep.log_probs["a"], dist.Bernoulli(logits=logits).log_prob(values["a"]), rtol=1e-5)
    flat = jax.tree_util.tree_map(lambda x: x.reshape((35, *x.shape[2:])), values)
    rep_flat = est.replay(inputs, flat, batch_ndim=1)
    np.testing.assert_allclose(rep_flat.log_probs["a"], rep.log_probs["a"].reshape(35), rtol=1e-6)
    # The replayed score equals the compiled estimator's: Σ_t ∇log p(a_t) (Q̂_t − b_t) on the same samples.
    adv = est.advantages(inputs, values)["a"]
    surrogate = lambda t: jnp.sum(est.replay({**inputs, "theta": t}, values).log_probs["a"] * adv) / 5
    observed = {"a": values["a"]}
    compiled = est.grad(inputs, jax.random.key(0), num_samples=5, observed=observed, wrt="theta")["theta"]
    np.testing.assert_allclose(jax.grad(surrogate)(jnp.float32(0.3)), compiled, rtol=1e-4)


def test_replay_needs_the_record():
    est = _walk()
    inputs = {"theta": jnp.float32(0.3), "s": jnp.float32(1.0)}
    values = est.sample(inputs, jax.random.key(0), num_samples=2)
    with pytest.raises(scg.GraphError, match="no record"):
        est.replay(inputs, {"a": values["a"]}, batch_ndim=2)


def _mc_kl(p, q, key, n=200_000):
    x = jax.vmap(p.sample)(jax.random.split(key, n))
    return jnp.mean(p.log_prob(x) - q.log_prob(x), axis=0)


@pytest.mark.parametrize(
    "p,q",
    [
        (dist.Normal(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5])), dist.Normal(jnp.array([0.5, 0.0]), jnp.array([2.0, 0.7]))),
        (dist.Bernoulli(logits=jnp.array([0.3, -1.0])), dist.Bernoulli(logits=jnp.array([-0.2, 0.4]))),
    ],
)
def test_kl_matches_monte_carlo(p, q):
    exact = kl_divergence(p, q)
    mc = _mc_kl(p, q, jax.random.key(3))
    np.testing.assert_allclose(exact, mc, atol=0.02)
    np.testing.assert_allclose(kl_divergence(p, p), 0.0, atol=1e-6)


def test_categorical_kl_is_the_finite_sum():
    p, q = dist.Categorical(logits=jnp.array([0.1, 0.5, -1.0])), dist.Categorical(logits=jnp.array([1.0, 0.0, 0.0]))
    want = sum(p.probs[i] * (jnp.log(p.probs[i]) - jnp.log(q.probs[i])) for i in range(3))
    np.testing.assert_allclose(kl_divergence(p, q), want, rtol=1e-5)
    with pytest.raises(TypeError, match="same distribution class"):
        kl_divergence(p, dist.Bernoulli(logits=0.0))
