"""The pluggable optimizer (scg.algorithms.optimizers): by name from the config and the command line, or an optax
transformation from Python; checked against optax steps built by hand."""
import dataclasses
import inspect
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scg.algorithms import ALGORITHMS, a2c, cli, make_train, run_config
from scg.algorithms.common import compile_mdp, estimate
from scg.algorithms.config import ConfigError
from scg.algorithms.optimizers import OPTIMIZERS, make_optimizer
from scg.algorithms.ppo import PPOConfig
from scg.algorithms.run_files import write_json
from scg.envs import registry

TINY_A2C = dict(num_envs=2, horizon=8, hidden=(8,), lr=0.1)


@pytest.fixture(scope="module")
def cartpole():
    return registry.make("CartPole-v1")


def _allclose(a, b):
    return all(np.allclose(x, y, rtol=1e-6, atol=1e-7) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                         jax.tree_util.tree_leaves(b)))


def test_sgd_by_name_is_optax_sgd_built_by_hand_and_not_adam(cartpole):
    env, env_params = cartpole
    init, update = a2c.make(env, env_params, {**TINY_A2C, "optimizer": "sgd"})
    mdp = compile_mdp(env, env_params, a2c.A2CConfig(**TINY_A2C), critic_loss=0.5, entropy_bonus=0.01)

    def trained_and_gradient(state):  # by hand: the same batch's gradient (with the key update() splits off)
        _, k = jax.random.split(state.key)
        return update(state)[0], estimate(mdp, state.params, state.rollout, k).grads

    state = init(jax.random.key(0))
    trained, grads = jax.jit(trained_and_gradient)(state)  # one compiled program: half the compile time

    def step(tx):
        return optax.apply_updates(state.params, tx.update(grads, tx.init(state.params), state.params)[0])

    assert _allclose(trained.params, step(optax.sgd(0.1)))
    assert not _allclose(trained.params, step(optax.adam(0.1)))  # the default's step from the same gradient
    assert not _allclose(trained.params, state.params)


def test_a_given_transformation_keeps_the_configs_clipping():
    grads = {"w": jnp.full(4, 5.0)}  # global norm 10
    config = a2c.A2CConfig(max_grad_norm=1.0)
    for given in (optax.sgd(1.0), lambda lr: optax.sgd(lr)):  # a transformation, or one per learning rate
        tx = make_optimizer(config, 1.0, given, max_grad_norm=config.max_grad_norm)
        updates, _ = tx.update(grads, tx.init(grads))
        np.testing.assert_allclose(optax.tree_utils.tree_norm(updates), 1.0, rtol=1e-6)


def test_a_factory_gets_each_learning_rate():
    grads = {"w": jnp.arange(3.0)}
    for lr in (0.01, 0.3):
        tx = make_optimizer(a2c.A2CConfig(), lr, lambda rate: optax.sgd(rate, momentum=0.5))
        np.testing.assert_allclose(tx.update(grads, tx.init(grads))[0]["w"], -lr * grads["w"], rtol=1e-6)


def test_the_algorithms_own_defaults_apply_where_the_optimizer_takes_them():
    """PPO's Adam ε = 1e-5 (which matters for tiny gradients); the user's optimizer_args win; sgd has no ε."""
    grads = {"w": jnp.full(3, 1e-6)}

    def step(config, reference):
        tx = make_optimizer(config, 1e-3, max_grad_norm=0.5, defaults={"eps": 1e-5})
        ref = optax.chain(optax.clip_by_global_norm(0.5), reference)
        np.testing.assert_allclose(tx.update(grads, tx.init(grads))[0]["w"], ref.update(grads, ref.init(grads))[0]["w"],
                                   rtol=1e-6)

    step(PPOConfig(), optax.adam(1e-3, eps=1e-5))
    step(PPOConfig(optimizer_args={"eps": 1e-8}), optax.adam(1e-3, eps=1e-8))
    step(PPOConfig(optimizer="rmsprop"), optax.rmsprop(1e-3, eps=1e-5))
    step(PPOConfig(optimizer="sgd", optimizer_args={"momentum": 0.9}), optax.sgd(1e-3, momentum=0.9))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_name_builds_its_optax_optimizer(name):
    grads = {"w": jnp.array([0.5, -2.0])}
    tx = make_optimizer(a2c.A2CConfig(optimizer=name), 0.1)
    ref = OPTIMIZERS[name](0.1)
    np.testing.assert_allclose(tx.update(grads, tx.init(grads), grads)[0]["w"],
                               ref.update(grads, ref.init(grads), grads)[0]["w"])


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({"optimizer": "nope"}, ["optimizer", "'adam'", "'sgd'", "'rmsprop'", "'nope'"]),
        ({"optimizer": "sgd", "optimizer_args": {"eps": 1e-3}}, ["'eps'", "optax.sgd", "momentum, nesterov"]),
        ({"optimizer_args": {"b1": "high"}}, ["optimizer_args['b1']", "float", "'high'"]),
        ({"optimizer_args": [0.9]}, ["optimizer_args", "JSON object"]),
    ],
)
def test_bad_optimizer_configs_are_config_errors(overrides, names):
    with pytest.raises(ConfigError) as info:
        a2c.A2CConfig(**overrides)
    assert all(name in str(info.value) for name in names), str(info.value)


def test_the_command_line_rejects_an_unknown_optimizer(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    for args, names in ((["optimizer=nope"], ["'nope'", "'adam', 'adamw', 'sgd', 'rmsprop'"]),
                        (["optimizer=sgd", 'optimizer_args={"weight_decay": 0.1}'], ["'weight_decay'", "momentum"])):
        assert cli.main(["train", "--runs-dir", str(runs_dir), "--quiet", "--config", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("scg train: error: reinforce config: optimizer")
        assert all(name in err for name in names), err
    assert not runs_dir.exists()


def test_config_json_records_the_optimizer(tmp_path):
    overrides = {"optimizer": "sgd", "optimizer_args": {"momentum": 0.9, "nesterov": True}, "lr": 0.1}
    config = run_config.resolve("a2c", "CartPole-v1", seeds=1, steps=10, overrides=overrides)
    write_json(tmp_path / "config.json", config)
    recorded = json.loads((tmp_path / "config.json").read_text())["algorithm_config"]
    assert recorded["optimizer"] == "sgd" and recorded["optimizer_args"] == {"momentum": 0.9, "nesterov": True}
    typed = run_config.algorithm_config(run_config.load(tmp_path))
    assert typed == a2c.A2CConfig(**overrides) and hash(typed) == hash(a2c.A2CConfig(**overrides))


def test_options_an_algorithm_lacks_are_refused_naming_those_that_take_them(cartpole):
    env, env_params = cartpole
    with pytest.raises(ConfigError, match="trpo takes no optimizer=; the algorithms that do: a2c, ddpg, .*reinforce"):
        make_train("trpo", env, env_params, optimizer=optax.sgd(0.1))
    with pytest.raises(ConfigError, match="ddpg takes no policy=; the algorithms that do: a2c, ppo, reinforce, trpo"):
        make_train("ddpg", env, env_params, policy=(lambda k: None, lambda p, o: o))
    with pytest.raises(ConfigError, match="give one or the other"):
        make_optimizer(a2c.A2CConfig(optimizer="sgd"), 0.1, optax.adam(0.1))
    with pytest.raises(TypeError, match="optimizer= takes an optax.GradientTransformation"):
        make_optimizer(a2c.A2CConfig(), 0.1, "sgd")
    with pytest.raises(TypeError, match="returned a float"):
        make_optimizer(a2c.A2CConfig(), 0.1, lambda lr: lr)


def test_the_algorithms_with_an_optimizer_name_are_those_that_take_one_from_python():
    """A config with ``optimizer`` and a ``make`` taking ``optimizer=`` go together (cem, cucb, trpo: neither)."""
    with_field = {n for n, a in ALGORITHMS.items() if "optimizer" in {f.name for f in dataclasses.fields(a.config)}}
    with_argument = {n for n, a in ALGORITHMS.items() if "optimizer" in inspect.signature(a.make).parameters}
    assert with_field == with_argument and not {"cem", "cucb", "trpo"} & with_field
    assert {"reinforce", "a2c", "ppo", "ddpg", "svg0", "svg1", "smoothie", "svginf", "rpg", "dirpg"} <= with_field
