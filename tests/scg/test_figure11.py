"""The five graphs of Figure 11 (Schulman 2016, §5.2.3) against exact gradients and the figure's formulas.

For each graph of :func:`scg.testing.examples.figure11` (concrete distributions, exact
expectations by enumeration or Gauss-Hermite quadrature):

a. the compiled estimator is unbiased: a z-test of ``N`` independent
   one-sample estimates against ``testing.exact_grad``;
b. it *is* the estimator the figure prints, sample by sample: for each key,
   ``est.sample(inputs, key, num_samples=1)`` gives the drawn values ``ŵ`` and
   ``est.grad(inputs, key, num_samples=1)`` must equal the figure's formula,
   written out by hand below (score functions in closed form, no autodiff);
c. a deliberately wrong variant fails the same z-test (``assert_biased``):
   each drops or shrinks one of the figure's terms.

The estimates of (a) and (b) are the same draws: ``vmap`` over ``N`` keys of
the public ``est.grad`` and ``est.sample``.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import testing
from scg.testing import examples
from scg.estimators import Estimator

N = 20_000
sigmoid = jax.nn.sigmoid


class Case(NamedTuple):
    graph: scg.Graph
    inputs: dict
    exact: dict
    draws: dict  # est.grad per key, stacked
    samples: dict  # est.sample(num_samples=1) per key, stacked (sample axis squeezed)


def replicate(fn, seed: int, n: int = N):
    """``fn(key)`` for ``n`` independent keys, vmapped under one ``jit`` (one compile)."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))


def exact_grad(graph, inputs):
    return jax.jit(lambda i: testing.exact_grad(graph, i))(inputs)


@functools.lru_cache(maxsize=None)
def case(k: int) -> Case:
    g, inputs = examples.figure11(k)
    est = scg.compile(g)
    both = lambda key: (est.grad(inputs, key, num_samples=1), est.sample(inputs, key, num_samples=1))
    draws, samples = replicate(both, seed=k)
    samples = jax.tree_util.tree_map(lambda v: v[:, 0], samples)
    return Case(g, inputs, exact_grad(g, inputs), draws, samples)


# -- the figure's estimators, by hand: one row per sample ------------------------------------
def formula_1(inputs, s):
    """(1) ``∂x/∂θ · ∂/∂x log p(y|x) · f(y)`` with ``x = 2 tanh θ``, ``y ~ Bernoulli(logits=x)``."""
    t, y = inputs["theta"], s["y"]
    x = 2 * jnp.tanh(t)
    f = jnp.sum((y - jnp.array([0.2, 0.7])) ** 2, -1) + 1.5 * y[:, 0] * y[:, 1]
    dx_dtheta = 2 * (1 - jnp.tanh(t) ** 2)
    return {"theta": dx_dtheta * (y - sigmoid(x)) * f[:, None]}


def formula_2(inputs, s):
    """(2) ``∂/∂θ log p(x|θ) · f(y(x))``, ``x ~ Categorical(logits=θ)``: score ``onehot(x) - softmax(θ)``."""
    t, x = inputs["theta"], s["x"]
    f = (jnp.array([-1.0, 0.5, 2.0])[x] - 1.0) ** 2
    return {"theta": (jax.nn.one_hot(x, 3) - jax.nn.softmax(t)) * f[:, None]}


def formula_3(inputs, s):
    """(3) ``∂/∂θ log p(x|θ) · f(y)``: ``p(y|x)`` does not appear."""
    t, x, y = inputs["theta"], s["x"], s["y"]
    f = y[:, 0] - 2.0 * y[:, 1] + 3.0 * y[:, 0] * y[:, 1]
    return {"theta": (x - sigmoid(t)) * f[:, None]}


def formula_4(inputs, s, *, direct_term: bool = True):
    """(4) ``∂/∂θ log p(x|θ) · f(x, y(θ)) + ∂y/∂θ · ∂f/∂y``, ``x ~ N(θ, 1)``, ``y = θ²``, ``f = (x - y)² + x``."""
    t, x = inputs["theta"], s["x"]
    y = t**2
    f = (x - y) ** 2 + x
    score = (x - t) * f
    return {"theta": score + (2 * t * (-2 * (x - y)) if direct_term else 0.0)}


def formula_5(inputs, s):
    """(5) ``∂/∂θ log p(x1|θ, x0) (f1 + f2) + ∂/∂θ log p(x2|θ, x1) f2`` (and the first term's x0 part)."""
    t, x0, x1, x2 = inputs["theta"], inputs["x0"], s["x1"], s["x2"]
    f1, f2 = 2.0 * x1, (x2 - 0.8) ** 2
    d1 = x1 - sigmoid(t[0] + t[1] * x0)  # ∂ log p(x1) / ∂ logit
    d2 = x2 - sigmoid(t[0] + t[1] * x1)
    grad_theta = (d1 * (f1 + f2))[:, None] * jnp.stack([jnp.ones_like(x1), jnp.full_like(x1, x0)], -1)
    grad_theta += (d2 * f2)[:, None] * jnp.stack([jnp.ones_like(x1), x1], -1)
    return {"theta": grad_theta, "x0": d1 * t[1] * (f1 + f2)}


FORMULAS = {1: formula_1, 2: formula_2, 3: formula_3, 4: formula_4, 5: formula_5}


# -- (a) unbiased --------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_unbiased(k):
    c = case(k)
    testing.assert_unbiased(c.draws, c.exact)


def test_graph3_with_a_simulator_is_unbiased():
    """(3) with ``y`` a ``g.simulate`` node (no density): the estimator never needs ``p(y|x)``."""
    g, inputs = examples.figure11(3, simulator=True)
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=33)
    testing.assert_unbiased(draws, case(3).exact)  # same law as the density version


# -- (b) the figure's formula, sample by sample ------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_matches_figure_formula_per_sample(k):
    c = case(k)
    by_hand = FORMULAS[k](c.inputs, c.samples)
    assert jax.tree_util.tree_structure(by_hand) == jax.tree_util.tree_structure(c.draws)
    for name in by_hand:
        np.testing.assert_allclose(c.draws[name], by_hand[name], rtol=1e-4, atol=1e-5, err_msg=f"({k}) {name}")
    # The hand formula is itself unbiased (so (c) below measures the dropped term, not the harness).
    testing.assert_unbiased(by_hand, c.exact)


# -- (c) deliberately wrong variants are detected ----------------------------------------------------
def test_graph1_batch_mean_baseline_is_biased():
    """A baseline that includes the sample itself: with 2 samples the score term is halved."""
    g, inputs = examples.figure11(1, baselines={"y": scg.baselines.BatchMean()})
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key, num_samples=2), seed=101)
    testing.assert_biased(draws, case(1).exact)


def test_graph2_without_the_score_term_is_biased():
    """Marking ``x`` with an estimator that adds no score term leaves no gradient at all."""
    g, inputs = examples.figure11(2, estimators={"x": Estimator()})
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=102)
    testing.assert_biased(draws, case(2).exact)


def test_graph3_baseline_reading_its_own_q_is_biased():
    """A callable baseline ``b = ½ Q̂_x`` reads costs that ``x`` influences (Theorem 2 broken).

    Callable baselines are not checked structurally (the compiler only sees
    ``Q̂``); this is the kind of baseline the check on graph-node baselines
    rejects, forced through.
    """
    g, inputs = examples.figure11(3, baselines={"x": lambda name, q_hat: 0.5 * q_hat})
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=103)
    testing.assert_biased(draws, case(3).exact)


def test_graph4_without_the_direct_path_term_is_biased():
    """Dropping ``∂y/∂θ ∂f/∂y`` (the term of the unblocked path θ → y → f) from the figure's formula."""
    c = case(4)
    testing.assert_biased(formula_4(c.inputs, c.samples, direct_term=False), c.exact)


def test_graph5_without_the_score_of_x1_is_biased():
    g, inputs = examples.figure11(5, estimators={"x1": Estimator()})
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=105)
    testing.assert_biased(draws, case(5).exact)


def test_graph5_score_of_x2_times_all_costs_is_still_unbiased():
    """Multiplying ``∇log p(x2)`` by ``f1 + f2`` instead of ``f2`` is *not* a bug (Theorem 2).

    ``f1(x1)`` is not influenced by ``x2``, so ``-f1`` is a legal baseline for
    ``x2``; declared as a graph node (by forward reference) the compiler
    accepts it and the estimator stays unbiased.
    """
    g, inputs = examples.figure11(5, baselines={"x2": "neg_f1"})
    g.deterministic("neg_f1", lambda x1: -2.0 * x1, "x1")
    est = scg.compile(g)
    draws = replicate(lambda key: est.grad(inputs, key), seed=106)
    testing.assert_unbiased(draws, case(5).exact)
