"""Bring your own network: a flax or equinox module as the policy and value of A2C / REINFORCE (``policy=``,
``value=``: any ``(init, apply)`` pair), checked against the built-in MLP with the same weights."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scg.algorithms import a2c, reinforce
from scg.algorithms.networks import mlp_init
from scg.envs import registry

OBS, ACTIONS, HIDDEN = 4, 2, 8  # CartPole-v1
TINY_A2C = dict(num_envs=2, horizon=8, hidden=(HIDDEN,))
TINY_REINFORCE = dict(num_envs=2, horizon=16, hidden=(HIDDEN,), value_epochs=2)


@pytest.fixture(scope="module")
def cartpole():
    return registry.make("CartPole-v1")


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _changed(before, after) -> bool:
    return all(not np.array_equal(x, y) for x, y in zip(_leaves(before), _leaves(after)))


def _train(make, env, env_params, config, iterations=3, **networks):
    """``iterations`` updates from ``key(0)``: the first and last states and the last metrics."""
    init, update = make(env, env_params, config, **networks)
    first = state = init(jax.random.key(0))
    update = jax.jit(update)
    for _ in range(iterations):
        state, metrics = update(state)
    return first, state, metrics


def _flax_mlp(features):
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):  # the built-in network's layout: tanh hidden layers, a linear output
        @nn.compact
        def __call__(self, x):
            for size in features[:-1]:
                x = jnp.tanh(nn.Dense(size)(x))
            return nn.Dense(features[-1])(x)

    return MLP()


def _as_flax(layers: list) -> dict:
    """The built-in MLP's weights (``networks.mlp_init``) as the flax MLP's parameters."""
    return {"params": {f"Dense_{i}": {"kernel": layer["w"], "bias": layer["b"]} for i, layer in enumerate(layers)}}


def test_a_flax_module_trains_a2c_and_has_the_builtin_mlps_gradient(cartpole):
    env, env_params = cartpole
    pi, v = _flax_mlp((HIDDEN, ACTIONS)), _flax_mlp((HIDDEN, 1))  # V's output has shape [1]
    x0 = jnp.zeros(OBS)
    policy = (lambda key: pi.init(key, x0), pi.apply)
    value = (lambda key: v.init(key, x0), v.apply)
    with pytest.raises(TypeError, match="policy= got a flax module; pass \\(lambda key: module.init\\(key, obs\\)"):
        a2c.make(env, env_params, TINY_A2C, policy=pi)  # its init needs an example observation
    sgd = optax.sgd(0.1)  # a linear step: equal steps from equal parameters are equal gradients
    init, update = a2c.make(env, env_params, TINY_A2C, optimizer=sgd, policy=policy, value=value)
    b_init, b_update = a2c.make(env, env_params, TINY_A2C, optimizer=sgd)  # the built-in MLPs
    step = jax.jit(lambda s, b: (update(s), b_update(b)[0]))  # one compiled program for both: compile time
    builtin = b_init(jax.random.key(0))

    first = state = init(jax.random.key(0))  # the flax module's own initialisation
    for _ in range(3):
        (state, metrics), _ = step(state, builtin)
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert _changed(first.params, state.params)

    # the built-in MLP's weights in the flax modules, and the same rollout and key: one step each
    same = first._replace(params={"theta": {"net": _as_flax(builtin.params["theta"]["net"])},
                                  "phi": _as_flax(builtin.params["phi"])}, rollout=builtin.rollout, key=builtin.key)
    (stepped, _), b_stepped = step(same, builtin)
    expected = {"theta": {"net": _as_flax(b_stepped.params["theta"]["net"])}, "phi": _as_flax(b_stepped.params["phi"])}
    assert jax.tree_util.tree_structure(stepped.params) == jax.tree_util.tree_structure(expected)
    for got, want, start in zip(_leaves(stepped.params), _leaves(expected), _leaves(same.params)):
        assert np.any(want != start)
        np.testing.assert_allclose(got - start, want - start, rtol=1e-5, atol=1e-9)  # -0.1 × the gradient


def test_an_equinox_module_trains_reinforce(cartpole):
    eqx = pytest.importorskip("equinox")
    env, env_params = cartpole

    def network(out_size):
        """``(init, apply)`` of an equinox MLP: its arrays are the parameters, the rest is static."""
        build = lambda key: eqx.nn.MLP(OBS, out_size, HIDDEN, depth=1, activation=jnp.tanh, key=key)  # noqa: E731
        static = eqx.partition(build(jax.random.key(0)), eqx.is_array)[1]
        return (lambda key: eqx.partition(build(key), eqx.is_array)[0],
                lambda params, obs: eqx.combine(params, static)(obs))

    first, last, metrics = _train(reinforce.make, env, env_params, TINY_REINFORCE,
                                  policy=network(ACTIONS), value=network("scalar"))
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert _changed(first.params["theta"], last.params["theta"]) and _changed(first.params["phi"], last.params["phi"])


def test_a_network_of_the_wrong_kind_or_output_shape_is_refused_naming_it(cartpole):
    env, env_params = cartpole
    wide = (lambda key: mlp_init(key, [OBS, 3]), lambda p, obs: (obs @ p[0]["w"])[None])  # [1, 3]: not [2]
    with pytest.raises(ValueError, match=r"the policy network returned an output of shape \(1, 3\); it must have "
                                         r"shape \(2,\)"):
        a2c.make(env, env_params, TINY_A2C, policy=wide)
    with pytest.raises(TypeError, match="value= takes a network: a pair \\(init, apply\\)"):
        a2c.make(env, env_params, TINY_A2C, value="mlp")
