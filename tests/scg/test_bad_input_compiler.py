"""Bad input to the compiler and its calls: each a GraphError naming the node, argument or input at fault.

Integer inputs, a graph changed after compiling (a snapshot is compiled), ``num_samples`` values that
hash like others, keys that are not keys, ``hvp`` tangents and ``observed`` records of the wrong shape,
node functions that cannot be called or fail while tracing, and the warning for flat graphs that take
minutes to compile.
"""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist
from support import raises_naming
from scg.compiler import SLOW_COMPILE_DRAWS

KEY = jax.random.key(0)


def normal_graph(mean=lambda t: t):
    """``θ → x ~ N(mean(θ), 1) → f = x²``."""
    g = scg.Graph()
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(mean(t), 1.0), theta)
    g.cost("f", lambda x: x**2, x)
    return g


def bernoulli_graph():
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", lambda t: dist.Bernoulli(logits=t), theta)
    g.cost("f", lambda z: (z - 0.3) ** 2, z)
    return g


def walk(horizon=3):
    """The Temporal of scg.temporal's example: a Bernoulli step walk."""
    step = scg.Graph("walk")
    theta, s = step.input("theta"), step.input("s")
    a = step.stochastic("a", lambda th: dist.Bernoulli(logits=th), theta)
    s1 = step.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    step.cost("c", lambda s1: s1**2, s1)
    return step, scg.Temporal(step, carry={"s": "s_next"}, horizon=horizon)


# -- 1. integer inputs ----------------------------------------------------------------------------
def test_a_wholly_integer_input_differentiated_by_default_is_an_error():
    with raises_naming("theta", match="differentiable=False") as info:
        scg.compile(normal_graph()).grad({"theta": 1}, KEY)
    assert "float" in str(info.value)


def test_a_wholly_integer_input_named_in_wrt_is_an_error():
    with raises_naming("theta", match="no gradient") as info:
        scg.compile(normal_graph(lambda t: t * 1.0)).grad({"theta": jnp.array(1)}, KEY, wrt="theta")
    assert "int32" in str(info.value) and "jnp.float32" in str(info.value)  # what it is, and what to pass


def test_an_integer_input_declared_as_data_is_left_out():
    g = scg.Graph()
    theta, n = g.input("theta"), g.input("n", differentiable=False)
    x = g.stochastic("x", lambda t, n: dist.Normal(t * n, 1.0), theta, n)
    g.cost("f", lambda x: x**2, x)
    assert set(scg.compile(g).grad({"theta": 1.0, "n": 3}, KEY)) == {"theta"}


def test_a_mixed_pytree_input_differentiates_its_float_leaves_and_gives_float0_to_the_integer_ones():
    mixed = scg.compile(normal_graph(lambda t: t["a"] * t["n"])).grad({"theta": {"a": 1.0, "n": 3}}, KEY)
    plain = scg.compile(normal_graph(lambda t: t * 3)).grad({"theta": 1.0}, KEY)  # same draw: same key, same node
    assert set(mixed["theta"]) == {"a", "n"}
    np.testing.assert_allclose(mixed["theta"]["a"], plain["theta"], rtol=1e-6)
    assert mixed["theta"]["n"].dtype == jax.dtypes.float0


def test_an_integer_node_of_a_mixed_input_says_how_to_split_the_input():
    g = scg.Graph()
    theta = g.input("theta")
    n = g.deterministic("n", lambda t: t["n"] * 2, theta)
    x = g.stochastic("x", lambda t, n: dist.Normal(t["a"] * n, 1.0), theta, n)
    g.cost("f", lambda x: x**2, x)
    with raises_naming("theta", "n", match="integer leaves"):
        scg.compile(g).grad({"theta": {"a": 1.0, "n": 3}}, KEY)


def test_hvp_of_a_mixed_pytree_input_takes_any_tangent_for_the_integer_leaves():
    est = scg.compile(normal_graph(lambda t: t["a"] * t["n"]))
    hv = est.hvp({"theta": {"a": 1.0, "n": 3}}, {"theta": {"a": 1.0, "n": 0}}, KEY)
    np.testing.assert_allclose(hv["theta"]["a"], 18.0, rtol=1e-6)  # d²/da² E[(a n + ε)²] = 2 n² = 18
    assert hv["theta"]["n"].dtype == jax.dtypes.float0


# -- 2. the graph changed after compiling ----------------------------------------------------------
def _add_theta_cost(g):
    g.cost("f2", lambda theta: 100.0 * theta**2, "theta")


@pytest.mark.parametrize("first_call", ["before the change", "after the change"])
def test_a_graph_changed_after_compile_changes_nothing_compiled(first_call):
    g = normal_graph()
    est = scg.compile(g)
    before = est.grad({"theta": 1.0}, KEY) if first_call == "before the change" else None
    _add_theta_cost(g)
    after = est.grad({"theta": 1.0}, KEY)
    fresh = scg.compile(normal_graph()).grad({"theta": 1.0}, KEY)
    np.testing.assert_allclose(after["theta"], fresh["theta"], rtol=1e-6)
    if before is not None:
        np.testing.assert_allclose(after["theta"], before["theta"], rtol=1e-6)
    recompiled = scg.compile(g).grad({"theta": 1.0}, KEY)  # compiling again takes the new node
    np.testing.assert_allclose(recompiled["theta"], fresh["theta"] + 200.0, rtol=1e-6)


def test_a_temporal_changed_after_compile_changes_nothing_compiled():
    step, spec = walk()
    est = scg.compile(spec)
    inputs = {"theta": 0.2, "s": 0.0}
    before = est.grad(inputs, KEY, num_samples=4)
    step.cost("c2", lambda theta: 100.0 * theta**2, "theta")
    spec.carry["s"], spec.horizon = "c", 7  # settings edited in place: the compiled snapshot keeps its own
    after = est.grad(inputs, KEY, num_samples=4)
    np.testing.assert_allclose(after["theta"], before["theta"], rtol=1e-6)


def test_the_compiled_snapshot_takes_no_new_nodes():
    est = scg.compile(normal_graph())
    with raises_naming("graph", "g2", match="compile again"):
        est.graph.cost("g2", lambda x: x, "x")


# -- 3. num_samples that hash like valid ones -------------------------------------------------------
@pytest.mark.parametrize("bad, good", [(True, 1), (2.0, 2)])
def test_a_rejected_num_samples_does_not_poison_the_grad_cache(bad, good):
    est = scg.compile(normal_graph())
    want = scg.compile(normal_graph()).grad({"theta": 1.0}, KEY, num_samples=good)
    for _ in range(2):  # the rejected value is refused again, not cached
        with pytest.raises(scg.GraphError, match="positive int"):
            est.grad({"theta": 1.0}, KEY, num_samples=bad)
    np.testing.assert_allclose(est.grad({"theta": 1.0}, KEY, num_samples=good)["theta"], want["theta"])
    with pytest.raises(scg.GraphError, match="positive int"):  # and a valid value cached first lets no look-alike in
        est.grad({"theta": 1.0}, KEY, num_samples=bad)


def test_num_samples_and_num_replicates_are_checked_by_every_method():
    est, inputs = scg.compile(normal_graph()), {"theta": 1.0}
    calls = [
        lambda: est.sample(inputs, KEY, num_samples=True),
        lambda: est.surrogate(inputs, KEY, num_samples=2.0),
        lambda: est.value(inputs, KEY, num_samples=True),
        lambda: est.grad_samples(inputs, KEY, num_replicates=True),
        lambda: est.grad_samples(inputs, KEY, num_replicates=2, num_samples=2.0),
        lambda: est.sample_batch(inputs, KEY, num_samples=True),
        lambda: est.grad_fn(inputs, num_samples=True),
        lambda: est.hvp(inputs, {"theta": 1.0}, KEY, num_samples=True),
    ]
    for call in calls:
        with pytest.raises(scg.GraphError, match="positive int"):
            call()
    assert est.grad_samples(inputs, KEY, num_replicates=2)["theta"].shape == (2,)


# -- 4. keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [3, None, jnp.zeros(2)], ids=["int", "None", "float array"])
def test_a_bad_key_names_the_argument(key):
    est, inputs = scg.compile(normal_graph()), {"theta": 1.0}
    for call in (
        lambda: est.grad(inputs, key),
        lambda: est.sample(inputs, key),
        lambda: est.value(inputs, key),
        lambda: est.grad_samples(inputs, key, num_replicates=2),
        lambda: est.hvp(inputs, {"theta": 1.0}, key),
    ):
        with raises_naming("key", match=r"jax\.random\.key\(seed\)"):
            call()


def test_a_bad_key_is_caught_under_tracing_too():
    est, inputs = scg.compile(normal_graph()), {"theta": 1.0}
    with raises_naming("key"):
        jax.jit(lambda k: est.grad(inputs, k))(jnp.zeros(2))
    with raises_naming("key"):
        jax.jit(est.grad_fn(inputs))(inputs, jnp.arange(3))
    with raises_naming("key", match="batch"):
        est.grad(inputs, jax.random.split(KEY, 2))


def test_typed_and_legacy_keys_are_accepted():
    est = scg.compile(normal_graph())
    assert est.grad({"theta": 1.0}, jax.random.key(1))["theta"].shape == ()
    assert est.grad({"theta": 1.0}, jax.random.PRNGKey(1))["theta"].shape == ()


# -- 5. hvp tangents -----------------------------------------------------------------------------------
def test_hvp_with_a_tangent_of_the_wrong_shape_names_the_input_and_both_shapes():
    est = scg.compile(normal_graph(jnp.sum))
    with raises_naming("theta") as info:
        est.hvp({"theta": jnp.ones(2)}, {"theta": jnp.zeros(3)}, KEY)
    assert "(3,)" in str(info.value) and "(2,)" in str(info.value)


def test_hvp_with_tangents_of_the_wrong_structure():
    est = scg.compile(normal_graph(lambda t: t["a"] + t["b"]))
    inputs = {"theta": {"a": 1.0, "b": 2.0}}
    with raises_naming("theta", match="structure"):
        est.hvp(inputs, {"theta": {"a": 1.0}}, KEY)
    with raises_naming("theta", match="keyed"):
        est.hvp(inputs, {"phi": {"a": 1.0, "b": 0.0}}, KEY)


def test_hvp_of_a_temporal_names_it():
    _, spec = walk()
    with raises_naming("walk", match="Hessian of a temporal objective"):
        scg.compile(spec).hvp({"theta": 0.2, "s": 0.0}, {"theta": 1.0}, KEY)


# -- 6. observed records of the wrong shape -----------------------------------------------------------
def test_observed_with_the_wrong_leading_axis_names_the_node_and_the_sizes():
    est = scg.compile(bernoulli_graph())
    with raises_naming("z", match="num_samples=2") as info:
        est.grad({"theta": 0.0}, KEY, num_samples=2, observed={"z": jnp.array([1.0, 0.0, 1.0])})
    assert "(3,)" in str(info.value)
    with raises_naming("z", match="num_samples=2"):  # every method, eager or traced
        est.sample({"theta": 0.0}, KEY, num_samples=2, observed={"z": jnp.ones(3)})
    with raises_naming("z", match="num_samples=2"):
        jax.jit(lambda o: est.grad({"theta": 0.0}, KEY, num_samples=2, observed=o))({"z": jnp.ones((2, 2))})


def test_observed_of_a_temporal_needs_the_sample_and_step_axes():
    _, spec = walk(horizon=3)
    est, inputs = scg.compile(spec), {"theta": 0.2, "s": 0.0}
    with raises_naming("a", match=r"num_samples=4 horizon T=3") as info:
        est.grad(inputs, KEY, num_samples=4, observed={"a": jnp.ones(4)})
    assert "(4, 3)" in str(info.value)
    with raises_naming("s", match="num_samples=4"):  # an initial carried input: [num_samples] only
        est.grad(inputs, KEY, num_samples=4, observed={"a": jnp.ones((4, 3)), "s": jnp.zeros((4, 3))})
    assert est.grad(inputs, KEY, num_samples=4, observed={"a": jnp.ones((4, 3)), "s": jnp.zeros(4)})["theta"].shape == ()


# -- 7. node functions -------------------------------------------------------------------------------------
def test_a_node_function_with_too_few_parameters_names_the_node_at_declaration():
    g = scg.Graph()
    theta = g.input("theta")
    with raises_naming("z", "u", match="theta"):
        g.stochastic("z", lambda t, u: dist.Normal(t, 1.0), theta)
    with raises_naming("y", match="2 positional"):
        g.deterministic("y", lambda t: t, theta, theta)
    with raises_naming("s", match="key"):  # a simulator takes the key first
        g.simulate("s", lambda t: t, theta)


def test_node_functions_with_matching_or_unreadable_signatures_are_accepted():
    g = scg.Graph()
    theta = g.input("theta")
    g.deterministic("a", lambda *xs: sum(xs), theta, theta)
    g.deterministic("b", lambda t, scale=2.0: scale * t, theta)
    g.deterministic("c", jnp.add, theta, "a")
    g.simulate("s", lambda key, t: t + jax.random.normal(key), "b")
    g.expectation("e", lambda t, a: t * a, lambda t: dist.Bernoulli(logits=t), theta)
    g.loss("l", lambda c, e, s: c + e + s, "c", "e", "s")
    assert len(g) == 7


def test_a_wrong_number_of_parents_is_caught_while_tracing_when_not_declared():
    g = scg.Graph()
    g.input("theta")
    g._add(scg.Node("z", "deterministic", lambda t, u: t + u, ("theta",)))  # bypasses the declaration check
    g.cost("f", lambda z: z, "z")
    with raises_naming("z", "theta", match="deterministic") as info:
        scg.compile(g).grad({"theta": 1.0}, KEY)
    assert isinstance(info.value.__cause__, TypeError)


def test_an_exception_inside_a_node_function_names_the_node_and_its_parents():
    g = scg.Graph()
    theta = g.input("theta")
    z = g.deterministic("z", lambda t: t @ jnp.ones(3), theta)
    g.cost("f", lambda z: z, z)
    with raises_naming("z", match="deterministic") as info:
        scg.compile(g).grad({"theta": jnp.ones(2)}, KEY)
    message = str(info.value)
    assert "'theta': float32[2]" in message and "dot_general" in message
    assert isinstance(info.value.__cause__, TypeError)


def test_the_non_distribution_error_is_kept():
    g = scg.Graph()
    theta = g.input("theta")
    z = g.stochastic("z", lambda t: 3.0, theta)
    g.cost("f", lambda z: z, z)
    with raises_naming("z", match="lacks sample/log_prob"):
        scg.compile(g).grad({"theta": 0.0}, KEY)


# -- 8. flat graphs that take minutes to compile ----------------------------------------------------------
def _chain(num_draws: int) -> scg.Graph:
    g = scg.Graph("chain")
    prev = g.input("theta")
    for i in range(num_draws):
        prev = g.stochastic(f"x{i}", lambda p: dist.Normal(p, 1.0), prev)
    g.cost("f", lambda x: x**2, prev)
    return g


def test_a_flat_graph_with_many_draws_warns_at_the_threshold_and_not_below():
    with warnings.catch_warnings():
        warnings.simplefilter("error", scg.CompileTimeWarning)
        scg.compile(_chain(SLOW_COMPILE_DRAWS - 1))  # structure only: nothing is traced
    with pytest.warns(scg.CompileTimeWarning, match=f"{SLOW_COMPILE_DRAWS} nodes that draw") as record:
        scg.compile(_chain(SLOW_COMPILE_DRAWS))
    assert "scg.Temporal" in str(record[0].message) and "'chain'" in str(record[0].message)
    assert issubclass(scg.CompileTimeWarning, UserWarning)
