"""Trust region policy optimization with generalized advantage estimation (GAE-TRPO; Schulman 2016, §4.6.1).

Each iteration is the pseudocode of §4.6.1:

1. run ``num_envs`` environments for ``horizon`` steps in the compiled MDP graph
   (:func:`scg.algorithms.mdp.actor_critic_graph` with ``gae_lambda=λ``) at ``θ_i``, without a gradient;
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

``update(state, batch=None)``: ``batch`` takes a host-collected batch as in
:mod:`scg.algorithms.reinforce`. The state's ``hyper`` field (``None`` after ``init``) may be set to
``{"discount": γ, "gae_lambda": λ}`` (``state._replace(hyper=...)``) to replace the graph's static γ
and λ by (possibly traced) values carried in the state, so that a sweep (``bench/gae_figure8.py``)
can ``vmap`` over them in one compilation; the advantages and targets are then computed with the
same library functions (:func:`scg.returns.gae`, :func:`scg.returns.cost_to_go`) the compiled graph uses.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

from scg.algorithms import episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.common import RolloutState, compile_mdp, init_params, report, reset_envs, sample
from scg.algorithms.mdp import mdp_batch
from scg.algorithms.config import Config, fraction, non_negative, option, positive, positive_sizes, resolve, unit_interval
from scg.envs.core import Environment
from scg import returns
from scg.trust_region import fisher_product, fit_value_trust_region, mean_kl, normalize_advantages, trpo_step, weighted_mean


@dataclasses.dataclass(frozen=True)
class TRPOConfig(Config):
    name: ClassVar[str] = "trpo"
    num_envs: int = option(8, positive)
    horizon: int = option(128, positive)
    discount: float = option(0.99, unit_interval)  # γ
    gae_lambda: float = option(0.97, fraction)  # λ
    hidden: tuple[int, ...] = option((64, 64), positive_sizes)
    value_hidden: tuple[int, ...] | None = option(None, positive_sizes)  # the value network's layers (None: as hidden)
    max_kl: float = option(0.01, positive)  # δ (thesis: 0.01 in all experiments)
    cg_iters: int = option(10, positive)  # thesis §3.12: 10
    cg_damping: float = option(0.1, non_negative)
    fvp: Literal["hessian", "gauss_newton"] = "hessian"  # KL Hessian-vector products, or JᵀMJ
    fvp_fraction: float = option(0.2, unit_interval)  # share of the batch's steps the Fisher products read (§3.12: 10%)
    normalize_advantages: bool = True
    value_max_kl: float = option(0.1, positive)  # ε of Eq. 33
    value_steps: int = option(5, positive)  # trust-region value steps per iteration
    value_target: Literal["returns", "lambda"] = "returns"  # Eq. 32's returns, or TD(λ) (§4.5 footnote)
    episodic: bool = False  # True: per batch, the first episode of each of num_envs fresh environments


# Per-environment configs the learning checks (bench/learning.py, tests/algorithms/test_trpo.py) and `scg train` use.
# On Pendulum-v1 (200-step episodes, no termination) the defaults also reached -250 (2 seeds, within 100k steps),
# but with γ = 0.99 the return then swung by several hundred between iterations; γ = λ = 0.95 keeps it there.
TUNED = {"Pendulum-v1": dict(discount=0.95, gae_lambda=0.95)}


class TrainState(NamedTuple):
    params: dict  # {"theta": policy, "phi": value}
    rollout: RolloutState
    key: jax.Array
    hyper: dict | None = None  # {"discount": γ, "gae_lambda": λ} in place of the graph's (module docstring)


def advantages_and_targets(mdp, config: TRPOConfig, inputs: dict, values: dict, hyper: dict | None = None):
    """GAE ``Â_t`` (Eq. 26, cost units) with the current ``V_φ`` and the value targets ``V̂_t`` (reward units), ``[N, T]``.

    With ``hyper=None`` from the compiled graph; otherwise from the same library functions
    with ``γ = hyper["discount"]``, ``λ = hyper["gae_lambda"]`` (may be traced).
    """
    if hyper is None:
        adv = mdp.compiled.advantages(inputs, values)["a"]
        cost_to_go = mdp.compiled.cost_to_go(inputs, values)
    else:
        steps = mdp_batch(values)  # in cost units below, as the compiler's scans take them
        per_step = (-steps.reward, steps.terminated, steps.truncated, -steps.final_value)
        gamma, lam = hyper["discount"], hyper["gae_lambda"]
        adv = jax.vmap(returns.gae, (0, 0, 0, 0, 0, None, None))(*per_step, -steps.value, gamma, lam)
        cost_to_go = jax.vmap(returns.cost_to_go, (0, 0, 0, 0, None))(*per_step, gamma)
    if config.value_target == "returns":
        targets = -cost_to_go  # Eq. 32: Σ_l γ^l r_t+l (bootstrapped where the batch cuts an episode)
    else:  # "lambda"
        targets = mdp_batch(values).value - adv  # V_φold(s_t) + Â_t in reward units (Â in costs)
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


def policy_step(mdp, config: TRPOConfig, inputs: dict, values: dict, adv: jax.Array, weights: jax.Array, key: jax.Array):
    """One TRPO step on Eq. 35 from ``θ_old = inputs["theta"]``; returns ``(θ, TRPOInfo, ∇L(θ_old))``."""
    if config.normalize_advantages:
        adv = normalize_advantages(adv, weights)
    theta_old = inputs["theta"]
    at = lambda theta, vals, nd: mdp.compiled.replay({**inputs, "theta": theta}, vals, batch_ndim=nd)  # noqa: E731
    old = jax.lax.stop_gradient(at(theta_old, values, 2))

    def loss_fn(theta):  # L(θ) of Eq. 35 in cost units (minimised)
        ratio = jnp.exp(at(theta, values, 2).log_probs["a"] - old.log_probs["a"])
        return weighted_mean(ratio * adv, weights)

    def kl_fn(theta):  # D̄_KL(θ_old, θ) of Eq. 35, on the whole batch
        return mean_kl(old.dists["a"], at(theta, values, 2).dists["a"], weights, batch_ndim=2)

    sub, sub_weights = _subsample(values, weights, config.fvp_fraction, key)
    dists = lambda th: at(th, sub, 1).dists["a"]  # noqa: E731
    fvp = fisher_product(config.fvp, dists, theta_old, sub_weights, damping=config.cg_damping)
    theta, info = trpo_step(loss_fn, kl_fn, theta_old, max_kl=config.max_kl, cg_iters=config.cg_iters, fvp=fvp)
    return theta, info, jax.grad(loss_fn)(theta_old)


def value_step(value, config: TRPOConfig, phi, obs: jax.Array, targets: jax.Array, weights: jax.Array):
    """``value_steps`` trust-region steps of Eq. 33–34 towards ``targets``; weighted by ``weights``.

    Weights enter as ``√w`` on both ``V_φ(s_n)`` and ``V̂_n`` (``w`` normalised to mean 1), which turns
    every mean of Eq. 33 (loss, σ², constraint) into the weighted mean. Returns ``(φ, infos)``.
    """
    n = targets.size
    obs, targets = obs.reshape((n, *obs.shape[2:])), targets.reshape(n)
    root_w = jnp.sqrt(weights.reshape(n) * n / jnp.sum(weights))
    scaled = lambda phi, x: x[1] * value.apply(phi, x[0])  # noqa: E731

    def one(phi, _):
        return fit_value_trust_region(scaled, phi, (obs, root_w), root_w * targets, max_kl=config.value_max_kl)

    return jax.lax.scan(one, phi, None, length=config.value_steps)


def make(env, env_params, config: TRPOConfig | dict | None = None, *, policy=None, value=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``policy``/``value`` replace the MLPs of
    ``hidden``/``value_hidden``: networks ``(init, apply)`` (:func:`scg.algorithms.common.compile_mdp`)."""
    config = resolve(TRPOConfig, config)
    if config.episodic and not isinstance(env, Environment):
        raise ValueError("trpo: episodic=True resets environments each iteration, which needs a JAX env")
    mdp = compile_mdp(env, env_params, config, policy=policy, value=value, gae_lambda=config.gae_lambda)
    n_envs = config.num_envs
    window = n_envs if config.episodic else 20  # episodic: mean_return is the batch's mean episode return

    def init(key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        return TrainState(init_params(mdp, k_net), reset_envs(env, env_params, k_env, n_envs, window), k_run)

    def update(state: TrainState, batch: dict | None = None):
        key, k_env, k_roll, k_fvp = jax.random.split(state.key, 4)
        rollout = state.rollout
        if config.episodic:
            rollout = reset_envs(env, env_params, k_env, n_envs, window)._replace(stats=rollout.stats)
        inputs, sampled = sample(mdp, state.params, rollout, k_roll, batch)
        values, steps = sampled.values, sampled.steps
        done = steps.done
        weights = jax.vmap(episodes.first_episode_mask)(done) if config.episodic else jnp.ones(done.shape, jnp.float32)
        adv, targets = advantages_and_targets(mdp, config, inputs, values, state.hyper)  # with V_φi: before the refit
        theta, info, grad = policy_step(mdp, config, inputs, values, adv, weights, k_fvp)
        phi, value_infos = value_step(mdp.value, config, state.params["phi"], steps.obs, targets, weights)
        if config.episodic:
            stats = rollout.stats._replace(running=jnp.zeros_like(rollout.stats.running))
            stats = episodes.update(stats, steps.reward * weights, jnp.logical_and(done, weights > 0))
            rollout = rollout._replace(stats=stats)
            metrics = episodes.metrics(stats, env_steps=jnp.sum(weights), loss=info.loss_after, grads=grad)
        else:
            rollout, metrics = report(rollout, values, loss=info.loss_after, grads=grad)
        metrics.update(
            kl=info.kl,
            step_fraction=info.step_fraction,
            value_loss=value_infos.loss_after[-1],
            value_kl=jnp.mean(value_infos.kl),
        )
        return TrainState({"theta": theta, "phi": phi}, rollout, key, state.hyper), metrics

    return init, update


ALGORITHM = register(Algorithm("trpo", __doc__.splitlines()[0], ("discrete", "continuous"), TRPOConfig, make, TUNED))
