"""Advantage actor-critic, synchronous (A2C; "advantage actor-critic" slide; Mnih et al. 2016 without the asynchrony).

Each iteration: run ``num_envs`` environments for a short ``horizon`` ``T``
inside the compiled graph (:func:`scg.algorithms.mdp.actor_critic_graph`), then one optax
step on ``θ`` and ``φ`` together. Both gradients come from the same compiled
surrogate, whose terms are the slide's loss::

    g = ∇ Σ_t [ -log π_θ(a_t|s_t) Â_t + c (V_φ(s_t) - R̂_t)² / 2 - β H[π_θ(·|s_t)] ]
    R̂_t = r_t + γ r_{t+1} + … + γ^{T-1-t} r_{T-1} + γ^{T-t} V_φ(s_T),     Â_t = R̂_t - V_φ(s_t)

In the graph (costs are negative rewards): the score term of ``a_t`` gets
the cost to go ``G_t = -R̂_t`` (the Temporal's reverse scan, bootstrapped
with ``-V_φ`` after the last step and on truncation, never across an episode
boundary) minus the baseline ``-V_φ(s_t)``; the critic is a loss node
(``critic_loss=c``) regressing ``-V_φ(s_t)`` onto the same ``G_t``; the entropy
bonus is a loss node (``entropy_bonus=β``). The value loss is part of the one
objective, not a separate fit as in :mod:`scg.algorithms.reinforce`.

``update(state, batch=None)`` takes the batch from either collector, as in
:mod:`scg.algorithms.reinforce`.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import non_negative, option, positive, positive_sizes, resolve, unit_interval
from scg.algorithms.common import RolloutState, compile_mdp, estimate, init_params, report, reset_envs
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer


@dataclasses.dataclass(frozen=True)
class A2CConfig(OptimizerConfig):
    name: ClassVar[str] = "a2c"
    num_envs: int = option(16, positive)
    horizon: int = option(16, positive)
    discount: float = option(0.99, unit_interval)
    hidden: tuple[int, ...] = option((64, 64), positive_sizes)
    lr: float = option(0.003, positive)
    critic_loss: float = option(0.5, non_negative)  # c
    entropy_bonus: float = option(0.01, non_negative)  # β
    max_grad_norm: float | None = option(None, positive)  # clip the joint gradient by global norm (None: no clipping)


TUNED: dict = {}  # the defaults pass the learning checks on CartPole-v1 and Acrobot-v1 (as reinforce.TUNED)


class TrainState(NamedTuple):
    params: dict  # {"theta": policy, "phi": value}
    opt: optax.OptState
    rollout: RolloutState
    key: jax.Array


def make(env, env_params, config: A2CConfig | dict | None = None, *, optimizer=None, policy=None, value=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`. From Python, ``optimizer`` replaces the config's named
    optimizer (:mod:`scg.algorithms.optimizers`) and ``policy``/``value`` the MLPs of ``hidden``: networks
    ``(init, apply)`` (:func:`scg.algorithms.common.compile_mdp`)."""
    config = resolve(A2CConfig, config)
    mdp = compile_mdp(env, env_params, config, policy=policy, value=value, critic_loss=config.critic_loss,
                      entropy_bonus=config.entropy_bonus)
    opt = make_optimizer(config, config.lr, optimizer, max_grad_norm=config.max_grad_norm)

    def init(key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = init_params(mdp, k_net)
        return TrainState(params, opt.init(params), reset_envs(env, env_params, k_env, config.num_envs), k_run)

    def update(state: TrainState, batch: dict | None = None):
        key, k = jax.random.split(state.key)
        est = estimate(mdp, state.params, state.rollout, k, batch)
        updates, opt_state = opt.update(est.grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        value_loss = 0.5 * jnp.mean((est.returns - est.steps.value) ** 2)  # ½ (V_φ(s_t) - R̂_t)²
        rollout, metrics = report(state.rollout, est.values, loss=value_loss, grads=est.grads)
        return TrainState(params, opt_state, rollout, key), metrics

    return init, update


ALGORITHM = register(Algorithm("a2c", __doc__.splitlines()[0], ("discrete", "continuous"), A2CConfig, make, TUNED,
                     env_shards=lambda config: None))
