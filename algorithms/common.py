"""Pieces every policy-gradient algorithm shares: the compiled MDP estimator, env state, value regression."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import scg
from algorithms import episodes
from algorithms.mdp import mdp_graph
from algorithms.networks import make_policy, make_value


class RolloutState(NamedTuple):
    """The environments' current observations and states, carried between iterations."""

    obs: jax.Array  # [N, ...]
    state: object  # [N, ...] pytree
    stats: episodes.EpisodeStats


def reset_envs(env, env_params, key, num_envs: int, window: int = 20) -> RolloutState:
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(key, num_envs), env_params)
    return RolloutState(obs, state, episodes.init(num_envs, window))


class MDPEstimator(NamedTuple):
    """A compiled MDP graph and the pure functions an update needs."""

    compiled: scg.CompiledGraph
    grad_and_values: callable  # (inputs, key, observed) -> (grads, values)
    policy: object
    value: object


def compile_mdp(env, env_params, config: dict, **graph_options) -> MDPEstimator:
    """Build and compile the MDP graph of ``config`` (``hidden``, ``horizon``, ``discount``, ``num_envs``)."""
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    policy = make_policy(obs_space, action_space, config["hidden"])
    value = make_value(obs_space, config["hidden"])
    graph = mdp_graph(
        env, env_params, policy, value, horizon=config["horizon"], discount=config["discount"], **graph_options
    )
    compiled = scg.compile(graph)
    key = jax.random.key(0)
    obs, state = env.reset(key, env_params)
    example = {"theta": policy.init(key), "phi": value.init(key), "obs": obs, "state": state}
    fn = compiled.grad_fn(example, num_samples=config["num_envs"], with_values=True)
    return MDPEstimator(compiled, fn, policy, value)


def init_params(mdp: MDPEstimator, key: jax.Array) -> dict:
    k_pi, k_v = jax.random.split(key)
    return {"theta": mdp.policy.init(k_pi), "phi": mdp.value.init(k_v)}


def mdp_inputs(params: dict, rollout: "RolloutState") -> tuple[dict, dict]:
    """Graph inputs and observed initial carry for a rollout continuing from ``rollout``."""
    first = lambda x: x[0]  # noqa: E731  (an example of the carried shapes; the observed values win)
    inputs = {**params, "obs": rollout.obs[0], "state": jax.tree_util.tree_map(first, rollout.state)}
    return inputs, {"obs": rollout.obs, "state": rollout.state}


def advance(rollout: RolloutState, values: dict) -> RolloutState:
    """Carry the environments to the end of the rollout just sampled, and count finished episodes."""
    last = lambda x: x[:, -1]  # noqa: E731
    done = jnp.logical_or(values["terminated"], values["truncated"])
    stats = episodes.update(rollout.stats, -values["r"], done)
    return RolloutState(last(values["obs_next"]), jax.tree_util.tree_map(last, values["state_next"]), stats)


def fit_value(value, phi, opt: optax.GradientTransformation, opt_state, obs, targets, epochs: int):
    """Regress ``V_φ(obs)`` onto ``targets`` (reward units) by ``epochs`` full-batch steps; returns (φ, state, loss)."""
    flat_obs = obs.reshape((-1,) + obs.shape[2:])
    flat_targets = jax.lax.stop_gradient(targets.reshape(-1))

    def loss_fn(phi):
        predictions = jax.vmap(value.apply, (None, 0))(phi, flat_obs)
        return 0.5 * jnp.mean((predictions - flat_targets) ** 2)

    def step(carry, _):
        phi, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(phi)
        updates, opt_state = opt.update(grads, opt_state, phi)
        return (optax.apply_updates(phi, updates), opt_state), loss

    (phi, opt_state), losses = jax.lax.scan(step, (phi, opt_state), None, length=epochs)
    return phi, opt_state, losses[-1]


def global_norm(tree) -> jax.Array:
    return optax.global_norm(tree)
