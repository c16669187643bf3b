"""Proximal policy optimization (PPO): the MDP graph with GAE credit and a clipped or KL-penalised ratio surrogate.

The "“Proximal” Policy Optimization" slide: maximise the importance-ratio
surrogate of TRPO's slide (Eq. 1), ``Σ_n ρ_n Â_n`` with
``ρ_n = π_θ(a_n|s_n) / π_θold(a_n|s_n)``, by several epochs of SGD on one
batch, keeping ``π_θ`` near ``π_θold``. Each iteration:

1. **Rollout** (:func:`scg.algorithms.common.sample`): ``num_envs × horizon`` steps of
   the compiled MDP graph (:func:`scg.algorithms.mdp.actor_critic_graph`) at ``θ_old``, no
   gradient; the same pass records ``log π_θold(a_t|s_t)``.
2. **Advantages** (``compiled.advantages``): the policy node is credited by
   GAE(γ, λ) (Schulman 2016, Ch. 4, Eq. 26), ``Â_t = Σ_l (γλ)^l δ^V_{t+l}``,
   with the critic before the update, no credit across episode boundaries and
   ``V_φ(final obs)`` bootstrapping truncations and the rollout's end. The
   compiler works in cost units (``Â^c = -Â``). Critic targets are the
   λ-returns ``R̂_t = V_φold(s_t) + Â_t`` (with ``λ = 1``: the slide's ``R̂_t``).
3. **Update**: ``epochs`` passes over the batch in ``num_minibatches`` shuffled
   minibatches (``lax.scan`` over epochs and minibatches), each one optax step
   (global-norm clipping, then the config's ``optimizer``, Adam by default) on
   ``L_π + c_v L_V + L_H`` where, for the minibatch replayed at the current ``θ``
   (``compiled.replay``: the graph re-evaluated at the recorded actions, every
   step in parallel)::

       clip:       L_π = mean max(ρ Â^c, clip(ρ, 1-ε, 1+ε) Â^c)        (= -mean min(ρ Â, clip(ρ) Â))
       kl_penalty: L_π = mean ρ Â^c + β mean KL[π_θold(·|s) ‖ π_θ(·|s)]   (the slide's objective)
       L_V = ½ mean (V_φ(s) - R̂)²  (or clipped, below),    L_H = -c_H mean H[π_θ(·|s)]  (the graph's entropy loss node)

   With ``kl_penalty``, after the epochs ``β`` is doubled if the batch's mean
   KL exceeds ``1.5 d_targ`` and halved if it is below ``d_targ / 1.5``
   (:func:`adapt_beta`).

Where this deviates from the slides, plainly: the clipped objective and the
numbers of the β rule (1.5, 2) are not on the slide (which says "if KL too
high, increase β") but from Schulman et al. 2017 (PPO paper, Eq. 7 and §4);
advantages are normalised per minibatch (``normalize_advantages``, customary,
it makes the step size independent of the reward scale). ``reward_scale`` multiplies
the rewards seen by the critic and the advantages only (episode returns are reported
unscaled): a pure, fixed rescaling, so the critic's targets stay O(1) on Pendulum.

Three options, off by default (the defaults are the behaviour before they existed,
bit for bit), run the configuration of purejaxrl's ``ppo.py``, the source of their
values, as ``bench/purejaxrl_parity.py`` does (the same configuration, not the same
random numbers: a seed here does not reproduce a purejaxrl run):

- ``anneal_lr_iterations = N``: the step size falls linearly from ``lr`` to 0 over
  ``N`` iterations, constant within one: ``lr (1 - k/N)`` in iteration ``k`` (purejaxrl's
  ``linear_schedule`` with ``N = NUM_UPDATES``; :func:`learning_rate`), 0 from
  iteration ``N`` on. ``make`` does not know the run's length, hence ``N`` is given;
- ``clip_value_loss``: ``L_V = ½ mean max((V_φ - R̂)², (V_clip - R̂)²)`` with
  ``V_clip = V_φold + clip(V_φ - V_φold, -ε, ε)``, the clip range ``ε = clip_eps`` of the
  surrogate and ``V_φold`` the value recorded in the rollout (:func:`clipped_value_error`);
- ``init="orthogonal"``: the MLPs of ``hidden`` start orthogonal, gain ``√2`` in the
  hidden layers, 0.01 in the policy's last and 1 in the value's, biases 0
  (:func:`scg.algorithms.networks.mlp_init`); networks given as ``policy=``/``value=``
  keep their own initialisation.

``update(state, batch=None)`` (:mod:`scg.algorithms.base`): with ``batch`` a host-collected
rollout (``observed_from_trajectory(traj)``) is read instead of sampled, as in
:mod:`scg.algorithms.reinforce`.

Example::

    env, env_params = scg.envs.registry.make("CartPole-v1")
    init, update = make(env, env_params, PPOConfig(num_envs=8))   # or a dict of overrides
    state, metrics = jax.jit(update)(init(jax.random.key(0)))   # or scg.algorithms.make_train("ppo", ...)
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg.algorithms.base import Algorithm, register
from scg.algorithms.common import (
    RolloutState, compile_mdp, env_spaces, global_norm, init_params, report, reset_envs, sample,
)
from scg.algorithms.mdp import mdp_batch
from scg.algorithms.networks import make_policy, make_value
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer
from scg.algorithms.config import (
    ConfigError,
    fraction,
    non_negative,
    option,
    positive,
    positive_sizes,
    resolve,
    unit_interval,
)
from scg.trust_region import mean_kl, normalize_advantages


@dataclasses.dataclass(frozen=True)
class PPOConfig(OptimizerConfig):
    name: ClassVar[str] = "ppo"
    num_envs: int = option(8, positive)
    horizon: int = option(128, positive)
    discount: float = option(0.99, unit_interval)
    gae_lambda: float = option(0.95, fraction)
    hidden: tuple[int, ...] = option((64, 64), positive_sizes)
    lr: float = option(1e-3, positive)
    epochs: int = option(4, positive)
    num_minibatches: int = option(4, positive)
    surrogate: Literal["clip", "kl_penalty"] = "clip"
    clip_eps: float = option(0.2, positive)  # ε of the clipped surrogate
    kl_target: float = option(0.01, positive)  # d_targ of the adaptive KL penalty
    kl_beta: float = option(1.0, non_negative)  # initial β of the adaptive KL penalty
    vf_coef: float = option(0.5, non_negative)  # c_v
    ent_coef: float = option(0.0, non_negative)  # c_H
    max_grad_norm: float = option(0.5, positive)
    normalize_advantages: bool = True
    reward_scale: float = option(1.0, positive)
    # purejaxrl's choices, off by default (module docstring): lr → 0 over this many iterations (None: constant lr),
    # the clipped value loss, the orthogonal init of the MLPs of `hidden`
    anneal_lr_iterations: int | None = option(None, positive)
    clip_value_loss: bool = False
    init: Literal["default", "orthogonal"] = "default"

    def __post_init__(self):
        super().__post_init__()
        if (self.num_envs * self.horizon) % self.num_minibatches:
            raise ConfigError(f"ppo config: num_envs × horizon ({self.num_envs} × {self.horizon}) must be divisible "
                              f"by num_minibatches ({self.num_minibatches})")


# Configs the learning checks (tests/algorithms/test_ppo.py, bench/learning.py) and `scg train` use for an env.
# Pendulum: rewards of -16..0 per step for 200-step episodes; a shorter effective horizon (γ = 0.95), critic
# targets scaled to O(1) and more, smaller minibatch steps per batch (10 epochs × 32) learn the swing-up in
# ~50k steps (bench/results/learning.json, "ppo-pendulum").
TUNED = {
    "Pendulum-v1": dict(num_envs=16, horizon=256, discount=0.95, lr=1e-3, epochs=10, num_minibatches=32, reward_scale=0.1),
}


class TrainState(NamedTuple):
    params: dict  # {"theta": policy, "phi": value}
    opt: optax.OptState
    rollout: RolloutState
    beta: jax.Array  # the KL penalty's β (carried unchanged by the clipped surrogate)
    key: jax.Array


def clipped_surrogate(ratio: jax.Array, adv: jax.Array, eps: float) -> jax.Array:
    """``max(ρ Â^c, clip(ρ, 1-ε, 1+ε) Â^c)`` per sample, advantages in cost units (PPO paper, Eq. 7, negated).

    Its gradient in ``ρ`` is zero where the ratio is outside ``[1-ε, 1+ε]`` on the side that would
    lower the cost further (``ρ < 1-ε`` with ``Â^c > 0``, ``ρ > 1+ε`` with ``Â^c < 0``).
    """
    return jnp.maximum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)


def clipped_value_error(v: jax.Array, v_old: jax.Array, target: jax.Array, eps: float) -> jax.Array:
    """``max((V - R̂)², (V_clip - R̂)²)`` per sample, ``V_clip = V_old + clip(V - V_old, -ε, ε)`` (purejaxrl's ``ppo.py``).

    Its gradient in ``V`` is zero where ``V`` has left ``[V_old - ε, V_old + ε]`` and the clipped value is the
    farther from ``R̂`` (``V`` moved past the edge towards the target): as the clipped surrogate, no step
    takes the value further from the old one than ``ε`` to lower the loss. Inside the range it is ``(V - R̂)²``.
    """
    v_clipped = v_old + jnp.clip(v - v_old, -eps, eps)
    return jnp.maximum((v - target) ** 2, (v_clipped - target) ** 2)


def learning_rate(config: PPOConfig):
    """The optimizer's step size: ``config.lr``, or with ``anneal_lr_iterations = N`` a schedule of optax's step count.

    One iteration takes ``epochs × num_minibatches`` steps, so iteration ``k`` steps with
    ``lr (1 - k/N)`` (purejaxrl's ``linear_schedule``): ``lr`` in the first, ``lr/N`` in the
    ``N``-th, 0 after. A swept ``lr`` is a traced value; the schedule closes over it.
    """
    if config.anneal_lr_iterations is None:
        return config.lr
    lr, n, per_iteration = config.lr, config.anneal_lr_iterations, config.epochs * config.num_minibatches
    return lambda count: lr * jnp.maximum(1.0 - (count // per_iteration) / n, 0.0)


def transformation(config: PPOConfig, optimizer=None) -> optax.GradientTransformation:
    """The optax transformation of every minibatch step: global-norm clipping, then the config's optimizer (or
    ``optimizer=``, :func:`scg.algorithms.optimizers.make_optimizer`) at :func:`learning_rate`."""
    if config.anneal_lr_iterations is not None and isinstance(optimizer, optax.GradientTransformation):
        raise ConfigError("ppo: anneal_lr_iterations schedules the config's learning rate, but optimizer= got a "
                          "GradientTransformation, which has its own; pass a function learning_rate -> "
                          "GradientTransformation (it is called with the schedule) or leave anneal_lr_iterations None")
    # Adam's ε of 1e-5, not optax's 1e-8 (as purejaxrl and the baselines), for the optimizers that take an ε
    return make_optimizer(config, learning_rate(config), optimizer, max_grad_norm=config.max_grad_norm,
                          defaults={"eps": 1e-5})


def networks(env, env_params, config: PPOConfig, policy=None, value=None) -> tuple:
    """``(policy, value)`` for :func:`compile_mdp`: those given from Python, and for ``init="orthogonal"`` the MLPs of
    ``hidden`` so initialised in place of those not given (``None``: ``compile_mdp``'s own, the default init)."""
    if config.init == "default":
        return policy, value
    if policy is not None and value is not None:
        raise ConfigError(f"ppo config: init={config.init!r} initialises the MLPs of hidden, but policy= and value= "
                          "both bring their own networks; leave init at 'default' or give one network only")
    obs_space, action_space = env_spaces(env, env_params)
    policy = make_policy(obs_space, action_space, config.hidden, init=config.init) if policy is None else policy
    value = make_value(obs_space, config.hidden, init=config.init) if value is None else value
    return policy, value


def adapt_beta(beta: jax.Array, kl: jax.Array, target: float) -> jax.Array:
    """The adaptive penalty's rule (PPO slide; numbers from the PPO paper, §4): ``β·2`` if ``KL > 1.5 d``, ``β/2`` if ``KL < d/1.5``."""
    return jnp.where(kl > 1.5 * target, beta * 2.0, jnp.where(kl < target / 1.5, beta / 2.0, beta))


def minibatch_loss(params: dict, mdp, config: PPOConfig, inputs: dict, mb: dict, beta: jax.Array):
    """``L_π + c_v L_V + L_H`` (cost units) on one minibatch at ``params``; returns ``(loss, metrics)``.

    ``mb`` holds flattened ``[B, ...]`` records: ``values`` (the rollout's node values), ``logp_old``,
    ``adv`` (``Â^c``), ``target`` (``R̂``) and, for ``surrogate="kl_penalty"``, ``dist_old``. The policy's
    log-probabilities and distribution and ``-V_φ`` come from replaying the graph on the records.
    """
    rep = mdp.compiled.replay({**inputs, **params}, mb["values"], batch_ndim=1)
    log_ratio = rep.log_probs["a"] - mb["logp_old"]
    ratio = jnp.exp(log_ratio)
    adv = mb["adv"]
    if config.normalize_advantages:
        adv = normalize_advantages(adv)
    if config.surrogate == "kl_penalty":
        kl = mean_kl(mb["dist_old"], rep.dists["a"])
        policy_loss = jnp.mean(ratio * adv) + beta * kl
    else:
        kl = jnp.mean(ratio - 1.0 - log_ratio)  # a sample estimate of KL(π_old ‖ π_θ), for the metrics
        policy_loss = jnp.mean(clipped_surrogate(ratio, adv, config.clip_eps))
    value = mdp_batch(rep.values).value
    if config.clip_value_loss:  # around V_φold(s), the value the rollout recorded
        value_old = mdp_batch(mb["values"]).value
        value_loss = 0.5 * jnp.mean(clipped_value_error(value, value_old, mb["target"], config.clip_eps))
    else:
        value_loss = 0.5 * jnp.mean((mb["target"] - value) ** 2)  # ½ (V_φ(s) - R̂)²
    entropy_loss = jnp.mean(rep.values["entropy"]) if config.ent_coef else 0.0  # the graph's -c_H H node
    clip_frac = jnp.mean(jnp.abs(ratio - 1.0) > config.clip_eps)
    total = policy_loss + config.vf_coef * value_loss + entropy_loss
    return total, {"value_loss": value_loss, "approx_kl": kl, "clip_frac": clip_frac}


def collect(
    mdp, config: PPOConfig, params: dict, rollout: RolloutState, key: jax.Array, observed: dict | None = None
) -> tuple[dict, dict, dict]:
    """Steps 1-2: roll out at ``θ_old`` (or read the host-collected ``observed`` batch) and compute GAE
    advantages and λ-return targets; no gradient.

    Returns the graph ``inputs``, the rollout's node ``values`` (``[N, T, ...]``) and the data the
    minibatches are drawn from, flattened to ``[N·T, ...]`` (see :func:`minibatch_loss`).
    """
    size = config.num_envs * config.horizon
    inputs, batch = sample(mdp, params, rollout, key, observed)
    values = batch.values
    credit = {**values, "r": values["r"] * config.reward_scale}
    adv = mdp.compiled.advantages(inputs, credit)["a"]  # Â^c_t = -Â_t (Eq. 26, cost units)
    target = batch.steps.value - adv  # λ-return R̂_t = V(s_t) + Â_t, reward units (scaled)
    flat = jax.tree_util.tree_map(lambda x: x.reshape((size, *x.shape[2:])), values)
    data = {"values": flat, "logp_old": batch.steps.log_prob.reshape(size), "adv": adv.reshape(size),
            "target": target.reshape(size)}
    if config.surrogate == "kl_penalty":  # π_θold(·|s) at every recorded step, for the closed-form KL
        data["dist_old"] = jax.lax.stop_gradient(mdp.compiled.replay(inputs, flat, batch_ndim=1).dists["a"])
    return inputs, values, data


def make(env, env_params, config: PPOConfig | dict | None = None, *, optimizer=None, policy=None, value=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`. From Python, ``optimizer`` replaces the config's named
    optimizer (:mod:`scg.algorithms.optimizers`) and ``policy``/``value`` the MLPs of ``hidden``: networks
    ``(init, apply)`` (:func:`scg.algorithms.common.compile_mdp`)."""
    config = resolve(PPOConfig, config)
    opt = transformation(config, optimizer)
    policy, value = networks(env, env_params, config, policy, value)
    mdp = compile_mdp(env, env_params, config, policy=policy, value=value, gae_lambda=config.gae_lambda,
                      entropy_bonus=config.ent_coef)
    size = config.num_envs * config.horizon
    num_mb, kl_mode = config.num_minibatches, config.surrogate == "kl_penalty"

    def init(key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = init_params(mdp, k_net)
        rollout = reset_envs(env, env_params, k_env, config.num_envs)
        return TrainState(params, opt.init(params), rollout, jnp.asarray(config.kl_beta, jnp.float32), k_run)

    def update(state: TrainState, batch: dict | None = None):
        key, k_roll, k_perm = jax.random.split(state.key, 3)
        inputs, values, data = collect(mdp, config, state.params, state.rollout, k_roll, batch)
        flat = data["values"]

        def minibatch(carry, idx):
            params, opt_state = carry
            mb = jax.tree_util.tree_map(lambda x: x[idx], data)
            (loss, aux), grads = jax.value_and_grad(minibatch_loss, has_aux=True)(params, mdp, config, inputs, mb, state.beta)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {"loss": loss, "grad_norm": global_norm(grads), **aux}

        def epoch(carry, k):
            order = jax.random.permutation(k, size).reshape(num_mb, size // num_mb)
            return jax.lax.scan(minibatch, carry, order)

        (params, opt_state), stats = jax.lax.scan(epoch, (state.params, state.opt), jax.random.split(k_perm, config.epochs))
        stats = jax.tree_util.tree_map(jnp.mean, stats)
        beta = state.beta
        if kl_mode:  # the slide's rule, on the batch's mean KL after the epochs
            kl = mean_kl(data["dist_old"], mdp.compiled.replay({**inputs, **params}, flat, batch_ndim=1).dists["a"])
            beta, stats["approx_kl"] = adapt_beta(beta, kl, config.kl_target), kl
        # loss, grad_norm, value_loss, approx_kl, clip_frac: means over the minibatch steps
        rollout, metrics = report(state.rollout, values, loss=stats.pop("loss"), grads=None)
        metrics.update(stats, beta=beta)
        return TrainState(params, opt_state, rollout, beta, key), metrics

    return init, update


def _env_shards(config: PPOConfig) -> str | None:
    """Why ``config`` cannot train in environment shards (:func:`scg.algorithms.make_train`), or ``None``: the
    KL penalty's β would adapt to each shard's own KL and the shards' parameters part."""
    if config.surrogate == "kl_penalty":
        return "surrogate='kl_penalty' adapts β to each shard's own KL; use surrogate='clip'"
    return None


ALGORITHM = register(Algorithm("ppo", __doc__.splitlines()[0], ("discrete", "continuous"), PPOConfig, make, TUNED,
                               env_shards=_env_shards))
