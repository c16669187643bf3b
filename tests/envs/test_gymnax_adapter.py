"""gymnax environments through ``scg.envs.gymnax_adapter``, checked against gymnax itself.

The reference for every transition is gymnax's own ``step_env`` (and its
auto-resetting ``step``) called with the same key on the same state.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.envs import AutoReset
from scg.envs.spaces import Box, Discrete

MAX_STEPS = 25  # random CartPole episodes last about 22 steps: within 200 steps they end both ways (5 and 4 times)


@pytest.fixture
def gymnax():
    return pytest.importorskip("gymnax")


def _walk(genv, gparams, num_steps, seed=0):
    """States and step keys of a random-action run of gymnax's own auto-resetting ``step``, and its outputs."""

    def body(state, key):
        key_action, key = jax.random.split(key)
        action = jax.random.randint(key_action, (), 0, 2)
        out = genv.step(key, state, action, gparams)
        return out[1], (state, action, key, out)

    _, state = genv.reset(jax.random.key(seed), gparams)
    keys = jax.random.split(jax.random.key(seed + 1), num_steps)
    return jax.lax.scan(body, state, keys)[1]


def test_steps_like_gymnax_step_env(gymnax):
    """Same key, same state: the obs and reward of gymnax's ``step_env``; its ``done`` as ``terminated``; the time limit
    (``time >= max_steps_in_episode``) as ``truncated``. ``AutoReset`` of the adapter equals gymnax's auto-resetting
    ``step`` (both split the key into a step key and a reset key), so no episode end is missed or added."""
    from scg.envs.gymnax_adapter import from_gymnax

    genv, gparams = gymnax.make("CartPole-v1")
    gparams = gparams.replace(max_steps_in_episode=MAX_STEPS)
    env, params = from_gymnax("CartPole-v1", gparams)
    states, actions, keys, (g_obs, g_state, g_reward, g_term, g_trunc, g_info) = _walk(genv, gparams, 200)

    def ours_and_reference(state, action, key):
        key_step, _ = jax.random.split(key)  # the step key gymnax's step gives step_env
        ts = env.step(key_step, state, action, params)
        obs, state_tp1, reward, done, _ = genv.step_env(key_step, state, action, gparams)
        return ts, (obs, reward, done, state_tp1.time >= MAX_STEPS)

    ts, (obs, reward, done, time_up) = jax.jit(jax.vmap(ours_and_reference))(states, actions, keys)
    np.testing.assert_array_equal(ts.obs, obs)
    np.testing.assert_array_equal(ts.reward, reward)
    np.testing.assert_array_equal(ts.terminated, done)
    np.testing.assert_array_equal(ts.truncated, time_up)
    assert ts.terminated.sum() >= 2 and ts.truncated.sum() >= 2  # both kinds of episode end were checked

    auto = jax.jit(jax.vmap(lambda s, a, k: AutoReset(env).step(k, s, a, params)))(states, actions, keys)
    for ours, theirs in [(auto.obs, g_obs), (auto.state, g_state), (auto.reward, g_reward),
                         (auto.terminated, g_term), (auto.truncated, g_trunc),
                         (auto.info["final_obs"], g_info["final_observation"])]:
        jax.tree_util.tree_map(np.testing.assert_array_equal, ours, theirs)


class _ConflatedCartPole:
    """gymnax 0.0.x's contract on gymnax's CartPole: ``step_env``'s ``done`` includes the time limit, no ``is_truncated``."""

    def __init__(self, genv, with_time=True):
        self.genv, self.with_time, self.name = genv, with_time, "ConflatedCartPole"

    @property
    def default_params(self):
        return self.genv.default_params.replace(max_steps_in_episode=MAX_STEPS)

    def reset_env(self, key, params):
        obs, state = self.genv.reset_env(key, params)
        return obs, (state if self.with_time else (state.x, state))  # a tuple state has no .time field

    def step_env(self, key, state, action, params):
        inner = state if self.with_time else state[1]
        obs, state_tp1, reward, done, info = self.genv.step_env(key, inner, action, params)
        done = done | (state_tp1.time >= params.max_steps_in_episode)
        return obs, (state_tp1 if self.with_time else (state_tp1.x, state_tp1)), reward, done, info

    def observation_space(self, params):
        return self.genv.observation_space(params)

    def action_space(self, params):
        return self.genv.action_space(params)


@pytest.mark.parametrize("with_time", [True, False])
def test_conflated_done_is_split_by_the_time_limit(gymnax, with_time):
    """Old gymnax: at the time limit ``done`` becomes ``truncated``; elsewhere ``terminated``. Without a ``time``
    field in the state there is nothing to split by, and every ``done`` is ``terminated``."""
    from scg.envs.gymnax_adapter import from_gymnax

    env, params = from_gymnax(_ConflatedCartPole(gymnax.make("CartPole-v1")[0], with_time))
    _, state = env.reset(jax.random.key(0), params)
    inner = state if with_time else state[1]
    at_limit, tipped = inner.replace(time=MAX_STEPS - 1), inner.replace(theta=jnp.float32(0.5))
    wrap = (lambda s: s) if with_time else (lambda s: (s.x, s))
    limit_ts = env.step(jax.random.key(1), wrap(at_limit), 0, params)
    tipped_ts = env.step(jax.random.key(1), wrap(tipped), 0, params)
    assert (bool(limit_ts.terminated), bool(limit_ts.truncated)) == ((False, True) if with_time else (True, False))
    assert (bool(tipped_ts.terminated), bool(tipped_ts.truncated)) == (True, False)


def test_spaces_are_converted(gymnax):
    from scg.envs.gymnax_adapter import from_gymnax

    env, params = from_gymnax("CartPole-v1")
    obs_space = env.observation_space(params)
    assert env.action_space(params) == Discrete(2) and isinstance(obs_space, Box) and obs_space.shape == (4,)
    assert np.isinf(obs_space.high_array[1]) and obs_space.high_array[0] == pytest.approx(4.8)  # finfo.max read as inf
    pend, pend_params = from_gymnax("Pendulum-v1")
    assert pend.action_space(pend_params) == Box.make(-2.0, 2.0, (1,))


def test_unsupported_space_fails_at_construction(gymnax):
    from scg.envs.gymnax_adapter import from_gymnax

    genv, gparams = gymnax.make("CartPole-v1")
    genv.observation_space = genv.state_space  # a gymnax Dict space
    with pytest.raises(NotImplementedError, match="CartPole-v1.*Dict"):
        from_gymnax(genv, gparams)
    with pytest.raises(ValueError, match="unknown gymnax id 'NoSuchEnv-v0'"):
        from_gymnax("NoSuchEnv-v0")


def test_missing_gymnax_names_the_extra(monkeypatch):
    from scg.envs.gymnax_adapter import from_gymnax

    monkeypatch.setitem(sys.modules, "gymnax", None)  # import gymnax now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "scg-jax\[gymnax\]"'):
        from_gymnax("CartPole-v1")


def test_reinforce_trains_on_gymnax_cartpole(gymnax):
    from scg.algorithms import make_train
    from scg.algorithms.train import seed_keys
    from scg.envs.gymnax_adapter import from_gymnax

    env, params = from_gymnax("CartPole-v1")
    init, run = make_train("reinforce", env, params, {"num_envs": 2, "horizon": 16, "hidden": [8], "value_epochs": 2})
    _, metrics = run(init(seed_keys(1)), 3)
    assert metrics["env_steps"].shape == (1, 3)
    for name, values in metrics.items():
        assert np.isfinite(np.asarray(values, float)).all(), name
