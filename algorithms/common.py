"""Pieces every policy-gradient algorithm shares: the compiled MDP estimator, env state, value regression."""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

import scg
from scg.algorithms import episodes
from scg.algorithms.mdp import MDPBatch, actor_critic_graph, env_transition, graph_name, mdp_batch
from scg.algorithms.networks import as_policy, as_value, make_policy, make_value
from scg.envs.core import Environment


class RolloutState(NamedTuple):
    """The environments' current observations and states, carried between iterations."""

    obs: jax.Array  # [N, ...]
    state: object  # [N, ...] pytree
    stats: episodes.EpisodeStats


def reset_envs(env, env_params, key, num_envs: int, window: int = 20) -> RolloutState:
    """Reset ``num_envs`` copies of a JAX env; for a host env (``scg.envs.host.HostEnv``), whose envs live on the
    host, placeholders of the shapes the graph carries (every update then observes the recorded trajectory)."""
    if not isinstance(env, Environment):
        obs, state = _example_carry(env, env_params)
        obs, state = (jnp.broadcast_to(x, (num_envs, *x.shape)) for x in (obs, state))
        return RolloutState(obs, state, episodes.init(num_envs, window))
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(key, num_envs), env_params)
    return RolloutState(obs, state, episodes.init(num_envs, window))


def env_spaces(env, env_params):
    """``(observation_space, action_space)`` of a JAX env or a host env (``scg.envs.host.HostEnv``)."""
    if isinstance(env, Environment):
        return env.observation_space(env_params), env.action_space(env_params)
    return env.observation_space, env.action_space  # scg.envs.host.HostEnv: attributes


def _example_carry(env, env_params):
    """One example of the carried ``obs`` and ``state`` (host data: zeros, as ``observed_from_trajectory`` feeds)."""
    if isinstance(env, Environment):
        return env.reset(jax.random.key(0), env_params)
    return jnp.zeros(env.observation_space.shape, jnp.float32), jnp.zeros((), jnp.float32)


class MDPEstimator(NamedTuple):
    """A compiled MDP graph and the pure functions an update needs."""

    compiled: scg.CompiledGraph
    grad_and_values: Callable  # (inputs, key, observed) -> (grads, values)
    policy: object
    value: object


def compile_mdp(env, env_params, config, *, policy=None, value=None, **graph_options) -> MDPEstimator:
    """Build and compile the MDP graph of ``config`` (an algorithm's config, :mod:`scg.algorithms.config`: its
    ``hidden``, ``horizon``, ``discount``, ``num_envs`` and, where it has one, ``value_hidden``: the value
    network's layers when they differ from the policy's).

    ``env`` is a JAX env or an ``scg.envs.host.HostEnv`` (``env_params`` None); ``graph_options`` (``gae_lambda``,
    ``critic_loss``, ``entropy_bonus``) go to :func:`scg.algorithms.mdp.actor_critic_graph`. ``policy`` and
    ``value`` replace the MLPs of ``hidden``: any network ``(init, apply)`` on one observation, as it comes from
    the env (:func:`scg.algorithms.networks.as_network`), whose output is the logits (Discrete) or the mean
    (Box; a learned log-std is added) of the policy, or the value (a scalar or ``[1]``); a
    :class:`~scg.algorithms.networks.Policy` is used as it is.
    """
    obs_space, action_space = env_spaces(env, env_params)
    policy = make_policy(obs_space, action_space, config.hidden) if policy is None else as_policy(policy, action_space)
    value_hidden = getattr(config, "value_hidden", None)
    if value is None:
        value = make_value(obs_space, config.hidden if value_hidden is None else value_hidden)
    else:
        value = as_value(value)
    graph = actor_critic_graph(
        env_transition(env, env_params), policy, value, horizon=config.horizon, discount=config.discount,
        name=graph_name(env), **graph_options,
    )
    compiled = scg.compile(graph)
    key = jax.random.key(0)
    obs, state = _example_carry(env, env_params)
    example = {"theta": policy.init(key), "phi": value.init(key), "obs": obs, "state": state}
    fn = compiled.grad_fn(example, num_samples=config.num_envs, with_values=True)
    return MDPEstimator(compiled, fn, policy, value)


def init_params(mdp: MDPEstimator, key: jax.Array) -> dict:
    k_pi, k_v = jax.random.split(key)
    return {"theta": mdp.policy.init(k_pi), "phi": mdp.value.init(k_v)}


def mdp_inputs(params: dict, rollout: "RolloutState") -> tuple[dict, dict]:
    """Graph inputs and observed initial carry for a rollout continuing from ``rollout``."""
    first = lambda x: x[0]  # noqa: E731  (an example of the carried shapes; the observed values win)
    inputs = {**params, "obs": rollout.obs[0], "state": jax.tree_util.tree_map(first, rollout.state)}
    return inputs, {"obs": rollout.obs, "state": rollout.state}


class Estimate(NamedTuple):
    """One pass of the compiled MDP graph: the surrogate's gradient and the batch it was computed on."""

    grads: dict  # {"theta": ..., "phi": ...}
    values: dict  # every node's value, [N, T, ...], no gradient
    returns: jax.Array  # G_t in reward units, [N, T]: the n-step returns bootstrapped with V (critic targets)
    steps: MDPBatch  # the same values, named, in reward units (scg.algorithms.mdp.mdp_batch)


def estimate(mdp: MDPEstimator, params: dict, rollout: RolloutState, key: jax.Array, observed: dict | None = None) -> Estimate:
    """Gradient of the surrogate (Schulman 2016, Corollary 1 with Eq. 44's per-step credit) on one batch.

    With ``observed=None`` the graph runs the JAX env from ``rollout`` (rollout and update in one function);
    with ``observed=observed_from_trajectory(traj)`` it reads a host-collected batch and recomputes the
    policy's log-probabilities. Either way the same compiled function computes the gradient.
    """
    inputs, carry = mdp_inputs(params, rollout)
    grads, values = mdp.grad_and_values(inputs, key, {**carry, **(observed or {})})
    returns = -mdp.compiled.cost_to_go(inputs, values)
    return Estimate(grads, values, returns, mdp_batch(values))


class Batch(NamedTuple):
    """A rollout sampled without a gradient: what the importance-ratio objectives (PPO, TRPO) start from."""

    values: dict  # every node's value, [N, T, ...]
    log_probs: dict  # score node -> log p(sampled value) at the sampling parameters (θ_old), [N, T]
    steps: MDPBatch  # values and log-probabilities, named, in reward units (scg.algorithms.mdp.mdp_batch)


def sample(
    mdp: MDPEstimator, params: dict, rollout: RolloutState, key: jax.Array, observed: dict | None = None
) -> tuple[dict, Batch]:
    """Run ``num_envs`` environments for ``horizon`` steps in the compiled graph at ``params``; no gradient.

    Returns the graph inputs of the rollout (for ``advantages``/``replay``) and the :class:`Batch`: the
    same forward pass as :func:`estimate` (the compiler's per-sample terms), without differentiating it.
    ``observed`` as in :func:`estimate` (a host-collected batch: ``observed_from_trajectory(traj)``).
    """
    inputs, carry = mdp_inputs(params, rollout)
    batch = mdp.compiled.sample_batch(inputs, key, num_samples=rollout.obs.shape[0], observed={**carry, **(observed or {})})
    return inputs, Batch(batch.values, batch.log_probs, mdp_batch(batch.values, batch.log_probs))


def report(rollout: RolloutState, values: dict, *, loss: jax.Array, grads) -> tuple[RolloutState, dict]:
    """Advance ``rollout`` past the batch ``values`` and the metrics every algorithm reports (``scg.algorithms.base``)."""
    rollout = advance(rollout, values)
    return rollout, episodes.metrics(rollout.stats, env_steps=values["r"].size, loss=loss, grads=grads)


def advance(rollout: RolloutState, values: dict) -> RolloutState:
    """Carry the environments to the end of the rollout just sampled, and count finished episodes."""
    last = lambda x: x[:, -1]  # noqa: E731
    steps = mdp_batch(values)
    stats = episodes.update(rollout.stats, steps.reward, steps.done)
    return RolloutState(last(steps.next_obs), jax.tree_util.tree_map(last, steps.next_state), stats)


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
    """``sqrt(Σ x²)`` over every leaf (the norm ``clip_by_global_norm`` uses)."""
    return optax.tree_utils.tree_norm(tree)
