"""Interoperating with NumPyro (issue 17): its distributions in exact enumeration and in ``kl_divergence``,
the ELBO's ``log q`` cost without its mean-zero score (``Graph.log_prob_cost``), and a Temporal's initial
carried values given through ``observed=`` alone.

Every check compares with something known: scg's own distributions and closed forms, the closed-form
gradient of a Normal-Normal ELBO, exact enumeration, or the same call with the carried input given.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing

nd = pytest.importorskip("numpyro.distributions")


def _exact_grad(graph: scg.Graph, inputs: dict, **kw) -> dict:
    """``scg.testing.exact_grad`` under ``jit``: eager, it dispatches the enumeration op by op (5x slower here)."""
    return jax.jit(lambda i: testing.exact_grad(graph, i, **kw))(inputs)


# -- 1. exact enumeration over NumPyro's per-element supports -----------------------------------
def _belief_net(bernoulli, categorical, normal) -> scg.Graph:
    """t -> h ~ Bernoulli(t) [3] -> a ~ Categorical(W h) [2 of 3] -> y ~ Normal(v·a, 1): a cost at every level,
    so that each node's joint support (over its elements) and the quadrature enter the exact gradient."""
    g = scg.Graph("belief")
    t, w = g.input("t"), g.input("w")
    h = g.stochastic("h", lambda t: bernoulli(t), t)
    a = g.stochastic("a", lambda w, h: categorical(jnp.stack([w @ h, -(w @ h)])), w, h)
    y = g.stochastic("y", lambda w, a: normal(w[0, :2] @ a, 1.0), w, a)
    g.cost("c_h", lambda h: jnp.sum((h - 0.3) ** 2 * jnp.arange(1.0, 4.0)), h)
    g.cost("c_a", lambda a: jnp.sum(jnp.sin(a + 0.5 * jnp.arange(2))), a)
    g.cost("c_y", lambda y: y**2 + 0.1 * y**3, y)
    return g


SCG = (lambda t: dist.Bernoulli(logits=t), lambda l: dist.Categorical(logits=l), dist.Normal)
NUMPYRO = (lambda t: nd.Bernoulli(logits=t), lambda l: nd.Categorical(logits=l), nd.Normal)
INPUTS = {"t": jnp.array([0.4, -1.0, 0.8]), "w": jnp.array([[0.5, -0.3, 1.2], [0.1, 0.7, -0.6], [0.2, 0.0, 0.4]])}


def test_exact_gradient_with_numpyro_distributions_equals_scg_distributions():
    want = _exact_grad(_belief_net(*SCG), INPUTS, quadrature=4)  # exact: y's cost is a cubic
    got = _exact_grad(_belief_net(*NUMPYRO), INPUTS, quadrature=4)
    for k in INPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(want[k])) and np.max(np.abs(want[k])) > 1e-2  # not a vacuous zero


def test_joint_support_of_a_numpyro_distribution_is_the_product_of_its_elements():
    values, weights = dist.joint_support(nd.Categorical(probs=jnp.array([[0.2, 0.8], [0.5, 0.5], [0.1, 0.9]])))
    want, want_w = dist.joint_support(dist.Categorical(probs=jnp.array([[0.2, 0.8], [0.5, 0.5], [0.1, 0.9]])))
    assert values.shape == (8, 3)
    np.testing.assert_array_equal(values, want)
    np.testing.assert_allclose(weights, want_w, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Bernoulli.*2\*\*11 joint values, more than 1024"):
        dist.joint_support(nd.Bernoulli(logits=jnp.zeros(11)))
    with pytest.raises(ValueError, match="Exponential has no finite support"):
        dist.joint_support(nd.Exponential(1.0))


# -- 2. kl_divergence of two NumPyro distributions -------------------------------------------------
P, Q = jnp.array([0.3, -1.2, 2.0]), jnp.array([-0.5, 0.4, 1.0])
PROBS = jax.nn.softmax(jnp.array([[0.2, -1.0, 0.5], [1.5, 0.0, -0.3]]), -1)
QROBS = jax.nn.softmax(jnp.array([[-0.4, 0.3, 0.1], [0.0, 0.9, -1.1]]), -1)


@pytest.mark.parametrize(
    "numpyro_pair,scg_pair",
    [
        ((nd.Normal(P, 1.5), nd.Normal(Q, 0.5)), (dist.Normal(P, 1.5), dist.Normal(Q, 0.5))),  # NumPyro's registry
        ((nd.Categorical(probs=PROBS), nd.Categorical(probs=QROBS)),
         (dist.Categorical(probs=PROBS), dist.Categorical(probs=QROBS))),  # NumPyro's registry
        ((nd.Categorical(logits=jnp.log(PROBS)), nd.Categorical(logits=jnp.log(QROBS))),
         (dist.Categorical(probs=PROBS), dist.Categorical(probs=QROBS))),  # not in NumPyro's: scg's form
        ((nd.Bernoulli(logits=P), nd.Bernoulli(probs=jax.nn.sigmoid(Q))),
         (dist.Bernoulli(logits=P), dist.Bernoulli(logits=Q))),  # not in NumPyro's: scg's form
    ],
    ids=["normal", "categorical_probs", "categorical_logits", "bernoulli"],
)
def test_kl_of_numpyro_distributions_equals_scg_closed_form(numpyro_pair, scg_pair):
    got, want = dist.kl_divergence(*numpyro_pair), dist.kl_divergence(*scg_pair)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_kl_reaches_numpyro_registry_and_says_when_nobody_has_a_form():
    p, q = nd.Normal(P, 1.5).to_event(1), nd.Normal(Q, 0.5).to_event(1)  # Independent: a form only NumPyro has
    np.testing.assert_allclose(dist.kl_divergence(p, q), jnp.sum(dist.kl_divergence(dist.Normal(P, 1.5), dist.Normal(Q, 0.5))), rtol=1e-5)
    with pytest.raises(TypeError, match=r"neither NumPyro nor scg.*KL\(Laplace ‖ Laplace\)"):
        dist.kl_divergence(nd.Laplace(0.0, 1.0), nd.Laplace(1.0, 1.0))
    with pytest.raises(TypeError, match="same distribution class"):
        dist.kl_divergence(nd.Normal(0.0, 1.0), dist.Normal(0.0, 1.0))


# -- 3. the ELBO's log q cost without its mean-zero score -------------------------------------------
X, V = 1.3, 1.0  # one observation x ~ N(z, V), prior z ~ N(0, 1); the posterior's precision is A = 1 + 1/V
A = 1.0 + 1.0 / V
PHI = {"mu": jnp.asarray(X / (V * A) + 0.2), "rho": jnp.log(jnp.asarray(0.6))}  # near, not at, the posterior


def _elbo(sticking: bool) -> scg.Graph:
    """The negative ELBO ``E_q[log q(z) - log p(z) - log p(x | z)]``, ``q = N(mu, exp(rho)²)`` (pathwise)."""
    g = scg.Graph("elbo")
    mu, rho = g.input("mu"), g.input("rho")
    z = g.stochastic("z", lambda m, r: dist.Normal(m, jnp.exp(r)), mu, rho)
    if sticking:
        g.log_prob_cost("log_q", z)
    else:
        g.cost("log_q", lambda d, z: jnp.sum(d.log_prob(z)), scg.dist_of(z), z)
    g.cost("log_p", lambda z: -dist.Normal(0.0, 1.0).log_prob(z) - dist.Normal(z, V**0.5).log_prob(X), z)
    return g


def _exact_elbo_grad(mu, rho):
    """Closed form: ``-ELBO = -rho + (mu² + s²)/2 + ((X - mu)² + s²)/(2V) + const``, ``s = exp(rho)``."""
    s2 = jnp.exp(2 * rho)
    return {"mu": mu - (X - mu) / V, "rho": -1.0 + s2 + s2 / V}


def test_log_prob_cost_is_unbiased_for_the_normal_elbo():
    exact = _exact_elbo_grad(**PHI)
    for k in exact:  # the closed form and the quadrature of scg.testing agree first
        np.testing.assert_allclose(_exact_grad(_elbo(True), PHI)[k], exact[k], rtol=1e-4, atol=1e-6)
    draws = scg.compile(_elbo(True)).grad_samples(PHI, jax.random.key(0), num_replicates=4000)
    testing.assert_unbiased(draws, exact)


def test_log_prob_cost_has_lower_variance_than_the_naive_log_q():
    # Per sample, with z = mu + s ε: Var ∂mu = (A s)² naive, (A s - 1/s)² without the score: 1.44 and 0.22
    # here; Var ∂rho = A² s² (mu - m)² + 2 (A s²)² naive, the same with 2 (A s² - 1)²: 1.09 and 0.21. With
    # 4000 replicates each estimated variance is within a few percent, so the bound 0.5 has a wide margin.
    var = {}
    for sticking in (True, False):
        draws = scg.compile(_elbo(sticking)).grad_samples(PHI, jax.random.key(1), num_replicates=4000)
        var[sticking] = {k: float(np.var(np.asarray(v))) for k, v in draws.items()}
    for k in PHI:
        assert var[True][k] < 0.5 * var[False][k], var


def test_log_prob_cost_of_a_score_node_is_unbiased():
    g = scg.Graph("discrete_elbo")
    t = g.input("t")
    z = g.stochastic("z", lambda t: nd.Bernoulli(logits=t), t)  # score function; NumPyro's distribution
    g.log_prob_cost("log_q", z)
    g.cost("log_p", lambda z: -jnp.sum(dist.Bernoulli(logits=jnp.array([1.0, -2.0])).log_prob(z) + 0.5 * z[0] * z[1]), z)
    inputs = {"t": jnp.array([0.3, 0.1])}
    draws = scg.compile(g).grad_samples(inputs, jax.random.key(2), num_replicates=2000)
    testing.assert_unbiased(draws, _exact_grad(g, inputs))


def test_log_prob_cost_declaration_errors():
    g = scg.Graph()
    t = g.input("t")
    y = g.deterministic("y", lambda t: t, t)
    with pytest.raises(scg.GraphError, match="log_prob_cost 'c': 'y' is a deterministic node"):
        g.log_prob_cost("c", y)
    with pytest.raises(scg.GraphError, match="scale must be a finite Python number"):
        g.log_prob_cost("c", "y", scale=float("inf"))
    with pytest.raises(scg.GraphError, match=r"cost 'log_q' is g.log_prob_cost of 'z'.*mode='dice' and hvp"):
        scg.compile(_elbo(True), mode="dice")
    with pytest.raises(scg.GraphError, match=r"cost 'log_q' is g.log_prob_cost of 'z'"):
        scg.compile(_elbo(True)).hvp(PHI, {"mu": 1.0, "rho": 0.0}, jax.random.key(0))


# -- 4. a Temporal's carried input given by observed= alone ----------------------------------------
def _walk() -> scg.Temporal:
    step = scg.Graph("walk")
    theta, s = step.input("theta"), step.input("s")
    a = step.stochastic("a", lambda th, s: dist.Bernoulli(logits=th - 0.5 * s), theta, s)
    s1 = step.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    step.cost("c", lambda s1: s1**2, s1)
    return scg.Temporal(step, carry={"s": "s_next"}, horizon=3)


def test_carried_input_from_observed_alone():
    est, n, key = scg.compile(_walk()), 8, jax.random.key(3)
    s0, theta = {"s": jnp.linspace(-2.0, 2.0, n)}, jnp.asarray(0.2)  # float32 throughout: one compiled grad
    given = est.grad({"theta": theta, "s": jnp.asarray(5.0)}, key, num_samples=n, observed=s0)  # observed wins
    alone = est.grad({"theta": theta}, key, num_samples=n, observed=s0)
    assert set(alone) == {"theta"} and set(given) == {"theta", "s"}
    np.testing.assert_allclose(alone["theta"], given["theta"], rtol=1e-6)  # had s = 5 counted, they would differ
    assert float(given["s"]) == 0.0  # the input's value is replaced in every sample
    jitted = jax.jit(est.grad_fn({"theta": theta, "s": jnp.asarray(0.0)}, num_samples=n))
    np.testing.assert_allclose(jitted({"theta": theta}, key, s0)["theta"], alone["theta"], rtol=1e-5)


def test_carried_input_missing_everywhere_says_where_to_give_it():
    est = scg.compile(_walk())
    with pytest.raises(scg.GraphError, match=r"missing value for input node\(s\) \['s'\].*through observed="):
        est.grad({"theta": 0.2}, jax.random.key(0), num_samples=4)
    with pytest.raises(scg.GraphError, match=r"observed\['s'\] has shape \(\), .*leading num_samples=4 axis"):
        est.grad({"theta": 0.2}, jax.random.key(0), num_samples=4, observed={"s": 1.0})
