"""PPO (issue 5): the clipped and KL-penalised objectives against the compiled estimator, the β rule, learning.

Objective checks run on a CartPole batch sampled by the compiled MDP graph
(GAE credit) and replayed at other parameters (``compiled.replay``):

- at ``θ = θ_old`` the gradient of the clipped objective (and of the KL-penalised one: the
  KL's gradient vanishes at its minimum) is the compiled estimator's gradient
  ``Σ_t ∇log π(a_t|s_t) Â_t`` on the same observed actions (``compiled.grad``), per step;
- away from ``θ_old`` the samples whose ratio left ``[1-ε, 1+ε]`` on the non-improving side
  contribute exactly zero gradient, and those clipped on the other side the plain ratio-surrogate's.

Learning, reduced (CI, 2 seeds): CartPole-v1 ≥ 195 within 30k env steps (a uniform policy
scores about 22; at these seeds both get there in about 14k), with the clipped and with the
KL-penalty surrogate; Pendulum-v1 ≥ -400 within 65,536 steps (TUNED config; a
random policy scores about -1,200; the full run gets to -250 in about 50k-60k).
Full size (``@pytest.mark.slow``, ``bench/learning.py``'s ``ppo-*`` checks): ≥ 475 on
CartPole-v1 within 300k steps and ≥ -250 on Pendulum-v1 within 1M, at least 4 of 5 seeds.
"""
from __future__ import annotations


import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.algorithms import ALGORITHMS, common, make_train, ppo
from scg.algorithms.config import ConfigError
from scg.algorithms.train import steps_to_reach
from scg.envs.registry import make

EPS = 0.2


@pytest.fixture(scope="module")
def batch():
    """A CartPole batch at θ_old: the compiled graph, its inputs, the record and its GAE advantages (cost units)."""
    config = ppo.PPOConfig(num_envs=4, horizon=32, hidden=(16,))
    env, env_params = make("CartPole-v1")
    mdp = common.compile_mdp(env, env_params, config, gae_lambda=config.gae_lambda)
    key = jax.random.key(0)
    params = common.init_params(mdp, key)
    params["theta"] = jax.tree_util.tree_map(lambda x: 30.0 * x, params["theta"])  # a policy far from uniform
    rollout = common.reset_envs(env, env_params, jax.random.fold_in(key, 1), config.num_envs)
    inputs, b = common.sample(mdp, params, rollout, jax.random.fold_in(key, 2))
    adv = mdp.compiled.advantages(inputs, b.values)["a"]
    assert jnp.any(b.values["terminated"])  # the batch crosses episode boundaries
    return mdp, config, params, rollout, inputs, b, adv


def _flat(x):
    return x.reshape((-1, *x.shape[2:]))


def _ratio_terms(mdp, inputs, b, adv, theta):
    rep = mdp.compiled.replay({**inputs, "theta": theta}, jax.tree_util.tree_map(_flat, b.values), batch_ndim=1)
    return jnp.exp(rep.log_probs["a"] - _flat(b.log_probs["a"])), _flat(adv)


def _compiled_grad(mdp, params, rollout, b):
    inputs, carry = common.mdp_inputs(params, rollout)
    observed = {**carry, "a": b.values["a"], "transition": b.values["transition"]}
    n = rollout.obs.shape[0]
    return mdp.compiled.grad(inputs, jax.random.key(9), num_samples=n, observed=observed, wrt="theta")["theta"]


def _close(a, b, rtol=1e-4):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(y))))


@pytest.mark.parametrize("surrogate", ["clip", "kl_penalty"])
def test_gradient_at_theta_old_is_the_compiled_estimators(batch, surrogate):
    """At θ = θ_old: ∇ mean ρ-objective = (1/T) · compiled.grad (Σ_t ∇log π Â_t, mean over envs)."""
    mdp, config, params, rollout, inputs, b, adv = batch
    config = dataclasses.replace(config, surrogate=surrogate, normalize_advantages=False, vf_coef=0.0)
    flat_values = jax.tree_util.tree_map(_flat, b.values)
    mb = {"values": flat_values, "logp_old": _flat(b.log_probs["a"]), "adv": _flat(adv), "target": _flat(adv)}
    if surrogate == "kl_penalty":
        mb["dist_old"] = mdp.compiled.replay(inputs, flat_values, batch_ndim=1).dists["a"]
    beta = jnp.float32(3.0)

    def loss(theta):
        return ppo.minibatch_loss({**params, "theta": theta}, mdp, config, inputs, mb, beta)[0]

    got = jax.grad(loss)(params["theta"])
    want = jax.tree_util.tree_map(lambda g: g / config.horizon, _compiled_grad(mdp, params, rollout, b))
    _close(got, want)


def test_clipped_gradient_vanishes_outside_the_clip_range_on_the_non_improving_side(batch):
    mdp, config, params, rollout, inputs, b, adv = batch
    moved = jax.tree_util.tree_map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(5), x.shape), params["theta"])
    ratio, a = _ratio_terms(mdp, inputs, b, adv, moved)
    # cost units: a > 0 is a worse-than-expected action; lowering its ratio below 1-ε gains nothing more
    flat_side = ((ratio < 1 - EPS) & (a > 0)) | ((ratio > 1 + EPS) & (a < 0))
    steep_side = ((ratio > 1 + EPS) & (a > 0)) | ((ratio < 1 - EPS) & (a < 0))
    assert flat_side.sum() >= 5 and steep_side.sum() >= 5, (flat_side.sum(), steep_side.sum())

    def objective(theta, mask, clipped=True):
        r, a = _ratio_terms(mdp, inputs, b, adv, theta)
        per_sample = ppo.clipped_surrogate(r, a, EPS) if clipped else r * a
        return jnp.sum(jnp.where(mask, per_sample, 0.0))

    zero = jax.grad(objective)(moved, flat_side)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(zero))
    _close(jax.grad(objective)(moved, steep_side), jax.grad(objective)(moved, steep_side, False))
    inside = jnp.abs(ratio - 1) < EPS
    _close(jax.grad(objective)(moved, inside), jax.grad(objective)(moved, inside, False))


def test_clipped_surrogate_values():
    ratio = jnp.array([0.5, 0.5, 1.5, 1.5, 1.1])
    adv = jnp.array([1.0, -1.0, 1.0, -1.0, 2.0])  # cost units
    np.testing.assert_allclose(ppo.clipped_surrogate(ratio, adv, EPS), [0.8, -0.5, 1.5, -1.2, 2.2], rtol=1e-6)


def test_kl_penalty_beta_rule():
    """β doubles when KL > 1.5 d_targ, halves when KL < d_targ / 1.5, else stays (the slide's rule, PPO paper §4)."""
    target, beta = 0.01, jnp.float32(1.0)
    for kl, want in [(0.02, 2.0), (0.0151, 2.0), (0.015, 1.0), (0.01, 1.0), (0.0067, 1.0), (0.0066, 0.5), (0.0, 0.5)]:
        assert float(ppo.adapt_beta(beta, jnp.float32(kl), target)) == want, kl
    betas = jax.vmap(ppo.adapt_beta, (0, 0, None))(jnp.array([4.0, 4.0]), jnp.array([1.0, 0.0]), target)
    np.testing.assert_allclose(betas, [8.0, 2.0])


def test_config_is_checked():
    env, env_params = make("CartPole-v1")
    with pytest.raises(ConfigError, match="surrogate must be one of 'clip', 'kl_penalty'"):
        ppo.make(env, env_params, {"surrogate": "trust"})
    with pytest.raises(ConfigError, match="divisible"):
        ppo.PPOConfig(num_envs=3, horizon=5)


def _reached(env_name: str, threshold: float, max_steps: int, overrides=None, seeds: int = 2):
    config = ALGORITHMS["ppo"].configure(env_name, overrides)  # defaults, ppo.TUNED[env_name], overrides
    env, env_params = make(env_name)
    init, run = make_train("ppo", env, env_params, config)
    _, metrics = run(init(jax.random.split(jax.random.key(0), seeds)), max_steps // (config.num_envs * config.horizon))
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    return steps_to_reach(metrics, threshold, max_steps=max_steps), metrics["mean_return"][:, -1]


@pytest.mark.parametrize("surrogate", ["clip", "kl_penalty"])
def test_cartpole_reduced(surrogate):
    """Reduced: both of 2 seeds reach ≥ 195 within 30k steps on CartPole-v1."""
    reached, final = _reached("CartPole-v1", 195.0, 30_000, {"surrogate": surrogate})
    assert all(s is not None for s in reached), f"steps to 195 per seed {reached}, final mean return {final}"


def test_pendulum_reduced():
    """Reduced: both of 2 seeds reach ≥ -400 within 65,536 steps on Pendulum-v1 (TUNED config)."""
    reached, final = _reached("Pendulum-v1", -400.0, 65_536)
    assert all(s is not None for s in reached), f"steps to -400 per seed {reached}, final mean return {final}"



@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppo-cartpole", "ppo-pendulum"])
def test_full_criterion(name, learning_bench):
    """Full size: ≥ 475 (CartPole-v1, 300k steps) / ≥ -250 (Pendulum-v1, 1M steps) in at least 4 of 5 seeds."""
    bench = learning_bench
    result = bench.run_check(bench.CHECKS[name])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{name}: {result['seeds_reached']}/5 seeds reached {result['threshold']}: steps {steps}"
