"""The paper tasks: compiled use (jit, vmap, scan, no re-trace), state copying, exact facts, gradients.

Monte Carlo checks are z-tests at |z| < 4 with fixed seeds.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.envs import AutoReset, rollout
from scg.envs.paper import (
    BimodalBandit,
    ChainMDP,
    CombinatorialBandit,
    DeepSea,
    HandMass,
    HandMassContinuous,
    bimodal_reward,
    hand_mass_controller,
    smoothed_reward,
)
from scg.envs.paper.hand_mass import HandMassState

PAPER_ENVS = [HandMass, HandMassContinuous, DeepSea, CombinatorialBandit, BimodalBandit, ChainMDP]
Z = 4.0


def random_policy(env, params):
    space = env.action_space(params)
    return lambda obs, key: space.sample(key)


def episode_returns(env, params, policy, key, num_episodes, max_len):
    """Undiscounted returns of the first episode of each of ``num_episodes`` envs (independent slow-ish path: no AutoReset)."""

    def one(key):
        key_reset, key_run = jax.random.split(key)
        obs, state = env.reset(key_reset, params)

        def step(carry, key_t):
            obs, state, done, ret = carry
            key_pi, key_env = jax.random.split(key_t)
            ts = env.step(key_env, state, policy(obs, key_pi), params)
            ret = ret + jnp.where(done, 0.0, ts.reward)
            keep = lambda old, new: jnp.where(done, old, new)  # noqa: E731  freeze after the episode ends
            obs, state = keep(obs, ts.obs), jax.tree_util.tree_map(keep, state, ts.state)
            return (obs, state, done | ts.terminated | ts.truncated, ret), None

        (_, state, done, ret), _ = jax.lax.scan(step, (obs, state, jnp.bool_(False), 0.0), jax.random.split(key_run, max_len))
        return ret, done, state

    return jax.jit(jax.vmap(one))(jax.random.split(key, num_episodes))


# -- compiled use ------------------------------------------------------------------------------


@pytest.mark.parametrize("env_cls", PAPER_ENVS, ids=lambda c: c.name)
def test_jit_vmap_and_scan_without_retrace(env_cls):
    env = env_cls()
    params = env.default_params
    space = env.action_space(params)

    # vmap over 1,024 envs, jitted
    keys = jax.random.split(jax.random.key(0), 1024)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    actions = jax.vmap(space.sample)(keys)
    ts = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(keys, state, actions, params)
    assert ts.obs.shape == (1024, *env.observation_space(params).shape)
    assert ts.reward.shape == ts.terminated.shape == (1024,)

    # 1,000-step scan with AutoReset, compiled once
    traces = []

    def run(params, key):
        traces.append(1)
        return rollout(env, params, random_policy(env, params), key, 1000)

    run_jit = jax.jit(run)
    traj = run_jit(params, jax.random.key(1))
    traj2 = run_jit(params, jax.random.key(2))
    assert len(traces) == 1 and run_jit._cache_size() == 1
    assert traj.reward.shape == (1000,) and traj.obs.shape == (1000, *env.observation_space(params).shape)
    assert traj2.next_obs.shape == traj.obs.shape
    assert bool(jnp.all(jnp.isfinite(traj.reward))) and int(traj.terminated.sum() + traj.truncated.sum()) > 0


def test_autoreset_keeps_final_obs():
    env, params = ChainMDP(), ChainMDP().default_params  # always-right: terminal at s = n after n steps
    traj = rollout(env, params, lambda obs, key: jnp.int32(1), jax.random.key(0), 3 * params.n)
    ends = np.flatnonzero(np.asarray(traj.terminated))
    assert list(ends) == [params.n - 1, 2 * params.n - 1, 3 * params.n - 1]
    assert np.all(np.asarray(traj.next_obs)[ends] == params.n)  # true final observation
    assert np.all(np.asarray(traj.obs)[ends[:-1] + 1] == 0)  # next episode starts at 0
    assert float(traj.reward.sum()) == 3.0


def test_batched_rollout_is_time_major():
    env = DeepSea()
    traj = rollout(env, env.default_params, random_policy(env, env.default_params), jax.random.key(0), 12, num_envs=7)
    assert traj.obs.shape == (12, 7, 2) and traj.reward.shape == (12, 7)
    assert int(traj.terminated.sum()) == 3 * 7  # episodes of size - 1 = 4 steps


@pytest.mark.parametrize("env_cls", PAPER_ENVS, ids=lambda c: c.name)
def test_copied_state_steps_identically(env_cls):
    """DirPG branches a search tree by stepping a copy of a state; same key => same outcome."""
    env = env_cls()
    params = env.default_params
    space = env.action_space(params)
    obs, state = env.reset(jax.random.key(0), params)
    state = env.step(jax.random.key(1), state, space.sample(jax.random.key(2)), params).state
    copy = jax.tree_util.tree_map(jnp.array, state)
    for action_key in [jax.random.key(3), jax.random.key(4)]:
        action = space.sample(action_key)
        a = env.step(jax.random.key(5), state, action, params)
        b = env.step(jax.random.key(5), copy, action, params)
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


# -- gradients ---------------------------------------------------------------------------------


def test_hand_mass_step_jacobian_matches_finite_differences():
    env = HandMassContinuous()
    with jax.enable_x64(True):
        params = env.default_params

        def f(z):  # (x, y, v, a) at the last step -> (x', y', v', terminal reward)
            state = HandMassState(z[0], z[1], z[2], jnp.int32(params.horizon - 1))
            ts = env.step(jax.random.key(0), state, z[3:], params)
            return jnp.stack([ts.state.x, ts.state.y, ts.state.v, ts.reward])

        z0 = jnp.array([0.3, -0.2, 0.7, 0.4], jnp.float64)
        jac = jax.jacfwd(f)(z0)
        eps = 1e-6
        fd = jnp.stack([(f(z0 + eps * e) - f(z0 - eps * e)) / (2 * eps) for e in jnp.eye(4)], axis=1)
        assert jac.dtype == jnp.float64
        np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)
        assert float(jnp.abs(jac[:, 3]).sum()) > 0  # the action reaches the hand


def test_bimodal_reward_gradient_matches_finite_differences():
    env = BimodalBandit()
    with jax.enable_x64(True):
        params = env.default_params
        _, state = env.reset(jax.random.key(0), params)
        f = lambda a: env.step(jax.random.key(1), state, a, params).reward  # noqa: E731
        for a0 in [-1.3, -0.9, 0.2, 0.8, 1.1]:
            a = jnp.array([a0], jnp.float64)
            eps = 1e-6
            fd = (f(a + eps) - f(a - eps)) / (2 * eps)
            np.testing.assert_allclose(jax.jacfwd(f)(a)[0], fd, rtol=1e-6, atol=1e-10)


# -- exact facts -------------------------------------------------------------------------------


def test_deep_sea_optimal_return_and_risk():
    env = DeepSea()
    params = env.default_params
    horizon = params.size - 1
    seqs = jnp.asarray(list(itertools.product([0, 1], repeat=horizon)), jnp.int32)

    def expected_return(seq, params):
        _, state = env.reset(jax.random.key(0), params)
        total, done = 0.0, False
        for t in range(horizon):
            ts = env.step(jax.random.key(t), state, seq[t], params)
            total, state, done = total + ts.reward, ts.state, ts.terminated
        return total, done

    mean_params = params._replace(goal_std=0.0)  # expected rewards
    returns, done = jax.jit(jax.vmap(expected_return, in_axes=(0, None)))(seqs, mean_params)
    assert bool(done.all())
    best = np.flatnonzero(np.isclose(np.asarray(returns), 0.0, atol=1e-6))
    assert {tuple(np.asarray(seqs[i]).tolist()) for i in best} == {(0,) * horizon, (1,) * horizon}
    assert float(returns.max()) == pytest.approx(0.0, abs=1e-6)

    # RRRR's return is N(0, 1) (DirPG §6.2)
    rrrr = lambda obs, key: jnp.int32(1)  # noqa: E731
    rets, _, _ = episode_returns(env, params, rrrr, jax.random.key(0), 8192, horizon)
    assert abs(float(rets.mean())) < Z * float(rets.std()) / np.sqrt(8192)
    assert float(rets.var()) == pytest.approx(1.0, abs=Z * np.sqrt(2 / 8192))


def test_chain_mdp_reaches_n_and_matches_exact_probability():
    env = ChainMDP()
    p = env.default_params
    right, left = (lambda a: (lambda obs, key: jnp.int32(a)))(1), (lambda a: (lambda obs, key: jnp.int32(a)))(0)
    ret, done, state = episode_returns(env, p, right, jax.random.key(0), 1, p.horizon)
    assert float(ret[0]) == 1.0 and int(state.s[0]) == p.n and int(state.t[0]) == p.n
    ret, done, state = episode_returns(env, p, left, jax.random.key(0), 1, p.horizon)
    assert float(ret[0]) == 0.0 and int(state.s[0]) == -p.m

    # P(reach n within the horizon) for the uniform random walk, by dynamic programming over states
    dist = np.zeros(p.m + p.n + 1)
    dist[p.m] = 1.0
    reached = 0.0
    for _ in range(p.horizon):
        nxt = np.zeros_like(dist)
        nxt[1:] += 0.5 * dist[:-1]
        nxt[:-1] += 0.5 * dist[1:]
        reached += nxt[-1]
        nxt[0] = nxt[-1] = 0.0  # absorbed
        dist = nxt
    n_ep = 8192
    rets, _, _ = episode_returns(env, p, random_policy(env, p), jax.random.key(1), n_ep, p.horizon)
    se = np.sqrt(reached * (1 - reached) / n_ep)
    assert abs(float(rets.mean()) - reached) < Z * se


def test_combinatorial_bandit_mask_yields_exactly_the_spanning_trees():
    env = CombinatorialBandit()
    params = env.default_params
    seqs = jnp.asarray(list(itertools.product([0, 1], repeat=env.num_edges)), jnp.int32)

    def final(seq):
        _, state = env.reset(jax.random.key(0), params)

        def step(state, a):
            ts = env.step(jax.random.key(0), state, a, params)
            return ts.state, ts.terminated

        state, term = jax.lax.scan(step, state, seq)
        return state.included, term

    included, term = jax.jit(jax.vmap(final))(seqs)
    assert bool(term[:, -1].all()) and not bool(term[:, :-1].any())
    assert bool(jax.vmap(env.is_spanning_tree)(included).all())
    trees = {tuple(row) for row in np.asarray(included).astype(int).tolist()}
    all_trees = {
        tuple(int(i in sub) for i in range(env.num_edges))
        for sub in itertools.combinations(range(env.num_edges), env.num_nodes - 1)
        if bool(env.is_spanning_tree(jnp.asarray([i in sub for i in range(env.num_edges)])))
    }
    assert len(all_trees) == 125  # Cayley: 5^(5-2) spanning trees of K5
    assert trees == all_trees


def test_combinatorial_bandit_expected_reward_is_sum_of_means():
    env = CombinatorialBandit()
    params = env.default_params
    policy = random_policy(env, params)
    n_ep = 8192
    rets, _, state = episode_returns(env, params, policy, jax.random.key(0), n_ep, env.num_edges)
    assert bool(jax.vmap(env.is_spanning_tree)(state.included).all())
    mu = np.asarray(params.mu)
    inc = np.asarray(state.included)
    # r_T - Σ_{e∈T} μ_e has mean 0 and variance Σ_{e∈T} (2 μ_e)^2 / 12 given the tree.
    resid = np.asarray(rets) - inc @ mu
    se = np.sqrt(np.mean(inc @ (4 * mu**2 / 12)) / n_ep)
    assert abs(resid.mean()) < Z * se
    assert np.all(np.asarray(rets) >= 0) and np.all(np.asarray(rets) <= inc @ (2 * mu) + 1e-5)


def test_bimodal_maxima_and_smoothing():
    params = BimodalBandit().default_params
    with jax.enable_x64(True):
        r = lambda a: bimodal_reward(a, params)  # noqa: E731
        grid = jnp.linspace(-2.0, 2.0, 4001)
        assert float(grid[jnp.argmax(jax.vmap(r)(grid))]) == pytest.approx(1.0)  # global max: the better bump
        for c, h in zip(params.centers, params.heights):
            assert float(r(c)) == pytest.approx(h, abs=1e-12)
            assert abs(float(jax.grad(r)(jnp.float64(c)))) < 1e-12
            assert float(jax.grad(jax.grad(r))(jnp.float64(c))) < 0  # local maxima at both centers
        # closed-form Gaussian smoothing vs Monte Carlo (Smoothie Eq. 9)
        mean, std, n = -0.7, 0.6, 100_000
        samples = jax.vmap(r)(mean + std * jax.random.normal(jax.random.key(0), (n,), jnp.float64))
        se = float(samples.std()) / np.sqrt(n)
        assert abs(float(samples.mean()) - float(smoothed_reward(mean, std, params))) < Z * se


# -- Hand Mass returns as documented ------------------------------------------------------------


def test_hand_mass_good_and_random_returns():
    n = 2048
    for env, good in [
        (HandMass(), lambda p: lambda o, k: (jnp.round(hand_mass_controller(o, p)[0]) + 1).astype(jnp.int32)),
        (HandMassContinuous(), lambda p: lambda o, k: hand_mass_controller(o, p)),
    ]:
        p = env.default_params
        good_ret, done, _ = episode_returns(env, p, good(p), jax.random.key(0), n, p.horizon)
        rand_ret, _, _ = episode_returns(env, p, random_policy(env, p), jax.random.key(1), n, p.horizon)
        assert bool(done.all())
        assert float(good_ret.mean()) == pytest.approx(-0.055, abs=Z * float(good_ret.std()) / np.sqrt(n) + 0.002)
        claimed_random = -1.02 if env.name == "HandMass-v0" else -0.89
        assert float(rand_ret.mean()) == pytest.approx(claimed_random, abs=Z * float(rand_ret.std()) / np.sqrt(n) + 0.02)


def test_hand_mass_trajectory_optimisation_reaches_documented_optimum():
    """Adam on open-loop hand velocities through the differentiable step reaches about -0.03 (docstring)."""
    env = HandMassContinuous()
    p = env.default_params
    x0 = jnp.linspace(-p.init_range, p.init_range, 64)

    def ret(z, x):
        state = HandMassState(x, x, jnp.zeros_like(x), jnp.int32(0))

        def step(state, z_t):
            ts = env.step(jax.random.key(0), state, jnp.tanh(z_t)[None], p)
            return ts.state, ts.reward

        return jax.lax.scan(step, state, z)[1].sum()

    grad = jax.vmap(jax.value_and_grad(ret))

    @jax.jit
    def optimise(z):
        def body(i, carry):
            z, m, v = carry
            _, g = grad(z, x0)
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
            t = i + 1.0
            return z + 0.05 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8), m, v

        z, _, _ = jax.lax.fori_loop(0, 1500, body, (z, jnp.zeros_like(z), jnp.zeros_like(z)))
        return grad(z, x0)[0]

    best = optimise(jnp.zeros((64, p.horizon)))
    assert -0.045 < float(best.mean()) < -0.02
