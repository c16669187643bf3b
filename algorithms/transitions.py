"""How one step of the MDP graph moves: the ``transition`` node of :mod:`scg.algorithms.mdp`, four ways.

Each builder returns a :class:`TransitionFn`: ``declare(g, obs, state, action)`` adds the node
``transition``, whose value is a :class:`Transition` (and any nodes it needs first), and
``carry(state)`` turns an environment state into the value the graph carries as ``state``.

============================  =============================================  ===========================
builder                       ``transition`` node                            gradient through the step
============================  =============================================  ===========================
simulated_transition          ``g.simulate``: ``env.step`` with AutoReset    none (score function only)
differentiable_transition     deterministic ``env.step`` (+ ``env_key``)     pathwise, the real dynamics
host_transition               ``g.simulate`` placeholder, always observed    none
model_transition              deterministic ``apply_fn(model, obs, a)``      pathwise, through the model
============================  =============================================  ===========================

The pathwise ones back SVG(∞) (Heess et al. 2015; spec-rpg-svg.md, B3): with a reparameterised
policy (``estimator="pathwise"``) ``jax.grad`` of the expected cost is backpropagation through time.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment
from scg.envs.wrappers import AutoReset


class Transition(NamedTuple):
    """What one environment step hands the graph (the value of the ``transition`` node)."""

    obs: jax.Array  # obs_{t+1}, after an automatic reset
    state: object  # env state after the step (a placeholder for host-collected data)
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # obs_{t+1} before any reset, for bootstrapping


def _same(state):
    return state


class TransitionFn(NamedTuple):
    """A transition builder: ``declare(g, obs, state, action) -> node "transition"``; ``carry(env_state)``
    gives the graph's carried ``state`` for an environment state (any leading batch axes)."""

    declare: Callable
    carry: Callable = _same


def _auto_reset(env: Environment) -> AutoReset:
    return env if isinstance(env, AutoReset) else AutoReset(env)


def simulated_transition(env: Environment, env_params) -> TransitionFn:
    """``transition ~ env.step(key, state_t, a_t)`` (AutoReset) as a ``simulate`` node: no gradient passes.

    The policy-gradient algorithms' step: the density is unknown, so ``a_t`` needs a score-function estimator.
    """
    stepper = _auto_reset(env)

    def transition(key, state, action):
        ts = stepper.step(key, state, action, env_params)
        return Transition(ts.obs, ts.state, ts.reward, ts.terminated, ts.truncated, ts.info["final_obs"])

    return TransitionFn(lambda g, obs, state, action: g.simulate("transition", transition, state, action))


def differentiable_transition(env: Environment, env_params) -> TransitionFn:
    """``transition = env.step(k_t, state_t, a_t)`` (AutoReset) as a deterministic node: gradients flow
    through the real JAX dynamics (and the reward) into ``a_t`` and the carried state.

    The env's own randomness (e.g. AutoReset's reset draw) comes from a parentless ``simulate`` node
    ``env_key`` (its key's data, one per step and sample), which no input reaches (Condition 1 holds).
    A node on a differentiable path must return floats, so the carried state keeps every integer or
    boolean leaf (a step counter) as ``float32`` (exact below 2²⁴) and the flags are 0./1.; ``carry``
    converts an env state to that form (pass ``carry(state)`` as the initial ``state``).
    """
    stepper = _auto_reset(env)
    _, example = jax.eval_shape(lambda k: stepper.reset(k, env_params), jax.random.key(0))

    def carry(state):
        as_float = lambda x: x if jnp.issubdtype(jnp.result_type(x), jnp.floating) else jnp.asarray(x, jnp.float32)  # noqa: E731
        return jax.tree_util.tree_map(as_float, state)

    def from_carry(state):
        return jax.tree_util.tree_map(lambda x, ex: x.astype(ex.dtype), state, example)

    def transition(key_data, state, action):
        ts = stepper.step(jax.random.wrap_key_data(key_data), from_carry(state), action, env_params)
        flag = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return Transition(ts.obs, carry(ts.state), ts.reward, flag(ts.terminated), flag(ts.truncated), ts.info["final_obs"])

    def declare(g, obs, state, action):
        key = g.simulate("env_key", lambda key: jax.random.key_data(key))
        return g.deterministic("transition", transition, key, state, action)

    return TransitionFn(declare, carry)


def host_transition(host_env) -> TransitionFn:
    """A placeholder ``simulate`` node for trajectories collected on the host (``scg.envs.host.HostEnv``):
    every call must observe ``a`` and ``transition`` (:func:`scg.algorithms.mdp.observed_from_trajectory`)."""
    zeros = jnp.zeros(host_env.observation_space.shape, jnp.float32)

    def transition(key, state, action):
        no = jnp.zeros((), bool)
        return Transition(zeros, state, jnp.zeros(()), no, no, zeros)

    return TransitionFn(lambda g, obs, state, action: g.simulate("transition", transition, state, action))


def model_transition(apply_fn: Callable, *, params: str = "model") -> TransitionFn:
    """A learned model ``(obs_{t+1}, r_t) = apply_fn(model_params, obs_t, a_t)`` as a deterministic node.

    Adds the input ``params`` (the model's parameters) and differentiates through the model (SVG(∞) with a
    learned model, Heess et al. 2015, Algorithm 1). The model's state is its observation: the carried
    ``state`` is ``obs_{t+1}`` again (pass the initial observation as both), and no episode ends inside it.
    """

    def transition(model_params, obs, action):
        obs_next, reward = apply_fn(model_params, obs, action)
        no = jnp.zeros((), jnp.float32)
        return Transition(obs_next, obs_next, reward, no, no, obs_next)

    def declare(g, obs, state, action):
        return g.deterministic("transition", transition, g.input(params), obs, action)

    return TransitionFn(declare)


def env_transition(env, env_params) -> TransitionFn:
    """The transition the policy-gradient algorithms use: simulated for a JAX env, a placeholder for a host env."""
    return simulated_transition(env, env_params) if isinstance(env, Environment) else host_transition(env)
