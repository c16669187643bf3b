"""GAE-TRPO (issue 5): one update against its constraint, its pieces against independent paths, learning checks.

- ``test_one_update_respects_the_trust_region``: on a sampled batch, one policy step has
  ``mean KL(π_old ‖ π_new) ≤ δ`` measured independently (``kl_divergence`` of replayed
  distributions) and lowers the surrogate of Eq. 35 below its value at ``θ_old``, for both
  policy families and both Fisher-vector products.
- ``test_fisher_products_agree_at_theta_old``: at ``θ_old`` the Hessian of the mean KL equals
  ``JᵀMJ`` (Eq. 21's second term vanishes), so both ``fvp`` choices give the same products.
- ``test_traced_hyperparameters_match_the_graph``: the sweep path (``hyper``, traced γ and λ)
  computes the same advantages and targets as the compiled graph, and ``update`` with the
  graph's γ and λ carried in ``state.hyper`` makes the same step.
- ``test_host_batch_gives_the_same_update``: a JAX-sampled batch fed as host-collected data
  (``update(state, batch)``) gives the same parameters and metrics as the JAX path.
- Learning, reduced (CI, 2 seeds): CartPole-v1 ≥ 195 within 30k steps; Pendulum-v1 ≥ -400
  within 60k steps (a uniform policy scores about -1200). Full size (``@pytest.mark.slow``,
  ``bench/learning.py``): CartPole-v1 ≥ 475 within 300k steps and Pendulum-v1 ≥ -250 within
  2M steps, each in at least 4 of 5 seeds.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg import trust_region
from scg.algorithms import ALGORITHMS, make_train, trpo
from scg.algorithms.common import compile_mdp, init_params, reset_envs, sample
from scg.algorithms.config import resolve
from scg.algorithms.train import steps_to_reach
from scg.algorithms.mdp import observed_from_trajectory
from scg.envs.host import HostEnv
from scg.envs.registry import make
from scg.envs.wrappers import Trajectory
from scg.dist import kl_divergence


def _batch(env_name: str, **config):
    config = resolve(trpo.TRPOConfig, {"num_envs": 4, "horizon": 64, "hidden": (16,)}, config)
    env, env_params = make(env_name)
    mdp = compile_mdp(env, env_params, config, gae_lambda=config.gae_lambda)
    params = init_params(mdp, jax.random.key(0))
    rollout = reset_envs(env, env_params, jax.random.key(1), config.num_envs)
    inputs, batch = sample(mdp, params, rollout, jax.random.key(2))
    return mdp, config, inputs, batch.values


@pytest.mark.parametrize("fvp", ["hessian", "gauss_newton"])
@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])
def test_one_update_respects_the_trust_region(env_name, fvp):
    mdp, config, inputs, values = _batch(env_name, fvp=fvp)
    adv, _ = trpo.advantages_and_targets(mdp, config, inputs, values)
    weights = jnp.ones(adv.shape)
    theta, info, _ = jax.jit(lambda i, v, a: trpo.policy_step(mdp, config, i, v, a, weights, jax.random.key(3)))(
        inputs, values, adv
    )
    assert bool(info.accepted)
    old = mdp.compiled.replay(inputs, values)
    new = mdp.compiled.replay({**inputs, "theta": theta}, values)
    kl = kl_divergence(old.dists["a"], new.dists["a"])
    kl = float(jnp.mean(kl.reshape(adv.shape + (-1,)).sum(-1)))
    assert 0.0 < kl <= config.max_kl * (1 + 1e-5), kl
    np.testing.assert_allclose(kl, info.kl, rtol=1e-4)
    a = (adv - adv.mean()) / adv.std()  # the surrogate's standardised advantages (cost units: lower is better)
    before = float(jnp.mean(a))  # ratio 1 at θ_old
    after = float(jnp.mean(jnp.exp(new.log_probs["a"] - old.log_probs["a"]) * a))
    assert after < before - 1e-3, (before, after)


@pytest.mark.parametrize("env_name", ["CartPole-v1", "Pendulum-v1"])
def test_fisher_products_agree_at_theta_old(env_name):
    mdp, config, inputs, values = _batch(env_name)
    sub, w = trpo._subsample(values, jnp.ones(values["r"].shape), 0.5, jax.random.key(4))
    dists = lambda th: mdp.compiled.replay({**inputs, "theta": th}, sub, batch_ndim=1).dists["a"]  # noqa: E731
    theta = inputs["theta"]
    v = jax.tree_util.tree_map(lambda x: jax.random.normal(jax.random.key(5), x.shape), theta)
    hess = trust_region.fisher_product("hessian", dists, theta, w, damping=0.0)(v)
    gn = trust_region.fisher_product("gauss_newton", dists, theta, w, damping=0.0)(v)
    for h, g in zip(jax.tree_util.tree_leaves(hess), jax.tree_util.tree_leaves(gn)):
        np.testing.assert_allclose(h, g, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("value_target", ["returns", "lambda"])
def test_traced_hyperparameters_match_the_graph(value_target):
    mdp, config, inputs, values = _batch("CartPole-v1", gae_lambda=0.9, discount=0.97, value_target=value_target)
    want = trpo.advantages_and_targets(mdp, config, inputs, values)
    hyper = {"discount": jnp.float32(0.97), "gae_lambda": jnp.float32(0.9)}
    got = jax.jit(lambda h: trpo.advantages_and_targets(mdp, config, inputs, values, h))(hyper)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert bool(jnp.any(values["terminated"]))  # the batch crosses episode boundaries


def test_hyperparameters_in_the_state_give_the_same_update():
    """``state.hyper`` (the sweep's traced γ, λ; ``bench/gae_figure8.py``) at the config's values: the same step."""
    env, env_params = make("CartPole-v1")
    init, update = trpo.make(env, env_params, {"num_envs": 4, "horizon": 32, "hidden": (16,), "discount": 0.97})
    state = init(jax.random.key(3))
    hyper = {"discount": jnp.float32(0.97), "gae_lambda": jnp.float32(trpo.TRPOConfig().gae_lambda)}
    plain, _ = jax.jit(update)(state)
    swept, _ = jax.jit(update)(state._replace(hyper=hyper))
    assert swept.hyper is not None and plain.hyper is None
    for x, y in zip(jax.tree_util.tree_leaves(swept.params), jax.tree_util.tree_leaves(plain.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_host_batch_gives_the_same_update():
    """A batch sampled by the JAX env inside ``update``, fed back as host-collected data, gives the same update."""
    env, env_params = make("CartPole-v1")
    env_params = env_params._replace(max_steps_in_episode=25)  # truncations as well as terminations
    config = {"num_envs": 4, "horizon": 40, "hidden": (16,)}
    host = HostEnv("CartPole-v1", num_envs=4, seed=0)  # only its spaces are used
    try:
        jax_init, jax_update = trpo.make(env, env_params, config)
        host_init, host_update = trpo.make(host, None, config)
    finally:
        host.close()
    full = trpo.TRPOConfig(**config)
    mdp = compile_mdp(env, env_params, full, gae_lambda=full.gae_lambda)
    state = jax_init(jax.random.key(3))
    k_roll = jax.random.split(state.key, 4)[2]  # the batch's key inside update
    values = jax.jit(lambda s: sample(mdp, s.params, s.rollout, k_roll)[1].values)(state)
    t_major = lambda x: np.swapaxes(np.asarray(x), 0, 1)  # noqa: E731
    traj = Trajectory(t_major(values["obs"]), t_major(values["a"]), t_major(-values["r"]), t_major(values["terminated"]),
                      t_major(values["truncated"]), t_major(values["transition"].final_obs))
    assert traj.terminated.any() and traj.truncated.any()
    jax_next, jax_metrics = jax.jit(jax_update)(state)
    host_next, host_metrics = jax.jit(host_update)(host_init(jax.random.key(3)), observed_from_trajectory(traj))
    for x, y in zip(jax.tree_util.tree_leaves(host_next.params), jax.tree_util.tree_leaves(jax_next.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    for name in ("env_steps", "episodes", "mean_return", "kl", "value_loss"):
        np.testing.assert_allclose(host_metrics[name], jax_metrics[name], rtol=1e-4, err_msg=name)


def _reached(env_name: str, threshold: float, max_steps: int, seeds: int = 2):
    config = ALGORITHMS["trpo"].configure(env_name)  # defaults, then trpo.TUNED[env_name]
    env, env_params = make(env_name)
    init, run = make_train("trpo", env, env_params, config)
    _, metrics = run(init(jax.random.split(jax.random.key(0), seeds)), max_steps // (config.num_envs * config.horizon))
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    return steps_to_reach(metrics, threshold, max_steps=max_steps), metrics["mean_return"][:, -1]


def test_cartpole_reduced():
    """Reduced: both of 2 seeds reach ≥ 195 within 30k steps on CartPole-v1."""
    reached, final = _reached("CartPole-v1", 195.0, 30_000)
    assert all(s is not None for s in reached), f"steps to 195 per seed {reached}, final mean return {final}"


def test_pendulum_reduced():
    """Reduced: both of 2 seeds reach ≥ -400 within 60k steps on Pendulum-v1."""
    reached, final = _reached("Pendulum-v1", -400.0, 60_000)
    assert all(s is not None for s in reached), f"steps to -400 per seed {reached}, final mean return {final}"



@pytest.mark.slow
@pytest.mark.parametrize("name", ["trpo-cartpole", "trpo-pendulum"])
def test_full_criterion(name, learning_bench):
    """Full size: ≥ 475 (CartPole-v1, 300k steps) / ≥ -250 (Pendulum-v1, 2M steps) in at least 4 of 5 seeds."""
    bench = learning_bench
    result = bench.run_check(bench.CHECKS[name])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{name}: {result['seeds_reached']}/5 seeds reached {result['threshold']}: steps {steps}"
