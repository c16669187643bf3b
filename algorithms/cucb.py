"""Combinatorial UCB on the spanning-tree bandit, with semi-bandit or full-bandit feedback (DirPG's §6.1 baselines).

Chen, Wang & Yuan 2013 (CUCB), as Lorberbom et al. 2020 use it (~L218-L224): each interaction
``t = 1, 2, …`` plays the maximum spanning tree under the optimistic edge values::

    u_e = μ̂_e + sqrt(1.5 ln t / c_e)       (c_e: plays of edge e so far; u_e = +∞ while c_e = 0)

(:func:`ucb_index`), found by Kruskal's algorithm (:func:`max_spanning_tree`). The seed prints the
bonus as ``1.5 log t / c_e`` (~L224), which lost CUCB's square root in extraction;
``bonus="literal"`` keeps that form. Feedback after playing the tree ``T``:

* ``"semi"``: every ``r_e, e ∈ T`` is observed (read from the episode's ``state.draws`` of
  :class:`scg.envs.paper.combinatorial_bandit.CombinatorialBandit`, drawn at reset);
* ``"full"``: only ``r_T``; each chosen edge is credited ``r_T / (|V| − 1)`` (~L222).

The tree is played through the environment (its ``|E|`` include/exclude decisions), so the reward is
the env's. One update is one interaction (one tree query). Metrics: ``env_steps`` = ``|E|``;
``mean_return`` the mean ``r_T`` of the last ``window`` trees; ``expected_return`` ``Σ_{e∈T} μ_e`` of
the tree just played (the curve of Fig. 2a, without the reward noise); ``loss`` minus the played
tree's total index ``Σ_{e∈T} u_e``; ``grad_norm`` 0 (no gradient).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from scg.algorithms import episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import Config, ConfigError, option, positive, resolve

FEEDBACK = ("semi", "full")
BONUS = ("sqrt", "literal")


@dataclasses.dataclass(frozen=True)
class CUCBConfig(Config):
    name: ClassVar[str] = "cucb"
    feedback: str = "semi"  # "semi": each chosen edge's r_e; "full": r_T only, split evenly
    bonus: str = "sqrt"  # "sqrt": sqrt(1.5 ln t / c_e) (CUCB); "literal": 1.5 ln t / c_e as printed
    window: int = option(20, positive)

    def __post_init__(self):
        super().__post_init__()
        for field, choices in (("feedback", FEEDBACK), ("bonus", BONUS)):
            if getattr(self, field) not in choices:
                raise ConfigError(f"cucb config: {field} must be one of {choices}, got {getattr(self, field)!r}")


def ucb_index(mean: jax.Array, count: jax.Array, t: jax.Array, bonus: str = "sqrt") -> jax.Array:
    """``u_e = μ̂_e + sqrt(1.5 ln t / c_e)`` (or without the square root), ``+∞`` where ``c_e = 0``."""
    width = 1.5 * jnp.log(jnp.maximum(t, 1).astype(jnp.float32)) / jnp.maximum(count, 1)
    width = jnp.sqrt(width) if bonus == "sqrt" else width
    return jnp.where(count > 0, mean + width, jnp.inf)


def max_spanning_tree(env, weights: jax.Array) -> jax.Array:
    """Kruskal: the edges in decreasing ``weights``, each kept unless it closes a cycle; ``[|E|]`` bool.

    ``env`` is a :class:`~scg.envs.paper.combinatorial_bandit.CombinatorialBandit` (its ``edges`` and
    ``reachability``). Ties go to the lower edge index (a stable sort).
    """
    edges = jnp.asarray(env.edges)
    order = jnp.argsort(-weights, stable=True)

    def add(i, included):
        e = order[i]
        connected = env.reachability(included)[edges[e, 0], edges[e, 1]]
        return included.at[e].set(~connected)

    return jax.lax.fori_loop(0, env.num_edges, add, jnp.zeros(env.num_edges, bool))


class TrainState(NamedTuple):
    sums: jax.Array  # [E] credited reward per edge
    counts: jax.Array  # [E] plays per edge
    t: jax.Array  # interactions so far
    recent: episodes.EpisodeStats
    key: jax.Array


def play(env, env_params, key: jax.Array, tree: jax.Array):
    """Reset (the episode's ``r_e``), then take the tree's ``|E|`` decisions; returns ``(r_T, draws, taken tree)``."""
    _, state = env.reset(key, env_params)
    draws = state.draws

    def step(state, t):
        ts = env.step_env(jax.random.key(0), state, tree[t].astype(jnp.int32), env_params)
        return ts.state, ts.reward

    state, rewards = jax.lax.scan(step, state, jnp.arange(env.num_edges))
    return jnp.sum(rewards), draws, state.included


def make(env, env_params, config: CUCBConfig | dict | None = None):
    config = resolve(CUCBConfig, config)
    if not (hasattr(env, "edges") and hasattr(env, "reachability")):
        raise ConfigError(f"cucb plays spanning trees of a graph; {env.name} is not a CombinatorialBandit")
    tree_size = env.num_nodes - 1

    def init(key):
        zeros = jnp.zeros(env.num_edges, jnp.float32)
        return TrainState(zeros, zeros, jnp.zeros((), jnp.int32), episodes.init(0, config.window), key)

    def update(state: TrainState, batch=None):
        if batch is not None:
            raise ConfigError("cucb plays its own trees; it takes no batch")
        key, k = jax.random.split(state.key)
        t = state.t + 1
        index = ucb_index(state.sums / jnp.maximum(state.counts, 1), state.counts, t, config.bonus)
        tree = max_spanning_tree(env, index)
        r_tree, draws, taken = play(env, env_params, k, tree)
        credit = draws if config.feedback == "semi" else jnp.full(env.num_edges, r_tree / tree_size)
        played = taken.astype(jnp.float32)
        recent = episodes.push(state.recent, r_tree[None])
        finite = jnp.where(jnp.isfinite(index), index, 0.0)
        metrics = episodes.metrics(recent, env_steps=env.num_edges, loss=-jnp.sum(played * finite),
                                   grad_norm=jnp.float32(0.0), expected_return=jnp.sum(played * env_params.mu))
        new = TrainState(state.sums + played * credit, state.counts + played, t, recent, key)
        return new, metrics

    return init, update


ALGORITHM = register(Algorithm("cucb", __doc__.splitlines()[0], ("discrete",), CUCBConfig, make))
