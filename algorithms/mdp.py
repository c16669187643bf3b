"""A Markov decision process as a temporal stochastic computation graph (Schulman 2016, §5.10.2, Figure 14).

One step of the graph::

    obs_t, state_t ──► a_t ~ π_θ(·|obs_t)          (score function; baseline b_t = -V_φ(obs_t))
    state_t, a_t ──► transition ~ env.step          (simulated: density unknown, no gradient)
    transition ──► r_t = -reward  (cost),  obs_{t+1}, state_{t+1} (carried), terminated_t, truncated_t
    transition ──► boot_t = -V_φ(final_obs_t)       (bootstrap on truncation and after the last step)

Costs are negative rewards. The same graph serves both ways of collecting
data: with a JAX environment the ``transition`` node calls ``env.step`` inside
the compiled scan; with trajectories collected on the host (``scg.envs.host``),
the caller passes the recorded actions and transitions as ``observed`` values
and the log-probabilities are recomputed in the compiled update.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import scg
from scg.algorithms.networks import Policy, ValueFn
from scg.envs.core import Environment
from scg.envs.wrappers import AutoReset, Trajectory


class Transition(NamedTuple):
    """What one environment step hands the graph (the value of the ``transition`` node)."""

    obs: jax.Array  # obs_{t+1}, after an automatic reset
    state: object  # env state after the step (a placeholder for host-collected data)
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # obs_{t+1} before any reset, for bootstrapping


def mdp_graph(
    env,
    env_params,
    policy: Policy,
    value: ValueFn | None,
    *,
    horizon: int,
    discount: float = 0.99,
    baseline: bool = True,
    bootstrap: bool = True,
    critic_loss: float = 0.0,
    entropy_bonus: float = 0.0,
    gae_lambda: float | None = None,
) -> scg.Temporal:
    """The temporal graph of ``horizon`` steps of ``env`` under ``policy``.

    ``env`` is a JAX :class:`scg.envs.Environment` (stepped inside the graph) or an
    :class:`scg.envs.HostEnv` (then every call must observe ``a`` and ``transition``:
    see :func:`observed_from_trajectory`).

    Inputs: ``theta`` (policy), ``phi`` (value; present when ``value`` is given),
    and the carried ``obs`` and ``state`` (pass the current ones as observed
    initial values, shape ``[num_samples, ...]``).

    Args:
        baseline: subtract ``-V_φ(obs_t)`` in the score terms (Theorem 2: it reads only ``obs_t``).
        bootstrap: estimate the costs after a truncation or the horizon by ``-V_φ``.
        critic_loss: weight of a loss node ``½ (−V_φ(obs_t) − G_t)²`` fitting the critic in
            the same graph (A2C); 0 leaves it out.
        entropy_bonus: weight of a loss node ``−β H[π_θ(·|obs_t)]``; 0 leaves it out.
        gae_lambda: credit the policy's score terms with GAE(γ, λ) (Schulman 2016, Eq. 26)
            instead of ``G_t - b_t``; needs ``value`` and ``baseline``. ``None``: Eq. 44's credit.
    """
    if isinstance(env, Environment):
        stepper = env if isinstance(env, AutoReset) else AutoReset(env)

        def transition(key, state, action):
            ts = stepper.step(key, state, action, env_params)
            return Transition(ts.obs, ts.state, ts.reward, ts.terminated, ts.truncated, ts.info["final_obs"])

    else:  # host-collected data (scg.envs.host.HostEnv): transitions are always observed, never simulated here
        zeros = jnp.zeros(env.observation_space.shape, jnp.float32)

        def transition(key, state, action):
            no = jnp.zeros((), bool)
            return Transition(zeros, state, jnp.zeros(()), no, no, zeros)

    g = scg.Graph(f"mdp_{getattr(env, 'name', None) or getattr(env, 'env_id', 'env')}".replace("-", "_"))
    theta = g.input("theta")
    obs = g.input("obs", differentiable=False)
    state = g.input("state", differentiable=False)
    b = None
    if value is not None:
        phi = g.input("phi")
        cost_to_go = g.deterministic("v", lambda phi, o: -value.apply(phi, o), phi, obs)
        b = cost_to_go if baseline else None
    advantage = None if gae_lambda is None else scg.GAE(gae_lambda)
    a = g.stochastic("a", policy.dist, theta, obs, estimator="score", baseline=b, advantage=advantage)
    tr = g.simulate("transition", transition, state, a)
    g.deterministic("obs_next", lambda tr: tr.obs, tr)
    g.deterministic("state_next", lambda tr: tr.state, tr)
    g.deterministic("terminated", lambda tr: tr.terminated, tr)
    g.deterministic("truncated", lambda tr: tr.truncated, tr)
    g.cost("r", lambda tr: -tr.reward.astype(jnp.float32), tr)
    if value is not None and bootstrap:
        g.deterministic("boot", lambda phi, tr: -value.apply(phi, tr.final_obs), phi, tr)
    if value is not None and critic_loss:
        g.loss("critic", lambda v, ret: critic_loss * 0.5 * (v - ret) ** 2, cost_to_go, target="return")
    if entropy_bonus:
        g.loss("entropy", lambda th, o: -entropy_bonus * _entropy(policy.dist(th, o)), theta, obs)
    return scg.Temporal(
        g,
        carry={"obs": "obs_next", "state": "state_next"},
        horizon=horizon,
        discount=discount,
        terminated="terminated",
        truncated="truncated",
        bootstrap="boot" if value is not None and bootstrap else None,
    )


def _entropy(d) -> jax.Array:
    if hasattr(d, "probs"):
        return -jnp.sum(d.probs * d.logits)
    return jnp.sum(0.5 * jnp.log(2 * jnp.pi * jnp.e * d.variance))


def observed_from_trajectory(traj: Trajectory) -> dict:
    """Host-collected ``Trajectory`` (time-major ``[T, N, ...]``) → ``observed`` values for :func:`mdp_graph`.

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
