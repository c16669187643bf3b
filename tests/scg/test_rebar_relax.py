"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) against exact gradients, at their initial state and
after training the control variate on the variance gradient; their wrong variants; state through jit and scan.

Graphs (exact gradients by enumeration and Gauss-Hermite quadrature, ``scg.testing.exact_grad``):

- ``vector``: ``z ~ Bernoulli(σ(φ))``, D = 3, cost ``1.5 + (z·w − 0.4)² + 3 z₀ z₂ w₂²``: the weights ``w``
  inside the cost get their gradient at the hard sample ``b`` (the control variate sends none to them);
- ``mixed``: ``c ~ softmax(θ)`` (score), ``y ~ N(μ, 0.5²)`` (pathwise, upstream), ``z ~ Bernoulli(σ(φ + 0.5c +
  0.7y))`` with D = 2 (the estimator under test), ``x ~ N(z₀ − z₁ + 0.3y, 0.4²)`` (pathwise, downstream), costs
  ``(x − 1)² + cos(c) z₀`` and ``0.2 y²``: the relaxed ``z`` goes through ``x`` with its noise kept.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import scg
from scg import dist, testing
from scg.errors import GraphError
from scg._program.analysis import analyse
from scg.estimators.arm import bernoulli_draw, uniform_noise
from scg.estimators.rebar import REBAR, conditional_sample, logistic_sample, rebar
from scg.estimators.relax import RELAX, relax
from support import bernoulli_among_others

REPLICATES = 8192
STEPS = 400
TRAIN_SAMPLES = 1  # one sample per step, as Grathwohl et al.'s Algorithm 2; measured here to train at least as
# well as 4 or 16 per step (a batch shrinks Var[ĝ] by 1/N, the noise of ‖E ĝ‖²'s zero-mean gradient by 1/√N only)
LR = 3e-2  # for the tests' 400 steps; the default 1e-3 suits long training
VECTOR = {"phi": jnp.array([0.3, -0.8, 1.2]), "w": jnp.array([1.0, 2.0, -1.0])}
MIXED = {"phi": jnp.array([0.4, -0.6]), "mu": jnp.array(0.2), "theta": jnp.array([0.3, -0.5, 0.1])}


def vector(estimator) -> scg.Graph:
    g = scg.Graph("vector")
    phi, w = g.input("phi"), g.input("w")
    z = g.stochastic("z", lambda p: dist.Bernoulli(logits=p), phi, estimator=estimator)
    g.cost("f", lambda z, w: 1.5 + (z @ w - 0.4) ** 2 + 3 * z[0] * z[2] * w[2] ** 2, z, w)
    return g


mixed = bernoulli_among_others


# -- deliberately wrong variants --------------------------------------------------------------------------
class SameZ(REBAR):
    """``z̃ = z``: the conditional draw replaced by the very noise that made ``b``. ``c(z̃)`` then correlates with
    ``∇ log p(b)`` and the ``∇c(z) − ∇c(z̃)`` correction vanishes: biased by ``−E[c(z) ∇ log p(b)]``."""

    def partner(self, logits, u, b, v):
        return logistic_sample(logits, u)


class Unreparameterised(REBAR):
    """``z̃ ~ p(z | b)`` drawn right but held constant in ``φ``: ``E[∇c(z̃)]`` goes missing, a bias."""

    def partner(self, logits, u, b, v):
        return jax.lax.stop_gradient(conditional_sample(logits, b, v))


class Independent(REBAR):
    """``z̃`` drawn independently of ``b`` (``p(z)`` for ``p(z | b)``): a plausible slip but NOT a bias: then
    ``E[c(z̃) ∇ log p(b)] = E[c(z̃)] E[∇ log p(b)] = 0`` and ``∇c(z)``, ``∇c(z̃)`` have the same mean; only the
    variance grows (the control variate no longer tracks ``f(b)``)."""

    def partner(self, logits, u, b, v):
        return logistic_sample(logits, v)


ESTIMATORS = {"rebar": lambda: rebar(lr=LR), "relax": lambda: relax(lr=LR), "same_z": lambda: SameZ(lr=LR),
              "unreparameterised": lambda: Unreparameterised(lr=LR), "independent": lambda: Independent(lr=LR),
              "score": lambda: "score"}
GRAPHS = {"vector": (vector, VECTOR), "mixed": (mixed, MIXED)}


@functools.lru_cache(maxsize=None)
def exact(graph: str):
    make, inputs = GRAPHS[graph]
    return testing.exact_grad(make("score"), inputs, quadrature=8)


@functools.lru_cache(maxsize=None)
def compiled(graph: str, estimator: str):
    return scg.compile(GRAPHS[graph][0](ESTIMATORS[estimator]()))


@functools.lru_cache(maxsize=None)
def trainer(graph: str, estimator: str):
    """``(state, key) -> state`` after ``STEPS`` calls of ``grad(..., num_samples=TRAIN_SAMPLES)`` at the fixed
    inputs, in one jitted scan."""
    est, inputs = compiled(graph, estimator), GRAPHS[graph][1]
    step = est.grad_fn(inputs, num_samples=TRAIN_SAMPLES, with_state=True)

    @jax.jit
    def train(state, key):
        return jax.lax.scan(lambda s, k: (step(inputs, k, s)[1], None), state, jax.random.split(key, STEPS))[0]

    return train


@functools.lru_cache(maxsize=None)
def trained_state(graph: str, estimator: str):
    return trainer(graph, estimator)(compiled(graph, estimator).init_state(GRAPHS[graph][1]), jax.random.key(5))


@functools.lru_cache(maxsize=None)
def draws(graph: str, estimator: str, trained: bool = False, seed: int = 1):
    est, inputs = compiled(graph, estimator), GRAPHS[graph][1]
    state = trained_state(graph, estimator) if trained else est.init_state(inputs)
    return est.grad_samples(inputs, jax.random.key(seed), num_replicates=REPLICATES, state=state)


def node_variance(samples) -> float:
    """Trace of the covariance over the node's logit parameters ``φ`` (the part the control variate changes)."""
    return float(np.var(np.asarray(samples["phi"], np.float64), axis=0).sum())


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("graph", ["vector", "mixed"])
@pytest.mark.parametrize("estimator", ["rebar", "relax"])
def test_unbiased(estimator, graph, trained):
    """Measured max |z| (8192 replicates, initial / after 400 steps): REBAR vector 1.07 / 1.88, mixed 1.38 / 1.62;
    RELAX vector 1.08 / 1.65, mixed 1.37 / 1.21 (threshold 5.6 over 6 and 5.7 over 6 components)."""
    testing.assert_unbiased(draws(graph, estimator, trained), exact(graph))


@pytest.mark.parametrize("graph", ["vector", "mixed"])
@pytest.mark.parametrize("estimator", ["same_z", "unreparameterised"])
def test_wrong_variants_are_biased(estimator, graph):
    """Measured max |z|: z̃ = z 67 (vector), 80 (mixed); z̃ not reparameterised 10.0, 10.5."""
    testing.assert_biased(draws(graph, estimator, seed=2), exact(graph))


def test_independent_partner_is_unbiased_but_noisier():
    """Measured: max |z| 1.98; the φ-variance 7.63 against REBAR's 2.67 (2.9x)."""
    slipped = draws("vector", "independent", seed=2)
    testing.assert_unbiased(slipped, exact("vector"))
    assert node_variance(slipped) > 1.2 * node_variance(draws("vector", "rebar"))


@pytest.mark.parametrize("graph", ["vector", "mixed"])
@pytest.mark.parametrize("estimator", ["rebar", "relax"])
def test_training_lowers_the_variance(estimator, graph):
    """Trace of the φ-gradient's covariance, 8192 replicates, same key. Measured (from λ = 0.5, η = 1 to the
    trained λ, η):

    ======  ======  =======  =======  =====  =========  =========  ============  ==========
    est.    graph   initial  trained  score  trained λ  trained η  trained/init  trained/sc
    ======  ======  =======  =======  =====  =========  =========  ============  ==========
    REBAR   vector  2.67     1.99     12.7   1.43       1.52       0.74          0.16
    RELAX   vector  2.64     2.21     12.7   1.10       0.84       0.83          0.17
    REBAR   mixed   0.70     0.53     2.40   1.59       1.18       0.76          0.22
    RELAX   mixed   0.71     0.53     2.40   1.58       1.00       0.75          0.22
    ======  ======  =======  =======  =====  =========  =========  ============  ==========

    The initial λ, η are already good, so training gains 17-26%; from η = 0 it gains 6x
    (:func:`test_training_from_the_score_function_lowers_the_variance_far`). The score function here has
    one evaluation of f per estimate (REBAR and RELAX: one at b, two relaxed, and their gradients).
    """
    before, after = node_variance(draws(graph, estimator)), node_variance(draws(graph, estimator, trained=True))
    score = node_variance(draws(graph, "score"))
    print(f"{estimator} {graph}: trained/initial {after / before:.3f}, trained/score {after / score:.3f}")
    assert after < 0.9 * before, (before, after)
    assert after < 0.5 * score, (after, score)


def test_training_from_the_score_function_lowers_the_variance_far():
    """Started at ``η = 0`` (REBAR is then the score function; RELAX the score function plus a small ``ρ``), the
    trained control variate brings the variance of the ``φ``-gradient far down (measured, vector: REBAR 0.16x,
    RELAX 0.15x of the initial), and the estimate stays unbiased."""
    for name in ("rebar", "relax"):
        est = compiled("vector", name)
        state = est.init_state(VECTOR)
        state["z"]["estimator"]["params"]["eta"] = jnp.zeros(())
        trained = trainer("vector", name)(state, jax.random.key(6))
        before = node_variance(est.grad_samples(VECTOR, jax.random.key(1), num_replicates=REPLICATES, state=state))
        result = est.grad_samples(VECTOR, jax.random.key(1), num_replicates=REPLICATES, state=trained)
        after = node_variance(result)
        print(f"{name} from eta = 0: trained/initial {after / before:.3f}")
        testing.assert_unbiased(result, exact("vector"))
        assert after < 0.5 * before, (before, after)


# -- the draws, by hand --------------------------------------------------------------------------------------
def test_relaxed_draws_match_the_hard_sample_and_the_logistic_law():
    """``H(z) = b`` for the node's own noise; ``z̃ ~ p(z | b)`` has the sign ``b`` asks for, and mixed over
    ``b ~ Bernoulli(σ(φ))`` it is logistic with location ``φ`` (Kolmogorov-Smirnov), as ``z`` is."""
    d = dist.Bernoulli(logits=jnp.array([-1.5, 0.3, 2.0]))
    keys = jax.random.split(jax.random.key(7), 4000)
    u = jax.vmap(lambda k: uniform_noise(d, k))(keys)
    v = jax.vmap(lambda k: uniform_noise(d, jax.random.fold_in(k, 1)))(keys)
    b = bernoulli_draw(d, u)
    z, z_tilde = logistic_sample(d.logits, u), conditional_sample(d.logits, b, v)
    np.testing.assert_array_equal(np.asarray(z > 0), np.asarray(b > 0.5))
    np.testing.assert_array_equal(np.asarray(z_tilde > 0), np.asarray(b > 0.5))
    for i, loc in enumerate(np.asarray(d.logits)):
        for sample in (z, z_tilde):
            assert stats.kstest(np.asarray(sample[:, i]), stats.logistic(loc=loc).cdf).pvalue > 1e-4


def toy(estimator) -> scg.Graph:
    g = scg.Graph("toy")
    phi = g.input("phi")
    z = g.stochastic("z", lambda p: dist.Bernoulli(logits=p), phi, estimator=estimator)
    g.cost("f", lambda z: (z - 0.49) ** 2, z)
    return g


def test_one_sample_by_hand():
    """One REBAR sample on ``f(b) = (b − 0.49)²`` at ``η = 1.3, λ = 0.7``, from Eq. 6 with the derivatives of
    ``z = φ + log(1−u) − log u`` (1) and of ``z̃`` (``1 − (1−p)/(1 − p(1−v))`` for b = 1, ``1 − p/(1 − v(1−p))``
    for b = 0) written out in numpy, for four keys."""
    phi, eta, lam = 0.4, 1.3, 0.7
    est = scg.compile(toy(rebar(init_temperature=lam, init_eta=eta)))
    inputs = {"phi": jnp.asarray(phi)}
    state = est.init_state(inputs)
    for seed in range(4):
        key = jax.random.key(seed)
        node_key = jax.random.fold_in(jax.random.split(key, 1)[0], analyse(toy("score")).position["z"])
        u = float(jax.random.uniform(node_key, (), jnp.float32))
        v = float(jax.random.uniform(jax.random.fold_in(node_key, 1), (), jnp.float32))
        p = 1.0 / (1.0 + np.exp(-phi))
        b = float(u < p)
        z = phi + np.log(1 - u) - np.log(u)
        w = 1 - p * (1 - v) if b else v * (1 - p)
        z_tilde = phi + np.log(w) - np.log(1 - w)
        dz_tilde = 1 - (1 - p) / (1 - p * (1 - v)) if b else 1 - p / (1 - v * (1 - p))
        f = lambda x: (x - 0.49) ** 2  # noqa: E731
        s = lambda x: 1.0 / (1.0 + np.exp(-x / lam))  # noqa: E731
        dc = lambda x, dx: eta * 2 * (s(x) - 0.49) * s(x) * (1 - s(x)) / lam * dx  # noqa: E731
        hand = (f(b) - eta * f(s(z_tilde))) * (b - p) + dc(z, 1.0) - dc(z_tilde, dz_tilde)
        grads, _ = est.grad(inputs, key, state=state)
        np.testing.assert_allclose(float(grads["phi"]), hand, rtol=1e-4, atol=1e-6)
        assert float(est.sample(inputs, key, num_samples=1)["z"][0]) == b


# -- state: the variance gradient, jit and scan ---------------------------------------------------------------
def recording(cls):
    """``cls`` keeping the variance gradient it was handed beside its state (``"seen"``)."""

    class Recording(cls):
        def init_state(self, node_name, value_aval, key):
            state = super().init_state(node_name, value_aval, key)
            return {**state, "seen": jax.tree_util.tree_map(jnp.zeros_like, state["params"])}

        def update_state(self, state, batch):
            return {**super().update_state(state, batch), "seen": batch.variance_grad}

    return Recording


@pytest.mark.parametrize("cls", [REBAR, RELAX])
def test_the_state_gets_the_gradient_of_the_squared_estimate_and_one_adam_step(cls):
    est = scg.compile(vector(recording(cls)(init_temperature=0.8, init_eta=0.7, lr=0.01)))
    key = jax.random.key(3)
    state = est.init_state(VECTOR)
    grads, new = est.grad(VECTOR, key, num_samples=3, state=state)
    params = state["z"]["estimator"]["params"]

    def squared(params):
        s = {"z": {"estimator": {**state["z"]["estimator"], "params": params}}}
        g = est.grad(VECTOR, key, num_samples=3, state=s)[0]
        return sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(g))

    want = jax.grad(squared)(params)
    seen = new["z"]["estimator"]["seen"]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), seen, want)
    assert float(jnp.abs(seen["eta"])) > 0 and float(jnp.abs(seen["log_temperature"])) > 0
    updates, _ = optax.adam(0.01).update(want, state["z"]["estimator"]["opt_state"], params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                           new["z"]["estimator"]["params"], optax.apply_updates(params, updates))


def test_state_goes_through_jit_and_scan_without_recompiling():
    est = compiled("vector", "rebar")
    step = jax.jit(est.grad_fn(VECTOR, num_samples=2, with_state=True))
    state = est.init_state(VECTOR)
    _, once = step(VECTOR, jax.random.key(0), state)
    _, twice = step(VECTOR, jax.random.key(1), once)
    assert step._cache_size() == 1
    assert int(twice["z"]["estimator"]["opt_state"][0].count) == 2
    assert float(twice["z"]["estimator"]["params"]["eta"]) != float(state["z"]["estimator"]["params"]["eta"])
    trained = trained_state("vector", "rebar")  # STEPS steps in one lax.scan under jit
    assert int(trained["z"]["estimator"]["opt_state"][0].count) == STEPS
    _, state = est.grad(VECTOR, jax.random.key(2), state=trained)
    size = est.cache_size()
    for i in range(3):
        _, state = est.grad(VECTOR, jax.random.key(10 + i), state=state)
    assert est.cache_size() == size


# -- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [rebar, relax])
@pytest.mark.parametrize("bad", [lambda t: dist.Normal(t, 1.0), lambda t: dist.Categorical(logits=jnp.stack([t, -t], -1))])
def test_rejects_non_bernoulli(make, bad):
    g = scg.Graph()
    t = g.input("t")
    x = g.stochastic("my_node", bad, t, estimator=make())
    g.cost("c", lambda x: jnp.sum(x), x)
    with pytest.raises(GraphError, match=rf"'my_node'.*{make().name}.*Bernoulli"):
        scg.compile(g).grad({"t": jnp.zeros(2)}, jax.random.key(0))


@pytest.mark.parametrize("build,field", [
    (lambda: rebar(init_temperature=0.0), "init_temperature"), (lambda: rebar(init_temperature=-1.0), "init_temperature"),
    (lambda: rebar(lr=0.0), "lr"), (lambda: relax(lr=-1e-3), "lr"), (lambda: relax(hidden=0), "hidden"),
    (lambda: rebar(init_eta="1"), "init_eta"), (lambda: relax(init_temperature=True), "init_temperature"),
])
def test_rejects_bad_fields(build, field):
    with pytest.raises(GraphError, match=field):
        build()


@pytest.mark.parametrize("make", [rebar, relax])
def test_refuses_hvp_and_the_ratio_form_naming_the_node(make):
    est = scg.compile(vector(make()))
    with pytest.raises(GraphError, match=rf"hvp: node 'z': estimator '{make().name}'"):
        est.hvp(VECTOR, VECTOR, jax.random.key(0))
    with pytest.raises(GraphError, match=r"'z'.*importance-ratio"):
        est.ratio_surrogate(VECTOR, VECTOR, jax.random.key(0))


def test_names_and_attributes():
    for est, name in ((rebar(), "rebar"), (relax(), "relax")):
        assert est.name == name and est.trains_state and est.unbiased and est.needs_downstream
        assert not (est.any_order or est.uses_score or est.passes_gradient)
    assert relax() == RELAX(0.5, 1.0, 1e-3, 32) and hash(rebar()) == hash(REBAR())
