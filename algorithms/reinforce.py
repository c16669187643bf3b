"""REINFORCE with a learned state-value baseline (Schulman 2016, Eq. 44; "vanilla policy gradient" slide).

Each iteration: run ``num_envs`` environments for ``horizon`` steps inside the
compiled graph (:func:`algorithms.mdp.mdp_graph`); the compiler's surrogate
gives ``Σ_t ∇log π(a_t|s_t) (Q̂_t − b(s_t))`` with ``Q̂_t`` the discounted cost
to go (no credit across episode boundaries; ``−V`` bootstraps where an episode
is cut by the time limit or the end of the rollout) and ``b = −V_φ``; take an
optax step on ``θ``; then refit ``V_φ`` to the returns of the same batch
(after the policy step, as the slide orders it). Environments carry on across
iterations.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from algorithms import episodes
from algorithms.base import Algorithm, register
from algorithms.common import RolloutState, advance, compile_mdp, fit_value, global_norm, init_params, mdp_inputs, reset_envs

DEFAULT_CONFIG = dict(
    num_envs=8,
    horizon=200,
    discount=0.99,
    hidden=(64, 64),
    policy_lr=0.01,
    value_lr=0.003,
    value_epochs=20,
)


class TrainState(NamedTuple):
    params: dict  # {"theta": policy, "phi": value}
    policy_opt: optax.OptState
    value_opt: optax.OptState
    rollout: RolloutState
    key: jax.Array


def make(env, env_params, config: dict):
    config = {**DEFAULT_CONFIG, **config}
    mdp = compile_mdp(env, env_params, config)
    policy_opt = optax.adam(config["policy_lr"])
    value_opt = optax.adam(config["value_lr"])
    steps_per_iter = config["num_envs"] * config["horizon"]

    def init(key: jax.Array) -> TrainState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = init_params(mdp, k_net)
        rollout = reset_envs(env, env_params, k_env, config["num_envs"])
        return TrainState(params, policy_opt.init(params["theta"]), value_opt.init(params["phi"]), rollout, k_run)

    def update(state: TrainState):
        key, k = jax.random.split(state.key)
        inputs, observed = mdp_inputs(state.params, state.rollout)
        grads, values = mdp.grad_and_values(inputs, k, observed)
        updates, policy_opt_state = policy_opt.update(grads["theta"], state.policy_opt, state.params["theta"])
        theta = optax.apply_updates(state.params["theta"], updates)
        returns = -mdp.compiled.plan(inputs).program.cost_to_go(values)  # reward units: V target
        phi, value_opt_state, value_loss = fit_value(
            mdp.value, state.params["phi"], value_opt, state.value_opt, values["obs"], returns, config["value_epochs"]
        )
        rollout = advance(state.rollout, values)
        metrics = {
            "env_steps": jnp.asarray(steps_per_iter, jnp.float32),
            "mean_return": episodes.mean_recent(rollout.stats),
            "episodes": rollout.stats.count.astype(jnp.float32),
            "loss": value_loss,
            "grad_norm": global_norm(grads["theta"]),
        }
        return TrainState({"theta": theta, "phi": phi}, policy_opt_state, value_opt_state, rollout, key), metrics

    return init, update


ALGORITHM = register(Algorithm("reinforce", __doc__.splitlines()[0], ("discrete", "continuous"), DEFAULT_CONFIG, make))
