"""The cross-entropy method on policy parameters (Szita & Lőrincz 2006; "cross entropy method" slide).

The graph (:func:`parameter_graph`), shared with :mod:`scg.algorithms.search_gradient`::

    mu, log_sigma ──► theta ~ N(mu, diag(exp(log_sigma))²)        (score function: theta blocks, Condition 1)
    zeta (simulated) ─┐                                            (the episode's noise: reset and step keys)
    theta ────────────┴► episode = (return, length)                 (simulated: one episode of the policy theta)
    episode ──► neg_return = -return                                (cost)

Each iteration (the slide's loop): draw ``n`` parameter vectors and run one
episode with each (``CompiledGraph.sample``), keep the top ``ρ n`` (the elite
set), and refit the Gaussian to them with extra noise (Szita & Lőrincz 2006,
noisy CEM; the slide's "CE+RL, decreasing noise")::

    μ_{k+1} = mean(θ_elite),   σ²_{k+1} = var(θ_elite) + Z_k,   Z_k = noise · max(1 - k / noise_iters, 0)

(their Tetris schedule was ``Z_k = max(5 - k/10, 0)``: the same linear decay,
here scaled for a small policy).

The refit maximises the slide's cross-entropy objective
``(1/n) Σ_i f(R_i) log P_{μ,σ}(θ_i)`` with ``f(R) = 1[R among the top ρ n]``
(before the noise is added). Policies act greedily (``greedy=True``: argmax of
the logits, or the Gaussian mean), as in classical CEM, which scores fixed
controllers; the parameters are those of :func:`scg.algorithms.networks.make_policy`
flattened with ``ravel_pytree`` (``hidden=()``: a linear policy).

Metrics: ``env_steps`` counts the steps of the episodes (each ends at its first
termination or truncation; the scan's padding after it is not counted);
``mean_return`` is the mean return of the last 20 evaluated episodes (members
of the population; with ``n >= 20``, 20 members of the latest one);
``episodes`` counts all evaluated episodes; ``loss`` is the negative
cross-entropy objective ``-(1/n) Σ_i f(R_i) log P_{μ',σ'}(θ_i)`` at the refit
(μ', σ' before the added noise); ``grad_norm`` is the norm of its gradient
with respect to ``(μ, log σ)`` at the *previous* parameters (how far from
optimal they were for this elite set; CEM then solves for the optimum in
closed form).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import scg
from scg.algorithms.base import Algorithm, register
from scg.algorithms.common import global_norm
from scg.algorithms.networks import make_policy
from scg.envs.wrappers import rollout

DEFAULT_CONFIG = dict(
    population=50,  # n: episodes (parameter draws) per iteration
    elite_frac=0.2,  # ρ
    hidden=(),  # () is a linear policy
    greedy=True,  # act with the mode of the policy (classical CEM); False samples actions
    init_mean=0.0,
    init_std=1.0,
    noise=0.1,  # Z_0: variance added to the refit (per parameter)
    noise_iters=20,  # Z_k decreases linearly to 0 over this many iterations
    min_std=1e-3,  # floor on σ, for numerical safety only
    window=20,  # episodes in the mean_return window
)


class Episode(NamedTuple):
    """The value of the ``episode`` node: return and length of the first episode of a rollout."""

    ret: jax.Array
    length: jax.Array


class Search(NamedTuple):
    """A compiled parameter-search graph and what algorithms need to use it."""

    compiled: scg.CompiledGraph
    example: dict  # example inputs (mu, log_sigma) for planning
    unravel: Callable  # flat theta -> policy parameters
    dim: int


def first_episode(reward_t: jax.Array, done_t: jax.Array) -> Episode:
    """Return and length of the episode that starts at ``t = 0`` and ends at the first ``done`` (rank-1 inputs)."""
    assert reward_t.ndim == 1 and done_t.shape == reward_t.shape, (reward_t.shape, done_t.shape)
    done_t = done_t.astype(jnp.int32)
    alive_t = (jnp.cumsum(done_t) - done_t) == 0  # steps up to and including the first done
    return Episode(jnp.sum(jnp.where(alive_t, reward_t, 0.0)).astype(jnp.float32), jnp.sum(alive_t).astype(jnp.float32))


def parameter_graph(env, env_params, config: dict, *, estimator="score", baseline=None) -> tuple[scg.Graph, Callable, int]:
    """The graph ``θ ~ N(μ, σ²) → one episode → -return`` (module docstring); returns ``(graph, unravel, dim)``.

    Inputs ``mu`` and ``log_sigma`` are flat vectors of the policy's parameter
    count. ``zeta`` is the episode's randomness (PRNG key data): drawn per
    sample, or observed, e.g. shared by an antithetic pair.
    """
    policy = make_policy(env.observation_space(env_params), env.action_space(env_params), config["hidden"])
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))
    num_steps = int(getattr(env_params, "max_steps_in_episode", config.get("max_steps", 1000)))

    def act(theta, obs_t, key):
        d = policy.dist(unravel(theta), obs_t)
        if not config["greedy"]:
            return d.sample(key)
        return jnp.argmax(d.logits).astype(jnp.int32) if hasattr(d, "logits") else d.mean

    def run_episode(key, theta, zeta):
        # The episode's randomness is zeta (not this node's key), so that two evaluations can share it.
        episode_key = jax.random.wrap_key_data(zeta, impl=jax.random.key_impl(key))
        traj = rollout(env, env_params, lambda o, k: act(theta, o, k), episode_key, num_steps)
        return first_episode(traj.reward.astype(jnp.float32), jnp.logical_or(traj.terminated, traj.truncated))

    g = scg.Graph("policy_search")
    mu = g.input("mu")
    log_sigma = g.input("log_sigma")
    theta = g.stochastic(
        "theta", lambda m, ls: scg.dist.Normal(m, jnp.exp(ls)), mu, log_sigma, estimator=estimator, baseline=baseline
    )
    zeta = g.simulate("zeta", lambda key: jax.random.key_data(key))
    episode = g.simulate("episode", run_episode, theta, zeta)
    g.cost("neg_return", lambda ep: -ep.ret, episode)
    return g, unravel, flat.size


def compile_search(env, env_params, config: dict, **graph_options) -> Search:
    graph, unravel, dim = parameter_graph(env, env_params, config, **graph_options)
    example = {"mu": jnp.zeros(dim), "log_sigma": jnp.zeros(dim)}
    return Search(scg.compile(graph, example_inputs=example), example, unravel, dim)


class Recent(NamedTuple):
    """The returns of the last ``window`` evaluated episodes and the number evaluated so far."""

    returns: jax.Array  # [window], NaN until filled
    count: jax.Array


def push_recent(recent: Recent, returns: jax.Array) -> Recent:
    """Append a batch of episode returns (in order) to the window."""
    window = recent.returns.shape[0]
    assert returns.ndim == 1, returns.shape
    kept = jnp.concatenate([recent.returns, returns.astype(jnp.float32)])[-window:]
    return Recent(kept, recent.count + returns.shape[0])


class TrainState(NamedTuple):
    mu: jax.Array
    log_sigma: jax.Array
    iteration: jax.Array
    recent: Recent
    key: jax.Array


def gaussian_log_prob(mu, log_sigma, theta) -> jax.Array:
    """``Σ_j log N(θ_j; μ_j, σ_j²)`` for one parameter vector."""
    return jnp.sum(scg.dist.Normal(mu, jnp.exp(log_sigma)).log_prob(theta))


def make(env, env_params, config: dict):
    config = {**DEFAULT_CONFIG, **config}
    n = int(config["population"])
    num_elite = max(1, int(round(config["elite_frac"] * n)))
    if num_elite < 2:
        raise ValueError(f"cem: the elite set needs at least 2 members to fit a variance, got population {n}, elite_frac {config['elite_frac']}")
    search = compile_search(env, env_params, config)

    def init(key: jax.Array) -> TrainState:
        mu = jnp.full(search.dim, config["init_mean"], jnp.float32)
        log_sigma = jnp.full(search.dim, math.log(config["init_std"]), jnp.float32)
        recent = Recent(jnp.full(config["window"], jnp.nan, jnp.float32), jnp.zeros((), jnp.int32))
        return TrainState(mu, log_sigma, jnp.zeros((), jnp.int32), recent, key)

    def update(state: TrainState):
        key, k = jax.random.split(state.key)
        values = search.compiled.sample({"mu": state.mu, "log_sigma": state.log_sigma}, k, num_samples=n)
        theta, episode = values["theta"], values["episode"]
        _, elite = jax.lax.top_k(episode.ret, num_elite)
        elite_theta = theta[elite]
        mu = jnp.mean(elite_theta, axis=0)
        var = jnp.var(elite_theta, axis=0)
        # The slide's cross-entropy objective, at the refit and (its gradient) at the previous parameters.
        objective = lambda m, ls: -jnp.sum(jax.vmap(gaussian_log_prob, (None, None, 0))(m, ls, elite_theta)) / n
        loss = objective(mu, 0.5 * jnp.log(var + config["min_std"] ** 2))
        grads = jax.grad(objective, argnums=(0, 1))(state.mu, state.log_sigma)
        frac = jnp.maximum(1.0 - state.iteration / config["noise_iters"], 0.0)
        std = jnp.maximum(jnp.sqrt(var + config["noise"] * frac), config["min_std"])
        recent = push_recent(state.recent, episode.ret)
        metrics = {
            "env_steps": jnp.sum(episode.length),
            "mean_return": jnp.nanmean(recent.returns),
            "episodes": recent.count.astype(jnp.float32),
            "loss": loss,
            "grad_norm": global_norm(grads),
            "elite_return": jnp.mean(episode.ret[elite]),
            "std": jnp.mean(std),
        }
        return TrainState(mu, jnp.log(std), state.iteration + 1, recent, key), metrics

    return init, update


ALGORITHM = register(Algorithm("cem", __doc__.splitlines()[0], ("discrete", "continuous"), DEFAULT_CONFIG, make))
