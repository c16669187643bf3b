"""Every estimator by its registered name: it resolves, compiles and runs in a small graph; its flags are
the README's table; ``unbiased=True`` and ``hvp`` refuse, naming the node, exactly those the flags say."""
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist
from scg.estimators import _REGISTRY, as_estimator

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = jax.random.key(0)

# the node kind each estimator is exercised on (a graph builder below)
KIND = {
    "score": "bernoulli", "enumerate": "bernoulli", "arm": "bernoulli", "disarm": "bernoulli",
    "rebar": "bernoulli", "relax": "bernoulli", "gumbel_softmax": "bernoulli", "straight_through": "bernoulli",
    "unordered_set": "categorical", "direct": "categorical",
    "pathwise": "normal", "antithetic": "normal", "measure_valued": "normal", "smoothing": "normal",
    "relaxed": "expectation",
}


def graph(name: str) -> tuple[scg.Graph, dict]:
    """A node ``x`` with estimator ``name`` feeding a nonlinear cost, and a score node ``y`` beside it."""
    g = scg.Graph(f"with_{name}")
    t = g.input("t")
    kind = KIND[name]
    if kind == "bernoulli":
        x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t * jnp.array([1.0, -0.5, 0.3])), t, estimator=name)
        g.cost("c", lambda x: (jnp.sum(x * jnp.array([1.0, 2.0, -1.0])) - 0.4) ** 2, x)
    elif kind == "categorical":
        x = g.stochastic("x", lambda t: dist.Categorical(logits=t * jnp.array([1.0, -0.5, 0.3, 0.0])), t, estimator=name)
        g.cost("c", lambda x: jnp.array([1.0, 3.0, -2.0, 0.5])[x] ** 2, x)
    elif kind == "normal":
        x = g.stochastic("x", lambda t: dist.Normal(t * jnp.ones(2), 0.7), t, estimator=name)
        g.cost("c", lambda x: jnp.sum(jnp.sin(x) + x**2), x)
    else:
        x = g.expectation("x", lambda t, a: t * a, lambda t: dist.Bernoulli(logits=t), t, estimator=name)
        g.cost("c", lambda x: x**2, x)
    y = g.stochastic("y", lambda t: dist.Bernoulli(logits=-t), t, estimator="score")
    g.cost("d", lambda y, t: y * t, y, t)
    return g, {"t": jnp.asarray(0.4)}


def readme_table() -> dict[str, dict]:
    """The README's estimator table: name -> {unbiased, any order, state} as written."""
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| [^|]+ \| (yes|no) \| (yes|no) \| (no|trained) \| [^|]+ \|$", line)
        if m:
            rows[m[1]] = {"unbiased": m[2] == "yes", "any_order": m[3] == "yes", "trains_state": m[4] == "trained"}
    return rows


def test_every_registered_name_is_in_the_readme_table_with_its_flags():
    table = readme_table()
    assert set(table) == set(_REGISTRY), "README table and registry differ"
    for name, row in table.items():
        est = as_estimator(name, "x", "expectation" if name == "relaxed" else "stochastic")
        assert est.name == name
        assert {k: bool(getattr(est, k)) for k in row} == row, name


def test_every_registered_name_is_exercised_here():
    assert set(KIND) == set(_REGISTRY)


@pytest.mark.parametrize("name", sorted(KIND))
def test_each_name_compiles_and_gives_a_finite_gradient_beside_a_score_node(name):
    g, inputs = graph(name)
    est = scg.compile(g)
    state = est.init_state(inputs)
    grads, _ = est.grad(inputs, KEY, num_samples=4, state=state)
    assert np.isfinite(float(grads["t"]))


@pytest.mark.parametrize("name", sorted(KIND))
def test_unbiased_compile_and_hvp_refuse_by_node_exactly_as_the_flags_say(name):
    g, inputs = graph(name)
    est = as_estimator(name, "x", "expectation" if name == "relaxed" else "stochastic")
    if est.unbiased:
        scg.compile(g, unbiased=True)
    else:
        with pytest.raises(scg.GraphError, match=rf"node 'x': estimator '{name}' is biased"):
            scg.compile(g, unbiased=True)
    compiled = scg.compile(g)
    if est.any_order:
        assert np.isfinite(float(compiled.hvp(inputs, {"t": jnp.asarray(1.0)}, KEY)["t"]))
    else:
        with pytest.raises(scg.GraphError, match=rf"hvp: node 'x': estimator '{name}'"):
            compiled.hvp(inputs, {"t": jnp.asarray(1.0)}, KEY)
