"""Observed pathwise nodes: a recorded value is explained by its inferred noise ``ε = (x − μ)/σ``.

The node's value is the record and its gradient that of ``μ + σ·stop_gradient(ε)`` (the
reparameterisation, Schulman 2016 §5.2.1, with the noise of the record: SVG(1)/SVG(∞) on real
transitions). Checked against the same graph sampled with that noise (same key) and against a
hand-written ``jax.grad`` of the reparameterised expression, flat and temporal. Budget: < 20 s.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist

N = 8
KEY = jax.random.key(3)
INPUTS = {"mu": jnp.array(0.3), "log_sigma": jnp.array(-0.4), "theta": jnp.array(0.8)}


def cost(x, y):
    return (y - 1.0) ** 2 + jnp.sin(x)


def flat_graph() -> scg.Graph:
    """``x ~ N(μ, σ²)``, ``y ~ N(θx, 0.5²)`` (a learned model of a transition), cost ``(y − 1)² + sin x``."""
    g = scg.Graph("observed_pathwise")
    mu, ls, th = g.input("mu"), g.input("log_sigma"), g.input("theta")
    x = g.stochastic("x", lambda m, s: dist.Normal(m, jnp.exp(s)), mu, ls)
    y = g.stochastic("y", lambda t, x: dist.Normal(t * x, 0.5), th, x)
    g.cost("f", cost, x, y)
    return g


def hand_flat(params, record):
    """``mean_n cost(x_n, y_n)`` with ``x = μ + σ ε_x`` and ``y = θx + 0.5 ε_y``, ``ε`` inferred from the record."""
    sigma = jnp.exp(params["log_sigma"])
    eps_x = jax.lax.stop_gradient((record["x"] - params["mu"]) / sigma)
    x = params["mu"] + sigma * eps_x
    eps_y = jax.lax.stop_gradient((record["y"] - params["theta"] * x) / 0.5)
    y = params["theta"] * x + 0.5 * eps_y
    return jnp.mean(cost(x, y))


def _replay_equals_the_record(est, inputs, drawn, checked, hand, other_key):
    """Observing ``drawn`` of a sample reproduces the ``checked`` values under another key, and the gradient
    equals the sampled one and ``jax.grad`` of the hand-written objective; returns ``(record, observed)``."""
    record = est.sample(inputs, KEY, num_samples=N)
    observed = {n: record[n] for n in drawn}
    again = est.sample(inputs, other_key, num_samples=N, observed=observed)
    for n in checked:
        np.testing.assert_allclose(again[n], record[n], atol=1e-6, rtol=0)
    sampled = est.grad(inputs, KEY, num_samples=N)
    replayed = est.grad(inputs, other_key, num_samples=N, observed=observed)
    by_hand = jax.grad(hand)(inputs, record)
    for n in inputs:
        np.testing.assert_allclose(replayed[n], sampled[n], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(replayed[n], by_hand[n], rtol=1e-5, atol=1e-6)
    return record, observed


def test_observed_values_equal_the_record_and_gradients_equal_the_sampled_ones():
    est = scg.compile(flat_graph())
    _replay_equals_the_record(est, INPUTS, ("x", "y"), ("x", "y", "f"), hand_flat, jax.random.key(99))


def test_a_record_from_other_parameters_is_differentiated_at_its_inferred_noise():
    """SVG's use: transitions recorded under old parameters, the gradient at new ones."""
    est = scg.compile(flat_graph())
    record = est.sample(INPUTS, KEY, num_samples=N)
    new = {"mu": jnp.array(-0.2), "log_sigma": jnp.array(0.1), "theta": jnp.array(1.3)}
    observed = {"x": record["x"], "y": record["y"]}
    got = est.grad(new, KEY, num_samples=N, observed=observed)
    hand = jax.grad(hand_flat)(new, record)
    for n in new:
        np.testing.assert_allclose(got[n], hand[n], rtol=1e-5, atol=1e-6)
    # Only y observed: x is drawn from the key as before, y's noise is inferred at the new x.
    drawn_x = est.sample(new, KEY, num_samples=N)["x"]
    got = est.grad(new, KEY, num_samples=N, observed={"y": record["y"]})
    hand = jax.grad(hand_flat)(new, {"x": drawn_x, "y": record["y"]})
    for n in new:
        np.testing.assert_allclose(got[n], hand[n], rtol=1e-5, atol=1e-6)


T = 3


def temporal() -> scg.Temporal:
    """``a_t ~ N(w s_t, σ²)`` (policy), ``s_{t+1} ~ N(s_t + a_t, 0.1²)`` (model), cost ``s_{t+1}² + 0.1 a_t²``."""
    g = scg.Graph("svg_step")
    w, ls, s = g.input("w"), g.input("log_sigma"), g.input("s")
    a = g.stochastic("a", lambda w, ls, s: dist.Normal(w * s, jnp.exp(ls)), w, ls, s)
    s1 = g.stochastic("s_next", lambda s, a: dist.Normal(s + a, 0.1), s, a)
    g.cost("c", lambda s1, a: s1**2 + 0.1 * a**2, s1, a)
    return scg.Temporal(g, carry={"s": "s_next"}, horizon=T)


T_INPUTS = {"w": jnp.array(-0.5), "log_sigma": jnp.array(-1.0), "s": jnp.array(1.0)}


def hand_temporal(params, record):
    """``mean_n Σ_t c_t`` along the recursion, each step's noise inferred from the record ``[N, T]``."""
    sigma = jnp.exp(params["log_sigma"])
    s = jnp.broadcast_to(params["s"], (N,))
    total = jnp.zeros(N)
    for t in range(T):
        mean = params["w"] * s
        a = mean + sigma * jax.lax.stop_gradient((record["a"][:, t] - mean) / sigma)
        s1 = s + a + 0.1 * jax.lax.stop_gradient((record["s_next"][:, t] - (s + a)) / 0.1)
        total = total + s1**2 + 0.1 * a**2
        s = s1
    return jnp.mean(total)


def test_temporal_observed_pathwise_nodes():
    est = scg.compile(temporal())
    record, observed = _replay_equals_the_record(
        est, T_INPUTS, ("a", "s_next"), ("a", "s_next", "c"), hand_temporal, jax.random.key(7)
    )
    assert record["a"].shape == (N, T)
    new = {"w": jnp.array(0.4), "log_sigma": jnp.array(-0.5), "s": jnp.array(0.7)}
    got = est.grad(new, KEY, num_samples=N, observed=observed)
    hand = jax.grad(hand_temporal)(new, record)
    for n in new:
        np.testing.assert_allclose(got[n], hand[n], rtol=1e-5, atol=1e-6)


class ShiftedNoise(dist.Distribution):
    """``loc + ε``, reparameterisable, but without the inverse of its reparameterisation."""

    has_rsample = True
    _fields = ("loc",)

    def __init__(self, loc):
        self.loc = jnp.asarray(loc, float)

    def rsample(self, key):
        return self.loc + jax.random.normal(key, self.loc.shape)

    def sample(self, key):
        return jax.lax.stop_gradient(self.rsample(key))

    def log_prob(self, value):
        return -0.5 * (value - self.loc) ** 2


def test_observed_pathwise_node_without_an_inverse_is_an_error():
    g = scg.Graph()
    mu = g.input("mu")
    x = g.stochastic("x", lambda m: ShiftedNoise(m), mu, estimator="pathwise")
    g.cost("f", lambda x: x**2, x)
    est = scg.compile(g)
    inputs = {"mu": jnp.array(0.1)}
    est.grad(inputs, KEY, num_samples=2)  # drawn: fine
    with pytest.raises(scg.GraphError, match=r"'x'.*noise"):
        est.grad(inputs, KEY, num_samples=2, observed={"x": jnp.zeros(2)})


def test_a_smoothing_node_cannot_be_observed():
    g = scg.Graph()
    mu = g.input("mu")
    a = g.stochastic("a", lambda m: dist.Normal(m, 1.0), mu, estimator="smoothing")
    g.cost("f", lambda a: a**2, a)
    with pytest.raises(scg.GraphError, match=r"'a'.*observable nodes"):
        scg.compile(g).grad({"mu": jnp.array(0.1)}, KEY, num_samples=2, observed={"a": jnp.zeros(2)})
