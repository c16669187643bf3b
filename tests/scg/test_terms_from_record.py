"""Temporal estimator terms formed after the scan from the record (every step at once) equal those formed inside it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg._program.temporal import TemporalProgram
from scg.algorithms import mdp
from scg.algorithms.networks import make_policy, make_value
from scg.envs.registry import make


def _actor_critic(env_id, **options):
    env, params = make(env_id)
    params = params._replace(max_steps_in_episode=10)  # truncations inside the rollout
    obs_space = env.observation_space(params)
    policy, value = make_policy(obs_space, env.action_space(params), (8,)), make_value(obs_space, (8,))
    graph = mdp.actor_critic_graph(mdp.env_transition(env, params), policy, value, horizon=24, discount=0.97, **options)
    key = jax.random.key(0)
    obs, state = env.reset(jax.random.key(1), params)
    inputs = {"theta": policy.init(key), "phi": value.init(jax.random.fold_in(key, 1)), "obs": obs, "state": state}
    return graph, inputs


def _both_ways(graph, inputs, fn):
    """``fn(compiled)`` with the terms from the record (the default here) and formed inside the scan."""
    out = []
    for from_record in (True, False):
        compiled = scg.compile(graph)
        program = compiled._plan(inputs).program
        assert isinstance(program, TemporalProgram) and program.from_record
        program.from_record = from_record
        out.append(fn(compiled))
    return out


@pytest.mark.parametrize("env_id, options", [
    ("CartPole-v1", dict(critic_loss=0.5, entropy_bonus=0.01)),  # A2C
    ("Pendulum-v1", dict(gae_lambda=0.95)),  # PPO/TRPO's graph, continuous actions
], ids=["a2c", "gae"])
def test_gradients_and_values_equal_the_scan_form(env_id, options):
    graph, inputs = _actor_critic(env_id, **options)
    grad = lambda c: c.grad_fn(inputs, num_samples=3, with_values=True)(inputs, jax.random.key(2))  # noqa: E731
    got, want = _both_ways(graph, inputs, grad)
    assert set(got[1]) == set(want[1])
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert bool(jnp.any(got[1]["truncated"]))


def test_ratio_surrogate_equals_the_scan_form():
    graph, inputs = _actor_critic("CartPole-v1", gae_lambda=0.95)
    theta = jax.tree_util.tree_map(lambda x: x * 1.1, inputs["theta"])
    new = {**inputs, "theta": theta}
    ratio = lambda c: jax.grad(lambda th: c.ratio_surrogate({**new, "theta": th}, inputs, jax.random.key(3), num_samples=3))(theta)  # noqa: E731
    got, want = _both_ways(graph, inputs, ratio)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sample_batch_keeps_the_terms_in_the_scan_and_equals_the_record_form(monkeypatch):
    """Without a gradient the log-probabilities come from the scan that draws (the record form would evaluate
    every distribution again); with observed draws the record form is used. Both give the same batch."""
    graph, inputs = _actor_critic("CartPole-v1", gae_lambda=0.95, entropy_bonus=0.01)
    compiled = scg.compile(graph)
    program = compiled._plan(inputs).program
    paths = []
    original = TemporalProgram._terms_at_record
    monkeypatch.setattr(TemporalProgram, "_terms_at_record", lambda self, *a: paths.append("record") or original(self, *a))
    batch = compiled.sample_batch(inputs, jax.random.key(4), num_samples=3)
    assert paths == []  # formed inside the scan
    record = {n: batch.values[n] for n in program.drawn_nodes()}
    replayed = compiled.sample_batch(inputs, jax.random.key(4), num_samples=3, observed=record)
    assert paths and set(paths) == {"record"}  # the record form (for the batch, and for the support check)
    for got, want in ((replayed.values, batch.values), (replayed.log_probs, batch.log_probs),
                      (replayed.advantages, batch.advantages)):
        assert set(got) == set(want)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_graphs_with_gradients_across_steps_keep_the_scan_form():
    from scg.envs.spaces import Box

    policy = make_policy(Box.make([-1.0, -1.0], [1.0, 1.0]), Box.make([-1.0], [1.0]), ())
    g = mdp.step_graph("model")
    a = mdp.add_policy(g, policy, estimator="pathwise")
    mdp.add_transition(g, mdp.model_transition(lambda m, o, u: (m["A"] @ o + m["B"] @ u, -jnp.sum(o**2))), a)
    compiled = scg.compile(mdp.temporal(g, horizon=4, discount=1.0))
    model = {"A": jnp.eye(2), "B": jnp.ones((2, 1))}
    inputs = {"theta": policy.init(jax.random.key(0)), "model": model, "obs": jnp.ones(2), "state": jnp.ones(2)}
    assert not compiled._plan(inputs).program.from_record
