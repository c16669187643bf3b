"""Trust region policy optimization with generalized advantage estimation (GAE-TRPO; Schulman 2016, §4.6.1).

Each iteration is the pseudocode of §4.6.1:

1. run ``num_envs`` environments for ``horizon`` steps in the compiled MDP graph
   (:func:`scg.algorithms.mdp.mdp_graph` with ``gae_lambda=λ``) at ``θ_i``, without a gradient;
2. GAE advantages ``Â_t = Σ_l (γλ)^l δ_t+l`` (Eq. 26) with the value function ``V_φi`` from
   *before* its refit (the order §4.6.1 insists on), by ``compiled.advantages`` (cost units:
   ``Â`` here is minus the reward advantage);
3. policy step by :func:`scg.trust_region.trpo_step` on Eq. 35::

       minimise  L(θ) = mean_t ρ_t(θ) Â_t,  ρ_t = π_θ(a_t|s_t) / π_θi(a_t|s_t)
       subject to  mean_t KL(π_θi(·|s_t) ‖ π_θ(·|s_t)) ≤ δ

   with ``log π_θ(a_t|s_t)`` and ``π_θ(·|s_t)`` from ``compiled.replay`` (the recorded steps
   re-evaluated side by side at ``θ``), the KL in closed form (:func:`scg.dist.kl_divergence`),
   conjugate gradient with Fisher-vector products on a random ``fvp_fraction`` of the steps (§3.12)
   either as Hessian-vector products of the KL (``fvp="hessian"``) or as ``JᵀMJ``
   (``fvp="gauss_newton"``, §3.12.1, Eq. 21), step to the KL boundary, line search;
4. value step by :func:`scg.trust_region.fit_value_trust_region` (§4.5, Eq. 33–34) on the
   targets ``V̂_t``: the discounted returns of Eq. 32 (``value_target="returns"``), or the
   TD(λ) targets ``V_φi(s_t) + Â_t`` of §4.5's footnote (``"lambda"``).

Policies (§3.13): categorical for discrete actions; Gaussian with a state-independent
log-std for continuous ones (:func:`scg.algorithms.networks.make_policy`).

Two ways to batch, both with the same update:

- ``episodic=False`` (default): environments carry on across iterations; a batch is
  ``num_envs × horizon`` steps, an episode cut by the batch's end is bootstrapped with ``V_φi``
  (in Eq. 32's returns and in the TD residuals);
- ``episodic=True`` (§4.6.2's cart-pole setup: "20 trajectories per batch, with a maximum length
  of 1000 timesteps"): every iteration resets the ``num_envs`` environments and keeps only the
  first episode of each (a step mask; ``horizon`` should be the env's episode limit). All means
  (surrogate, KL, value loss and constraint) are then over the kept steps. JAX envs only.

Deviations from the thesis, on purpose:

- advantages are standardised over the batch (``normalize_advantages``; modular_rl does it, the
  thesis does not say): TRPO's step is invariant to their scale, so this amounts to subtracting
  their mean, a constant baseline;
- the trust-region pieces deviate as documented in :mod:`scg.trust_region` (``sᵀFs`` recomputed,
  the value step capped at the Gauss-Newton minimiser);
- ``value_steps`` trust-region value steps per iteration (the thesis: one), each with its own σ²;
- with ``episodic=False`` the value targets and TD residuals bootstrap at the batch's end, where
  the thesis has whole episodes.

``update(state, observed=None, *, hyper=None)``: ``observed`` takes a host-collected batch as in
:mod:`scg.algorithms.reinforce`. ``hyper={"discount": γ, "gae_lambda": λ}`` replaces the graph's static
γ and λ by (possibly traced) values, so that a sweep (``bench/gae_figure8.py``) can ``vmap`` over
them in one compilation; it computes the same quantities with the same library functions
(:func:`scg.returns.gae`, :func:`scg.returns.cost_to_go`) the compiled graph uses.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.algorithms import episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.common import RolloutState, compile_mdp, global_norm, init_params, report, reset_envs, sample
from scg.envs.core import Environment
from scg import returns
from scg.dist import Categorical, Normal, kl_divergence
from scg.trust_region import (
    categorical_fisher,
    fit_value_trust_region,
    gauss_newton_fvp,
    hvp_fvp,
    normal_fisher,
    trpo_step,
)

DEFAULT_CONFIG = dict(
    num_envs=8,
    horizon=128,
    discount=0.99,  # γ
    gae_lambda=0.97,  # λ
    hidden=(64, 64),
    value_hidden=None,  # the value network's hidden layers (None: as ``hidden``)
    max_kl=0.01,  # δ (thesis: 0.01 in all experiments)
    cg_iters=10,  # thesis §3.12: 10
    cg_damping=0.1,
    fvp="hessian",  # "hessian" (KL Hessian-vector products) or "gauss_newton" (JᵀMJ)
    fvp_fraction=0.2,  # share of the batch's steps the Fisher-vector products read (§3.12: 10%)
    normalize_advantages=True,
    value_max_kl=0.1,  # ε of Eq. 33
    value_steps=5,  # trust-region value steps per iteration
    value_target="returns",  # "returns" (Eq. 32) or "lambda" (TD(λ), §4.5 footnote)
    episodic=False,  # True: per batch, the first episode of each of num_envs fresh environments
)

# Per-environment configs the learning checks (bench/learning.py, tests/algorithms/test_trpo.py) and `scg train` use.
# On Pendulum-v1 (200-step episodes, no termination) the defaults also reached -250 (2 seeds, within 100k steps),
# but with γ = 0.99 the return then swung by several hundred between iterations; γ = λ = 0.95 keeps it there.
TUNED = {"Pendulum-v1": dict(discount=0.95, gae_lambda=0.95)}


class TrainState(NamedTuple):
    params: dict  # {"theta": policy, "phi": value}
    rollout: RolloutState
    key: jax.Array


def first_episode_mask(done: jax.Array) -> jax.Array:
    """``[N, T]`` 1.0 on the steps of each row's first episode (up to and including its first ``done``)."""
    assert done.ndim == 2, f"done must be [N, T], got {done.shape}"
    done = done.astype(jnp.int32)
    return (jnp.cumsum(done, axis=1) - done == 0).astype(jnp.float32)


def _wmean(x: jax.Array, w: jax.Array) -> jax.Array:
    assert x.shape == w.shape, f"{x.shape} vs {w.shape}"
    return jnp.sum(w * x) / jnp.sum(w)


def _kl(p, q, batch_ndim: int) -> jax.Array:
    """``KL(p ‖ q)`` per position, summed over the action's elements."""
    kl = kl_divergence(p, q)
    return kl.reshape(kl.shape[:batch_ndim] + (-1,)).sum(-1)


def advantages_and_targets(mdp, config: dict, inputs: dict, values: dict, hyper: dict | None = None):
    """GAE ``Â_t`` (Eq. 26, cost units) with the current ``V_φ`` and the value targets ``V̂_t`` (reward units), ``[N, T]``.

    With ``hyper=None`` from the compiled graph; otherwise from the same library functions
    with ``γ = hyper["discount"]``, ``λ = hyper["gae_lambda"]`` (may be traced).
    """
    if hyper is None:
        adv = mdp.compiled.advantages(inputs, values)["a"]
        cost_to_go = mdp.compiled.cost_to_go(inputs, values)
    else:
        per_step = (values["r"], values["terminated"], values["truncated"], values["boot"])
        gamma, lam = hyper["discount"], hyper["gae_lambda"]
        adv = jax.vmap(returns.gae, (0, 0, 0, 0, 0, None, None))(*per_step, values["v"], gamma, lam)
        cost_to_go = jax.vmap(returns.cost_to_go, (0, 0, 0, 0, None))(*per_step, gamma)
    if config["value_target"] == "returns":
        targets = -cost_to_go  # Eq. 32: Σ_l γ^l r_t+l (bootstrapped where the batch cuts an episode)
    elif config["value_target"] == "lambda":
        targets = -(values["v"] + adv)  # V_φold(s_t) + Â_t in reward units (v = -V, Â in costs)
    else:
        raise ValueError(f"value_target must be 'returns' or 'lambda', got {config['value_target']!r}")
    return jax.lax.stop_gradient(adv), jax.lax.stop_gradient(targets)


def _subsample(values: dict, weights: jax.Array, fraction: float, key: jax.Array):
    """A random ``fraction`` of the ``N·T`` positions (without replacement), flattened to ``[K, ...]``."""
    n = weights.size
    flat = lambda x: x.reshape((n, *x.shape[2:]))  # noqa: E731
    values, weights = jax.tree_util.tree_map(flat, values), weights.reshape(n)
    if fraction >= 1.0:
        return values, weights
    idx = jax.random.choice(key, n, (max(1, round(fraction * n)),), replace=False)
    return jax.tree_util.tree_map(lambda x: x[idx], values), weights[idx]


def _fisher_product(kind: str, policy_dists, theta, weights, damping: float):
    """``v ↦ (F + damping·I) v`` with ``F`` the weighted-mean Fisher matrix of ``policy_dists(θ)`` at ``theta``."""
    if kind == "hessian":  # §3.12.1's "simpler" method: Hessian of the mean KL
        old = jax.lax.stop_gradient(policy_dists(theta))
        return hvp_fvp(lambda th: _wmean(_kl(old, policy_dists(th), 1), weights), theta, damping=damping)
    if kind != "gauss_newton":
        raise ValueError(f"fvp must be 'hessian' or 'gauss_newton', got {kind!r}")
    scale = weights / jnp.sum(weights)  # per-row weight of the mean
    per_row = lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1))  # noqa: E731
    d = policy_dists(theta)
    if isinstance(d, Categorical):
        return gauss_newton_fvp(lambda th: policy_dists(th).logits, lambda mu, t: per_row(categorical_fisher(mu, t)),
                                theta, damping=damping)
    if isinstance(d, Normal):
        def mean_logstd(th):
            d = policy_dists(th)
            return d.loc, jnp.log(d.scale)

        return gauss_newton_fvp(mean_logstd, lambda mu, t: jax.tree_util.tree_map(per_row, normal_fisher(mu, t)),
                                theta, damping=damping)
    raise TypeError(f"fvp='gauss_newton' knows Categorical and Normal policies, got {type(d).__name__}")


def policy_step(mdp, config: dict, inputs: dict, values: dict, adv: jax.Array, weights: jax.Array, key: jax.Array):
    """One TRPO step on Eq. 35 from ``θ_old = inputs["theta"]``; returns ``(θ, TRPOInfo, ∇L(θ_old))``."""
    if config["normalize_advantages"]:
        mean = _wmean(adv, weights)
        adv = (adv - mean) / (jnp.sqrt(_wmean((adv - mean) ** 2, weights)) + 1e-8)
    theta_old = inputs["theta"]
    at = lambda theta, vals, nd: mdp.compiled.replay({**inputs, "theta": theta}, vals, batch_ndim=nd)  # noqa: E731
    old = jax.lax.stop_gradient(at(theta_old, values, 2))

    def loss_fn(theta):  # L(θ) of Eq. 35 in cost units (minimised)
        ratio = jnp.exp(at(theta, values, 2).log_probs["a"] - old.log_probs["a"])
        return _wmean(ratio * adv, weights)

    def kl_fn(theta):  # D̄_KL(θ_old, θ) of Eq. 35, on the whole batch
        return _wmean(_kl(old.dists["a"], at(theta, values, 2).dists["a"], 2), weights)

    sub, sub_weights = _subsample(values, weights, config["fvp_fraction"], key)
    fvp = _fisher_product(config["fvp"], lambda th: at(th, sub, 1).dists["a"], theta_old, sub_weights, config["cg_damping"])
    theta, info = trpo_step(loss_fn, kl_fn, theta_old, max_kl=config["max_kl"], cg_iters=config["cg_iters"], fvp=fvp)
    return theta, info, jax.grad(loss_fn)(theta_old)


def value_step(value, config: dict, phi, obs: jax.Array, targets: jax.Array, weights: jax.Array):
    """``value_steps`` trust-region steps of Eq. 33–34 towards ``targets``; weighted by ``weights``.

    Weights enter as ``√w`` on both ``V_φ(s_n)`` and ``V̂_n`` (``w`` normalised to mean 1), which turns
    every mean of Eq. 33 (loss, σ², constraint) into the weighted mean. Returns ``(φ, infos)``.
    """
    n = targets.size
    obs, targets = obs.reshape((n, *obs.shape[2:])), targets.reshape(n)
    root_w = jnp.sqrt(weights.reshape(n) * n / jnp.sum(weights))
    scaled = lambda phi, x: x[1] * value.apply(phi, x[0])  # noqa: E731

    def one(phi, _):
        return fit_value_trust_region(scaled, phi, (obs, root_w), root_w * targets, max_kl=config["value_max_kl"])

    return jax.lax.scan(one, phi, None, length=config["value_steps"])


def make(env, env_params, config: dict):
    config = {**DEFAULT_CONFIG, **config}
    if config["episodic"] and not isinstance(env, Environment):
        raise ValueError("trpo: episodic=True resets environments each iteration, which needs a JAX env")
    mdp = compile_mdp(env, env_params, config, gae_lambda=config["gae_lambda"])
    n_envs = config["num_envs"]
    window = n_envs if config["episodic"] else 20  # episodic: mean_return is the batch's mean episode return

    def init(key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        return TrainState(init_params(mdp, k_net), reset_envs(env, env_params, k_env, n_envs, window), k_run)

    def update(state: TrainState, observed: dict | None = None, *, hyper: dict | None = None):
        key, k_env, k_roll, k_fvp = jax.random.split(state.key, 4)
        rollout = state.rollout
        if config["episodic"]:
            rollout = reset_envs(env, env_params, k_env, n_envs, window)._replace(stats=rollout.stats)
        inputs, batch = sample(mdp, state.params, rollout, k_roll, observed)
        values = batch.values
        done = jnp.logical_or(values["terminated"], values["truncated"])
        weights = first_episode_mask(done) if config["episodic"] else jnp.ones(done.shape, jnp.float32)
        adv, targets = advantages_and_targets(mdp, config, inputs, values, hyper)  # with V_φi: before the refit
        theta, info, grad = policy_step(mdp, config, inputs, values, adv, weights, k_fvp)
        phi, value_infos = value_step(mdp.value, config, state.params["phi"], values["obs"], targets, weights)
        if config["episodic"]:
            stats = rollout.stats._replace(running=jnp.zeros_like(rollout.stats.running))
            stats = episodes.update(stats, -values["r"] * weights, jnp.logical_and(done, weights > 0))
            rollout = rollout._replace(stats=stats)
            metrics = {
                "env_steps": jnp.sum(weights),
                "mean_return": episodes.mean_recent(stats),
                "episodes": stats.count.astype(jnp.float32),
                "loss": info.loss_after,
                "grad_norm": global_norm(grad),
            }
        else:
            rollout, metrics = report(rollout, values, loss=info.loss_after, grads=grad)
        metrics.update(
            kl=info.kl,
            step_fraction=info.step_fraction,
            value_loss=value_infos.loss_after[-1],
            value_kl=jnp.mean(value_infos.kl),
        )
        return TrainState({"theta": theta, "phi": phi}, rollout, key), metrics

    return init, update


ALGORITHM = register(Algorithm("trpo", __doc__.splitlines()[0], ("discrete", "continuous"), DEFAULT_CONFIG, make, TUNED))
