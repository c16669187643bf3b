"""State carried between calls (the moving-average baseline; the protocol RELAX uses), ``unbiased=True``,
``hvp``'s refusal of estimators without second derivatives, and the per-node variance report.

Graph: ``x ~ Bernoulli(σ(θ))`` with the cost ``(x + 2.5)²``, whose large offset is what a baseline removes.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.estimators.base import Estimator, StateUpdate

THETA = {"theta": jnp.array([0.3, -0.4])}
KEY = jax.random.key(0)


def bernoulli_graph(baseline=None, estimator="score") -> scg.Graph:
    g = scg.Graph("offset")
    t = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t, estimator=estimator, baseline=baseline)
    g.cost("f", lambda x: jnp.sum((x + 2.5) ** 2 * jnp.array([1.0, 0.5])), x)
    return g


def exact():
    return testing.exact_grad(bernoulli_graph(), THETA)


def test_moving_average_state_starts_at_zero_and_tracks_q_hat():
    est = scg.compile(bernoulli_graph(scg.baselines.MovingAverage(0.5)))
    state = est.init_state(THETA)
    assert set(state) == {"x"} and set(state["x"]) == {"baseline"}
    assert float(state["x"]["baseline"]["weight"]) == 0.0
    grads, state = est.grad(THETA, KEY, num_samples=64, state=state)
    assert grads["theta"].shape == (2,)
    values = est.sample(THETA, KEY, num_samples=64)  # the same draws as that call
    np.testing.assert_allclose(state["x"]["baseline"]["mean"] / state["x"]["baseline"]["weight"],
                               np.mean(np.asarray(values["f"])), rtol=1e-5)


def test_moving_average_is_unbiased_and_reduces_variance():
    """After 20 calls the state holds a baseline near E[f]; at that fixed state the estimator is unbiased
    (z-test) with far less variance than with no baseline (measured ~25x)."""
    est = scg.compile(bernoulli_graph(scg.baselines.MovingAverage(0.8)))
    state = est.init_state(THETA)
    for i in range(20):
        _, state = est.grad(THETA, jax.random.key(100 + i), num_samples=8, state=state)
    draws = est.grad_samples(THETA, jax.random.key(1), num_replicates=4000, state=state)
    testing.assert_unbiased(draws, exact())
    plain = scg.compile(bernoulli_graph()).grad_samples(THETA, jax.random.key(1), num_replicates=4000)
    ratio = np.var(np.asarray(plain["theta"]), 0) / np.var(np.asarray(draws["theta"]), 0)
    assert np.all(ratio > 5), ratio


def test_a_baseline_that_reads_this_calls_samples_is_caught():
    """The deliberately wrong variant: a moving average updated *before* it is read includes the sample."""

    class ReadsItself(scg.baselines.MovingAverage):
        def __call__(self, node_name, q_hat, state):
            return super().__call__(node_name, q_hat, self.update_state(state, q_hat))

    est = scg.compile(bernoulli_graph(ReadsItself(0.0)))
    draws = est.grad_samples(THETA, jax.random.key(2), num_replicates=8000, num_samples=2, state=est.init_state(THETA))
    testing.assert_biased(draws, exact())


def test_state_goes_through_jit_and_scan_without_recompiling():
    est = scg.compile(bernoulli_graph(scg.baselines.MovingAverage(0.9)))
    step = est.grad_fn(THETA, num_samples=4, with_state=True)

    @jax.jit
    def run(theta, state, key):
        def body(carry, k):
            theta, state = carry
            grads, state = step({"theta": theta}, k, state)
            return (theta - 0.1 * grads["theta"], state), grads["theta"]

        return jax.lax.scan(body, (theta, state), jax.random.split(key, 50))

    (theta, state), _ = run(THETA["theta"], est.init_state(THETA), KEY)
    assert float(state["x"]["baseline"]["weight"]) == pytest.approx(1 - 0.9**50, rel=1e-5)
    est.grad(THETA, KEY, state=state)
    size = est.cache_size()
    for i in range(3):
        _, state = est.grad(THETA, jax.random.key(i), state=state)
    assert est.cache_size() == size


def test_a_wrong_state_is_a_graph_error():
    est = scg.compile(bernoulli_graph(scg.baselines.MovingAverage()))
    with pytest.raises(scg.GraphError, match="init_state"):
        est.grad(THETA, KEY, state={})
    with pytest.raises(scg.GraphError, match=r"state\['x'\]"):
        est.grad(THETA, KEY, state={"x": {"baseline": 0.0}})
    with pytest.raises(scg.GraphError, match="decay"):
        scg.baselines.MovingAverage(1.0)


class Counting(Estimator):
    """A score estimator that counts calls and learns a scalar ``params`` by the variance gradient it is handed:
    a check of the trained-state protocol (the compiled variance gradient against jax.grad of ‖ĝ‖²)."""

    name = "counting"
    uses_score = True
    trains_state = True

    def init_state(self, node_name, value_aval, key):
        return {"params": jnp.zeros(()), "calls": jnp.zeros((), jnp.int32), "last_grad": jnp.zeros(())}

    def terms(self, ctx):
        logp = jnp.sum(ctx.dist.log_prob(ctx.value))
        # a control variate c·(x − p), zero mean for any c: the variance depends on c = params
        p = jax.nn.sigmoid(ctx.dist.logits)
        return logp, -ctx.state["params"] * jnp.sum(jax.lax.stop_gradient(ctx.value) - p)

    def update_state(self, state, batch: StateUpdate):
        return {"params": state["params"] - 0.1 * batch.variance_grad, "calls": state["calls"] + 1,
                "last_grad": batch.variance_grad}


def test_trained_state_gets_the_gradient_of_the_squared_estimate():
    est = scg.compile(bernoulli_graph(estimator=Counting()))
    state = est.init_state(THETA)
    state["x"]["estimator"]["params"] = jnp.asarray(0.7)
    grads, new = est.grad(THETA, KEY, num_samples=3, state=state)

    def squared(c):
        s = {"x": {"estimator": {**state["x"]["estimator"], "params": c}}}
        return jnp.sum(est.grad(THETA, KEY, num_samples=3, state=s)[0]["theta"] ** 2)

    np.testing.assert_allclose(new["x"]["estimator"]["last_grad"], jax.grad(squared)(jnp.asarray(0.7)), rtol=1e-4)
    assert int(new["x"]["estimator"]["calls"]) == 1
    np.testing.assert_allclose(grads["theta"], est.grad(THETA, KEY, num_samples=3, state=state)[0]["theta"])


def test_unbiased_compile_refuses_a_biased_estimator_by_name():
    g = scg.Graph("biased")
    t = g.input("t")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=jnp.stack([t, -t])), t, estimator=scg.estimators.direct(0.5))
    g.cost("c", lambda a: a * 1.0, a)
    scg.compile(g)  # fine without the flag
    with pytest.raises(scg.GraphError, match=r"node 'a': estimator 'direct' is biased.*unbiased=True"):
        scg.compile(g, unbiased=True)
    assert scg.compile(bernoulli_graph(), unbiased=True).unbiased


def test_hvp_refuses_an_estimator_without_second_derivatives():
    g = scg.Graph("anti")
    m = g.input("m")
    x = g.stochastic("x", lambda m: dist.Normal(m, 1.0), m, estimator="antithetic")
    g.cost("c", lambda x: x**2, x)
    with pytest.raises(scg.GraphError, match=r"hvp: node 'x': estimator 'antithetic'"):
        scg.compile(g).hvp({"m": 0.5}, {"m": 1.0}, KEY)


def test_variance_report_splits_by_node():
    """Score node x (offset cost: large variance) and pathwise y: the report puts most variance on x, its
    parts and covariance add up to the total, and a moving-average baseline shrinks x's part."""
    g = scg.Graph("two")
    t = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t[0]), t)
    y = g.stochastic("y", lambda t: dist.Normal(t[1], 1.0), t)
    g.cost("f", lambda x, y: (x + 3.0) ** 2 + y**2, x, y)
    est = scg.compile(g)
    report = testing.variance_report(est, THETA, KEY, num_replicates=4000)
    assert set(report.parts) == {"costs", "x"}
    assert report.shares["x"] > 0.8, str(report)
    total = est.grad_samples(THETA, KEY, num_replicates=4000)
    np.testing.assert_allclose(report.total, np.var(np.asarray(total["theta"], np.float64), 0, ddof=1).sum(), rtol=1e-4)
    assert report.total == pytest.approx(sum(report.parts.values()) + report.covariance)
    assert "x" in str(report)
    g2 = scg.Graph("two_ema")
    t = g2.input("theta")
    x = g2.stochastic("x", lambda t: dist.Bernoulli(logits=t[0]), t, baseline=scg.baselines.MovingAverage(0.5))
    y = g2.stochastic("y", lambda t: dist.Normal(t[1], 1.0), t)
    g2.cost("f", lambda x, y: (x + 3.0) ** 2 + y**2, x, y)
    est2 = scg.compile(g2)
    state = est2.init_state(THETA)
    for i in range(10):
        _, state = est2.grad(THETA, jax.random.key(i), num_samples=16, state=state)
    with_baseline = testing.variance_report(est2, THETA, KEY, num_replicates=4000, state=state)
    assert with_baseline.parts["x"] < 0.2 * report.parts["x"], (str(report), str(with_baseline))


def test_advantages_and_surrogate_read_the_baseline_state():
    est = scg.compile(bernoulli_graph(scg.baselines.MovingAverage(0.5)))
    state = est.init_state(THETA)
    _, state = est.grad(THETA, KEY, num_samples=32, state=state)
    b = state["x"]["baseline"]["mean"] / state["x"]["baseline"]["weight"]
    values = est.sample(THETA, jax.random.key(3), num_samples=5)
    np.testing.assert_allclose(est.advantages(THETA, values, state)["x"], values["f"] - b, rtol=1e-5)
    np.testing.assert_allclose(est.advantages(THETA, values)["x"], values["f"], rtol=1e-6)  # the initial state: b = 0
    batch = est.sample_batch(THETA, jax.random.key(3), num_samples=5, state=state)
    np.testing.assert_allclose(batch.advantages["x"], batch.values["f"] - b, rtol=1e-5)
    assert est.surrogate(THETA, KEY, num_samples=4, state=state) != est.surrogate(THETA, KEY, num_samples=4)


def test_ratio_surrogate_refuses_an_estimator_without_a_ratio_form():
    g = scg.Graph("direct_ratio")
    t = g.input("t")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=jnp.stack([t, -t])), t, estimator=scg.estimators.direct(0.5))
    g.cost("c", lambda a: a * 1.0, a)
    with pytest.raises(scg.GraphError, match=r"ratio_surrogate: node 'a': estimator 'direct'"):
        scg.compile(g).ratio_surrogate({"t": 0.1}, {"t": 0.2}, KEY)


class _ProbeDownstream(Estimator):
    """Adds ``f(2·p)`` as its extra term, ``f`` the downstream cost re-evaluated through ``ctx.<attr>``."""

    name = "probe"
    needs_downstream = True

    def __init__(self, attr):
        object.__setattr__(self, "attr", attr)

    def terms(self, ctx):
        return jnp.zeros(()), getattr(ctx, self.attr)(2.0 * ctx.dist.probs)


def test_frozen_downstream_sends_gradient_only_through_the_value():
    """Cost ``w·x²`` at θ = 0: the extra ``w (2σ(θ))²`` gives θ the gradient ``8wσσ' = 3`` either way; only the
    plain ``downstream`` also gives ``w`` the extra ``(2σ)² = 1`` beside the cost's own ``x²`` (same draws)."""
    grads = {}
    for attr in ("downstream", "frozen_downstream"):
        g = scg.Graph("probe")
        th, w = g.input("th"), g.input("w")
        x = g.stochastic("x", lambda th: dist.Bernoulli(logits=th), th, estimator=_ProbeDownstream(attr))
        g.cost("c", lambda x, w: w * x**2, x, w)
        est = scg.compile(g)
        grads[attr] = est.grad_samples({"th": jnp.asarray(0.0), "w": jnp.asarray(3.0)}, KEY, num_replicates=8)
    for attr in grads:
        np.testing.assert_allclose(grads[attr]["th"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(grads["downstream"]["w"] - grads["frozen_downstream"]["w"], 1.0, rtol=1e-6)
    assert set(np.unique(grads["frozen_downstream"]["w"])) == {0.0, 1.0}  # x² alone: both values drawn
