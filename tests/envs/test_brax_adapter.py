"""brax environments through ``scg.envs.brax_adapter``, checked against brax's own ``step``.

brax is heavy (MuJoCo, MJX, orbax): it is no test dependency, and these tests
skip without it. The environments here are brax's trivial ``fast`` and a
five-line brax ``Env`` that terminates, so that no physics compiles.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.envs import rollout


@pytest.fixture
def brax_envs():
    return pytest.importorskip("brax.envs")


def _walk_env(brax_envs, episode_length):
    """A brax ``Env``: position ``q += a``, reward ``a``, done once ``q >= 1``; in brax's ``EpisodeWrapper``."""
    from brax.envs.base import Env, State
    from brax.envs.wrappers.training import EpisodeWrapper

    class Walk(Env):
        observation_size, action_size, backend = 1, 1, "none"

        def reset(self, rng):
            return State(pipeline_state=None, obs=jnp.zeros(1), reward=jnp.zeros(()), done=jnp.zeros(()))

        def step(self, state, action):
            obs = state.obs + action
            return state.replace(obs=obs, reward=action[0], done=(obs[0] >= 1.0).astype(jnp.float32))

    return EpisodeWrapper(Walk(), episode_length=episode_length, action_repeat=1)


@pytest.mark.parametrize("actions, last_flags", [
    ([0.1, 0.1, 0.1, 0.1], (False, True)),  # the time limit alone: truncated
    ([0.1, 0.1, 0.1, 0.9], (True, False)),  # q reaches 1 on the last step of the limit: terminated, not truncated
    ([0.1, 0.9], (True, False)),  # q reaches 1 before the limit
])
def test_steps_like_brax_step(brax_envs, actions, last_flags):
    """Obs and reward are those of brax's ``step`` on the same state; the flags split brax's ``done`` by its
    ``info["truncation"]``; only the last step ends the episode."""
    from scg.envs.brax_adapter import NoParams, from_brax

    brax_env = _walk_env(brax_envs, episode_length=4)
    env, params = from_brax(brax_env)
    assert params == NoParams() and env.action_space(params).shape == (1,)
    _, state = env.reset(jax.random.key(0), params)
    reference = brax_env.reset(jax.random.key(0))
    flags = []
    for a in actions:
        ts = env.step(jax.random.key(1), state, jnp.array([a]), params)
        reference = brax_env.step(reference, jnp.array([a]))
        np.testing.assert_array_equal(ts.obs, reference.obs)
        np.testing.assert_array_equal(ts.reward, reference.reward)
        flags.append((bool(ts.terminated), bool(ts.truncated)))
        state = ts.state
    assert flags == [(False, False)] * (len(actions) - 1) + [last_flags]


def test_created_env_resets_at_its_time_limit(brax_envs):
    """``from_brax("fast", episode_length=10)``: a rollout truncates every 10th step and restarts from brax's reset."""
    from scg.envs.brax_adapter import from_brax

    env, params = from_brax("fast", episode_length=10)
    assert env.name == "brax/fast" and env.observation_space(params).shape == (2,)
    traj = rollout(env, params, lambda obs, key: jnp.ones(1), jax.random.key(0), 25)
    np.testing.assert_array_equal(np.flatnonzero(traj.truncated), [9, 19])
    assert not traj.terminated.any()
    np.testing.assert_array_equal(traj.obs[10], np.zeros(2))  # the next episode's first observation
    with pytest.raises(ValueError, match="unknown brax environment 'NoSuchEnv'"):
        from_brax("NoSuchEnv")


def test_missing_brax_names_the_extra(monkeypatch):
    from scg.envs.brax_adapter import from_brax

    monkeypatch.setitem(sys.modules, "brax", None)  # import brax now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "scg-jax\[brax\]"'):
        from_brax("fast")
