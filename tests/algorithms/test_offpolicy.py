"""The off-policy loop (``scg.algorithms.offpolicy``) with a small learner of its own, and its errors.

The learner here is a linear deterministic actor whose ``learn`` adds the minibatch's mean action
to a counter (so whether and on what it learned is visible in its state), and reports an extra
``log_prob``, so the loop's bookkeeping is checked apart from any real algorithm:

- warm-up: uniform actions in the box, the stored ``log_prob`` is the uniform density, no update
  (the learner state is untouched and the learner's metrics are NaN) until ``warmup_steps``;
- every transition reaches the buffer in order, ``next_obs`` the true successor also where a
  time limit cut the episode (where ``obs`` of the next step is already the reset one), and
  ``terminated`` stays 0 on truncation;
- ``make_train`` runs it vmapped over seeds without recompiling across chunks;
- the host path (``update(state, batch)``) learns exactly what the JAX path learns from the same
  transitions;
- clear errors for a discrete action space and for OU noise on the host path.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.algorithms import make_train, offpolicy
from scg.algorithms.config import ConfigError
from scg.envs.registry import make


class CountState(NamedTuple):
    gain: jax.Array  # the actor: a = tanh(gain · obs[0]) · 2
    updates: jax.Array
    action_sum: jax.Array


def counting_learner(env, env_params, config):
    obs_space, action_space = offpolicy.spaces(env, env_params)

    def init(key):
        return CountState(jax.random.normal(key, ()), jnp.zeros(()), jnp.zeros(()))

    def act(state, obs, key):
        del key
        action = 2.0 * jnp.tanh(state.gain * obs[0]) * jnp.ones(action_space.shape)
        return action, {"log_prob": jnp.float32(0.5)}

    def learn(state, sample, key):
        batch = sample(key)
        new = CountState(state.gain, state.updates + 1, state.action_sum + jnp.mean(batch["action"]))
        return new, {"loss": jnp.mean(batch["reward"]), "grad_norm": jnp.float32(1.0), "extra": jnp.float32(3.0)}

    return offpolicy.Learner(init, act, learn)


def config(**kw):
    base = dict(num_envs=3, horizon=4, batch_size=8, buffer_size=1_000, warmup_steps=24, noise="none")
    return offpolicy.OffPolicyConfig(**{**base, **kw})


def pendulum(max_steps=5):
    env, params = make("Pendulum-v1")
    return env, params._replace(max_steps_in_episode=max_steps)  # truncations inside a short run


def test_warmup_is_uniform_and_gates_learning():
    env, params = pendulum()
    cfg = config()
    init, update = offpolicy.make(env, params, cfg, counting_learner)
    state = init(jax.random.key(0))
    update = jax.jit(update)
    state, metrics = update(state)  # 12 of the 24 warm-up steps: no update
    assert int(state.learner.updates) == 0 and np.isnan(metrics["loss"]) and np.isnan(metrics["extra"])
    state, metrics = update(state)  # the warm-up's last 12 steps, then the first updates
    assert int(state.learner.updates) == cfg.updates == 12
    assert float(metrics["extra"]) == 3.0 and np.isfinite(metrics["loss"])
    stored = jax.tree_util.tree_map(lambda x: np.asarray(x)[:24], state.buffer.data)
    assert np.all(stored["log_prob"] == np.float32(-np.log(4.0)))  # uniform on [-2, 2]
    assert stored["action"].std() > 0.8  # uniform on [-2, 2]: std 1.15; the actor's 2 tanh(gain·cos θ) is not
    state, metrics = update(state)
    assert np.all(np.asarray(state.buffer.data["log_prob"])[24:36] == 0.5)  # the learner's own extra after warm-up


def test_every_transition_is_stored_with_its_true_successor():
    env, params = pendulum(max_steps=5)
    cfg = config(warmup_steps=0)
    init, update = offpolicy.make(env, params, cfg, counting_learner)
    state = init(jax.random.key(1))
    update = jax.jit(update)
    for _ in range(3):
        state, metrics = update(state)
        assert float(metrics["env_steps"]) == cfg.num_envs * cfg.horizon
    assert int(state.buffer.size) == 36 and int(state.env_steps) == 36
    data = jax.tree_util.tree_map(np.asarray, state.buffer.data)
    obs = data["obs"][:36].reshape(12, 3, -1)  # [t, env, obs]: added one step of all envs at a time
    next_obs = data["next_obs"][:36].reshape(12, 3, -1)
    cut = np.arange(12) % 5 == 4  # the 5-step time limit ends every episode at t = 4, 9
    np.testing.assert_allclose(next_obs[:-1][~cut[:-1]], obs[1:][~cut[:-1]], atol=1e-6)
    assert not np.allclose(next_obs[cut], obs[np.flatnonzero(cut) + 1])  # the successor, not the reset state
    assert np.all(data["terminated"][:36] == 0)  # a time limit is no terminal state
    assert float(metrics["episodes"]) == 2 * 3


def test_make_train_vmaps_over_seeds_without_recompiling(monkeypatch):
    from scg.algorithms import base

    algo = base.Algorithm("counting", "test", ("continuous",), offpolicy.OffPolicyConfig,
                          lambda env, p, c: offpolicy.make(env, p, offpolicy.OffPolicyConfig(**(c or {})),
                                                           counting_learner), {}, counting_learner)
    monkeypatch.setitem(base.ALGORITHMS, "counting", algo)
    env, params = pendulum()
    init, run = make_train("counting", env, params, dict(num_envs=2, horizon=3, warmup_steps=12, batch_size=4))
    states = init(jax.random.split(jax.random.key(0), 3))
    states, first = run(states, 2)
    states, metrics = run(states, 2)
    assert run._cache_size() == 1
    assert np.all(np.isnan(first["loss"][:, 0])) and np.all(np.isfinite(first["loss"][:, 1]))  # warm-up: 12 steps
    assert metrics["loss"].shape == (3, 2) and np.all(np.isfinite(metrics["loss"]))
    assert np.all(np.asarray(states.learner.updates) == 3 * 6)  # 3 learning iterations of 6 updates, every seed


def test_host_batch_learns_what_the_jax_path_learns():
    env, params = pendulum()
    cfg = config(warmup_steps=0, num_envs=2, horizon=3)
    init, update = offpolicy.make(env, params, cfg, counting_learner)

    class FakeHost:  # the host path reads only the spaces
        observation_space, action_space = env.observation_space(params), env.action_space(params)

    host_init, host_update = offpolicy.make(FakeHost(), None, cfg, counting_learner)
    state = init(jax.random.key(2))
    jax_next, jax_metrics = jax.jit(update)(state)
    data = jax.tree_util.tree_map(lambda x: np.asarray(x)[:6], jax_next.buffer.data)
    batch = {k: data[k] for k in data}
    batch["reward_by_env"] = data["reward"].reshape(3, 2).T
    batch["done_by_env"] = np.zeros((2, 3), bool)
    host_state = host_init(jax.random.key(2))
    host_state = host_state._replace(learner=state.learner)
    host_next, host_metrics = jax.jit(host_update)(host_state, batch)
    for a, b in zip(jax.tree_util.tree_leaves(host_next.learner), jax.tree_util.tree_leaves(jax_next.learner)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    for name in ("loss", "env_steps"):
        np.testing.assert_allclose(host_metrics[name], jax_metrics[name], rtol=1e-6)


def test_host_transitions_flatten_time_major():
    from scg.envs.wrappers import Trajectory

    t, n = 3, 2
    traj = Trajectory(obs=np.arange(t * n * 3, dtype=np.float32).reshape(t, n, 3), action=np.zeros((t, n, 1)),
                      reward=np.arange(t * n, dtype=np.float32).reshape(t, n), terminated=np.zeros((t, n), bool),
                      truncated=np.eye(t, n, dtype=bool), next_obs=np.zeros((t, n, 3)))
    batch = offpolicy.host_transitions(traj, {"log_prob": np.ones((t, n))})
    assert batch["reward"].tolist() == [0, 1, 2, 3, 4, 5] and batch["log_prob"].shape == (6,)
    assert batch["reward_by_env"].tolist() == [[0, 2, 4], [1, 3, 5]]
    assert batch["done_by_env"].tolist() == [[True, False, False], [False, True, False]]


def test_discrete_actions_are_refused_by_name():
    env, params = make("CartPole-v1")
    with pytest.raises(ConfigError, match=r"continuous \(Box\) action space; CartPole-v1 has Discrete"):
        offpolicy.make(env, params, config(), counting_learner)


def test_ou_noise_on_the_host_path_is_refused():
    env, params = pendulum()

    class FakeHost:
        observation_space, action_space = env.observation_space(params), env.action_space(params)

    with pytest.raises(ConfigError, match="noise='ou' is not supported on the host path.*use noise='gaussian'"):
        offpolicy.make(FakeHost(), None, config(noise="ou"), counting_learner)


def test_ou_noise_is_added_and_reset_at_episode_ends():
    env, params = pendulum(max_steps=5)
    cfg = config(warmup_steps=0, noise="ou", noise_std=0.5, horizon=5)
    init, update = offpolicy.make(env, params, cfg, counting_learner)
    state = init(jax.random.key(3))
    state, _ = jax.jit(update)(state)
    assert np.all(np.asarray(state.noise.x) == 0.0)  # every episode ended at the 5th step: reset to the mean
    data = jax.tree_util.tree_map(np.asarray, state.buffer.data)
    clean = 2.0 * np.tanh(np.asarray(state.learner.gain) * data["obs"][:15, 0])
    assert np.abs(data["action"][:15, 0] - clean).max() > 1e-3  # the executed action carries the noise


def test_a_host_batch_without_the_learners_extras_is_refused_by_name():
    env, params = pendulum()

    class FakeHost:
        observation_space, action_space = env.observation_space(params), env.action_space(params)

    init, update = offpolicy.make(FakeHost(), None, config(), counting_learner)
    batch = {k: np.zeros((4, 3)) if "obs" in k else np.zeros((4,)) for k in offpolicy.TRANSITION_KEYS}
    with pytest.raises(ValueError, match=r"lacks \['done_by_env', 'log_prob', 'reward_by_env'\].*host_transitions"):
        update(init(jax.random.key(0)), batch)
