"""Temporal graphs: scanned == unrolled on the same samples, unbiased against enumeration,
credit assignment against a plain Python loop, Theorem 2 per step, no re-trace."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing

T = 4
INPUTS = {"theta": jnp.array([0.2, -0.5]), "phi": 0.3, "s": 0.0}


def policy(theta, s):
    return dist.Bernoulli(logits=theta[0] + theta[1] * jnp.tanh(s))


def step_cost(s1):
    return 0.1 * (s1 - 2.0) ** 2


def walk_step(absorbing=False):
    """s_{t+1} = s_t ± 1; with ``absorbing``, reaching s = 2 ends the episode and later costs vanish."""
    g = scg.Graph("walk")
    theta, phi, s = g.input("theta"), g.input("phi"), g.input("s")
    b = g.deterministic("b", lambda phi, s: phi * s, phi, s)
    a = g.stochastic("a", policy, theta, s, baseline=b)
    if absorbing:
        s1 = g.deterministic("s_next", lambda s, a: jnp.where(s >= 2.0, s, s + 2 * a - 1), s, a)
        g.deterministic("done", lambda s1: (s1 >= 2.0).astype(jnp.float32), s1)
        g.cost("c", lambda s, s1: jnp.where(s >= 2.0, 0.0, step_cost(s1)), s, s1)
    else:
        s1 = g.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
        g.cost("c", step_cost, s1)
    return g


def walk_unrolled(horizon, absorbing=False):
    """The same model as one flat graph (the compiler's general path)."""
    g = scg.Graph("walk_flat")
    th, ph, prev = g.input("theta"), g.input("phi"), g.input("s")
    for t in range(horizon):
        bt = g.deterministic(f"b{t}", lambda phi, s: phi * s, ph, prev)
        at = g.stochastic(f"a{t}", policy, th, prev, baseline=bt)
        if absorbing:
            st = g.deterministic(f"s{t + 1}", lambda s, a: jnp.where(s >= 2.0, s, s + 2 * a - 1), prev, at)
            g.cost(f"c{t}", lambda s, s1: jnp.where(s >= 2.0, 0.0, step_cost(s1)), prev, st)
        else:
            st = g.deterministic(f"s{t + 1}", lambda s, a: s + 2 * a - 1, prev, at)
            g.cost(f"c{t}", step_cost, st)
        prev = st
    return g


@pytest.mark.parametrize("horizon", [1, 3, 6])
@pytest.mark.parametrize("absorbing", [False, True])
def test_scanned_equals_unrolled_on_the_same_samples(horizon, absorbing):
    extra = {"terminated": "done"} if absorbing else {}
    scanned = scg.compile(scg.Temporal(walk_step(absorbing), carry={"s": "s_next"}, horizon=horizon, **extra))
    flat = scg.compile(walk_unrolled(horizon, absorbing))
    key, n = jax.random.key(horizon), 32
    actions = scanned.sample(INPUTS, key, num_samples=n)["a"]
    observed = {f"a{t}": actions[:, t] for t in range(horizon)}
    g_scan = scanned.grad(INPUTS, key, num_samples=n)
    g_flat = flat.grad(INPUTS, jax.random.key(99), num_samples=n, observed=observed)
    for name in g_scan:
        np.testing.assert_allclose(g_scan[name], g_flat[name], rtol=1e-5, atol=1e-6)
    s_scan = scanned.surrogate(INPUTS, key, num_samples=n)
    s_flat = flat.surrogate(INPUTS, jax.random.key(99), num_samples=n, observed=observed)
    np.testing.assert_allclose(s_scan, s_flat, rtol=1e-5)


@pytest.mark.parametrize("absorbing", [False, True])
def test_scanned_estimator_is_unbiased_against_enumeration(absorbing):
    extra = {"terminated": "done"} if absorbing else {}
    est = scg.compile(scg.Temporal(walk_step(absorbing), carry={"s": "s_next"}, horizon=T, **extra))
    exact = testing.exact_grad(walk_unrolled(T, absorbing), INPUTS)
    draws = est.grad_samples(INPUTS, jax.random.key(1), num_replicates=20_000)
    testing.assert_unbiased(draws, exact)


def test_credit_without_time_structure_is_biased():
    """Giving a_t credit only for its own step's cost (ignoring the carried state) must fail the same test."""
    g = walk_step()
    est = scg.compile(scg.Temporal(g, carry={"s": "s_next"}, horizon=T))
    plan = est._plan(INPUTS)
    plan.program.reaches_carry["a"] = False  # deliberately wrong: cut credit through the state
    exact = testing.exact_grad(walk_unrolled(T), INPUTS)
    draws = est.grad_samples(INPUTS, jax.random.key(1), num_replicates=20_000)
    testing.assert_biased(draws, exact)


def reference_future(c, term, trunc, boot, gamma):
    """F_t by a plain Python loop over one trajectory (episode-boundary aware)."""
    horizon = len(c)
    f, g_next = np.zeros(horizon), 0.0
    for t in reversed(range(horizon)):
        cont = boot[t] if t == horizon - 1 else (1 - trunc[t]) * g_next + trunc[t] * boot[t]
        f[t] = gamma * (1 - term[t]) * cont
        g_next = c[t] + f[t]
    return f


def test_future_costs_match_a_python_loop_with_boundaries():
    g = scg.Graph("flags")
    x = g.input("x")
    g.deterministic("s_next", lambda x: x, x)
    for name in ("term", "trunc", "boot"):
        g.deterministic(name, lambda x: x, x)
    g.cost("c", lambda x: x, x)
    spec = scg.Temporal(g, carry={"x": "s_next"}, horizon=7, discount=0.9, terminated="term", truncated="trunc", bootstrap="boot")
    est = scg.compile(spec)
    program = est._plan({"x": 0.0}).program
    rng = np.random.default_rng(0)
    n, horizon = 5, 7
    values = {
        "c": rng.normal(size=(n, horizon)),
        "term": rng.random((n, horizon)) < 0.2,
        "trunc": rng.random((n, horizon)) < 0.2,
        "boot": rng.normal(size=(n, horizon)),
    }
    values["trunc"] &= ~values["term"]
    got = program.future({k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
    for i in range(n):
        want = reference_future(values["c"][i], values["term"][i], values["trunc"][i], values["boot"][i], 0.9)
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reads", ["s_next", "a", "c"])
def test_baseline_reading_influenced_nodes_is_rejected(reads):
    g = scg.Graph("bad")
    theta, s = g.input("theta"), g.input("s")
    a = g.stochastic("a", policy, theta, s, baseline="b")
    s1 = g.deterministic("s_next", lambda s, a: s + a, s, a)
    g.cost("c", step_cost, s1)
    g.deterministic("b", lambda v: 0.5 * v, reads)
    with pytest.raises(scg.GraphError, match=r"baseline 'b'.*'a'"):
        scg.compile(scg.Temporal(g, carry={"s": "s_next"}, horizon=3))


def test_baseline_of_the_current_state_is_accepted():
    est = scg.compile(scg.Temporal(walk_step(), carry={"s": "s_next"}, horizon=3))
    assert est._plan(INPUTS).analysis.nodes["a"].baseline == "b"


def test_temporal_declaration_errors_name_the_problem():
    g = walk_step()
    with pytest.raises(scg.GraphError, match="horizon"):
        scg.Temporal(g, carry={"s": "s_next"}, horizon=0)
    with pytest.raises(scg.GraphError, match="'nope'"):
        scg.Temporal(g, carry={"nope": "s_next"}, horizon=2)
    with pytest.raises(scg.GraphError, match="discount"):
        scg.Temporal(g, carry={"s": "s_next"}, horizon=2, discount=1.5)
    bad = scg.Graph("shape")
    s = bad.input("s")
    bad.deterministic("s_next", lambda s: jnp.stack([s, s]), s)
    bad.cost("c", lambda s: s, s)
    with pytest.raises(scg.GraphError, match="'s_next'.*'s'"):
        scg.compile(scg.Temporal(bad, carry={"s": "s_next"}, horizon=2)).grad({"s": 0.0}, jax.random.key(0))


def test_no_retrace_and_compile_cost_independent_of_horizon():
    for horizon in (10, 1000):
        est = scg.compile(scg.Temporal(walk_step(), carry={"s": "s_next"}, horizon=horizon))
        est.grad(INPUTS, jax.random.key(0), num_samples=4)
        count = est.cache_size()
        est.grad(INPUTS, jax.random.key(1), num_samples=4)
        assert est.cache_size() == count


def test_init_draws_the_initial_state_per_sample():
    spec = scg.Temporal(
        walk_step(), carry={"s": "s_next"}, horizon=3, init=lambda key, inputs: {"s": jax.random.normal(key)}
    )
    est = scg.compile(spec)
    inputs = {"theta": INPUTS["theta"], "phi": 0.3}
    values = est.sample(inputs, jax.random.key(0), num_samples=8)
    assert values["s"].shape == (8, 3)
    assert len(np.unique(np.asarray(values["s"][:, 0]))) == 8
    assert set(est.grad(inputs, jax.random.key(0), num_samples=8)) == {"theta", "phi"}


@pytest.mark.parametrize("num_samples", [8, 2048])  # 2048: in chunks of 3 of the 6 steps (scg._program.temporal._AFTER_SCAN_ROWS)
def test_nodes_off_the_sequential_path_run_after_the_scan_with_the_same_results(num_samples):
    """Critics, bootstraps, costs and losses that no carried or drawn node reads are evaluated after the scan, many
    steps at once; values and gradients equal those of evaluating every node inside the scan."""
    g = scg.Graph("critic_walk")
    theta, phi, s = g.input("theta"), g.input("phi"), g.input("s", differentiable=False)
    v = g.deterministic("v", lambda phi, s: phi * jnp.tanh(s), phi, s)
    a = g.stochastic("a", lambda th, s: dist.Bernoulli(logits=th * s), theta, s, estimator="score", baseline=v,
                     advantage=scg.GAE(0.9))
    s1 = g.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
    g.cost("c", lambda s1: s1**2 / 10, s1)
    g.deterministic("boot", lambda phi, s1: phi * jnp.tanh(s1), phi, s1)
    g.loss("ent", lambda th, s: -0.1 * dist.Bernoulli(logits=th * s).probs, theta, s)
    est = scg.compile(scg.Temporal(g, carry={"s": s1}, horizon=6, discount=0.9, bootstrap="boot"))
    inputs = {"theta": 0.3, "phi": 0.5, "s": 1.0}
    program = est._plan(inputs).program
    assert program.after_scan == {"v", "c", "boot", "ent"}
    hoisted = est.grad_fn(inputs, num_samples=num_samples, with_values=True)(inputs, jax.random.key(0))
    program.after_scan, program.inner = frozenset(), frozenset(program.analysis.order)  # everything inside the scan
    plain = est.grad_fn(inputs, num_samples=num_samples, with_values=True)(inputs, jax.random.key(0))
    for x, y in zip(jax.tree_util.tree_leaves(hoisted), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
