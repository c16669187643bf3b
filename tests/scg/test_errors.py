"""Every GraphError the compiler raises, and that its message names the node(s) at fault.

Structural errors (names, cycles, Condition 1 along declared paths, Theorem 2)
are raised by ``scg.compile``; errors that need shapes or distributions
(non-scalar costs, pathwise on a discrete node, integer values on a
differentiable path) by the first call, or by ``compile(example_inputs=...)``.
"""

import jax
import jax.numpy as jnp
import pytest

import scg
from scg import dist
from support import raises_naming

KEY = jax.random.key(0)


def bernoulli_graph(**stochastic_kw):
    """``θ → z ~ Bernoulli(logits=θ) → cost``; ``stochastic_kw`` goes to ``g.stochastic``."""
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", lambda t: dist.Bernoulli(logits=t), theta, **stochastic_kw)
    g.cost("f", lambda z: (z - 0.3) ** 2, z)
    return g


# -- declaration and structure ---------------------------------------------------------------------
def test_unknown_parent():
    g = scg.Graph()
    g.input("theta")
    g.deterministic("y", jnp.sin, "thetaa")
    g.cost("f", lambda y: y, "y")
    with raises_naming("y", "thetaa", match="unknown parent"):
        scg.compile(g)


def test_duplicate_name():
    g = scg.Graph()
    g.input("theta")
    with raises_naming("theta", match="duplicate"):
        g.deterministic("theta", jnp.sin, "theta")


def test_cycle_through_forward_references():
    g = scg.Graph()
    g.input("theta")
    g.deterministic("a", lambda t, b: t + b, "theta", "b")
    g.deterministic("b", lambda a: 2 * a, "a")
    g.cost("f", lambda a: a, "a")
    with raises_naming("a", "b", match="cycle"):
        scg.compile(g)


def test_graph_without_cost():
    g = scg.Graph("nocost")
    theta = g.input("theta")
    g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)
    with raises_naming("nocost", match="no cost"):
        scg.compile(g)


def test_unknown_estimator_name():
    with raises_naming("z", "scroe", match="unknown estimator"):
        scg.compile(bernoulli_graph(estimator="scroe"))


# -- costs ---------------------------------------------------------------------------------------------
def test_non_scalar_cost_and_reduce_sum_fixes_it():
    def graph(reduce):
        g = scg.Graph()
        theta = g.input("theta")
        x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)
        g.cost("sq", lambda x: x**2, x, reduce=reduce)
        return g

    inputs = {"theta": jnp.array([0.5, -1.0])}
    with raises_naming("sq", match="scalar"):
        scg.compile(graph(None)).grad(inputs, KEY)
    est = scg.compile(graph("sum"), example_inputs=inputs)
    values = est.sample(inputs, KEY)
    assert values["sq"].shape == () and jnp.allclose(values["sq"], jnp.sum(values["x"] ** 2))


# -- inputs at call time -----------------------------------------------------------------------------
def test_missing_input_at_call_time():
    g = bernoulli_graph()
    g.input("phi")
    with raises_naming("phi", match="missing"):
        scg.compile(g).grad({"theta": 0.1}, KEY)


def test_unknown_input_at_call_time():
    with raises_naming("thetta", match="not input nodes"):
        scg.compile(bernoulli_graph()).grad({"theta": 0.1, "thetta": 1.0}, KEY)


def test_wrt_names_a_non_input():
    with raises_naming("z", match="not an input"):
        scg.compile(bernoulli_graph()).grad({"theta": 0.1}, KEY, wrt=("theta", "z"))


def test_wrt_names_an_integer_input():
    g = scg.Graph()
    theta, n = g.input("theta"), g.input("n")
    z = g.stochastic("z", lambda t, n: dist.Bernoulli(logits=t * n), theta, n)
    g.cost("f", lambda z: z, z)
    with raises_naming("n", match="no gradient"):
        scg.compile(g).grad({"theta": 0.1, "n": jnp.array(3)}, KEY, wrt="n")


@pytest.mark.parametrize("num", [0, -2])
def test_num_samples_must_be_positive(num):
    est = scg.compile(bernoulli_graph())
    with pytest.raises(scg.GraphError, match="positive"):
        est.grad({"theta": 0.1}, KEY, num_samples=num)
    with pytest.raises(scg.GraphError, match="positive"):
        est.grad_samples({"theta": 0.1}, KEY, num_replicates=num)


# -- estimators --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [lambda t: dist.Bernoulli(logits=t), lambda t: dist.Categorical(logits=jnp.stack([t, -t]))],
    ids=["Bernoulli", "Categorical"],
)
def test_pathwise_on_a_discrete_node(make):
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", make, theta, estimator="pathwise")
    g.cost("f", lambda z: jnp.sum(z * 1.0), z)
    with raises_naming("z", match="pathwise"):
        scg.compile(g, example_inputs={"theta": jnp.array(0.2)})


# -- baselines (Theorem 2) -------------------------------------------------------------------------
def test_baseline_influenced_by_its_node_names_both():
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", lambda t: dist.Bernoulli(logits=t), theta, baseline="b")
    y = g.deterministic("y", lambda z: 2 * z, z)
    g.deterministic("b", lambda y: y + 1.0, y)
    g.cost("f", lambda y: y, y)
    with raises_naming("b", "z", match="Theorem 2"):
        scg.compile(g)


def test_baseline_that_is_its_own_node():
    with raises_naming("z", match="influenced"):
        scg.compile(bernoulli_graph(baseline="z"))


def test_baseline_naming_an_unknown_node():
    with raises_naming("z", "bb", match="unknown"):
        scg.compile(bernoulli_graph(baseline="bb"))


def test_baseline_on_a_pathwise_node():
    def graph(estimator):
        g = scg.Graph()
        theta = g.input("theta")
        b = g.deterministic("b", lambda t: 0.5 * t, theta)
        x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta, estimator=estimator, baseline=b)
        g.cost("f", lambda x: x**2, x)
        return g

    with raises_naming("x", match="no score-function term"):  # declared pathwise: at compile time
        scg.compile(graph("pathwise"))
    with raises_naming("x", match="no score-function term"):  # the default resolves to pathwise: first call
        scg.compile(graph(None)).grad({"theta": 0.2}, KEY)
    scg.compile(graph("score")).grad({"theta": 0.2}, KEY)  # a score node takes it


def test_baseline_on_a_default_discrete_node_is_accepted():
    g = bernoulli_graph(baseline="b")
    g.deterministic("b", lambda t: 0.1 * t, "theta")
    scg.compile(g).grad({"theta": 0.2}, KEY)


def test_leave_one_out_needs_two_samples():
    est = scg.compile(bernoulli_graph(baseline=scg.baselines.LeaveOneOut()))
    with raises_naming("z", match="num_samples >= 2"):
        est.grad({"theta": 0.1}, KEY, num_samples=1)


# -- Condition 1 ---------------------------------------------------------------------------------------
def test_condition_1_input_reaches_a_simulate_node():
    g = scg.Graph()
    theta = g.input("theta")
    u = g.deterministic("u", lambda t: 2 * t, theta)
    s = g.simulate("s", lambda key, u: u + jax.random.normal(key), u)
    g.cost("f", lambda s: s**2, s)
    with raises_naming("theta", "s", match="Condition 1"):
        scg.compile(g)


def test_condition_1_input_reaches_a_simulate_node_through_a_pathwise_node():
    g = scg.Graph()
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)  # default: pathwise (known at the first call)
    s = g.simulate("s", lambda key, x: x + jax.random.normal(key), x)
    g.cost("f", lambda s: s**2, s)
    with raises_naming("theta", "s", match="Condition 1"):
        scg.compile(g).grad({"theta": 0.1}, KEY)


def test_condition_1_input_reaches_a_non_differentiable_node():
    g = scg.Graph()
    theta = g.input("theta")
    step = g.deterministic("step", lambda t: jnp.where(t > 0, 1.0, 0.0), theta, differentiable=False)
    g.cost("f", lambda s: s, step)
    with raises_naming("theta", "step", match="Condition 1"):
        scg.compile(g)


def test_condition_1_integer_valued_node_on_a_differentiable_path():
    g = scg.Graph()
    theta = g.input("theta")
    k = g.deterministic("k", lambda t: jnp.floor(t).astype(jnp.int32), theta)
    g.cost("f", lambda k: jnp.array([1.0, 2.0, 3.0])[k], k)
    with raises_naming("theta", "k", match="Condition 1"):
        scg.compile(g, example_inputs={"theta": jnp.array(1.5)})


def test_condition_1_holds_when_a_score_node_blocks_the_path():
    """The same non-differentiable consumers are fine behind a sampled (score-function) node."""
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", lambda t: dist.Bernoulli(logits=t), theta)  # default: score
    s = g.simulate("s", lambda key, z: z + jax.random.normal(key), z)
    k = g.deterministic("k", lambda s: (s > 0).astype(jnp.int32), s, differentiable=False)
    g.cost("f", lambda k, s: jnp.array([1.0, 2.0])[k] * s, k, s)
    grads = scg.compile(g).grad({"theta": jnp.array(0.2)}, KEY)
    assert set(grads) == {"theta"}


def test_condition_1_exempts_data_inputs():
    g = scg.Graph()
    obs = g.input("obs", differentiable=False)
    theta = g.input("theta")
    s = g.simulate("s", lambda key, o: o + jax.random.normal(key), obs)
    z = g.stochastic("z", lambda t, s: dist.Bernoulli(logits=t * s), theta, s)
    g.cost("f", lambda z: z, z)
    grads = scg.compile(g).grad({"obs": jnp.array(1.0), "theta": jnp.array(0.2)}, KEY)
    assert set(grads) == {"theta"}
