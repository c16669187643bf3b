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

``update(state, batch=None)`` (:mod:`scg.algorithms.base`): ``batch`` may hold
observed values of the graph's nodes (e.g. ``{"theta": ...}``, a population
drawn elsewhere) in place of the ones sampled inside the compiled call.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import scg
from scg.algorithms import episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import Config, ConfigError, fraction, non_negative, option, positive, resolve
from scg.algorithms.networks import make_policy
from scg.envs.wrappers import rollout


@dataclasses.dataclass(frozen=True)
class CEMConfig(Config):
    name: ClassVar[str] = "cem"
    population: int = option(50, positive)  # n: episodes (parameter draws) per iteration
    elite_frac: float = option(0.2, fraction)  # ρ
    hidden: tuple[int, ...] = ()  # () is a linear policy
    greedy: bool = True  # act with the mode of the policy (classical CEM); False samples actions
    init_mean: float = 0.0
    init_std: float = option(1.0, positive)
    noise: float = option(0.1, non_negative)  # Z_0: variance added to the refit (per parameter)
    noise_iters: int = option(20, positive)  # Z_k decreases linearly to 0 over this many iterations
    min_std: float = option(1e-3, positive)  # floor on σ, for numerical safety only
    window: int = option(20, positive)  # episodes in the mean_return window

    @property
    def num_elite(self) -> int:
        return max(1, int(round(self.elite_frac * self.population)))

    def __post_init__(self):
        super().__post_init__()
        if self.num_elite < 2:
            raise ConfigError(f"cem config: the elite set needs at least 2 members to fit a variance, got population "
                              f"{self.population}, elite_frac {self.elite_frac}")


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
    assert reward_t.shape == done_t.shape, (reward_t.shape, done_t.shape)
    mask_t = episodes.first_episode_mask(done_t)
    return Episode(jnp.sum(mask_t * reward_t).astype(jnp.float32), jnp.sum(mask_t))


def parameter_graph(
    env, env_params, *, hidden=(), greedy: bool = True, estimator="score", baseline=None, max_steps: int = 1000
) -> tuple[scg.Graph, Callable, int]:
    """The graph ``θ ~ N(μ, σ²) → one episode → -return`` (module docstring); returns ``(graph, unravel, dim)``.

    Inputs ``mu`` and ``log_sigma`` are flat vectors of the parameter count of the policy
    (:func:`scg.algorithms.networks.make_policy` with ``hidden`` layers; acting by its mode if
    ``greedy``). ``zeta`` is the episode's randomness (PRNG key data): drawn per sample, or
    observed, e.g. shared by an antithetic pair. An episode runs for the env's
    ``max_steps_in_episode`` steps, or ``max_steps`` if its params have none.
    """
    policy = make_policy(env.observation_space(env_params), env.action_space(env_params), hidden)
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))
    num_steps = int(getattr(env_params, "max_steps_in_episode", max_steps))

    def act(theta, obs_t, key):
        d = policy.dist(unravel(theta), obs_t)
        if not greedy:
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


def compile_search(env, env_params, **graph_options) -> Search:
    """:func:`parameter_graph` compiled, with its example inputs, ``unravel`` and parameter count."""
    graph, unravel, dim = parameter_graph(env, env_params, **graph_options)
    example = {"mu": jnp.zeros(dim), "log_sigma": jnp.zeros(dim)}
    return Search(scg.compile(graph, example_inputs=example), example, unravel, dim)


class TrainState(NamedTuple):
    mu: jax.Array
    log_sigma: jax.Array
    iteration: jax.Array
    recent: episodes.EpisodeStats  # the window of evaluated episodes' returns (no running returns)
    key: jax.Array


def gaussian_log_prob(mu, log_sigma, theta) -> jax.Array:
    """``Σ_j log N(θ_j; μ_j, σ_j²)`` for one parameter vector."""
    return jnp.sum(scg.dist.Normal(mu, jnp.exp(log_sigma)).log_prob(theta))


def make(env, env_params, config: CEMConfig | dict | None = None):
    config = resolve(CEMConfig, config)
    n, num_elite = config.population, config.num_elite
    search = compile_search(env, env_params, hidden=config.hidden, greedy=config.greedy)

    def init(key: jax.Array) -> TrainState:
        mu = jnp.full(search.dim, config.init_mean, jnp.float32)
        log_sigma = jnp.full(search.dim, math.log(config.init_std), jnp.float32)
        return TrainState(mu, log_sigma, jnp.zeros((), jnp.int32), episodes.init(0, config.window), key)

    def update(state: TrainState, batch: dict | None = None):
        key, k = jax.random.split(state.key)
        inputs = {"mu": state.mu, "log_sigma": state.log_sigma}
        values = search.compiled.sample(inputs, k, num_samples=n, observed=batch)
        theta, episode = values["theta"], values["episode"]
        _, elite = jax.lax.top_k(episode.ret, num_elite)
        elite_theta = theta[elite]
        mu = jnp.mean(elite_theta, axis=0)
        var = jnp.var(elite_theta, axis=0)
        # The slide's cross-entropy objective, at the refit and (its gradient) at the previous parameters.
        objective = lambda m, ls: -jnp.sum(jax.vmap(gaussian_log_prob, (None, None, 0))(m, ls, elite_theta)) / n
        loss = objective(mu, 0.5 * jnp.log(var + config.min_std**2))
        grads = jax.grad(objective, argnums=(0, 1))(state.mu, state.log_sigma)
        frac = jnp.maximum(1.0 - state.iteration / config.noise_iters, 0.0)
        std = jnp.maximum(jnp.sqrt(var + config.noise * frac), config.min_std)
        recent = episodes.push(state.recent, episode.ret)
        metrics = episodes.metrics(recent, env_steps=jnp.sum(episode.length), loss=loss, grads=grads,
                                   elite_return=jnp.mean(episode.ret[elite]), std=jnp.mean(std))
        return TrainState(mu, jnp.log(std), state.iteration + 1, recent, key), metrics

    return init, update


ALGORITHM = register(Algorithm("cem", __doc__.splitlines()[0], ("discrete", "continuous"), CEMConfig, make))
