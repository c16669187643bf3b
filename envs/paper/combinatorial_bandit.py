"""The combinatorial (spanning-tree) bandit of DirPG (Lorberbom et al. 2020, §6.1 and App. C.1).

A graph ``G = (V, E)`` with a mean ``μ_e`` per edge. An episode is ``|E|``
binary decisions, one per edge in a fixed order (1 = include, 0 = exclude);
after the last one the agent receives the bandit reward of the tree::

    r_T = Σ_{e ∈ T} r_e,     r_e ~ Uniform(0, 2 μ_e)   (fresh draws every episode)

so ``E[r_T | T] = Σ_{e ∈ T} μ_e``. All earlier rewards are 0. The draws ``r_e``
are made once per episode, at ``reset``, and kept in the state
(``state.draws``): every tree queried from that episode's start state, e.g.
each leaf of a DirPG search that branches the state, is paid from the same
``r_e`` (§6.1, ~L217), and a semi-bandit learner can read the ``r_e`` of the
edges it chose from ``state.draws``.

Legal actions (App. C.1): including an edge that closes a cycle is illegal;
excluding an edge is illegal when the tree could no longer be completed. The
paper states the second rule by counting ("k steps left and only n - k - 1
edges so far"), which it notes can still yield an invalid tree; we use the
exact rule instead: excluding ``e_t`` is illegal iff the included edges plus
the still-undecided ones ``e_{t+1}, ...`` would not connect ``V``. Under this
mask every episode ends with a spanning tree (an edge that closes a cycle joins
two nodes already connected, so dropping it never disconnects). As in the
paper, when only one action is legal it is taken whatever the agent chose;
``info["action_taken"]`` records it. The mask for the next decision is in
``info["legal_mask"]`` and in the last two entries of the observation.

The paper does not give its graphs; by default we use the complete graph on 5
nodes (10 edges, trees of 4 edges) with fixed means ``DEFAULT_MU``.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box, Discrete

# Means for the 10 edges of K5 in the order of ``complete_graph_edges(5)``.
DEFAULT_MU = (0.9, 0.2, 0.5, 0.7, 0.1, 0.8, 0.3, 0.6, 0.4, 0.35)


def complete_graph_edges(num_nodes: int) -> tuple[tuple[int, int], ...]:
    """Edges ``(u, v)``, ``u < v``, of the complete graph, in lexicographic order."""
    return tuple(itertools.combinations(range(num_nodes), 2))


class CombinatorialBanditParams(NamedTuple):
    mu: jax.Array  # (|E|,) per-edge mean rewards


class CombinatorialBanditState(NamedTuple):
    t: jax.Array  # index of the edge to decide next
    included: jax.Array  # (|E|,) bool, decisions so far (False for undecided)
    draws: jax.Array  # (|E|,) the episode's edge rewards r_e ~ Uniform(0, 2 μ_e), drawn at reset


class CombinatorialBandit(Environment):
    """DirPG's spanning-tree bandit on a fixed graph (static: it sets the shapes).

    Example:
        >>> env = CombinatorialBandit(); params = env.default_params
        >>> obs, state = env.reset(jax.random.key(0), params)
        >>> obs[-2:].tolist()  # legal (exclude, include) for edge 0
        [1.0, 1.0]
    """

    name = "CombinatorialBandit-v0"

    def __init__(self, num_nodes: int = 5, edges: tuple[tuple[int, int], ...] | None = None):
        self.num_nodes = num_nodes
        self.edges = complete_graph_edges(num_nodes) if edges is None else tuple(map(tuple, edges))
        self.num_edges = len(self.edges)
        inc = np.zeros((self.num_edges, num_nodes, num_nodes), np.float32)
        for i, (u, v) in enumerate(self.edges):
            inc[i, u, v] = inc[i, v, u] = 1.0
        self._incidence = inc  # (|E|, V, V) adjacency contributed by each edge
        if not bool(self.reachability(np.ones(self.num_edges, bool)).all()):
            raise ValueError(f"{self.name}: the graph {self.edges} is not connected, it has no spanning tree")

    @property
    def default_params(self) -> CombinatorialBanditParams:
        mu = DEFAULT_MU if self.num_edges == len(DEFAULT_MU) else (0.5,) * self.num_edges
        return CombinatorialBanditParams(mu=jnp.asarray(mu, jnp.float32))

    def reachability(self, edge_mask: jax.Array) -> jax.Array:
        """``R[u, v]`` is True iff ``u`` and ``v`` are connected by the edges in ``edge_mask`` (repeated squaring)."""
        adj = jnp.einsum("e,euv->uv", jnp.asarray(edge_mask, jnp.float32), self._incidence)
        reach = (adj + jnp.eye(self.num_nodes)) > 0
        for _ in range(max(1, int(np.ceil(np.log2(max(self.num_nodes - 1, 1)))))):
            reach = (reach.astype(jnp.float32) @ reach.astype(jnp.float32)) > 0
        return reach

    def legal_mask(self, state: CombinatorialBanditState) -> jax.Array:
        """``[exclude legal, include legal]`` for edge ``e_t`` (both True once the episode is over)."""
        idx = jnp.arange(self.num_edges)
        t = jnp.minimum(state.t, self.num_edges - 1)
        u, v = jnp.asarray(self.edges)[t]
        closes_cycle = self.reachability(state.included)[u, v]
        still_connected = self.reachability(state.included | (idx > t)).all()
        over = state.t >= self.num_edges
        return jnp.stack([still_connected | over, ~closes_cycle | over])

    def reset_env(self, key, params):
        draws = jax.random.uniform(key, (self.num_edges,), jnp.float32) * 2.0 * params.mu
        state = CombinatorialBanditState(t=jnp.int32(0), included=jnp.zeros(self.num_edges, bool), draws=draws)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        del key  # the step is deterministic; the episode's randomness was drawn at reset
        legal = self.legal_mask(state)
        taken = jnp.where(legal[action], action, 1 - action).astype(jnp.int32)
        included = state.included.at[state.t].set(taken == 1)
        new = state._replace(t=state.t + 1, included=included)
        done = self.is_terminal(new, params)
        reward = jnp.where(done, jnp.sum(jnp.where(included, state.draws, 0.0)), 0.0)
        info = {"legal_mask": self.legal_mask(new), "action_taken": taken}
        return Timestep(self.get_obs(new), new, reward, done, jnp.zeros_like(done), info)

    def is_terminal(self, state: CombinatorialBanditState, params) -> jax.Array:
        """Every edge is decided (the tree has been paid for)."""
        return state.t >= self.num_edges

    def get_obs(self, state: CombinatorialBanditState, params=None) -> jax.Array:
        """``[one_hot(t, |E|), included, legal_mask]``, length ``2 |E| + 2``."""
        position = jax.nn.one_hot(state.t, self.num_edges, dtype=jnp.float32)
        mask = self.legal_mask(state).astype(jnp.float32)
        return jnp.concatenate([position, state.included.astype(jnp.float32), mask])

    def observation_space(self, params):
        return Box.make(0.0, 1.0, (2 * self.num_edges + 2,))

    def action_space(self, params):
        return Discrete(2)

    def episode_length(self, params=None) -> int:
        """Every episode is exactly ``|E|`` decisions (static)."""
        return self.num_edges

    def num_states(self, params=None) -> int:
        """Size of the tabular index :meth:`state_index` (one entry per edge decision)."""
        return self.num_edges

    def state_index(self, state: CombinatorialBanditState, params=None) -> jax.Array:
        """The decision index ``t`` (clipped to the last edge once over): a tabular policy on it is the
        paper's ``P(include e) = σ(θ_e)`` per edge (§6.1, ~L226)."""
        return jnp.minimum(state.t, self.num_edges - 1)

    def is_spanning_tree(self, included: jax.Array) -> jax.Array:
        """True iff ``included`` has ``|V| - 1`` edges and connects ``V``."""
        return (jnp.sum(included) == self.num_nodes - 1) & self.reachability(included).all()

    def __repr__(self) -> str:
        return f"CombinatorialBandit(num_nodes={self.num_nodes}, num_edges={self.num_edges})"
