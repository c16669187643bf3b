"""A Markov decision process as a temporal stochastic computation graph (Schulman 2016, §5.10.2, Figure 14).

One step of the graph, declared by small builders (each adds its nodes to a ``scg.Graph``)::

    step_graph        theta, obs_t, state_t                    (inputs; obs and state are carried)
    add_critic        phi, v_t = -V_φ(obs_t)                   (the baseline: reads only obs_t, Theorem 2)
    add_policy        a_t ~ π_θ(·|obs_t)                       (score function, or pathwise)
    add_transition    transition (see scg.algorithms.transitions) ──► obs_next, state_next,
                      terminated, truncated, r_t = -reward (cost)
    add_bootstrap     boot_t = -V_φ(final_obs_t)               (on truncation and after the last step)
    add_critic_loss   ½ (v_t − G_t)²                           (A2C's critic in the same objective)
    add_entropy       −β H[π_θ(·|obs_t)]                       (reads a's distribution, scg.dist_of)
    temporal          scg.Temporal: carry obs/state, the episode flags, the bootstrap

The transition decides how gradients pass the environment: simulated (the JAX env inside the
compiled scan, no gradient), differentiable (pathwise through the real dynamics), host (observed
trajectories from ``scg.envs.host``) or a learned model. :func:`actor_critic_graph` assembles the
graph every policy-gradient algorithm here uses. Costs are negative rewards; :func:`mdp_batch`
reads a sampled batch back in reward units as a typed :class:`MDPBatch`.

Example (SVG(∞)-style backpropagation through Pendulum)::

    env, params = scg.envs.registry.make("Pendulum-v1")
    g = step_graph("bptt")
    a = add_policy(g, policy, estimator="pathwise")
    add_transition(g, differentiable_transition(env, params), a)
    compiled = scg.compile(temporal(g, horizon=50, discount=1.0))
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import scg
from scg.algorithms.networks import Policy, ValueFn
from scg.algorithms.transitions import (  # noqa: F401  (re-exported: the transitions the builders take)
    Transition,
    TransitionFn,
    differentiable_transition,
    env_transition,
    host_transition,
    model_transition,
    simulated_transition,
)
from scg.envs.wrappers import Trajectory


def step_graph(name: str) -> scg.Graph:
    """A new step graph with the inputs ``theta`` (policy) and the carried ``obs`` and ``state`` (data)."""
    g = scg.Graph(name.replace("-", "_"))
    g.input("theta")
    g.input("obs", differentiable=False)
    g.input("state", differentiable=False)
    return g


def add_critic(g: scg.Graph, value: ValueFn):
    """Input ``phi`` and node ``v = -V_φ(obs_t)``, the critic's cost to go: a baseline for ``a_t``."""
    phi = g.input("phi")
    return g.deterministic("v", lambda phi, o: -value.apply(phi, o), phi, "obs")


def add_policy(g: scg.Graph, policy: Policy, *, estimator="score", baseline=None, advantage=None):
    """Node ``a ~ π_θ(·|obs_t)``; ``estimator="pathwise"`` for a reparameterised policy (no baseline then).

    ``advantage=scg.GAE(λ)`` credits the score terms with Eq. 26 (needs a ``baseline``, e.g. :func:`add_critic`'s).
    """
    return g.stochastic("a", policy.dist, "theta", "obs", estimator=estimator, baseline=baseline, advantage=advantage)


def add_transition(g: scg.Graph, transition: TransitionFn, action="a"):
    """The ``transition`` node(s) of ``transition`` and what the Temporal reads from them:
    ``obs_next``, ``state_next`` (carried), ``terminated``, ``truncated`` and the cost ``r = -reward``."""
    tr = transition.declare(g, "obs", "state", action)
    g.deterministic("obs_next", lambda tr: tr.obs, tr)
    g.deterministic("state_next", lambda tr: tr.state, tr)
    g.deterministic("terminated", lambda tr: tr.terminated, tr)
    g.deterministic("truncated", lambda tr: tr.truncated, tr)
    g.cost("r", lambda tr: -tr.reward.astype(jnp.float32), tr)
    return tr


def add_bootstrap(g: scg.Graph, value: ValueFn):
    """Node ``boot = -V_φ(final_obs_t)``: the costs after a truncation or the horizon (needs :func:`add_critic`)."""
    return g.deterministic("boot", lambda phi, tr: -value.apply(phi, tr.final_obs), "phi", "transition")


def add_critic_loss(g: scg.Graph, weight: float):
    """Loss node ``critic = weight · ½ (v_t − G_t)²`` fitting ``-V_φ`` to the cost to go in the same graph."""
    return g.loss("critic", lambda v, ret: weight * 0.5 * (v - ret) ** 2, "v", target="return")


def add_entropy(g: scg.Graph, weight: float, action="a"):
    """Loss node ``entropy = −weight · H[π_θ(·|obs_t)]``, read from the action's distribution
    (:func:`scg.dist_of`): the policy network runs once per step for the draw and the entropy."""
    return g.loss("entropy", lambda pi: -weight * _entropy(pi), scg.dist_of(action))


def temporal(g: scg.Graph, *, horizon: int, discount: float = 0.99) -> scg.Temporal:
    """Repeat the step ``horizon`` times: ``obs``/``state`` carried from ``obs_next``/``state_next``, no credit
    across ``terminated``/``truncated``, and ``boot`` (when declared) bootstrapping truncations and the end."""
    names = {n.name for n in g.nodes}
    return scg.Temporal(
        g,
        carry={"obs": "obs_next", "state": "state_next"},
        horizon=horizon,
        discount=discount,
        terminated="terminated",
        truncated="truncated",
        bootstrap="boot" if "boot" in names else None,
    )


def actor_critic_graph(
    transition: TransitionFn,
    policy: Policy,
    value: ValueFn,
    *,
    horizon: int,
    discount: float = 0.99,
    gae_lambda: float | None = None,
    critic_loss: float = 0.0,
    entropy_bonus: float = 0.0,
    name: str = "mdp",
) -> scg.Temporal:
    """The graph of REINFORCE, A2C, PPO and TRPO: score-function policy with baseline ``-V_φ(obs_t)``,
    bootstrap ``-V_φ``, credit Eq. 44's ``G_t - b_t`` or, with ``gae_lambda``, GAE (Eq. 26); optional
    critic loss (A2C) and entropy bonus. ``transition``: usually :func:`env_transition` ``(env, env_params)``."""
    g = step_graph(name)
    v = add_critic(g, value)
    a = add_policy(g, policy, baseline=v, advantage=None if gae_lambda is None else scg.GAE(gae_lambda))
    add_transition(g, transition, a)
    add_bootstrap(g, value)
    if critic_loss:
        add_critic_loss(g, critic_loss)
    if entropy_bonus:
        add_entropy(g, entropy_bonus, a)
    return temporal(g, horizon=horizon, discount=discount)


def graph_name(env) -> str:
    """``mdp_<env name>`` for a JAX env or a host env."""
    return f"mdp_{getattr(env, 'name', None) or getattr(env, 'env_id', 'env')}"


def _entropy(d) -> jax.Array:
    if hasattr(d, "probs"):
        return -jnp.sum(d.probs * d.logits)
    return jnp.sum(0.5 * jnp.log(2 * jnp.pi * jnp.e * d.variance))


class MDPBatch(NamedTuple):
    """The steps of a sampled (or replayed) MDP graph, named; every field ``[N, T, ...]`` (the record's
    batch axes), rewards and values in reward units. Fields whose node the graph lacks are ``None``."""

    obs: jax.Array  # s_t (the policy's input)
    action: jax.Array  # a_t
    reward: jax.Array  # r_t = -values["r"]
    done: jax.Array  # terminated_t | truncated_t
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array  # obs_{t+1} after an automatic reset (carried to step t+1)
    final_obs: jax.Array  # obs_{t+1} before any reset
    next_state: object  # the carried env state after step t
    value: jax.Array | None  # V_φ(s_t) = -values["v"]
    final_value: jax.Array | None  # V_φ(final_obs_t) = -values["boot"]
    log_prob: jax.Array | None  # log π(a_t|s_t) at the sampling parameters (sample_batch's log_probs)


def mdp_batch(values: dict, log_probs: dict | None = None) -> MDPBatch:
    """The typed view of a graph's ``values`` (and ``log_probs``) built by these builders; no copies, no gradient added."""
    neg = lambda name: -values[name] if name in values else None  # noqa: E731
    tr = values["transition"]
    return MDPBatch(
        obs=values["obs"],
        action=values["a"],
        reward=-values["r"],
        done=jnp.logical_or(values["terminated"], values["truncated"]),
        terminated=values["terminated"],
        truncated=values["truncated"],
        next_obs=values["obs_next"],
        final_obs=tr.final_obs,
        next_state=values["state_next"],
        value=neg("v"),
        final_value=neg("boot"),
        log_prob=None if log_probs is None else log_probs.get("a"),
    )


def observed_from_trajectory(traj: Trajectory) -> dict:
    """Host-collected ``Trajectory`` (time-major ``[T, N, ...]``) → ``observed`` values of the host-mode graph
    (:func:`host_transition`).

    The env state is not known on the host; a zero placeholder takes its place
    (the graph never reads it when the transition is observed).
    """
    swap = lambda x: jnp.swapaxes(jnp.asarray(x), 0, 1)  # noqa: E731  [T, N] -> [N, T]
    n, t = traj.reward.shape[1], traj.reward.shape[0]
    placeholder = jnp.zeros((n, t), jnp.float32)
    obs_next = jnp.concatenate([jnp.asarray(traj.obs)[1:], jnp.asarray(traj.next_obs)[-1:]], axis=0)
    transition = Transition(
        swap(obs_next), placeholder, swap(traj.reward).astype(jnp.float32),
        swap(traj.terminated), swap(traj.truncated), swap(traj.next_obs),
    )
    return {"a": swap(traj.action), "transition": transition, "obs": jnp.asarray(traj.obs)[0], "state": placeholder[:, 0]}
