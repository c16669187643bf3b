"""Gumbel-softmax / Concrete (Jang et al. 2017; Maddison et al. 2017) and straight-through Gumbel: biased relaxations.

Graphs (exact gradients by enumeration, ``scg.testing.exact_grad``; it enumerates
Categorical indices, the estimators give one-hot vectors, so costs read both
through :func:`one_hot`):

- ``bernoulli``: ``z ~ Bernoulli(σ(φ))``, D = 3, cost ``(w·z − 0.7)²``, ``w = (2, −1.5, 1)``;
- ``categorical``: ``a ~ softmax(θ)``, K = 4, cost ``(v·e_a − 0.3)² + 0.3 (v·e_a)³``;
- ``mixed``: ``a`` as above (the estimator under test) and ``b ~ Bernoulli(φ + M e_a)`` (score) downstream.

Measured (``test_gumbel_softmax_bias_shrinks_with_temperature``: 20k replicates at τ = 1, 50k at τ = 0.1):
gumbel_softmax's bias ‖E ĝ − ∇‖ on ``bernoulli`` (‖∇‖ = 0.567) is 0.232 ± 0.003 at τ = 1 and 0.006 ± 0.009
(noise floor ‖stderr‖ = 0.016) at τ = 0.1; on ``categorical`` (‖∇‖ = 0.995) 0.596 ± 0.002 and 0.070 ± 0.009
(floor 0.018). At τ = 1 with 32k replicates max |z| is 76 / 330 / 188 (gumbel_softmax on bernoulli /
categorical / mixed) and 13 / 165 / 120 (straight_through), against a threshold of 5.2-5.5; the score
function on the same graphs: max |z| 0.7 / 1.1 / 1.3. ``bench/estimator_bias.py`` gives the whole curve in τ.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.errors import GraphError
from scg.estimators.gumbel_softmax import GumbelSoftmax, gumbel_softmax, relaxed_bernoulli, relaxed_one_hot
from scg.estimators.straight_through import StraightThrough, straight_through

REPLICATES = 8192
W = jnp.array([2.0, -1.5, 1.0])
V = jnp.array([1.5, -1.0, 0.5, 2.0])
M = jnp.array([[1.0, -0.5, 0.0, 0.8], [-0.7, 0.2, 1.1, 0.0]])
K = V.shape[0]
BERNOULLI = {"phi": jnp.array([0.3, -0.5, 1.0])}
CATEGORICAL = {"theta": jnp.array([0.2, -0.4, 0.6, -0.1])}
MIXED = {"theta": CATEGORICAL["theta"], "phi": jnp.array([0.4, -0.3])}
FACTORIES = {"gumbel_softmax": gumbel_softmax, "straight_through": straight_through, "score": None}


def one_hot(a):
    """An index as its one-hot, a (relaxed) one-hot vector as it is."""
    return jax.nn.one_hot(a, K) if jnp.ndim(a) == 0 else a


def bernoulli_cost(z):
    return (jnp.dot(W, z) - 0.7) ** 2


def categorical_cost(a):
    s = jnp.dot(V, one_hot(a))
    return (s - 0.3) ** 2 + 0.3 * s**3


def bernoulli(estimator) -> scg.Graph:
    g = scg.Graph("bernoulli")
    phi = g.input("phi")
    z = g.stochastic("z", lambda p: dist.Bernoulli(logits=p), phi, estimator=estimator)
    g.cost("f", bernoulli_cost, z)
    return g


def categorical(estimator) -> scg.Graph:
    g = scg.Graph("categorical")
    theta = g.input("theta")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), theta, estimator=estimator)
    g.cost("f", categorical_cost, a)
    return g


def mixed(estimator) -> scg.Graph:
    g = scg.Graph("mixed")
    theta, phi = g.input("theta"), g.input("phi")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), theta, estimator=estimator)
    b = g.stochastic("b", lambda p, a: dist.Bernoulli(logits=p + M @ one_hot(a)), phi, a, estimator="score")
    g.cost("f", lambda a, b: categorical_cost(a) + (b[0] - 2.0 * b[1] + jnp.dot(V, one_hot(a))) ** 2, a, b)
    return g


GRAPHS = {"bernoulli": (bernoulli, BERNOULLI), "categorical": (categorical, CATEGORICAL), "mixed": (mixed, MIXED)}


def make(estimator: str, temperature: float):
    return FACTORIES[estimator](temperature) if FACTORIES[estimator] else estimator


@functools.lru_cache(maxsize=None)
def exact(graph: str):
    build, inputs = GRAPHS[graph]
    return testing.exact_grad(build("score"), inputs)


@functools.lru_cache(maxsize=None)
def draws(graph: str, estimator: str, temperature: float = 1.0, replicates: int = REPLICATES, seed: int = 0):
    build, inputs = GRAPHS[graph]
    est = scg.compile(build(make(estimator, temperature)))
    return est.grad_samples(inputs, jax.random.key(seed), num_replicates=replicates)


def bias(samples, exact_grad):
    """``(‖mean − exact‖, its standard error by the delta method, the noise floor ‖stderr‖)``."""
    d = np.concatenate([np.asarray(x, np.float64).reshape(len(x), -1) for x in jax.tree_util.tree_leaves(samples)], 1)
    e = np.concatenate([np.asarray(x, np.float64).reshape(-1) for x in jax.tree_util.tree_leaves(exact_grad)])
    b, se = d.mean(0) - e, d.std(0, ddof=1) / np.sqrt(len(d))
    norm = np.linalg.norm(b)
    return norm, np.linalg.norm(b * se) / norm, np.linalg.norm(se)


# -- (a) straight-through's value is an exact draw; (b) gumbel-softmax's concentrates on vertices ----------
def node_values(graph, est, replicates, seed=0):
    """The stochastic node's values from the compiled ``grad_fn(with_values=True)``, one per replicate."""
    build, inputs = GRAPHS[graph]
    fn = scg.compile(build(est)).grad_fn(inputs, with_values=True)
    keys = jax.random.split(jax.random.key(seed), replicates)
    _, values = jax.jit(jax.vmap(lambda k: fn(inputs, k)))(keys)
    name = "z" if graph == "bernoulli" else "a"
    return np.asarray(values[name]).reshape(replicates, -1)  # [replicates, D] or [replicates, K]


@pytest.mark.parametrize("graph", ["bernoulli", "categorical"])
def test_straight_through_value_is_an_exact_draw(graph):
    values = node_values(graph, straight_through(0.5), 20000)
    assert set(np.unique(values)) <= {0.0, 1.0}  # exactly 0 or 1, not 1 ± rounding
    if graph == "categorical":
        np.testing.assert_array_equal(values.sum(-1), 1.0)  # one-hot
        probs = jax.nn.softmax(CATEGORICAL["theta"])
    else:
        probs = jax.nn.sigmoid(BERNOULLI["phi"])
    testing.assert_unbiased({"mean": values}, {"mean": probs})


@pytest.mark.parametrize("graph", ["bernoulli", "categorical"])
def test_gumbel_softmax_concentrates_on_vertices_as_temperature_falls(graph):
    dist_to_vertex = {}
    for tau in (1.0, 0.1, 0.02):
        v = node_values(graph, gumbel_softmax(tau), 4000, seed=3)
        assert np.all((v >= 0) & (v <= 1))
        if tau == 1.0:  # relaxed: inside the cube/simplex (a far tail of the noise rounds to a vertex in float32)
            assert np.mean((v > 0) & (v < 1)) > 0.99
        dist_to_vertex[tau] = 1.0 - v.max(-1) if graph == "categorical" else np.minimum(v, 1.0 - v).max(-1)
    means = [dist_to_vertex[t].mean() for t in (1.0, 0.1, 0.02)]
    assert means[0] > means[1] > means[2]
    assert np.mean(dist_to_vertex[0.02] < 0.01) > 0.85  # P(|logits + L| < τ log 99) is about 0.05-0.1 here
    assert np.mean(dist_to_vertex[1.0] < 0.01) < 0.2


# -- (c) biased at τ = 1; (d) gumbel-softmax's bias falls with τ --------------------------------------------
@pytest.mark.parametrize("graph", ["bernoulli", "categorical", "mixed"])
@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_biased_at_unit_temperature(graph, estimator):
    """Measured max |z| (32k replicates): 11-330; straight-through on ``bernoulli`` is the closest (threshold 5.2)."""
    testing.assert_biased(draws(graph, estimator, 1.0, replicates=4 * REPLICATES, seed=2), exact(graph))


@pytest.mark.parametrize("graph", ["bernoulli", "categorical", "mixed"])
def test_the_exact_reference_is_right(graph):
    """The same z-test passes for the unbiased score function: the bias above is the estimators', not the reference's."""
    testing.assert_unbiased(draws(graph, "score", replicates=4 * REPLICATES, seed=1), exact(graph))


@pytest.mark.parametrize("graph", ["bernoulli", "categorical"])
def test_gumbel_softmax_bias_shrinks_with_temperature(graph):
    hot = bias(draws(graph, "gumbel_softmax", 1.0, replicates=20000, seed=4), exact(graph))
    cold = bias(draws(graph, "gumbel_softmax", 0.1, replicates=50000, seed=5), exact(graph))
    noise = np.hypot(hot[1], max(cold[1], cold[2]))
    assert hot[0] - cold[0] > 5 * noise, (hot, cold)
    assert cold[0] < 0.5 * hot[0], (hot, cold)


# -- (e) unbiased=True, (f) hvp, (g) errors -----------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_refused_by_unbiased_compile(estimator):
    with pytest.raises(GraphError, match=rf"'z'.*'{estimator}'|'{estimator}'.*'z'"):
        scg.compile(bernoulli(make(estimator, 1.0)), unbiased=True)


@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_hvp_is_refused(estimator):
    est = scg.compile(bernoulli(make(estimator, 1.0)))
    with pytest.raises(GraphError, match="'z'"):
        est.hvp(BERNOULLI, {"phi": jnp.ones(3)}, jax.random.key(0))


@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_errors_name_node_and_estimator(estimator):
    g = scg.Graph()
    mu = g.input("mu")
    y = g.stochastic("y", lambda m: dist.Normal(m, 1.0), mu, estimator=make(estimator, 1.0))
    g.cost("c", lambda y: y**2, y)
    with pytest.raises(GraphError, match=rf"'y'.*'{estimator}'.*Normal"):
        scg.compile(g).grad({"mu": 0.1}, jax.random.key(0))
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(GraphError, match="temperature"):
            FACTORIES[estimator](bad)
    with pytest.raises(GraphError, match=rf"'z'.*'{estimator}'"):
        make(estimator, 1.0).observe("z", dist.Bernoulli(logits=jnp.zeros(3)), jnp.ones(3))
    with pytest.raises(GraphError, match="'z'"):  # the compiler refuses observed= for the node first
        scg.compile(bernoulli(make(estimator, 1.0))).grad(BERNOULLI, jax.random.key(0), observed={"z": jnp.ones(3)})


def test_values_names_and_flags():
    for est, cls, name, tau in ((gumbel_softmax(), GumbelSoftmax, "gumbel_softmax", 0.5),
                                (straight_through(), StraightThrough, "straight_through", 1.0)):
        assert isinstance(est, cls) and est.name == name and est.temperature == tau
        assert est == cls(tau) and hash(est) == hash(cls(tau)) and est != cls(0.25)
        assert (est.passes_gradient, est.uses_score, est.unbiased, est.any_order, est.observable) == (True, False, False, False, False)
        assert repr(est) == f"{cls.__name__}(temperature={tau})"


# -- (h) in a mixed graph, under jit and vmap -----------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["gumbel_softmax", "straight_through"])
def test_mixed_graph_under_jit_and_vmap(estimator):
    est = scg.compile(mixed(make(estimator, 0.5)))
    grads = est.grad(MIXED, jax.random.key(0), num_samples=8)
    assert all(np.all(np.isfinite(np.asarray(v))) and np.any(np.asarray(v) != 0) for v in grads.values())
    fn = jax.jit(est.grad_fn(MIXED))
    keys = jax.random.split(jax.random.key(1), 16)
    batched = jax.vmap(lambda k: fn(MIXED, k))(keys)
    assert batched["theta"].shape == (16, 4) and batched["phi"].shape == (16, 2)
    np.testing.assert_allclose(jax.tree_util.tree_map(lambda x: x[3], batched)["theta"], fn(MIXED, keys[3])["theta"], rtol=1e-5)
    # vmap over the inputs too: a batch of logits
    thetas = CATEGORICAL["theta"] + jnp.linspace(-1, 1, 5)[:, None]
    out = jax.vmap(lambda t: fn({**MIXED, "theta": t}, keys[0]))(thetas)
    assert np.all(np.isfinite(np.asarray(out["theta"]))) and out["theta"].shape == (5, 4)


# -- (i) one sample by hand ---------------------------------------------------------------------------------
TINY = jnp.finfo(jnp.float32).tiny


def hand_bernoulli(phi, key, tau):
    u = jax.random.uniform(key, phi.shape, phi.dtype, minval=TINY, maxval=1.0)
    x = phi + jnp.log(u) - jnp.log1p(-u)
    return jax.nn.sigmoid(x / tau), (x > 0).astype(phi.dtype)


def hand_categorical(theta, key, tau):
    x = jax.nn.log_softmax(theta) + jax.random.gumbel(key, theta.shape)
    return jax.nn.softmax(x / tau), jax.nn.one_hot(jnp.argmax(x), theta.shape[0])


@pytest.mark.parametrize("graph", ["bernoulli", "categorical"])
def test_one_sample_by_hand(graph):
    tau, key = 0.7, jax.random.key(11)
    if graph == "bernoulli":
        params, make_dist, hand, cost = BERNOULLI["phi"], lambda p: dist.Bernoulli(logits=p), hand_bernoulli, bernoulli_cost
    else:
        params, make_dist, hand, cost = CATEGORICAL["theta"], lambda t: dist.Categorical(logits=t), hand_categorical, categorical_cost
    soft, hard = hand(params, key, tau)
    assert np.all((soft > 0) & (soft < 1))
    # gumbel-softmax: the relaxed value and the pathwise gradient of f(soft)
    gs = gumbel_softmax(tau)
    np.testing.assert_allclose(gs.sample(make_dist(params), key), soft, rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda p: cost(gs.sample(make_dist(p), key)))(params),
        jax.grad(lambda p: cost(hand(p, key, tau)[0]))(params), rtol=1e-5, atol=1e-7)
    # straight-through: the hard value, and J_soft^T ∇f(hard) by the chain rule written out
    st = straight_through(tau)
    np.testing.assert_array_equal(st.sample(make_dist(params), key), hard)
    chain = jax.jacobian(lambda p: hand(p, key, tau)[0])(params).T @ jax.grad(cost)(hard)
    np.testing.assert_allclose(jax.grad(lambda p: cost(st.sample(make_dist(p), key)))(params), chain, rtol=1e-5, atol=1e-7)
    # the pure relaxations agree with the estimators
    logits = make_dist(params).logits
    relax = relaxed_bernoulli if graph == "bernoulli" else relaxed_one_hot
    np.testing.assert_allclose(relax(logits, key, tau)[0], soft, rtol=1e-6)


def test_compiled_gradient_by_hand_from_the_recorded_noise():
    """Through the compiler: the noise is read back from the value, ``L = τ logit(y) − φ``, and ∂f(σ((φ + L)/τ))/∂φ
    written by hand matches the compiled one-sample gradient."""
    tau = 0.7
    fn = scg.compile(bernoulli(gumbel_softmax(tau))).grad_fn(BERNOULLI, with_values=True)
    grads, values = fn(BERNOULLI, jax.random.key(5))
    y, phi = jnp.reshape(values["z"], (3,)), BERNOULLI["phi"]
    noise = tau * (jnp.log(y) - jnp.log1p(-y)) - phi
    hand = jax.grad(lambda p: bernoulli_cost(jax.nn.sigmoid((p + noise) / tau)))(phi)
    np.testing.assert_allclose(grads["phi"], hand, rtol=1e-4, atol=1e-5)
