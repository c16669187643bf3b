"""Nodes that read a stochastic node's distribution (``scg.dist_of``): same numbers as recomputing it, computed once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist


def _graph(read_distribution: bool | None, calls: list | None = None):
    """theta -> x ~ N(theta, softplus(theta)) (score), cost (x - 1)², loss -0.1 H[p(x)]: the entropy read through
    scg.dist_of (True), by calling the distribution function again (False), or no entropy loss (None)."""

    def density(theta):
        if calls is not None:
            calls.append(1)
        return dist.Normal(theta, jax.nn.softplus(theta))

    entropy = lambda d: jnp.sum(0.5 * jnp.log(2 * jnp.pi * jnp.e * d.variance))  # noqa: E731
    g = scg.Graph("dist_of")
    theta = g.input("theta")
    x = g.stochastic("x", density, theta, estimator="score")
    g.cost("f", lambda x: jnp.sum((x - 1.0) ** 2), x)
    if read_distribution is None:
        pass
    elif read_distribution:
        g.loss("bonus", lambda d: -0.1 * entropy(d), scg.dist_of(x))
    else:
        g.loss("bonus", lambda t: -0.1 * entropy(density(t)), theta)
    return g


def test_reading_the_distribution_equals_recomputing_it():
    inputs = {"theta": jnp.array([0.3, -0.2, 1.1])}
    grads = [scg.compile(_graph(flag)).grad_fn(inputs, num_samples=64)(inputs, jax.random.key(0)) for flag in (True, False)]
    np.testing.assert_allclose(grads[0]["theta"], grads[1]["theta"], rtol=1e-5, atol=1e-6)  # same draws


def test_the_distribution_is_computed_once_per_evaluation():
    inputs = {"theta": jnp.array([0.3, -0.2])}
    counts = {}
    for flag in (True, False, None):  # traces of the distribution function while compiling and tracing
        calls = []
        jax.make_jaxpr(scg.compile(_graph(flag, calls)).surrogate_fn(inputs))(inputs, jax.random.key(0))
        counts[flag] = len(calls)
    assert counts[True] == counts[None] < counts[False]


def test_the_distribution_node_is_in_the_graph_and_the_values():
    g = _graph(True)
    assert [n.name for n in g.nodes] == ["theta", "x.dist", "x", "f", "bonus"]
    assert g["x"].parents == ("x.dist",) and g["x.dist"].parents == ("theta",)
    assert "x.dist" in g and len(g) == 5
    inputs = {"theta": jnp.array([0.3])}
    values = scg.compile(g).sample(inputs, jax.random.key(1), num_samples=4)
    assert isinstance(values["x.dist"], dist.Normal)
    np.testing.assert_allclose(values["x.dist"].loc, jnp.full((4, 1), 0.3))


def test_a_cost_reading_the_distribution_is_not_credited_to_the_draw():
    g = scg.Graph("credit")
    theta = g.input("theta")
    x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta, estimator="score")
    g.cost("f", lambda x: jnp.sum(x**2), x)
    g.cost("h", lambda d: jnp.sum(d.loc**2), scg.dist_of(x))
    compiled = scg.compile(g)
    assert compiled.analysis.downstream_costs["x"] == ("f",)


def test_temporal_actor_critic_entropy_from_the_distribution_equals_recomputing_it():
    from scg.algorithms import mdp
    from scg.algorithms.networks import make_policy, make_value
    from scg.envs.registry import make

    env, params = make("CartPole-v1")
    obs_space = env.observation_space(params)
    policy, value = make_policy(obs_space, env.action_space(params), (16,)), make_value(obs_space, (16,))
    graphs = {}
    for flag in (True, False):
        g = mdp.step_graph("ac")
        v = mdp.add_critic(g, value)
        a = mdp.add_policy(g, policy, baseline=v, advantage=scg.GAE(0.95))
        mdp.add_transition(g, mdp.env_transition(env, params), a)
        mdp.add_bootstrap(g, value)
        if flag:
            mdp.add_entropy(g, 0.05, a)
        else:
            g.loss("entropy", lambda th, o: -0.05 * mdp._entropy(policy.dist(th, o)), "theta", "obs")
        graphs[flag] = scg.compile(mdp.temporal(g, horizon=16))
    key = jax.random.key(3)
    obs, state = env.reset(jax.random.key(4), params)
    inputs = {"theta": policy.init(key), "phi": value.init(jax.random.fold_in(key, 1)), "obs": obs, "state": state}
    # The two graphs differ in structure, so their topological orders (and draw keys) differ: compare them on
    # one recorded batch, as the rollout's gradient and as PPO's minibatch loss (replayed).
    values = graphs[True].sample(inputs, jax.random.key(5), num_samples=3)
    observed = {"a": values["a"], "transition": values["transition"]}
    grads = {f: c.grad_fn(inputs, num_samples=3)(inputs, jax.random.key(6), observed) for f, c in graphs.items()}
    for got, want in zip(jax.tree_util.tree_leaves(grads[True]), jax.tree_util.tree_leaves(grads[False])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    loss = lambda c, th: jnp.sum(c.replay({**inputs, "theta": th}, values, batch_ndim=2).values["entropy"])  # noqa: E731
    got, want = (jax.grad(lambda th, c=graphs[f]: loss(c, th))(inputs["theta"]) for f in (True, False))
    for g1, g2 in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)


def test_dist_of_a_node_that_has_no_distribution_is_an_error():
    g = scg.Graph("bad")
    theta = g.input("theta")
    y = g.deterministic("y", lambda t: 2 * t, theta)
    g.cost("f", lambda d: jnp.sum(d.loc), scg.dist_of(y))
    with pytest.raises(scg.GraphError, match="'y' is a deterministic node; only stochastic nodes"):
        scg.compile(g)
    g = scg.Graph("missing")
    g.input("theta")
    g.cost("f", lambda d: jnp.sum(d.loc), "z.dist")
    with pytest.raises(scg.GraphError, match="reads the distribution of 'z'.*has no node 'z'"):
        scg.compile(g)
