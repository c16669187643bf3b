"""Bad input that used to give a number silently: impossible ``observed=`` values, invalid parameters, NaN costs.

Two mechanisms (:mod:`scg._program.checks`): concrete ``observed`` arrays are checked on the host
before a method runs (a :class:`scg.GraphError` naming the node and the first impossible element,
in the record's own indices); ``scg.compile(graph, checks=True)`` runs every kernel under
``checkify`` (a ``JaxRuntimeError`` naming the node). Each case is checked against what is known
to be right: the distributions' support masks by hand, and with ``checks=True`` the same gradient
as without on a valid graph. Small graphs, few samples; budget < 40 s.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.extend.core import ClosedJaxpr, Jaxpr

import scg
from scg import dist
from scg._program import checks

KEY = jax.random.key(0)


def one_node(fn, cost=lambda z: z * 1.0, name="z") -> scg.Graph:
    """``theta -> z ~ fn(theta) -> f = cost(z)``."""
    g = scg.Graph(f"one_{name}")
    theta = g.input("theta")
    z = g.stochastic(name, fn, theta)
    g.cost("f", cost, z)
    return g


BERNOULLI = scg.compile(one_node(lambda t: dist.Bernoulli(logits=t)))
SCALAR = {"theta": 0.0}


# -- the distributions' own rules -------------------------------------------------------
def test_in_support_by_hand():
    b = dist.Bernoulli(logits=jnp.array([0.0, jnp.inf, -jnp.inf]))
    np.testing.assert_array_equal(b.in_support(jnp.array([1.0, 1.0, 1.0])), [True, True, False])
    np.testing.assert_array_equal(b.in_support(jnp.array([0.5, 0.0, 0.0])), [False, False, True])
    c = dist.Categorical(probs=jnp.array([0.5, 0.0, 0.5]))
    np.testing.assert_array_equal(
        jax.vmap(c.in_support)(jnp.array([0, 1, 2, 3, -1])), [True, False, True, False, False])
    np.testing.assert_array_equal(jax.vmap(c.in_support)(jnp.array([2.0, 1.5])), [True, False])
    n = dist.Normal(0.0, 1.0)
    np.testing.assert_array_equal(n.in_support(jnp.array([0.0, jnp.nan, jnp.inf])), [True, False, False])


@pytest.mark.parametrize("d, what, bad", [
    (dist.Normal(jnp.zeros(2), jnp.array([1.0, -1.0])), "scale", [False, True]),
    (dist.Normal(jnp.array([jnp.nan, 0.0]), 1.0), "loc", [True, False]),
    (dist.Bernoulli(probs=jnp.array([0.5, 1.5])), "probs must lie in [0, 1]", [False, True]),
    (dist.Bernoulli(logits=jnp.array([jnp.nan, 0.0])), "NaN", [True, False]),
    (dist.Categorical(probs=jnp.array([0.6, -0.1, 0.5])), "non-negative", [False, True, False]),
    (dist.Categorical(probs=jnp.array([[0.5, 0.5], [0.5, 0.2]])), "sum to 1", [False, True]),
    (dist.Categorical(logits=jnp.array([0.0, jnp.nan])), "NaN", [True, True]),
])
def test_param_errors_name_the_broken_elements(d, what, bad):
    found = [(w, np.asarray(b)) for w, b, _ in d.param_errors() if np.asarray(b).any()]
    assert found and what in found[0][0]
    np.testing.assert_array_equal(found[0][1], bad)


def test_valid_parameters_have_no_errors_and_the_pytree_round_trips():
    for d in (dist.Normal(0.0, 1.0), dist.Bernoulli(probs=jnp.array([0.0, 1.0])),
              dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])), dist.Categorical(logits=jnp.zeros(3))):
        assert not any(np.asarray(b).any() for _, b, _ in d.param_errors())
        leaves, tree = jax.tree_util.tree_flatten(d)
        again = jax.tree_util.tree_unflatten(tree, leaves)
        assert type(again) is type(d) and repr(again) == repr(d)
    assert "_probs" not in repr(dist.Categorical(logits=jnp.zeros(3)))


# -- concrete observed values: a GraphError before running --------------------------------
def test_the_probe_bernoulli_record_outside_the_support():
    # used to return 1.5 (log p linear in the value) with no complaint
    with pytest.raises(scg.GraphError, match=r"observed\['z'\]\[0\] is 2\.0.*node 'z'.*1 more"):
        BERNOULLI.grad(SCALAR, KEY, num_samples=2, observed={"z": jnp.array([2.0, 0.5])})


@pytest.mark.parametrize("fn, record, element", [
    (lambda t: dist.Categorical(logits=t), [0, 3], r"\[1\] is 3"),  # index out of range
    (lambda t: dist.Categorical(logits=t), [1.5, 1.0], r"\[0\] is 1\.5"),  # not a whole number
    (lambda t: dist.Categorical(probs=jnp.array([0.5, 0.0, 0.5]) + 0 * t), [0, 1], r"\[1\] is 1"),  # probability 0
    (lambda t: dist.Categorical(logits=t.at[2].set(-jnp.inf)), [2, 0], r"\[0\] is 2"),  # -inf logit
])
def test_categorical_records_it_cannot_produce(fn, record, element):
    est = scg.compile(one_node(fn))
    with pytest.raises(scg.GraphError, match=r"observed\['z'\]" + element + r".*node 'z'"):
        est.grad({"theta": jnp.zeros(3)}, KEY, num_samples=2, observed={"z": jnp.array(record)})


@pytest.mark.parametrize("method", ["sample", "value", "surrogate", "sample_batch", "hvp", "ratio_surrogate"])
def test_every_method_checks_a_concrete_record(method):
    bad = {"z": jnp.array([1.0, 0.0, -1.0])}
    call = {
        "sample": lambda: BERNOULLI.sample(SCALAR, KEY, num_samples=3, observed=bad),
        "value": lambda: BERNOULLI.value(SCALAR, KEY, num_samples=3, observed=bad),
        "surrogate": lambda: BERNOULLI.surrogate(SCALAR, KEY, num_samples=3, observed=bad),
        "sample_batch": lambda: BERNOULLI.sample_batch(SCALAR, KEY, num_samples=3, observed=bad),
        "hvp": lambda: BERNOULLI.hvp(SCALAR, {"theta": 1.0}, KEY, num_samples=3, observed=bad),
        "ratio_surrogate": lambda: BERNOULLI.ratio_surrogate(SCALAR, SCALAR, KEY, num_samples=3, observed=bad),
    }[method]
    with pytest.raises(scg.GraphError, match=r"observed\['z'\]\[2\] is -1\.0.*node 'z'"):
        call()


def test_the_grad_fast_path_checks_every_call_and_nothing_without_observed():
    est = scg.compile(one_node(lambda t: dist.Bernoulli(logits=t)))
    good = jnp.array([1.0, 0.0])
    g = est.grad(SCALAR, KEY, num_samples=2, observed={"z": good})  # traces grad, and the support pass
    assert g["theta"].shape == ()
    with pytest.raises(scg.GraphError, match=r"observed\['z'\]\[1\] is 0\.5"):  # same shapes: the cached path
        est.grad(SCALAR, KEY, num_samples=2, observed={"z": jnp.array([1.0, 0.5])})
    plain = scg.compile(one_node(lambda t: dist.Bernoulli(logits=t)))
    plain.grad(SCALAR, KEY, num_samples=2)
    assert plain.cache_size() == 1  # observed=None: no support pass was traced


def test_a_pathwise_and_a_temporal_record_are_checked_in_the_records_indices():
    g = scg.Graph("pathwise")
    mu = g.input("mu")
    x = g.stochastic("x", lambda m: dist.Normal(m, 1.0), mu)
    g.cost("f", lambda x: x**2, x)
    with pytest.raises(scg.GraphError, match=r"observed\['x'\]\[2\] is nan.*node 'x'"):
        scg.compile(g).grad({"mu": 0.0}, KEY, num_samples=3, observed={"x": jnp.array([0.0, 1.0, jnp.nan])})

    step = scg.Graph("walk")
    theta, s = step.input("theta"), step.input("s")
    a = step.stochastic("a", lambda t, s: dist.Bernoulli(logits=t + s), theta, s)
    step.deterministic("s_next", lambda s, a: s + a, s, a)
    step.cost("c", lambda a: a * 1.0, a)
    est = scg.compile(scg.Temporal(step, carry={"s": "s_next"}, horizon=3))
    record = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 3.0]])  # [num_samples, T]
    with pytest.raises(scg.GraphError, match=r"observed\['a'\]\[1, 2\] is 3\.0.*node 'a'"):
        est.grad({"theta": 0.0, "s": 0.0}, KEY, num_samples=2, observed={"a": record})
    est.grad({"theta": 0.0, "s": 0.0}, KEY, num_samples=2, observed={"a": record.at[1, 2].set(1.0)})


# -- checks=True: checkify, naming the node ----------------------------------------------
def test_checks_catch_an_invalid_normal_scale_in_grad():
    g = one_node(lambda t: dist.Normal(t, -1.0), cost=lambda x: x**2, name="x")
    assert np.isfinite(scg.compile(g).grad(SCALAR, KEY)["theta"])  # silent without checks
    with pytest.raises(checkify.JaxRuntimeError, match=r"node 'x': invalid Normal parameters: scale.*-1\.0"):
        scg.compile(g, checks=True).grad(SCALAR, KEY)


def test_checks_catch_a_nan_cost_in_grad_and_name_its_first_bad_element():
    g = scg.Graph("nan_cost")
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)
    g.cost("f", lambda x: jnp.stack([x, jnp.log(x), x]), x, reduce="sum")  # log at x ~ N(-3, 1): NaN
    # d log(x)/dθ = 1/x is finite where log(x) is NaN: without checks the gradient looks fine
    assert np.isfinite(scg.compile(g).grad({"theta": -3.0}, KEY, num_samples=2)["theta"])
    with pytest.raises(checkify.JaxRuntimeError, match=r"cost node 'f': value is not finite.*element \[1\] is nan"):
        scg.compile(g, checks=True).grad({"theta": -3.0}, KEY, num_samples=2)


def test_checks_catch_invalid_bernoulli_probs_in_a_graph():
    est = scg.compile(one_node(lambda t: dist.Bernoulli(probs=t + 1.5)), checks=True)
    with pytest.raises(checkify.JaxRuntimeError, match=r"node 'z': invalid Bernoulli parameters: probs must lie in "
                       r"\[0, 1\] \(the value is 1\.5\)"):
        est.sample(SCALAR, KEY, num_samples=2)


@pytest.mark.parametrize("fn, message", [
    (lambda t: dist.Bernoulli(logits=t * jnp.nan), r"Bernoulli parameters: logits must not be NaN"),
    (lambda t: dist.Categorical(probs=t + jnp.array([0.6, -0.1, 0.5])),
     r"Categorical parameters: probs must be non-negative .*element \[1\] is -0\.1"),
    (lambda t: dist.Categorical(probs=t + jnp.array([0.5, 0.2, 0.2])), r"Categorical parameters: probs must sum to 1"),
    (lambda t: dist.Categorical(logits=t.at[1].set(jnp.nan)), r"Categorical parameters: logits must not be NaN"),
    (lambda t: dist.Normal(t * jnp.inf, 1.0), r"Normal parameters: loc must be finite"),
])
def test_the_distribution_hook_checks_every_class(fn, message):
    # the hook forward.evaluate calls where a node's distribution is built, under checkify as a kernel runs it
    theta = jnp.zeros(3) if "Categorical" in message else jnp.zeros(())
    hook = lambda t: checks.distribution("z", fn(t))  # noqa: E731
    err, _ = jax.jit(checkify.checkify(checks.emitting(hook)))(theta)
    assert err.get() is not None and re.search(r"node 'z': invalid " + message, err.get()), err.get()
    assert "check" not in _primitives(jax.make_jaxpr(hook)(theta).jaxpr)  # not active (checks=False): nothing added


def test_checks_catch_an_expectation_nodes_distribution():
    g = scg.Graph("expect")
    theta = g.input("theta")
    y = g.expectation("y", lambda t, a: a * t, lambda t: dist.Bernoulli(probs=t - 2.0), theta)
    g.cost("f", lambda y: y, y)
    with pytest.raises(checkify.JaxRuntimeError, match=r"node 'y': invalid Bernoulli parameters: probs"):
        scg.compile(g, checks=True).value({"theta": 0.5}, KEY, num_samples=2)


def test_checks_inside_a_callers_jit_need_the_callers_checkify():
    est = scg.compile(one_node(lambda t: dist.Bernoulli(logits=t)), checks=True)
    grad_fn = est.grad_fn(SCALAR, num_samples=2)
    step = jax.jit(checkify.checkify(lambda th, z: grad_fn({"theta": th}, KEY, {"z": z})))
    err, _ = step(0.0, jnp.array([1.0, 0.0]))
    assert err.get() is None
    err, _ = step(0.0, jnp.array([1.0, 0.5]))  # traced: no host check, the checkify check names the node
    assert "node 'z': observed value outside the support of its Bernoulli" in err.get()
    with pytest.raises(ValueError, match="checkify"):  # without the caller's checkify, jit refuses to lower
        jax.jit(grad_fn)(SCALAR, KEY)


def _primitives(jaxpr) -> set[str]:
    """Every primitive of ``jaxpr``, with those of the jaxprs in its equations' parameters (jit, scan, cond)."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for v in eqn.params.values():
            for sub in v if isinstance(v, tuple) else (v,):
                if isinstance(sub, ClosedJaxpr):
                    sub = sub.jaxpr
                if isinstance(sub, Jaxpr):
                    names |= _primitives(sub)
    return names


def test_checks_false_adds_nothing_and_checks_true_gives_the_same_gradient():
    g = scg.Graph("pathwise_then_score")  # x ~ N(θ, 1) pathwise, z ~ Bernoulli(logits=x) score function
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)
    z = g.stochastic("z", lambda x: dist.Bernoulli(logits=x), x)
    g.cost("f", lambda x, z: x**2 + 2.0 * z, x, z)
    inputs = {"theta": 0.3}
    plain, checked = scg.compile(g), scg.compile(g, checks=True)
    want, got = plain.grad(inputs, KEY, num_samples=4), checked.grad(inputs, KEY, num_samples=4)
    assert set(got) == set(want) == {"theta"} and isinstance(want["theta"], jax.Array)
    np.testing.assert_allclose(got["theta"], want["theta"], rtol=1e-6)
    assert "check" not in _primitives(jax.make_jaxpr(plain.grad_fn(inputs, num_samples=4))(inputs, KEY).jaxpr)
    assert "check" in _primitives(jax.make_jaxpr(checked.grad_fn(inputs, num_samples=4))(inputs, KEY).jaxpr)
