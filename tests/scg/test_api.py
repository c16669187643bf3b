"""The public API of a compiled graph: shapes, pytrees, ``wrt``, tracing, jit composition, surrogate forms.

The statistical checks (``value``, ``LeaveOneOut``) are z-tests against exact
expectations; everything else is an exact identity.
"""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

import scg
from scg import dist, testing
from scg.testing import examples

N = 20_000
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def replicate(fn, seed: int, n: int = N):
    """``fn(key)`` for ``n`` independent keys, vmapped under one ``jit``."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))


def readme_snippet() -> str:
    """The README's first Python block that compiles a graph."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if "scg.compile(g)" in b)


def test_readme_example_runs_as_written():
    namespace: dict = {}
    exec(compile(readme_snippet(), str(README), "exec"), namespace)
    grads, s, trace = namespace["grads"], namespace["s"], namespace["trace"]
    assert set(grads) == {"theta"} and jnp.shape(grads["theta"]) == ()
    assert jnp.shape(s) == () and jnp.issubdtype(s.dtype, jnp.floating)
    assert set(trace) == {"theta", "x", "z", "y", "f"}
    # examples.readme_graph declares the same graph.
    g, inputs = examples.readme_graph()
    shape = lambda graph: [(n.name, n.kind, n.parents) for n in graph.nodes]
    assert shape(g) == shape(namespace["g"]) and inputs == {"theta": 0.3}


def linear_gaussian_graph():
    """``h ~ N(W x + b, 1)`` (pathwise), ``z ~ Bernoulli(logits=v·h)`` (score), cost ``Σ h² + z``."""
    g = scg.Graph("pytree")
    w, v, x = g.input("w"), g.input("v"), g.input("x", differentiable=False)
    h = g.stochastic("h", lambda w, x: dist.Normal(w["W"] @ x + w["b"], 1.0), w, x)
    z = g.stochastic("z", lambda v, h: dist.Bernoulli(logits=v @ h), v, h)
    g.cost("f", lambda h, z: jnp.sum(h**2) + 2.0 * z, h, z)
    inputs = {
        "w": {"W": jnp.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6]]), "b": jnp.array([0.1, -0.3])},
        "v": jnp.array([1.0, -0.5]),
        "x": jnp.array([1.0, 0.5, -1.0]),
    }
    return g, inputs


def test_pytree_inputs_get_pytree_grads_and_are_unbiased():
    g, inputs = linear_gaussian_graph()
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=2)
    assert set(draws) == {"w", "v"}  # x is data: differentiable=False
    assert jax.tree_util.tree_structure(draws["w"]) == jax.tree_util.tree_structure(inputs["w"])
    shapes = jax.tree_util.tree_map(lambda d: d.shape[1:], draws)
    assert shapes == jax.tree_util.tree_map(jnp.shape, {"w": inputs["w"], "v": inputs["v"]})
    exact = jax.jit(lambda i: testing.exact_grad(g, i, wrt=("w", "v")))(inputs)
    testing.assert_unbiased(draws, exact)


def test_wrt_subset_is_the_same_estimate_restricted():
    g, inputs = examples.figure11(5)
    est = scg.compile(g)
    key = jax.random.key(3)
    full = est.grad(inputs, key, num_samples=4)
    only = est.grad(inputs, key, num_samples=4, wrt="x0")
    assert set(only) == {"x0"}
    np.testing.assert_allclose(only["x0"], full["x0"], rtol=1e-6)


def test_integer_inputs_are_excluded_from_the_default_wrt():
    g = scg.Graph()
    theta, n = g.input("theta"), g.input("n", differentiable=False)  # undeclared, an int is an error (test_bad_input_compiler)
    z = g.stochastic("z", lambda t, n: dist.Categorical(logits=t[n]), theta, n)
    g.cost("f", lambda z: (z - 1.0) ** 2, z)
    grads = scg.compile(g).grad({"theta": jnp.zeros((2, 3)), "n": jnp.array(1)}, jax.random.key(0))
    assert set(grads) == {"theta"} and grads["theta"].shape == (2, 3)


def test_no_retrace_for_the_same_shapes():
    g, inputs = offset_graph(None)
    est = scg.compile(g)
    est.grad(inputs, jax.random.key(0))
    count = est.cache_size()
    for i in range(3):
        est.grad({"theta": inputs["theta"] + 0.1 * i}, jax.random.key(i + 1))
    assert est.cache_size() == count
    wider = {"theta": jnp.zeros(5)}  # a new shape: one more trace, then none
    est.grad(wider, jax.random.key(0))
    est.grad(wider, jax.random.key(1))
    est.grad(inputs, jax.random.key(2))
    assert est.cache_size() == count + 1


def test_grad_fn_inside_a_user_jit():
    g, inputs = examples.figure11(5)
    est = scg.compile(g)
    grad_fn = est.grad_fn(inputs, num_samples=8)

    @jax.jit
    def sgd_step(params, key):
        grads = grad_fn(params, key)
        return jax.tree_util.tree_map(lambda p, d: p - 0.1 * d, params, grads), grads

    key = jax.random.key(4)
    params, grads = sgd_step(inputs, key)
    expected = est.grad(inputs, key, num_samples=8)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-5)
    params, _ = sgd_step(params, jax.random.key(5))  # a second step: same shapes, runs the cached code
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, inputs)


def test_ratio_surrogate_at_old_inputs_equals_surrogate():
    """At ``inputs == old_inputs`` every ratio is 1: value ``Σc + Σ_w Q̂_w``, gradient that of ``surrogate``."""
    g, inputs = examples.figure11(5)  # score nodes x1 (Q̂ = f1 + f2) and x2 (Q̂ = f2)
    est = scg.compile(g)
    key, n = jax.random.key(6), 4
    ratio_value, ratio_grad = jax.value_and_grad(lambda i: est.ratio_surrogate(i, inputs, key, num_samples=n))(inputs)
    surrogate_grad = jax.grad(lambda i: est.surrogate(i, key, num_samples=n))(inputs)
    for name in inputs:
        np.testing.assert_allclose(ratio_grad[name], surrogate_grad[name], rtol=1e-5, atol=1e-6)
    s = est.sample(inputs, key, num_samples=n)
    f1, f2 = s["f1"], s["f2"]
    np.testing.assert_allclose(ratio_value, jnp.mean((f1 + f2) + (f1 + f2) + f2), rtol=1e-5)


def test_value_matches_the_exact_expectation():
    g, inputs = examples.figure11(4)
    est = scg.compile(g)
    values = replicate(lambda key: est.value(inputs, key), seed=7)
    exact = testing.exact_expectation(g, inputs)
    t = inputs["theta"]
    np.testing.assert_allclose(exact, (t - t**2) ** 2 + 1 + t, rtol=1e-5)  # E[(x - θ²)² + x], x ~ N(θ, 1)
    testing.assert_unbiased(values, exact)


def offset_graph(baseline):
    """Costs with a large constant offset: what a baseline removes (``x ~ Bernoulli(logits=θ)``, 3 units)."""
    g = scg.Graph("offset")
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), theta, baseline=baseline)
    g.cost("f", lambda x: 10.0 + jnp.sum(jnp.linspace(1.0, -2.0, x.shape[0]) * x), x)
    return g, {"theta": jnp.array([0.3, -0.2, 0.8])}


def test_leave_one_out_is_unbiased_and_reduces_variance():
    g, inputs = offset_graph(scg.baselines.LeaveOneOut())
    plain_g, _ = offset_graph(None)
    est, plain = scg.compile(g), scg.compile(plain_g)
    loo = replicate(lambda key: est.grad(inputs, key, num_samples=4), seed=8)
    none = replicate(lambda key: plain.grad(inputs, key, num_samples=4), seed=8)
    exact = jax.jit(lambda i: testing.exact_grad(plain_g, i))(inputs)
    testing.assert_unbiased(loo, exact)
    testing.assert_unbiased(none, exact)
    var_loo, var_none = float(jnp.sum(jnp.var(loo["theta"], 0))), float(jnp.sum(jnp.var(none["theta"], 0)))
    print(f"LeaveOneOut: variance {var_loo:.4f} vs {var_none:.4f} without a baseline")
    assert var_loo < 0.5 * var_none
