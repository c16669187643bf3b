"""Smoothie (Nachum et al. 2018): the update graph against closed forms, and learning checks.

1. With a critic whose smoothed form is known in closed form, the bimodal ``smoothed_reward``
   ``Q̃(a; σ)`` at the policy's fixed σ, the graph's gradients are Eq. 13 (``−∂Q̃/∂μ ∇_θ μ``) and
   Eq. 15 under ``log σ`` (``−σ ∂Q̃/∂σ``, by Theorem 1 ``= −σ² ∂²Q̃/∂a²``), computed here by
   ``jax.grad`` of the closed form in ``(μ, σ)``: an independent path from the estimator's Hessian in ``a``.
2. The actor's and the critic's gradients never mix: changing the critic's minibatch leaves the
   actor's gradient unchanged, changing the actor's minibatch and mean parameters leaves the critic's
   unchanged (to 1e-7); the critic's gradient is ``jax.grad`` of Eq. 18 written out by hand.
3. The KL penalty's gradient (Eq. 20) is ``jax.grad`` of the closed-form Gaussian KL.
4. §6.1 (Fig. 2) on the bimodal bandit, 5 seeds, each algorithm's ``TUNED["BimodalBandit-v0"]``:
   Smoothie ends within 0.1 of the better mode +1 with σ < 0.3 on ≥ 4 seeds; DDPG stays within 0.3
   of the worse mode −1 on ≥ 4 seeds.
5. Pendulum-v1 (not in the paper): reduced, 2 seeds reach ≥ −300 within 10k env steps (a uniform
   policy scores about −1200); full (slow), ≥ −200 over the last 20 episodes within 50k steps on ≥ 4/5 seeds.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg.algorithms import ALGORITHMS, make_train, smoothie
from scg.algorithms.networks import QFn, make_q
from scg.algorithms.train import seed_keys
from scg.envs.paper.bimodal_bandit import BimodalBanditParams, smoothed_reward
from scg.envs.registry import make
from scg.envs.spaces import Box
from support import steps_to_threshold

B = 8
OBS, ACT = Box.make(-1.0, 1.0, (3,)), Box.make(-2.0, 2.0, (1,))
BIMODAL = BimodalBanditParams()


def _closed_form_critic(sigma: float) -> QFn:
    """``Q̃_w(s, a) = w · Q̃(a; σ)``: the bimodal smoothed reward at a fixed σ (it ignores the state)."""
    return QFn(lambda key: {"scale": jnp.float32(1.0)},
               lambda w, obs, a: w["scale"] * smoothed_reward(a[0], sigma, BIMODAL))


def _batches(key, obs_dim=3):
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    s = jax.random.normal(k1, (B, obs_dim))
    batch = {"obs": jax.random.normal(k2, (B, obs_dim)), "action": jax.random.normal(k3, (B, 1)),
             "reward": jax.random.normal(k4, (B,)), "next_obs": jax.random.normal(k5, (B, obs_dim)),
             "terminated": (jnp.arange(B) % 3 == 0).astype(jnp.float32)}
    return s, batch


def _grad_fn(config, critic, policy, params):
    graph = smoothie.update_graph(policy, critic, OBS.shape, ACT.shape, config)
    inputs = {**params, "targets": params}
    return jax.jit(scg.compile(graph).grad_fn(inputs, num_samples=B, wrt=("theta", "w"), with_values=True))


@pytest.mark.parametrize("mu0, sigma", [(-1.0, 1.5), (-0.3, 0.6), (0.4, 0.3)])
def test_actor_gradient_is_the_closed_form(mu0, sigma):
    """Eq. 13 and Eq. 15: ``∇_W = −mean_k ∂Q̃/∂a(μ_k) s_k``, ``∇_b = −mean_k ∂Q̃/∂a(μ_k)``, ``∇_{log σ} = −mean_k σ ∂Q̃/∂σ``."""
    config = smoothie.SmoothieConfig(actor_hidden=(), squash=False, init_mean=mu0, init_std=sigma, kl_weight=0.0)
    policy = smoothie.make_gaussian_policy(OBS, ACT, config)
    critic = _closed_form_critic(sigma)
    theta = policy.init(jax.random.key(1))
    theta["mean"][0]["w"] = 0.2 * theta["mean"][0]["w"] / jnp.abs(theta["mean"][0]["w"]).max()  # μ_k spread around μ0
    params = {"theta": theta, "w": critic.init(None)}
    s, batch = _batches(jax.random.key(2))
    grads, _ = _grad_fn(config, critic, policy, params)({**params, "targets": params}, jax.random.key(3),
                                                        {"s": s, "batch": batch})
    mu = jax.vmap(lambda obs: policy.mean(theta, obs)[0])(s)
    d_mu = jax.vmap(jax.grad(smoothed_reward), (0, None, None))(mu, jnp.float32(sigma), BIMODAL)
    d_sigma = jax.vmap(jax.grad(smoothed_reward, argnums=1), (0, None, None))(mu, jnp.float32(sigma), BIMODAL)
    np.testing.assert_allclose(grads["theta"]["mean"][0]["w"][:, 0], -jnp.mean(d_mu[:, None] * s, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["theta"]["mean"][0]["b"], [-jnp.mean(d_mu)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["theta"]["log_std"], [-sigma * jnp.mean(d_sigma)], rtol=1e-5, atol=1e-5)
    assert abs(float(jnp.mean(d_sigma))) > 1e-3  # the covariance gradient is not trivially zero here


@functools.lru_cache(maxsize=None)
def _networks():
    config = smoothie.SmoothieConfig(hidden=(16, 16), actor_hidden=(16, 16), kl_weight=0.3, discount=0.9,
                                     reward_scale=0.5, init_std=0.7)
    policy = smoothie.make_gaussian_policy(OBS, ACT, config)
    critic = make_q(OBS, ACT, config.hidden, activation=config.activation)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    params = {"theta": policy.init(k1), "w": critic.init(k2)}
    targets = {"theta": policy.init(k3), "w": critic.init(k4)}
    targets["theta"]["log_std"] = targets["theta"]["log_std"] - 0.2
    return config, policy, critic, params, targets, _grad_fn(config, critic, policy, params)


def test_actor_and_critic_gradients_do_not_mix():
    """The critic's minibatch does not reach ``∇_θ``; the actor's minibatch and ``θ`` do not reach ``∇_w``."""
    config, policy, critic, params, targets, grad_fn = _networks()
    s, batch = _batches(jax.random.key(5))
    s2, batch2 = _batches(jax.random.key(6))
    inputs = {**params, "targets": targets}
    grads, _ = grad_fn(inputs, jax.random.key(7), {"s": s, "batch": batch})
    other_critic_batch, _ = grad_fn(inputs, jax.random.key(7), {"s": s, "batch": batch2})
    # the mean only: σ is an input of the critic's loss (the phantom's scale), a value, not a gradient path
    theta2 = {**params["theta"], "mean": jax.tree_util.tree_map(lambda x: x + 0.3, params["theta"]["mean"])}
    other_actor, _ = grad_fn({**inputs, "theta": theta2}, jax.random.key(7), {"s": s2, "batch": batch})
    tree_close = lambda a, b, **kw: jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)  # noqa: E731
    tree_close(other_critic_batch["theta"], grads["theta"], rtol=0, atol=1e-7)
    tree_close(other_actor["w"], grads["w"], rtol=0, atol=1e-7)
    # the perturbations are large enough to matter where they should
    assert not np.allclose(other_critic_batch["w"][0]["w"], grads["w"][0]["w"], atol=1e-4)
    assert not np.allclose(other_actor["theta"]["mean"][0]["w"], grads["theta"]["mean"][0]["w"], atol=1e-4)

    def td_loss(w, key):
        """Eq. 18 without ``1/q``: phantom ``a ~ N(ã, σ²)`` with the graph's draws, target critic and policy."""
        sigma = policy.std(params["theta"])
        next_q = jax.vmap(lambda o: critic.apply(targets["w"], o, policy.mean(targets["theta"], o)))(batch["next_obs"])
        y = config.reward_scale * batch["reward"] + config.discount * (1 - batch["terminated"]) * next_q
        q = jax.vmap(lambda o, a: critic.apply(w, o, a))(batch["obs"], phantom)
        return jnp.mean((q - y) ** 2)

    _, values = grad_fn(inputs, jax.random.key(7), {"s": s, "batch": batch})
    phantom = values["a_ph"]
    assert phantom.shape == (B, 1) and float(jnp.std(phantom - batch["action"])) > 0.1  # drawn around ã
    tree_close(grads["w"], jax.grad(td_loss)(params["w"], None), rtol=1e-5, atol=1e-6)


def test_kl_gradient_is_the_closed_form():
    """Eq. 20: with a critic that is zero, ``∇_θ = λ ∇_θ mean_k Σ_i KL(N(μ_k, σ²) ‖ N(μ'_k, σ'²))``, the closed form."""
    config, policy, _, params, targets, _ = _networks()
    critic = _closed_form_critic(0.5)
    grad_fn = _grad_fn(config, critic, policy, {"theta": params["theta"], "w": critic.init(None)})
    zero = {"scale": jnp.float32(0.0)}
    s, batch = _batches(jax.random.key(8))
    grads, values = grad_fn({"theta": params["theta"], "w": zero, "targets": {"theta": targets["theta"], "w": zero}},
                            jax.random.key(9), {"s": s, "batch": batch})

    def closed_form(theta):
        def kl(obs):
            m, m_t = policy.mean(theta, obs), policy.mean(targets["theta"], obs)
            sd, sd_t = policy.std(theta), policy.std(targets["theta"])
            return jnp.sum(jnp.log(sd_t / sd) + (sd**2 + (m - m_t) ** 2) / (2 * sd_t**2) - 0.5)
        return jnp.mean(jax.vmap(kl)(s))

    expected = jax.grad(lambda th: config.kl_weight * closed_form(th))(params["theta"])
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), grads["theta"], expected)
    np.testing.assert_allclose(jnp.mean(values["kl"]), closed_form(params["theta"]), rtol=1e-5)
    assert float(jnp.abs(expected["log_std"]).max()) > 1e-3


def _train(algo: str, env_name: str, seeds: int, iterations: int) -> dict:
    config = ALGORITHMS[algo].configure(env_name)  # defaults, then TUNED[env_name]: what `scg train` applies
    env, env_params = make(env_name)
    init, run = make_train(algo, env, env_params, config)
    _, metrics = run(init(seed_keys(seeds)), iterations)  # the keys of `scg train --seeds n`
    return jax.tree_util.tree_map(np.asarray, metrics)


BIMODAL_ITERATIONS = smoothie.BIMODAL_ITERATIONS


def test_bimodal_smoothie_escapes_and_ddpg_does_not():
    """§6.1 / Fig. 2: Smoothie's mean reaches the better mode with σ → small; DDPG's stays at the worse one."""
    sm = _train("smoothie", "BimodalBandit-v0", 5, BIMODAL_ITERATIONS)
    mu, sigma = sm["mu_mean"][:, -1], sm["sigma_mean"][:, -1]
    escaped = (np.abs(mu - 1.0) < 0.1) & (sigma < 0.3)
    assert escaped.sum() >= 4, f"smoothie final μ {mu}, σ {sigma}"
    dd = _train("ddpg", "BimodalBandit-v0", 5, BIMODAL_ITERATIONS)
    mu_ddpg = dd["mu_mean"][:, -1]
    assert (np.abs(mu_ddpg + 1.0) < 0.3).sum() >= 4, f"ddpg final μ {mu_ddpg}"


PENDULUM_REDUCED = (-300.0, 10_000)


def test_pendulum_reduced():
    """Reduced: both of 2 seeds reach a mean return ≥ −300 within 10k env steps on Pendulum-v1."""
    threshold, max_steps = PENDULUM_REDUCED
    reached, final = steps_to_threshold("smoothie", "Pendulum-v1", threshold, max_steps, keys=seed_keys(2))
    assert all(r is not None for r in reached), f"steps to {threshold}: {reached}, final {final}"


@pytest.mark.slow
def test_pendulum_full(learning_bench):
    """Full: a mean return ≥ −200 (last 20 episodes) within 50k env steps on ≥ 4 of 5 seeds (bench/learning.py)."""
    result = learning_bench.run_check(learning_bench.CHECKS["smoothie-pendulum"])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{result['seeds_reached']}/5 seeds reached -200: steps {steps}"
