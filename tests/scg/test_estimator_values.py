"""Estimators are values from factories; nodes are immutable with typed specs; the default is resolved once.

Budget: < 5 s.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import scg
from scg import dist, estimators
from scg.graph import CostSpec, ExpectationSpec, LossSpec, StochasticSpec


@pytest.mark.parametrize(
    "name, factory",
    [("score", estimators.score), ("pathwise", estimators.pathwise), ("smoothing", estimators.smoothing),
     ("direct", estimators.direct), ("relaxed", estimators.relaxed), ("antithetic", estimators.antithetic)],
)
def test_factories_give_hashable_values_equal_to_their_shorthand(name, factory):
    g = scg.Graph()
    t = g.input("t")
    kind = "expectation" if name == "relaxed" else "stochastic"
    by_name = estimators.as_estimator(name, "x", kind)
    assert by_name == factory() and hash(by_name) == hash(factory()) and by_name.name == name
    assert {factory(), factory()} == {factory()}  # usable as a cache key
    if kind == "stochastic":
        assert g.stochastic("x", lambda t: dist.Normal(t, 1.0), t, estimator=name).estimator == factory()


def test_direct_carries_its_epsilon():
    assert estimators.direct(epsilon=0.5) == estimators.Direct(0.5) != estimators.direct(epsilon=-0.5)
    assert repr(estimators.direct(epsilon=0.5)) == "Direct(epsilon=0.5)"
    with pytest.raises(scg.GraphError, match="epsilon"):
        estimators.direct(epsilon=0)


def test_default_is_a_distinct_value_resolved_by_the_distribution():
    g = scg.Graph()
    t = g.input("t")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), t)
    assert x.estimator is estimators.DEFAULT and not isinstance(x.estimator, estimators.Estimator)
    assert estimators.resolve_default("stochastic", dist.Normal(0.0, 1.0)) == estimators.pathwise()
    assert estimators.resolve_default("stochastic", dist.Bernoulli(logits=0.0)) == estimators.score()
    assert estimators.resolve_default("expectation", dist.Bernoulli(logits=0.0)) == estimators.relaxed()
    g.cost("f", lambda x: x**2, x)
    est = scg.compile(g)
    assert est.analysis.estimators["x"] is estimators.DEFAULT  # as declared
    assert est.resolved_estimators({"t": jnp.array(0.1)})["x"] == estimators.pathwise()  # planned


def test_nodes_are_immutable_with_typed_specs():
    g = scg.Graph()
    t = g.input("t")
    x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t, estimator="score", baseline="b")
    e = g.expectation("e", lambda t, a: t * a, lambda t: dist.Bernoulli(logits=t), t, exact=True)
    c = g.cost("c", lambda x: x, x, reduce="sum")
    loss = g.loss("l", lambda t: t**2, t)
    assert x.spec == StochasticSpec(estimators.score(), "b", None)
    assert isinstance(e.spec, ExpectationSpec) and e.spec.exact and e.estimator == estimators.relaxed()
    assert c.spec == CostSpec("sum") and loss.spec == LossSpec(None) and t.spec is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.spec = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.spec.baseline = None
    assert x.with_estimator("score").spec == x.spec and x.with_estimator("score") is not x


def test_unknown_expectation_option_names_the_node():
    g = scg.Graph()
    t = g.input("t")
    with pytest.raises(scg.GraphError, match=r"expectation node 'e'.*unknown option.*'exakt'"):
        g.expectation("e", lambda t, a: t * a, lambda t: dist.Bernoulli(logits=t), t, exakt=True)


def test_an_object_that_is_no_estimator_names_the_node():
    g = scg.Graph()
    t = g.input("t")
    with pytest.raises(scg.GraphError, match=r"node 'x'.*terms"):
        g.stochastic("x", lambda t: dist.Normal(t, 1.0), t, estimator=object())


def test_state_protocol_defaults_are_stateless():
    est = estimators.score()
    assert est.init_state("x", jax.ShapeDtypeStruct((), jnp.float32), jax.random.key(0)) == ()
    batch = estimators.StateUpdate("x", jnp.zeros(3), jnp.zeros(3))
    assert est.update_state((), batch) == ()
    ctx = estimators.NodeContext("x", dist.Normal(0.0, 1.0), jnp.zeros(()), jax.random.key(0), None, None)
    assert ctx.state == ()
