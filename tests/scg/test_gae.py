"""GAE (Schulman 2016, Eq. 26–28) as the credit of temporal score nodes: closed forms, a plain loop, the graph option."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist
from scg.returns import cost_to_go, gae

GAMMA = 0.9


def _episode_data(seed, T=12):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=T).astype(np.float32)
    b = rng.normal(size=T).astype(np.float32)
    boot = rng.normal(size=T).astype(np.float32)
    term = np.zeros(T, np.float32)
    trunc = np.zeros(T, np.float32)
    term[3] = 1.0  # an episode ends at step 3
    trunc[7] = 1.0  # another is cut by a time limit at step 7
    return c, term, trunc, boot, b


def _gae_loop(c, term, trunc, boot, b, gamma, lam):
    """Eq. 26 written out: Â_t = Σ_l (γλ)^l δ_{t+l}, stopping at episode boundaries."""
    T = len(c)
    ends = [t for t in range(T) if term[t] or trunc[t] or t == T - 1]

    def v_next(t):
        if term[t]:
            return 0.0
        return boot[t] if (trunc[t] or t == T - 1) else b[t + 1]

    delta = [c[t] + gamma * v_next(t) - b[t] for t in range(T)]
    adv = []
    for t in range(T):
        end = min(e for e in ends if e >= t)
        adv.append(sum((gamma * lam) ** (k - t) * delta[k] for k in range(t, end + 1)))
    return np.array(adv)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_a_plain_loop(lam):
    data = _episode_data(0)
    got = gae(*data, GAMMA, lam)
    np.testing.assert_allclose(got, _gae_loop(*data, GAMMA, lam), rtol=1e-5, atol=1e-5)


def test_lambda_one_is_return_minus_baseline_eq28():
    c, term, trunc, boot, b = _episode_data(1)
    np.testing.assert_allclose(gae(c, term, trunc, boot, b, GAMMA, 1.0), cost_to_go(c, term, trunc, boot, GAMMA) - b, rtol=1e-5, atol=1e-5)


def test_lambda_zero_is_the_td_residual_eq27():
    c, term, trunc, boot, b = _episode_data(2)
    b_next = np.append(b[1:], 0.0)
    nxt = np.where(trunc > 0, boot, b_next)
    nxt[-1] = boot[-1]
    delta = c + GAMMA * (1 - term) * nxt - b
    np.testing.assert_allclose(gae(c, term, trunc, boot, b, GAMMA, 0.0), delta, rtol=1e-5, atol=1e-5)


def _walk(advantage, horizon=6):
    """A random walk with a learned-baseline parameter: the step graph of a tiny MDP."""
    g = scg.Graph("walk")
    theta, phi, s = g.input("theta"), g.input("phi"), g.input("s", differentiable=False)
    v = g.deterministic("v", lambda phi, s: phi * s, phi, s)
    a = g.stochastic("a", lambda th, s: dist.Bernoulli(logits=th * s), theta, s, estimator="score", baseline=v, advantage=advantage)
    s1 = g.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    g.cost("c", lambda s1: s1**2 / 10, s1)
    g.deterministic("boot", lambda phi, s1: phi * s1, phi, s1)
    return scg.compile(scg.Temporal(g, carry={"s": s1}, horizon=horizon, discount=GAMMA, bootstrap="boot"))


INPUTS = {"theta": 0.3, "phi": 0.5, "s": 1.0}


def test_graph_option_uses_gae_and_lambda_one_equals_plain_credit():
    key = jax.random.key(0)
    plain, one, half = _walk(None), _walk(scg.GAE(1.0)), _walk(scg.GAE(0.5))
    g_plain = plain.grad(INPUTS, key, num_samples=16, wrt="theta")["theta"]
    g_one = one.grad(INPUTS, key, num_samples=16, wrt="theta")["theta"]
    g_half = half.grad(INPUTS, key, num_samples=16, wrt="theta")["theta"]
    np.testing.assert_allclose(g_one, g_plain, rtol=1e-5)
    assert abs(float(g_half - g_plain)) > 1e-4

    values = half.sample(INPUTS, key, num_samples=4)
    adv = half.advantages(INPUTS, values)["a"]
    b, boot = values["v"], values["boot"]
    zeros = jnp.zeros_like(b)
    want = jax.vmap(lambda c, bt, bb: gae(c, zeros[0], zeros[0], bt, bb, GAMMA, 0.5))(values["c"], boot, b)
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6)
    want_plain = plain.cost_to_go(INPUTS, values) - b
    np.testing.assert_allclose(plain.advantages(INPUTS, values)["a"], want_plain, rtol=1e-5, atol=1e-6)


def test_gae_option_errors():
    g = scg.Graph()
    theta = g.input("theta")
    with pytest.raises(scg.GraphError, match="needs baseline"):
        g.stochastic("a", lambda t: dist.Bernoulli(logits=t), theta, advantage=scg.GAE(0.9))
    with pytest.raises(scg.GraphError, match="scg.GAE"):
        g.stochastic("a", lambda t: dist.Bernoulli(logits=t), theta, baseline=theta, advantage=0.9)
    with pytest.raises(ValueError, match="lam"):
        scg.GAE(1.5)
    b = g.deterministic("b", lambda t: 0 * t, theta)
    a = g.stochastic("a", lambda t: dist.Bernoulli(logits=t), theta, baseline=b, advantage=scg.GAE(0.9))
    g.cost("f", lambda a: a, a)
    with pytest.raises(scg.GraphError, match="needs time steps"):
        scg.compile(g).grad({"theta": 0.1}, jax.random.key(0))
