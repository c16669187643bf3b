"""The MDP graph builders (``scg.algorithms.mdp``, ``scg.algorithms.transitions``), each against an independent path.

- differentiable transition: a pathwise Normal policy on Pendulum-v1 (with auto-resets inside the
  rollout): the compiled gradient of the expected cost equals ``jax.grad`` of a hand-written rollout
  driven by the same noise (``ε = (a − μ_θ(s))/σ_θ`` and the env keys recovered from the sampled values);
- the standard graph (``actor_critic_graph``) gives bit for bit the values, log-probabilities,
  advantages and gradient of the former 11-argument ``mdp_graph`` (kept below as ``legacy_mdp_graph``);
- the model-transition hook with a linear model: values and gradients (policy and model) equal a
  hand-written model rollout;
- the typed batch view names the values (reward units) on a sampled and on a replayed batch.

The host transition is covered by ``test_host_path.py`` (host-mode graph fed a recorded batch).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg.algorithms import mdp
from scg.algorithms.networks import make_policy, make_value
from scg.envs.registry import make
from scg.envs.spaces import Box
from scg.envs.wrappers import AutoReset


def _assert_close(got, want, rtol):
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        scale = float(jnp.max(jnp.abs(w))) + 1e-12
        assert float(jnp.max(jnp.abs(g - w))) <= rtol * scale, (g, w)


def _reset(env, params, key, n):
    return jax.vmap(env.reset, (0, None))(jax.random.split(key, n), params)


# -- differentiable transition: pathwise through Pendulum ---------------------------------------------------
def test_differentiable_transition_matches_backprop_through_a_handwritten_rollout():
    env, params = make("Pendulum-v1")
    params = params._replace(max_steps_in_episode=7)  # auto-resets inside the 16-step rollout
    n, horizon = 4, 16
    policy = make_policy(env.observation_space(params), env.action_space(params), (8,))
    transition = mdp.differentiable_transition(env, params)
    g = mdp.step_graph("bptt_pendulum")
    a = mdp.add_policy(g, policy, estimator="pathwise")
    mdp.add_transition(g, transition, a)
    compiled = scg.compile(mdp.temporal(g, horizon=horizon, discount=1.0))

    key = jax.random.key(0)
    theta = policy.init(key)
    theta = {**theta, "log_std": jnp.full_like(theta["log_std"], -0.5)}
    obs0, state0 = _reset(env, params, jax.random.key(1), n)
    inputs = {"theta": theta, "obs": obs0[0], "state": transition.carry(jax.tree_util.tree_map(lambda x: x[0], state0))}
    fn = compiled.grad_fn(inputs, num_samples=n, wrt=("theta",), with_values=True)
    grads, values = fn(inputs, jax.random.key(2), {"obs": obs0, "state": transition.carry(state0)})
    assert bool(jnp.any(values["truncated"] > 0))  # the rollout crosses episode boundaries

    # The same rollout by hand: a_t = μ_θ(o_t) + σ_θ ε_t with the recorded ε_t and env keys.
    dist_at = jax.vmap(jax.vmap(policy.dist, (None, 0)), (None, 0))
    d = dist_at(theta, values["obs"])
    eps = (values["a"] - d.loc) / d.scale
    stepper = AutoReset(env)

    def expected_cost(theta):
        def one(o, s, eps_n, keys_n):
            def step(carry, xs):
                o, s = carry
                e, k = xs
                pi = policy.dist(theta, o)
                ts = stepper.step(jax.random.wrap_key_data(k), s, pi.loc + pi.scale * e, params)
                return (ts.obs, ts.state), (-ts.reward, pi.loc + pi.scale * e)

            _, (costs, actions) = jax.lax.scan(step, (o, s), (eps_n, keys_n))
            return jnp.sum(costs), actions

        costs, actions = jax.vmap(one)(obs0, state0, eps, values["env_key"])
        return jnp.mean(costs), actions

    (cost, actions), want = jax.value_and_grad(expected_cost, has_aux=True)(theta)
    np.testing.assert_allclose(actions, values["a"], rtol=1e-5, atol=1e-6)  # the noise was recovered exactly
    np.testing.assert_allclose(cost, jnp.mean(jnp.sum(values["r"], axis=1)), rtol=1e-5)
    assert float(jnp.max(jnp.abs(want["net"][0]["w"]))) > 0  # a real gradient through the dynamics
    _assert_close(grads["theta"], want, rtol=1e-5)


# -- the standard graph is the former mdp_graph --------------------------------------------------------------
def legacy_mdp_graph(env, env_params, policy, value, *, horizon, discount=0.99, critic_loss=0.0,
                     entropy_bonus=0.0, gae_lambda=None):
    """The former ``scg.algorithms.mdp.mdp_graph`` (JAX env, baseline and bootstrap on), declared node by node."""
    stepper = AutoReset(env)

    def transition(key, state, action):
        ts = stepper.step(key, state, action, env_params)
        return mdp.Transition(ts.obs, ts.state, ts.reward, ts.terminated, ts.truncated, ts.info["final_obs"])

    g = scg.Graph(f"mdp_{env.name}".replace("-", "_"))
    theta = g.input("theta")
    obs = g.input("obs", differentiable=False)
    state = g.input("state", differentiable=False)
    phi = g.input("phi")
    v = g.deterministic("v", lambda phi, o: -value.apply(phi, o), phi, obs)
    advantage = None if gae_lambda is None else scg.GAE(gae_lambda)
    a = g.stochastic("a", policy.dist, theta, obs, estimator="score", baseline=v, advantage=advantage)
    tr = g.simulate("transition", transition, state, a)
    g.deterministic("obs_next", lambda tr: tr.obs, tr)
    g.deterministic("state_next", lambda tr: tr.state, tr)
    g.deterministic("terminated", lambda tr: tr.terminated, tr)
    g.deterministic("truncated", lambda tr: tr.truncated, tr)
    g.cost("r", lambda tr: -tr.reward.astype(jnp.float32), tr)
    g.deterministic("boot", lambda phi, tr: -value.apply(phi, tr.final_obs), phi, tr)
    if critic_loss:
        g.loss("critic", lambda v, ret: critic_loss * 0.5 * (v - ret) ** 2, v, target="return")
    if entropy_bonus:
        g.loss("entropy", lambda pi: -entropy_bonus * mdp._entropy(pi), scg.dist_of(a))
    return scg.Temporal(g, carry={"obs": "obs_next", "state": "state_next"}, horizon=horizon, discount=discount,
                        terminated="terminated", truncated="truncated", bootstrap="boot")


@pytest.mark.parametrize("env_id, options", [
    ("CartPole-v1", dict(entropy_bonus=0.1)),  # REINFORCE
    ("CartPole-v1", dict(critic_loss=0.5, entropy_bonus=0.01)),  # A2C
    ("Pendulum-v1", dict(gae_lambda=0.95, entropy_bonus=0.01)),  # PPO
], ids=["reinforce", "a2c", "ppo"])
def test_actor_critic_graph_is_the_former_mdp_graph(env_id, options):
    env, params = make(env_id)
    params = params._replace(max_steps_in_episode=12)  # truncations inside the batch
    n, horizon = 4, 24
    obs_space = env.observation_space(params)
    policy, value = make_policy(obs_space, env.action_space(params), (16,)), make_value(obs_space, (16,))
    new = mdp.actor_critic_graph(mdp.env_transition(env, params), policy, value, horizon=horizon, discount=0.97,
                                 name=mdp.graph_name(env), **options)
    old = legacy_mdp_graph(env, params, policy, value, horizon=horizon, discount=0.97, **options)
    assert [(x.name, x.kind, x.parents) for x in new.step.nodes] == [(x.name, x.kind, x.parents) for x in old.step.nodes]
    key = jax.random.key(3)
    obs, state = _reset(env, params, jax.random.key(4), n)
    inputs = {"theta": policy.init(key), "phi": value.init(jax.random.fold_in(key, 1)), "obs": obs[0],
              "state": jax.tree_util.tree_map(lambda x: x[0], state)}
    observed = {"obs": obs, "state": state}
    runs = []
    for graph in (new, old):
        compiled = scg.compile(graph)
        grads, values = compiled.grad_fn(inputs, num_samples=n, with_values=True)(inputs, jax.random.key(5), observed)
        batch = compiled.sample_batch(inputs, jax.random.key(5), num_samples=n, observed=observed)
        runs.append((grads, values, batch.log_probs, batch.advantages, compiled.cost_to_go(inputs, values)))
    assert bool(jnp.any(runs[1][1]["truncated"]))
    for got, want in zip(jax.tree_util.tree_leaves(runs[0]), jax.tree_util.tree_leaves(runs[1])):
        np.testing.assert_array_equal(got, want)


# -- the learned-model hook ---------------------------------------------------------------------------------
def test_model_transition_with_a_linear_model():
    obs_space, action_space = Box.make([-1.0, -1.0], [1.0, 1.0]), Box.make([-1.0], [1.0])
    policy = make_policy(obs_space, action_space, ())  # linear Gaussian policy

    def linear_model(m, obs, action):  # (obs_{t+1}, r_t) of a linear model, quadratic reward
        obs_next = m["A"] @ obs + m["B"] @ action
        return obs_next, -jnp.sum(obs_next**2)

    g = mdp.step_graph("model")
    a = mdp.add_policy(g, policy, estimator="pathwise")
    mdp.add_transition(g, mdp.model_transition(linear_model), a)
    compiled = scg.compile(mdp.temporal(g, horizon=6, discount=1.0))
    model = {"A": jnp.array([[1.0, 0.1], [-0.2, 0.9]]), "B": jnp.array([[0.0], [0.5]])}
    theta = policy.init(jax.random.key(0))
    n = 5
    obs0 = jax.random.normal(jax.random.key(1), (n, 2))
    inputs = {"theta": theta, "model": model, "obs": obs0[0], "state": obs0[0]}
    fn = compiled.grad_fn(inputs, num_samples=n, wrt=("theta", "model"), with_values=True)
    grads, values = fn(inputs, jax.random.key(2), {"obs": obs0, "state": obs0})
    steps = mdp.mdp_batch(values)
    np.testing.assert_allclose(steps.next_obs, jnp.einsum("ij,ntj->nti", model["A"], steps.obs)
                               + jnp.einsum("ij,ntj->nti", model["B"], steps.action), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(steps.obs[:, 1:], steps.next_obs[:, :-1])  # the model's state is carried

    d = jax.vmap(jax.vmap(policy.dist, (None, 0)), (None, 0))(theta, values["obs"])
    eps = (values["a"] - d.loc) / d.scale

    def expected_cost(p):
        def one(o, eps_n):
            def step(o, e):
                pi = policy.dist(p["theta"], o)
                o_next, r = linear_model(p["model"], o, pi.loc + pi.scale * e)
                return o_next, -r

            return jnp.sum(jax.lax.scan(step, o, eps_n)[1])

        return jnp.mean(jax.vmap(one)(obs0, eps))

    want = jax.grad(expected_cost)({"theta": theta, "model": model})
    _assert_close(grads, want, rtol=1e-5)


# -- the typed batch view -------------------------------------------------------------------------------------
def test_mdp_batch_names_the_values_in_reward_units():
    env, params = make("CartPole-v1")
    obs_space = env.observation_space(params)
    policy, value = make_policy(obs_space, env.action_space(params), (8,)), make_value(obs_space, (8,))
    compiled = scg.compile(mdp.actor_critic_graph(mdp.env_transition(env, params), policy, value, horizon=30))
    key = jax.random.key(0)
    obs, state = _reset(env, params, key, 3)
    inputs = {"theta": policy.init(key), "phi": value.init(key), "obs": obs[0], "state": jax.tree_util.tree_map(lambda x: x[0], state)}
    batch = compiled.sample_batch(inputs, jax.random.key(1), num_samples=3, observed={"obs": obs, "state": state})
    steps, v = mdp.mdp_batch(batch.values, batch.log_probs), batch.values
    assert steps.obs.shape == (3, 30, 4) and steps.action.shape == steps.reward.shape == steps.done.shape == (3, 30)
    np.testing.assert_array_equal(steps.reward, -v["r"])
    np.testing.assert_array_equal(steps.value, -v["v"])
    np.testing.assert_array_equal(steps.final_value, -v["boot"])
    np.testing.assert_array_equal(steps.done, v["terminated"] | v["truncated"])
    np.testing.assert_array_equal(steps.obs[:, 1:], steps.next_obs[:, :-1])
    np.testing.assert_allclose(steps.value, jax.vmap(jax.vmap(value.apply, (None, 0)), (None, 0))(inputs["phi"], steps.obs),
                               rtol=1e-6)
    np.testing.assert_array_equal(steps.log_prob, batch.log_probs["a"])
    assert bool(jnp.any(steps.terminated))
    flat = jax.tree_util.tree_map(lambda x: x.reshape((90, *x.shape[2:])), v)
    replayed = mdp.mdp_batch(compiled.replay(inputs, flat, batch_ndim=1).values)  # a replayed record has its own axes
    np.testing.assert_allclose(replayed.value, steps.value.reshape(90), rtol=1e-6)
    assert mdp.mdp_batch(flat).log_prob is None
