"""Trajectory-elite cross-entropy method: imitate the best of N sampled episodes (DirPG's MiniGrid baseline).

Lorberbom et al. 2020, §6.3 (~L245, L420): each update samples ``N = 30`` episodes from the policy
and averages ``∇ log Π_θ`` over the best 2 of them, i.e. one gradient step on the cross-entropy
objective of the elite set (the "cross entropy method" slide, with the elite indicator
``f(R) = 1[R among the top k]``, here in *trajectory* space, not in parameter space)::

    loss(θ) = −Σ_i w_i log Π_θ(τ_i),    w_i = 1/k for the k largest returns R(τ_i), 0 otherwise

(:func:`elite_weights`). This is not :mod:`scg.algorithms.cem`, which refits a Gaussian over policy
*parameters* (Szita & Lőrincz 2006). Episodes are drawn as in :mod:`scg.algorithms.trajectories`
(whole episodes from ``env.reset``, legal-action masks, a tabular or MLP policy on the env state);
the step is optax Adam (1e-3 in the paper).

Metrics: ``env_steps`` the steps of the N episodes; ``mean_return`` the mean return over the last
``window`` sampled episodes; ``elite_return`` the mean return of the elite; ``loss`` as above.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from scg.algorithms import episodes, trajectories
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import ConfigError, non_negative, option, positive, resolve
from scg.algorithms.dirpg_gradient import trajectory_log_prob
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer


def elite_weights(returns: jax.Array, num_elite: int) -> jax.Array:
    """``[N]`` weights ``1/num_elite`` on the ``num_elite`` largest ``returns`` (ties by lower index), 0 elsewhere.

    Example:
        >>> elite_weights(jnp.array([0.0, 3.0, 1.0, 3.0]), 2).tolist()
        [0.0, 0.5, 0.0, 0.5]
    """
    returns = jnp.asarray(returns)
    if returns.ndim != 1 or not 1 <= num_elite <= returns.shape[0]:
        raise ValueError(f"elite_weights: need [N] returns and 1 <= num_elite <= N, got shape {returns.shape}, "
                         f"num_elite {num_elite}")
    _, top = jax.lax.top_k(returns, num_elite)
    return jnp.zeros(returns.shape, jnp.float32).at[top].set(1.0 / num_elite)


@dataclasses.dataclass(frozen=True)
class TrajectoryCEMConfig(OptimizerConfig):
    name: ClassVar[str] = "trajectory_cem"
    num_episodes: int = option(30, positive)  # N sampled episodes per update (~L420)
    num_elite: int = option(2, positive)  # k imitated (~L245)
    policy: str = "mlp"  # "tabular" (env.state_index) or "mlp" on env.get_obs
    hidden: tuple[int, ...] = (64,)
    learning_rate: float = option(1e-3, positive)  # the optimizer's: Adam by default, as the paper (~L418)
    max_depth: int = option(0, non_negative)  # episode length; 0 takes the env's
    window: int = option(20, positive)

    def __post_init__(self):
        super().__post_init__()
        if self.num_elite > self.num_episodes:
            raise ConfigError(f"trajectory_cem config: num_elite {self.num_elite} exceeds num_episodes {self.num_episodes}")
        if self.policy not in trajectories.POLICY_KINDS:
            raise ConfigError(f"trajectory_cem config: policy must be one of {trajectories.POLICY_KINDS}, got {self.policy!r}")


TrainState = trajectories.PolicyTrainState


def make(env, env_params, config: TrajectoryCEMConfig | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer (:mod:`scg.algorithms.optimizers`)."""
    config = resolve(TrajectoryCEMConfig, config)
    policy = trajectories.make_state_policy(env, env_params, config.policy, config.hidden)
    max_depth = trajectories.episode_length(env, env_params, config.max_depth)
    tx = make_optimizer(config, config.learning_rate, optimizer)

    def init(key):
        return trajectories.init_train_state(policy, tx, config.window, key)

    def update(state: TrainState, batch=None):
        if batch is not None:
            raise ConfigError("trajectory_cem samples its own episodes; it takes no batch")
        key, k = jax.random.split(state.key)
        keys = jax.random.split(k, config.num_episodes)
        trajs = jax.vmap(lambda kk: trajectories.sample_episode(env, env_params, policy.logits, state.params, kk,
                                                                max_depth))(keys)
        w = elite_weights(trajs.ret, config.num_elite)

        def loss_fn(params):
            logp = jax.vmap(lambda t: trajectory_log_prob(policy.logits, params, t))(trajs)
            return -jnp.sum(w * logp)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        params, opt_state = trajectories.descend(tx, grads, state)
        recent = episodes.push(state.recent, trajs.ret)
        metrics = episodes.metrics(recent, env_steps=jnp.sum(trajs.length), loss=loss, grads=grads,
                                   elite_return=jnp.sum(w * trajs.ret))
        return TrainState(params, opt_state, recent, key), metrics

    return init, update


ALGORITHM = register(Algorithm("trajectory_cem", __doc__.splitlines()[0], ("discrete",), TrajectoryCEMConfig, make))
