"""CEM and score-function search gradients over policy parameters (scg.algorithms.cem, scg.algorithms.search_gradient).

- the parameter graph: θ blocks (Condition 1), the episode node's return and length by hand;
- the antithetic pairs fed as observed samples: unbiased against quadrature with the
  pair baseline, and detectably biased with a per-sample leave-one-out (which sees the partner);
- learning on CartPole-v1: short CI runs (asserted bars below what they reach) and, marked slow,
  the issue's criterion for CEM (≥ 475 over the last 20 episodes within 1M steps, ≥ 4 of 5 seeds).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg.algorithms import make_train
from scg.algorithms import episodes
from scg.algorithms.cem import first_episode, parameter_graph
from scg.algorithms.search_gradient import antithetic_pairs
from scg.baselines import PairedLeaveOneOut
from scg.envs.registry import make as make_env
from scg import dist, testing
from scg.errors import GraphError


# -- the graph -----------------------------------------------------------------------
def test_first_episode_by_hand():
    r = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    done = jnp.array([False, False, True, False, True])
    ep = first_episode(r, done)
    assert float(ep.ret) == 6.0 and float(ep.length) == 3.0
    ep = first_episode(r, jnp.zeros(5, bool))  # no end within the scan: all of it
    assert float(ep.ret) == 15.0 and float(ep.length) == 5.0


def test_first_episode_mask_against_a_loop():
    done = np.array([[0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 1, 0]], bool)
    want = np.zeros(done.shape)
    for i, row in enumerate(done):
        for t in range(len(row)):
            want[i, t] = 1.0
            if row[t]:
                break
    np.testing.assert_array_equal(jax.vmap(episodes.first_episode_mask)(jnp.asarray(done)), want)


def test_window_of_recent_returns():
    """``episodes.push`` keeps the last ``window`` finished returns; ``update`` pushes them as episodes end."""
    stats = episodes.push(episodes.init(0, window=3), jnp.arange(5.0))
    assert sorted(np.asarray(stats.recent).tolist()) == [2.0, 3.0, 4.0] and int(stats.count) == 5
    stats = episodes.update(episodes.init(2, window=4), jnp.ones((2, 3)), jnp.array([[0, 1, 0], [0, 0, 1]], bool))
    assert sorted(np.asarray(stats.recent)[:2].tolist()) == [2.0, 3.0] and int(stats.count) == 2
    np.testing.assert_array_equal(stats.running, [1.0, 0.0])
    assert float(episodes.mean_recent(stats)) == 2.5


def test_paired_leave_one_out_by_hand():
    b = PairedLeaveOneOut()("theta", jnp.array([1.0, 3.0, 5.0, 7.0, 9.0, 11.0]))  # pair means 4, 6, 8
    np.testing.assert_allclose(b, [7.0, 6.0, 5.0, 7.0, 6.0, 5.0])  # the mean of the other two pairs
    with pytest.raises(GraphError, match="even num_samples >= 4"):
        PairedLeaveOneOut()("theta", jnp.ones(3))


def test_theta_blocks_the_simulator():
    """Score function on θ: plans (Condition 1 holds); pathwise on θ would reach the simulator: GraphError.

    Planning traces the graph abstractly (no XLA compile); the learning tests below run it.
    """
    env, params = make_env("CartPole-v1")
    g, _, dim = parameter_graph(env, params, hidden=(), greedy=True)
    inputs = {"mu": jnp.zeros(dim), "log_sigma": jnp.zeros(dim)}
    avals = scg.compile(g)._plan(inputs).avals
    assert dim == 10 and avals["theta"].shape == (dim,)  # linear policy: 4 x 2 weights + 2 biases
    assert avals["episode"].ret.shape == () and avals["neg_return"].shape == ()
    g_bad, _, _ = parameter_graph(env, params, hidden=(), greedy=True, estimator="pathwise")
    with pytest.raises(GraphError, match="Condition 1"):
        scg.compile(g_bad, example_inputs=inputs)


# -- antithetic pairs as observed samples ----------------------------------------------
MU, LOG_SIGMA = jnp.array([0.4, -0.7]), jnp.log(jnp.array([0.3, 0.5]))
PAIRS, REPLICATES = 2, 8 * 1024


def smooth_graph(baseline):
    g = scg.Graph("smooth_search")
    mu, log_sigma = g.input("mu"), g.input("log_sigma")
    theta = g.stochastic("theta", lambda m, s: dist.Normal(m, jnp.exp(s)), mu, log_sigma, estimator="score", baseline=baseline)
    g.cost("f", lambda t: 3.0 + (jnp.sin(t[0]) + t[1] - 1.0) ** 2 + jnp.cos(t[0]) * t[1], theta)
    return g


@functools.lru_cache(maxsize=None)
def paired_draws(baseline_name: str):
    baseline = {"pairs": PairedLeaveOneOut(), "loo": scg.baselines.LeaveOneOut()}[baseline_name]
    inputs = {"mu": MU, "log_sigma": LOG_SIGMA}
    fn = scg.compile(smooth_graph(baseline)).grad_fn(inputs, num_samples=2 * PAIRS)

    def one(key):
        theta, _ = antithetic_pairs(key, MU, LOG_SIGMA, PAIRS)
        return fn(inputs, key, {"theta": theta})

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), REPLICATES))


@functools.lru_cache(maxsize=None)
def exact():
    return testing.exact_grad(smooth_graph(None), {"mu": MU, "log_sigma": LOG_SIGMA})


def test_antithetic_pairs_layout():
    theta, zeta = antithetic_pairs(jax.random.key(0), MU, LOG_SIGMA, 3)
    np.testing.assert_allclose(theta[:3] + theta[3:], 2 * np.broadcast_to(MU, (3, 2)), rtol=1e-6)
    np.testing.assert_array_equal(zeta[:3], zeta[3:])
    assert len(np.unique(np.asarray(zeta[:3]), axis=0)) == 3


def test_paired_score_is_unbiased():
    testing.assert_unbiased(paired_draws("pairs"), exact())


def test_sample_leave_one_out_on_pairs_is_biased():
    """The partner θ₋ = 2μ - θ₊ is in a per-sample leave-one-out baseline: Theorem 2 fails, and the z-test sees it."""
    testing.assert_biased(paired_draws("loo"), exact())


# -- learning on CartPole -------------------------------------------------------------
def run(algo: str, seeds: int, iterations: int, config=None):
    env, params = make_env("CartPole-v1")
    init, run_all = make_train(algo, env, params, config or {})
    states = init(jax.random.split(jax.random.key(0), seeds))
    _, metrics = run_all(states, iterations)
    return jax.tree_util.tree_map(np.asarray, metrics)


def steps_to_reach(metrics, bar: float) -> np.ndarray:
    """Per seed: cumulative env steps at the first iteration whose mean_return ≥ bar (inf if never)."""
    steps = np.cumsum(metrics["env_steps"], axis=1)
    hit = metrics["mean_return"] >= bar
    return np.where(hit.any(axis=1), steps[np.arange(len(steps)), hit.argmax(axis=1)], np.inf)


def test_cem_learns_cartpole_short():
    """CI size: 2 seeds, 12 iterations of 50 episodes. Measured: mean_return 451 and 431 at the end; the bar is 250."""
    m = run("cem", seeds=2, iterations=12)
    assert set(m) >= {"env_steps", "mean_return", "episodes", "loss", "grad_norm"}
    np.testing.assert_array_equal(m["episodes"][:, -1], 12 * 50)
    assert np.all(m["mean_return"][:, 0] < 100), m["mean_return"][:, 0]
    assert np.all(m["mean_return"][:, -1] >= 250), m["mean_return"][:, -1]


def test_antithetic_search_gradient_learns_cartpole_short():
    """CI size: 1 seed, 15 iterations of 50 episodes (25 pairs). Measured: mean_return 351 at the end; the bar is 100.

    The plain ``es`` variant shares all of this code but the sampling; it is run in the slow test only.
    """
    m = run("es_antithetic", seeds=1, iterations=15)
    assert np.all(np.isfinite(m["grad_norm"])) and np.all(m["grad_norm"] > 0)
    assert np.all(m["mean_return"][:, 0] < 40), m["mean_return"][:, 0]
    assert np.all(m["mean_return"][:, -1] >= 100), m["mean_return"][:, -1]


@pytest.mark.slow
def test_cem_solves_cartpole_within_1m_steps():
    """The issue's criterion: mean return ≥ 475 over the last 20 episodes within 1M env steps in ≥ 4 of 5 seeds."""
    m = run("cem", seeds=5, iterations=60)  # at most 60 × 50 × 500 = 1.5M steps
    reached = steps_to_reach(m, 475.0)
    print("cem: env steps to reach 475 per seed:", reached)
    assert np.sum(reached <= 1_000_000) >= 4, reached


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["es", "es_antithetic"])
def test_search_gradient_solves_cartpole_within_1m_steps(algo):
    """Not an issue criterion for these methods; measured and asserted at the same bar as CEM."""
    m = run(algo, seeds=5, iterations=60)
    reached = steps_to_reach(m, 475.0)
    print(f"{algo}: env steps to reach 475 per seed:", reached)
    assert np.sum(reached <= 1_000_000) >= 4, reached
