"""Downstream-evaluating estimators (smoothing, direct) inside ``scg.Temporal``.

1. Same-step downstream (the nodes do not reach the carried state): the scanned graph equals the
   same model unrolled by hand as a flat ``scg.Graph`` with per-step nodes (an independent path),
   for the same draws: values, surrogates and gradients.
2. Nodes reaching the carried state, with a bootstrap node: each estimator sees the one-step
   bootstrapped objective ``Σ_{c ∈ step t, w ≺ c} c_t(v) + γ (1 − term_t(v)) boot_t(v)``;
   checked against a hand-written surrogate (Nachum et al. 2018 Eq. 13/15 for smoothing,
   Lorberbom et al. 2020 Eq. 10 for direct).
3. Without a bootstrap node that the node reaches: a GraphError naming it.

The only randomness is Gumbel noise, drawn by a simulated node and read by the direct
estimator from its distribution, so the unrolled graph can be fed the scanned draws through
``observed=``. Budget: < 40 s.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist
from scg.estimators import Direct

T, K, N = 3, 3, 4
EPS = 0.5
TABLE = jnp.array([0.5, -0.3, 0.2])
MOVES = jnp.array([-0.4, 0.0, 0.4])
INPUTS = {
    "w": jnp.array(0.6),
    "log_sigma": jnp.array(-0.3),
    "L": jnp.array([0.2, -0.5, 0.3]),
    "s": jnp.array(0.9),
}
KEY = jax.random.key(11)


class NoisyCategorical(dist.Categorical):
    """A categorical that carries the Gumbel noise of its draw (a simulated node's value)."""

    _fields = ("logits", "gumbel")

    def __init__(self, logits, gumbel):
        super().__init__(logits=logits)
        self.gumbel = gumbel


@dataclass(frozen=True)
class GumbelDirect(Direct):
    """The direct estimator with its Gumbel noise taken from the distribution instead of the node's key."""

    def _gumbel(self, d, key):
        return d.gumbel


def smooth_cost(a, s):
    return 0.5 * (a - s) ** 2 + jnp.sin(a)


def pick_cost(k, s):
    return TABLE[k] * (1.0 + s**2)


def declare_step(g: scg.Graph, w, ls, L, s, t: str = "", *, reach: bool = False):
    """One step's nodes; with ``reach`` the next state depends on the action and the draw."""
    gum = g.simulate(f"gumbel{t}", lambda key: jax.random.gumbel(key, (K,)))
    a = g.stochastic(f"a{t}", lambda w, ls, s: dist.Normal(w * s, jnp.exp(ls)), w, ls, s, estimator="smoothing")
    g.cost(f"ca{t}", smooth_cost, a, s)
    k = g.stochastic(f"k{t}", lambda L, s, u: NoisyCategorical(L * s + L, u), L, s, gum, estimator=GumbelDirect(EPS))
    g.cost(f"ck{t}", pick_cost, k, s)
    if reach:
        return g.deterministic(f"s_next{t}", lambda s, w, a, k: next_state(s, w, a, k), s, w, a, k)
    return g.deterministic(f"s_next{t}", lambda s, w: 0.7 * s + 0.2 * jnp.tanh(w) + 0.1, s, w)


def next_state(s, w, a, k):
    return 0.7 * s + 0.2 * jnp.tanh(w) + 0.1 * a + MOVES[k]


def scanned(*, reach: bool = False, bootstrap: bool = False) -> scg.Temporal:
    g = scg.Graph("downstream_step")
    w, ls, L, s = g.input("w"), g.input("log_sigma"), g.input("L"), g.input("s")
    s1 = declare_step(g, w, ls, L, s, reach=reach)
    kw = {}
    if bootstrap:
        g.deterministic("v", lambda s1, w: -w * s1**2, s1, w)
        g.deterministic("done", lambda s1: jnp.where(s1 > 0.8, 1.0, 0.0), s1)
        kw = {"bootstrap": "v", "terminated": "done", "discount": 0.9}
    return scg.Temporal(g, carry={"s": "s_next"}, horizon=T, **kw)


def unrolled() -> scg.Graph:
    g = scg.Graph("downstream_unrolled")
    w, ls, L, s = g.input("w"), g.input("log_sigma"), g.input("L"), g.input("s")
    for t in range(T):
        s = declare_step(g, w, ls, L, s, str(t))
    return g


def test_same_step_downstream_scanned_equals_unrolled():
    scan, flat = scg.compile(scanned()), scg.compile(unrolled())
    record = scan.sample(INPUTS, KEY, num_samples=N)
    assert record["gumbel"].shape == (N, T, K)
    observed = {f"gumbel{t}": record["gumbel"][:, t] for t in range(T)}
    other = jax.random.key(5)
    flat_values = flat.sample(INPUTS, other, num_samples=N, observed=observed)
    for t in range(T):
        for n in ("a", "ca", "k", "ck", "s_next"):
            np.testing.assert_allclose(flat_values[f"{n}{t}"], record[n][:, t], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        flat.surrogate(INPUTS, other, num_samples=N, observed=observed),
        scan.surrogate(INPUTS, KEY, num_samples=N), rtol=1e-6,
    )
    g_scan = scan.grad(INPUTS, KEY, num_samples=N)
    g_flat = flat.grad(INPUTS, other, num_samples=N, observed=observed)
    assert set(g_scan) == set(INPUTS)
    for n in INPUTS:
        np.testing.assert_allclose(g_scan[n], g_flat[n], rtol=1e-5, atol=1e-6)
        assert jnp.all(jnp.isfinite(g_scan[n])) and jnp.any(g_scan[n] != 0)


def hand_bootstrapped(params, gumbel, gamma=0.9):
    """The surrogate of ``scanned(reach=True, bootstrap=True)`` written out: ``mean_n Σ_t`` of the costs,
    the smoothing term ``½ σ² ∂²D/∂a²`` and the direct term ``−(log π(a_dir) − log π(a_opt))/ε``, where
    each node's ``D`` is its step's downstream costs plus ``γ (1 − done) v`` at the replaced value."""
    sg = jax.lax.stop_gradient
    w, var, L = params["w"], jnp.exp(params["log_sigma"]) ** 2, params["L"]

    def tail(s1):
        return gamma * (1.0 - jnp.where(s1 > 0.8, 1.0, 0.0)) * (-w * s1**2)

    def one(g):
        s, total = params["s"], jnp.zeros(())
        for t in range(T):
            a = w * s
            log_pi = jax.nn.log_softmax(L * s + L)
            k = jnp.argmax(sg(log_pi) + g[t])
            d_a = lambda a: smooth_cost(a, s) + tail(next_state(s, w, a, k))  # noqa: E731
            curvature = sg(jax.hessian(d_a)(sg(a)))
            rewards = -sg(jax.vmap(lambda j: pick_cost(j, s) + tail(next_state(s, w, a, j)))(jnp.arange(K)))
            k_dir = jnp.argmax(sg(log_pi) + g[t] + EPS * rewards)
            total = total + smooth_cost(a, s) + pick_cost(k, s)
            total = total + 0.5 * curvature * var - (log_pi[k_dir] - log_pi[k]) / EPS
            s = next_state(s, w, a, k)
        return total

    return jnp.mean(jax.vmap(one)(gumbel))


def test_bootstrapped_downstream_of_nodes_reaching_the_carry():
    est = scg.compile(scanned(reach=True, bootstrap=True))
    record = est.sample(INPUTS, KEY, num_samples=N)
    np.testing.assert_allclose(est.surrogate(INPUTS, KEY, num_samples=N), hand_bootstrapped(INPUTS, record["gumbel"]), rtol=1e-5)
    got = est.grad(INPUTS, KEY, num_samples=N)
    hand = jax.grad(hand_bootstrapped)(INPUTS, record["gumbel"])
    for n in INPUTS:
        np.testing.assert_allclose(got[n], hand[n], rtol=1e-5, atol=1e-6)
    assert 0 < record["done"].sum() < record["done"].size  # both sides of (1 − term_t)
    same_step_only = jax.grad(hand_bootstrapped)(INPUTS, record["gumbel"], 0.0)
    assert not all(np.allclose(got[n], same_step_only[n], rtol=1e-3) for n in INPUTS)  # the tail matters


def test_downstream_across_steps_without_a_bootstrap_is_an_error():
    with pytest.raises(scg.GraphError, match=r"node 'a'.*'smoothing'.*carried state.*no bootstrap"):
        scg.compile(scanned(reach=True))
    g = scg.Graph("unreached_bootstrap")
    w, ls, L, s = g.input("w"), g.input("log_sigma"), g.input("L"), g.input("s")
    declare_step(g, w, ls, L, s, reach=True)
    g.deterministic("v", lambda s: -(s**2), s)  # of the current state: the node does not reach it
    with pytest.raises(scg.GraphError, match=r"node 'a'.*does not reach the bootstrap node 'v'"):
        scg.compile(scg.Temporal(g, carry={"s": "s_next"}, horizon=T, bootstrap="v"))
