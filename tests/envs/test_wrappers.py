"""Auto-reset wrappers: ``VecAutoReset`` (batch-level, resets only the ended environments) against ``AutoReset``.

The Monte Carlo check is a z-test at |z| < 5 with a fixed seed.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.envs import AutoReset, VecAutoReset, rollout
from scg.envs.classic_control import CartPole
from scg.envs.classic_control.cartpole import EnvState
from scg.envs.paper import ChainMDP


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("max_resets", [1, 4, 8])  # 1: the all-env fallback path; 8: the gather/scatter path
def test_matches_autoreset_on_a_deterministic_env(max_resets):
    """ChainMDP's step and reset ignore the key, so both wrappers must agree exactly, on either path."""
    env, n = ChainMDP(), 8
    params = env.default_params._replace(horizon=5)
    venv = VecAutoReset(env, n, max_resets=max_resets)
    per_env = jax.jit(jax.vmap(AutoReset(env).step, in_axes=(0, 0, 0, None)))
    step_v = jax.jit(venv.step)
    actions = jax.random.bernoulli(jax.random.key(0), 0.6, (40, n)).astype(jnp.int32)

    obs_v, state_v = venv.reset(jax.random.key(1), params)
    state_a = state_v
    ended = 0
    for t, a in enumerate(actions):
        ts_v = step_v(jax.random.key(t), state_v, a, params)
        ts_a = per_env(jax.random.split(jax.random.key(t), n), state_a, a, params)
        for x, y in zip(_leaves(ts_v[:5]) + _leaves(ts_v.info), _leaves(ts_a[:5]) + _leaves(ts_a.info)):
            np.testing.assert_array_equal(x, y)
        state_v, state_a = ts_v.state, ts_a.state
        ended += int((ts_v.terminated | ts_v.truncated).sum())
    assert ended > 40  # both paths exercised many times (horizon 5)


def _cartpole_batch(n, tipped):
    """CartPole states at rest, the first ``tipped`` of them falling over the angle limit (they terminate on the next step).

    Not already past it: ``env.step`` from a terminated state is absorbing, which the reference ``plain`` step below would show.
    """
    falling = jnp.arange(n) < tipped
    theta, theta_dot = jnp.where(falling, 0.2, 0.0), jnp.where(falling, 1.0, 0.0)  # theta_tp1 = 0.22 > 12 deg = 0.209
    z = jnp.zeros(n)
    return EnvState(z, z, theta, theta_dot, jnp.zeros(n, jnp.int32))


@pytest.mark.parametrize("tipped,max_resets", [(3, 16), (40, 16)])  # cheap path, then the fallback
def test_ended_envs_restart_from_fresh_independent_draws(tipped, max_resets):
    env, n = CartPole(), 64
    params = env.default_params
    venv = VecAutoReset(env, n, max_resets=max_resets)
    state = _cartpole_batch(n, tipped)
    action = jnp.ones(n, jnp.int32)
    ts = jax.jit(venv.step)(jax.random.key(0), state, action, params)
    plain = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(jax.random.key(0), n), state, action, params)

    done = np.asarray(ts.terminated | ts.truncated)
    assert done.sum() == tipped and done[:tipped].all()
    np.testing.assert_array_equal(np.asarray(ts.info["final_obs"]), np.asarray(plain.obs))
    np.testing.assert_array_equal(np.asarray(ts.obs)[~done], np.asarray(plain.obs)[~done])  # untouched
    fresh = np.asarray(ts.obs)[done]
    assert np.all(np.abs(fresh) <= 0.05)  # gymnasium's U(-0.05, 0.05)^4
    assert len(np.unique(fresh[:, 0])) == tipped  # each ended env gets its own draw
    assert np.all(np.asarray(ts.state.time)[done] == 0)


def test_reset_draws_have_the_reset_distribution():
    """Mean and variance of the restarted states over many steps: U(-0.05, 0.05) has mean 0, variance 1/1200."""
    env, n = CartPole(), 256
    params = env.default_params
    venv = VecAutoReset(env, n)  # max_resets = 16
    state = _cartpole_batch(n, 10)
    step = jax.jit(venv.step)
    draws = []
    for t in range(200):
        ts = step(jax.random.key(t), state, jnp.ones(n, jnp.int32), params)
        draws.append(np.asarray(ts.obs)[np.asarray(ts.terminated | ts.truncated)])
        state = _cartpole_batch(n, 10)  # the same ten envs end at every step
    x = np.concatenate(draws).ravel()  # 200 steps x 10 envs x 4 coordinates
    assert x.size == 8000
    z_mean = x.mean() / np.sqrt(1 / 1200 / x.size)
    var_u = 1 / 1200
    se_var = np.sqrt((1 / 80 * 0.1**4 - var_u**2) / x.size)  # E[u^4] = 0.05^4 / 5 for U(-0.05, 0.05)
    z_var = (x.var() - var_u) / se_var
    assert abs(z_mean) < 5 and abs(z_var) < 5, (z_mean, z_var)


def test_rollout_with_vec_autoreset_compiles_once():
    env, n = CartPole(), 32
    venv = VecAutoReset(env, n)
    space = env.action_space(env.default_params)
    traces = []

    def run(key):
        traces.append(1)
        return rollout(venv, env.default_params, lambda obs, k: space.sample(k), key, 200)

    run = jax.jit(run)
    traj = run(jax.random.key(0))
    run(jax.random.key(1))
    assert len(traces) == 1
    assert traj.obs.shape == (200, n, 4) and traj.reward.shape == (200, n)
    ended = np.asarray(traj.terminated | traj.truncated)
    assert ended.sum() > n  # random CartPole episodes last ~20 steps
    # after an end, the next observation is a fresh start
    nxt = np.asarray(traj.obs)[1:][ended[:-1]]
    assert np.all(np.abs(nxt) <= 0.05)


def test_bad_input_is_named():
    env = CartPole()
    venv = VecAutoReset(env, 4)
    _, state = venv.reset(jax.random.key(0))
    with pytest.raises(ValueError, match="num_envs=4"):
        venv.step(jax.random.key(1), state, jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="max_resets"):
        VecAutoReset(env, 4, max_resets=5)
    with pytest.raises(TypeError, match="already resets"):
        VecAutoReset(AutoReset(env), 4)
    with pytest.raises(ValueError, match="num_envs=3 but"):
        rollout(venv, env.default_params, lambda o, k: jnp.int32(0), jax.random.key(0), 5, num_envs=3)
