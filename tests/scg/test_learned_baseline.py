"""A learned baseline network is a node of the graph: ``b = net(φ, c)`` of a context ``c`` that the score node
does not influence (Theorem 2), trained by a loss node ``(b − f)²`` in the same compiled gradient.

    c ~ N(0, 1)                      (context, pathwise)
    x ~ Bernoulli(σ(θ + c))          (score function, baseline b)
    f = (x + 2.5 + 2c)²              (cost)
    b = φ₀ + φ₁ c + φ₂ c²            (the "network")
    loss = (b − stop_gradient(f))²   (regression of b on the cost; not part of the expected cost)

After training φ with the gradient the compiled graph returns for it, the θ gradient is still unbiased (z-test
against quadrature × enumeration) with less variance than without a baseline (measured 26x). A baseline that
reads ``x`` itself (``b = f``) is refused at compile time (Theorem 2).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import scg
from scg import dist, testing

THETA = jnp.asarray(0.3)


def graph(with_baseline: bool = True) -> scg.Graph:
    g = scg.Graph("learned_baseline")
    theta, phi = g.input("theta"), g.input("phi")
    c = g.stochastic("c", lambda: dist.Normal(0.0, 1.0))
    b = g.deterministic("b", lambda p, c: p[0] + p[1] * c + p[2] * c**2, phi, c) if with_baseline else None
    x = g.stochastic("x", lambda t, c: dist.Bernoulli(logits=t + c), theta, c, estimator="score", baseline=b)
    f = g.cost("f", lambda x, c: (x + 2.5 + 2.0 * c) ** 2, x, c)
    if with_baseline:
        g.loss("fit", lambda b, f: (b - jax.lax.stop_gradient(f)) ** 2, b, f)
    return g


def test_a_learned_baseline_node_is_unbiased_and_reduces_variance():
    est = scg.compile(graph())
    opt = optax.adam(0.05)
    phi = jnp.zeros(3)

    @jax.jit
    def train(phi, key):
        def step(carry, k):
            phi, opt_state = carry
            g = est.grad_fn({"theta": THETA, "phi": phi}, num_samples=32)({"theta": THETA, "phi": phi}, k)
            updates, opt_state = opt.update(g["phi"], opt_state)
            return (optax.apply_updates(phi, updates), opt_state), None

        return jax.lax.scan(step, (phi, opt.init(phi)), jax.random.split(key, 400))[0][0]

    phi = train(phi, jax.random.key(0))
    inputs = {"theta": THETA, "phi": phi}
    exact = testing.exact_grad(graph(False), {"theta": THETA, "phi": phi}, wrt=("theta",), quadrature=30)
    draws = est.grad_samples(inputs, jax.random.key(1), num_replicates=8000, wrt="theta")
    testing.assert_unbiased(draws, exact)
    plain = scg.compile(graph(False)).grad_samples({"theta": THETA, "phi": phi}, jax.random.key(1),
                                                   num_replicates=8000, wrt="theta")
    ratio = float(np.var(np.asarray(plain["theta"])) / np.var(np.asarray(draws["theta"])))
    assert ratio > 3, ratio  # measured 26


def test_a_baseline_the_node_influences_is_refused():
    g = scg.Graph("bad_baseline")
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), theta, estimator="score", baseline="b")
    g.deterministic("b", lambda x: 2.0 * x, x)
    g.cost("f", lambda x: (x + 2.5) ** 2, x)
    with pytest.raises(scg.GraphError, match="'b'"):
        scg.compile(g)
