"""Top-down Gumbel search over trajectories for ``a_opt`` and ``a_dir`` (DirPG), jittable.

Lorberbom, Maddison, Heess, Keshet & Hazan 2020, "Direct Policy Gradients": Algorithm 1
(first improvement), Algorithm 2 (top-down sampling of trajectories), the A* priority of §5,
and the region measure of Eq. 22. The Gumbel process is the top-down construction of Maddison,
Tarlow & Minka 2014 ("A* Sampling") in DirPG's modified split (App. B).

A region ``R(ã, B)`` holds the trajectories that start with prefix ``ã`` and take a next action
in ``B``. Popping it samples the next action ``a ~ π(· | s_ã)`` restricted to ``B`` by Gumbel-max,
steps the tree once (one *expansion*) and splits it into ``R₁ = R(ã ⊕ a, A)``, which inherits
the parent's ``G`` (it contains the parent's argmax), and ``R₂ = R(ã, B \\ {a})`` with
``G₂ ~ TruncGumbel(log Π(R₂), G)``, ``log Π(R₂) = log Π(ã) + logsumexp_{b ∈ B∖a} log π(b | s_ã)``
(Eq. 22). A terminal ``R₁`` (``done`` or depth ``max_depth``) is a leaf: it yields
``D(a; ε) = G + ε R(a)`` (Eq. 6). Phase 1 pops by ``G`` until the first leaf, which is
``a_opt ~ Π_θ`` (Eq. 4) with ``d_opt = G_root + ε R(a_opt)``; phase 2 pops by the search priority,
keeps the best leaf as ``a_dir`` and, with ``early_stop``, stops at the first ``d > d_opt``
(Algorithm 1, lines 5-10). With no improvement within the budget ``a_dir = a_opt``.

Where we deviate, or choose where the paper is silent:

* ``d_opt = D(a_opt; ε)``, not Algorithm 1's ``D(a_opt; 0)`` (a typo: it must compare with ``d_cur = D(a_cur; ε)``).
* Randomness is keyed by prefix, so the search is a deterministic function of ``(key, tree)``
  whatever the pop order. The environment's step into ``ã ⊕ a`` uses a key derived from
  ``fold_in(key(ã), a)`` only (the state-reward tree ``S``); the Gumbel draws of the ``j``-th region
  at a node are keyed by its prefix and ``j`` (``Γ``). Hence the priority changes which
  trajectories are visited, never their ``G``: an exhaustive search finds the same ``a_dir``
  with any priority, pruning included.
* ``priority="astar"``: ``G + ε (L + α U)`` for ``ε > 0`` (``L`` the prefix's return, ``U`` the tree's
  ``upper_bound`` on the return-to-go, taken as 0 when the tree has none, which is the paper's
  ``α = 0``), and ``G`` for ``ε ≤ 0``, where ``U`` bounds nothing. Regions whose bound
  ``G + ε (L + U)`` (``α = 1``) is ``≤`` the best ``d`` are pruned, only for ``ε > 0`` with an ``upper_bound``.
* The budget counts expansions (``tree.expand`` calls, Algorithm 2 line 8), phase 1 included;
  phase 1 always runs to its leaf, so ``a_opt`` exists even with a budget below ``max_depth``.
* The queue is a fixed table popped by a vectorised argmax, not a heap: ``O(capacity)`` per pop.

Example:
    >>> import jax, jax.numpy as jnp
    >>> tree = Tree(root=jnp.int32(0), expand=lambda s, a, k: (2 * s + a + 1, a.astype(float), s >= 2),
    ...             logits=lambda s: jnp.log(jnp.array([0.5, 0.5])))
    >>> out = search(tree, jax.random.key(0), epsilon=1.0, budget=6, max_depth=2)
    >>> bool(out.a_dir.ret >= out.a_opt.ret), int(out.a_opt.length)
    (True, 2)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scg.errors import GraphError
from scg.gumbel import gumbel, truncated_gumbel

PRIORITIES = ("astar", "gumbel")


class Tree(NamedTuple):
    """A search tree as pure functions; ``state`` is any pytree of arrays.

    Attributes:
        root: the root state ``s_∅``.
        expand: ``(state, action, key) -> (child_state, reward, done)``, one environment step;
            ``key`` (a typed PRNG key) is a function of the child's prefix only. ``child_state``
            has the root's structure, shapes and dtypes.
        logits: ``state -> [A]`` log-probabilities of the next action (normalised here by
            ``log_softmax``); ``−inf`` marks an illegal action. A state that is not ``done``
            must have a legal action.
        upper_bound: optional ``state -> U``, an upper bound on the return-to-go from ``state``.
    """

    root: Any
    expand: Callable
    logits: Callable
    upper_bound: Callable | None = None


class Trajectory(NamedTuple):
    """A yielded trajectory, padded to ``max_depth`` (actions and rewards with 0, states with the last one)."""

    actions: jax.Array  # [T] int32
    rewards: jax.Array  # [T]
    states: Any  # pytree [T, ...]: the state each action was taken in
    length: jax.Array  # int32
    ret: jax.Array  # R(a) = Σ_t r_t
    log_prob: jax.Array  # log Π_θ(a | S), Eq. 3
    g: jax.Array  # G(a) = log Π_θ(a) + Γ(a), Eq. 4
    d: jax.Array  # D(a; ε) = G + ε R, Eq. 6


class SearchResult(NamedTuple):
    a_opt: Trajectory  # a*(0), the first leaf: a sample of Π_θ
    a_dir: Trajectory  # the best D(·; ε) found (a*(ε) when complete); a_opt without improvement
    improved: jax.Array  # D(a_dir) > D(a_opt)
    expansions: jax.Array  # tree.expand calls
    leaves: jax.Array  # trajectories yielded
    expansions_to_improvement: jax.Array  # expansions when a_dir was found; -1 without improvement
    leaves_to_improvement: jax.Array  # leaves yielded by then; -1 without improvement
    pruned: jax.Array  # regions dropped by the A* bound
    complete: jax.Array  # the queue ran empty: a_dir is the exact argmax of D
    yields: Trajectory  # the first `record` yields in order, leading axis [record]
    num_yields: jax.Array  # how many of them are filled


class _Nodes(NamedTuple):  # the realised prefixes (state-reward tree), one per expansion
    state: Any
    parent: jax.Array
    action: jax.Array
    depth: jax.Array
    reward: jax.Array
    ret: jax.Array  # L: return of the prefix
    logp: jax.Array  # log Π of the prefix
    g: jax.Array  # G of the region R(prefix, A) at creation
    ub: jax.Array  # U(state), 0 without an upper bound
    env_key: jax.Array
    gum_key: jax.Array


class _Regions(NamedTuple):  # the queue: region (node, A minus removed) with its G
    node: jax.Array
    removed: jax.Array
    g: jax.Array
    active: jax.Array


def search(tree: Tree, key: jax.Array, *, epsilon, budget, max_depth: int, capacity: int | None = None,
           alpha=0.0, priority: str = "astar", early_stop: bool = True, prune: bool = True,
           record: int = 0, env_key: jax.Array | None = None) -> SearchResult:
    """``a_opt`` and ``a_dir`` of one episode (Lorberbom et al. 2020, Algorithms 1-2, Eqs. 4, 6, 22).

    Args:
        tree: the :class:`Tree` to search.
        key: PRNG key of the Gumbel process ``Γ`` (and of ``S`` unless ``env_key`` is given).
        epsilon: ε of ``D = G + εR``, any sign, may be traced.
        budget: maximum expansions (may be traced when ``capacity`` is given).
        max_depth: static horizon; a node at this depth is a leaf even if not ``done``.
        capacity: static size of the node and region tables; default ``max(budget, max_depth) + 1``,
            which never overflows. A smaller table stops the search when full (``complete`` False).
        alpha: weight of ``U`` in the A* priority ``G + ε(L + αU)``; needs ``tree.upper_bound`` unless 0.
        priority: ``"astar"`` (``G + ε(L + αU)`` for ε > 0, else ``G``) or ``"gumbel"`` (``G``) after phase 1.
        early_stop: stop at the first ``d > d_opt`` (Algorithm 1, line 9).
        prune: drop regions whose A* bound cannot beat the best ``d`` (only with ε > 0 and an ``upper_bound``).
        record: static number of yields to return in order, in ``SearchResult.yields``.
        env_key: PRNG key of the state-reward tree ``S``; default derived from ``key``.

    Returns:
        A :class:`SearchResult`. Batch episodes with ``jax.vmap``.
    """
    max_depth, capacity, record, num_actions = _check(tree, budget, max_depth, capacity, alpha, priority, record)
    key = _typed(key)
    env_key = jax.random.fold_in(key, 0) if env_key is None else _typed(env_key)
    gum_key = jax.random.fold_in(key, 1)
    epsilon, alpha = jnp.asarray(epsilon, jnp.float32), jnp.asarray(alpha, jnp.float32)
    budget = jnp.asarray(budget, jnp.int32)
    has_ub = tree.upper_bound is not None
    upper = (lambda s: jnp.asarray(tree.upper_bound(s), jnp.float32)) if has_ub else (lambda s: jnp.float32(0.0))
    A, actions = num_actions, jnp.arange(num_actions)

    def table(x, dtype=None):
        x = jnp.asarray(x, dtype)
        return jnp.broadcast_to(x, (capacity,) + x.shape)

    g_root = gumbel(jax.random.fold_in(gum_key, 2 * A + 1), jnp.float32(0.0))
    nodes = _Nodes(
        state=jax.tree_util.tree_map(table, tree.root), parent=table(0, jnp.int32), action=table(0, jnp.int32),
        depth=table(0, jnp.int32), reward=table(0.0, jnp.float32), ret=table(0.0, jnp.float32),
        logp=table(0.0, jnp.float32), g=table(g_root), ub=table(upper(tree.root)),
        env_key=jax.random.split(env_key, capacity).at[0].set(env_key),
        gum_key=jax.random.split(gum_key, capacity).at[0].set(gum_key))
    regions = _Regions(node=table(0, jnp.int32), removed=table(jnp.zeros(A, bool)), g=table(g_root),
                       active=jnp.arange(capacity) == 0)
    i32 = jnp.int32
    carry0 = dict(nodes=nodes, regions=regions, n_nodes=i32(1), n_regions=i32(1), found=False, improved=False,
                  opt=i32(0), best=i32(0), d_opt=jnp.float32(-jnp.inf), d_best=jnp.float32(-jnp.inf),
                  leaves=i32(0), exp_imp=i32(-1), leaves_imp=i32(-1), pruned=i32(0),
                  yields=jnp.zeros(record, jnp.int32))
    carry0 = jax.tree_util.tree_map(jnp.asarray, carry0)
    search_phase = (priority == "astar") & (epsilon > 0)
    can_prune = prune & has_ub & (epsilon > 0)

    def cond(c):
        expansions = c["n_nodes"] - 1
        go = jnp.any(c["regions"].active) & (c["n_nodes"] < capacity)
        go &= (~c["found"]) | (expansions < budget)
        return go & ~(early_stop & c["improved"])

    def body(c):
        nodes, regions = c["nodes"], c["regions"]
        L, U = nodes.ret[regions.node], nodes.ub[regions.node]
        prio = jnp.where(search_phase, regions.g + epsilon * (L + alpha * U), regions.g)
        # Phase 1 follows the R₁ chain, which always sits in slot 0 and holds the largest G.
        p = jnp.where(c["found"], jnp.argmax(jnp.where(regions.active, prio, -jnp.inf)), 0)
        n, G, removed = regions.node[p], regions.g[p], regions.removed[p]
        s = jax.tree_util.tree_map(lambda x: x[n], nodes.state)
        logpi = jax.nn.log_softmax(jnp.asarray(tree.logits(s), jnp.float32))
        allowed = jnp.isfinite(logpi) & ~removed
        rkey = jax.random.fold_in(nodes.gum_key[n], A + 1 + jnp.sum(removed))
        a = jnp.argmax(jnp.where(allowed, gumbel(jax.random.fold_in(rkey, 0), logpi), -jnp.inf)).astype(jnp.int32)
        rest = allowed & (actions != a)
        has_rest = jnp.any(rest)
        mu = nodes.logp[n] + jax.nn.logsumexp(jnp.where(rest, logpi, -jnp.inf))  # Eq. 22
        g_rest = truncated_gumbel(jax.random.fold_in(rkey, 1), mu, G)
        # One expansion: the child node m, keyed by its prefix only.
        m = c["n_nodes"]
        child_env_key = jax.random.fold_in(nodes.env_key[n], a)
        child, r, done = tree.expand(s, a, jax.random.fold_in(child_env_key, A))
        r = jnp.asarray(r, jnp.float32)
        depth, ret, logp = nodes.depth[n] + 1, nodes.ret[n] + r, nodes.logp[n] + logpi[a]
        leaf = jnp.asarray(done, bool) | (depth >= max_depth)
        new = dict(parent=n, action=a, depth=depth, reward=r, ret=ret, logp=logp, g=G, ub=upper(child),
                   env_key=child_env_key, gum_key=jax.random.fold_in(nodes.gum_key[n], a))
        nodes = nodes._replace(state=jax.tree_util.tree_map(lambda t, x: t.at[m].set(x), nodes.state, child),
                               **{f: getattr(nodes, f).at[m].set(v) for f, v in new.items()})
        # Split: R₁ = (m, A) with G takes slot p unless it is a leaf; R₂ = (n, B∖a) with G₂ takes the other.
        q = jnp.where(leaf, p, c["n_regions"])
        regions = _Regions(
            node=regions.node.at[p].set(jnp.where(leaf, n, m)).at[q].set(n),
            removed=regions.removed.at[p].set(jnp.where(leaf, removed, False)).at[q].set(removed | (actions == a)),
            g=regions.g.at[p].set(G).at[q].set(g_rest),
            active=regions.active.at[p].set(~leaf).at[q].set(has_rest))
        n_regions = c["n_regions"] + (has_rest & ~leaf)
        # A leaf yields d = G + εR (Algorithm 2, line 15); Algorithm 1 keeps the best.
        d = G + epsilon * ret
        first = leaf & ~c["found"]
        better = leaf & c["found"] & (d > c["d_best"])
        improved_now = better & ~c["improved"]
        leaves = c["leaves"] + leaf
        d_best = jnp.where(first | better, d, c["d_best"])
        yields = c["yields"]
        if record:  # static; a scatter into a size-0 array fails to trace
            yields = yields.at[jnp.where(leaf, c["leaves"], record)].set(m, mode="drop")
        pruned_mask = can_prune & regions.active & (regions.g + epsilon * (nodes.ret[regions.node] + nodes.ub[regions.node]) <= d_best)
        return dict(nodes=nodes, regions=regions._replace(active=regions.active & ~pruned_mask), n_nodes=m + 1,
                    n_regions=n_regions, found=c["found"] | leaf, improved=c["improved"] | better,
                    opt=jnp.where(first, m, c["opt"]), best=jnp.where(first | better, m, c["best"]),
                    d_opt=jnp.where(first, d, c["d_opt"]), d_best=d_best, leaves=leaves,
                    exp_imp=jnp.where(improved_now, m, c["exp_imp"]),
                    leaves_imp=jnp.where(improved_now, leaves, c["leaves_imp"]),
                    pruned=c["pruned"] + jnp.sum(pruned_mask), yields=yields)

    c = jax.lax.while_loop(cond, body, carry0)
    nodes = c["nodes"]
    trajectory = lambda leaf: _trajectory(nodes, leaf, max_depth, epsilon)
    return SearchResult(
        a_opt=trajectory(c["opt"]), a_dir=trajectory(c["best"]), improved=c["improved"],
        expansions=c["n_nodes"] - 1, leaves=c["leaves"], expansions_to_improvement=c["exp_imp"],
        leaves_to_improvement=c["leaves_imp"], pruned=c["pruned"], complete=~jnp.any(c["regions"].active),
        yields=jax.vmap(trajectory)(c["yields"]), num_yields=jnp.minimum(c["leaves"], record))


def _trajectory(nodes: _Nodes, leaf, max_depth: int, epsilon) -> Trajectory:
    """The path root → ``leaf`` by parent pointers, padded to ``max_depth``."""
    _, chain = jax.lax.scan(lambda n, _: (nodes.parent[n], n), leaf, None, length=max_depth)  # leaf first
    length = nodes.depth[leaf]
    t = jnp.arange(max_depth)
    valid = t < length
    at = chain[jnp.clip(length - 1 - t, 0, max_depth - 1)]  # node reached by action t
    at = jnp.where(valid, at, chain[0])
    states = jax.tree_util.tree_map(lambda x: x[nodes.parent[at]], nodes.state)
    return Trajectory(actions=jnp.where(valid, nodes.action[at], 0), rewards=jnp.where(valid, nodes.reward[at], 0.0),
                      states=states, length=length, ret=nodes.ret[leaf], log_prob=nodes.logp[leaf],
                      g=nodes.g[leaf], d=nodes.g[leaf] + epsilon * nodes.ret[leaf])


def _typed(key) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    return key if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)


def _concrete_int(x) -> int | None:
    try:
        value = np.asarray(x)
    except Exception:  # a tracer: checked at run time instead
        return None
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise GraphError(f"search: budget must be an integer scalar, got {x!r}")
    return int(value)


def _check(tree, budget, max_depth, capacity, alpha, priority, record):
    """Trace-time checks of the arguments and of the tree's functions' shapes; returns the static sizes."""
    if not isinstance(tree, Tree):
        raise GraphError(f"search: tree must be a scg.search.Tree, got {type(tree).__name__}")
    if priority not in PRIORITIES:
        raise GraphError(f"search: priority must be one of {PRIORITIES}, got {priority!r}")
    for name, value, low in (("max_depth", max_depth, 1), ("record", record, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise GraphError(f"search: {name} must be a static int >= {low}, got {value!r}")
    b = _concrete_int(budget)
    if b is not None and b < 1:
        raise GraphError(f"search: budget must be >= 1 expansion, got {b}")
    if capacity is None:
        if b is None:
            raise GraphError("search: a traced budget needs a static capacity (the table size)")
        capacity = max(b, max_depth) + 1
    if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool) or capacity < max_depth + 1:
        raise GraphError(f"search: capacity must be a static int >= max_depth + 1 = {max_depth + 1} "
                         f"(phase 1 needs max_depth expansions), got {capacity!r}")
    if b is not None and capacity < max(b, max_depth) + 1:
        raise GraphError(f"search: capacity {capacity} would overflow before the budget {b} is spent; "
                         f"use capacity >= {max(b, max_depth) + 1} or leave it None")
    if tree.upper_bound is None and not isinstance(alpha, jax.core.Tracer) and float(alpha) != 0.0:
        raise GraphError(f"search: alpha = {alpha} weighs tree.upper_bound, which is None; pass one or use alpha=0")
    if not isinstance(alpha, jax.core.Tracer) and float(alpha) < 0.0:
        raise GraphError(f"search: alpha must be >= 0 (the paper uses 0 <= alpha <= 1), got {alpha}")
    logits = jax.eval_shape(tree.logits, tree.root)
    if len(logits.shape) != 1 or logits.shape[0] < 1:
        raise GraphError(f"search: tree.logits(state) must have shape [A], got {logits.shape}")
    root = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), tree.root)
    out = jax.eval_shape(tree.expand, tree.root, jnp.int32(0), jax.random.key(0))
    if not (isinstance(out, tuple) and len(out) == 3):
        raise GraphError("search: tree.expand(state, action, key) must return (child_state, reward, done)")
    child, reward, done = out
    if jax.tree_util.tree_structure(child) != jax.tree_util.tree_structure(root) or any(
            (c.shape, c.dtype) != (r.shape, r.dtype) for c, r in zip(jax.tree_util.tree_leaves(child), jax.tree_util.tree_leaves(root))):
        raise GraphError(f"search: tree.expand's child_state {child} must match tree.root {root} (structure, shapes, dtypes)")
    for name, x in (("reward", reward), ("done", done)):
        if jnp.shape(x) != ():
            raise GraphError(f"search: tree.expand's {name} must be a scalar, got shape {jnp.shape(x)}")
    if tree.upper_bound is not None and jnp.shape(jax.eval_shape(tree.upper_bound, tree.root)) != ():
        raise GraphError("search: tree.upper_bound(state) must be a scalar")
    return int(max_depth), int(capacity), int(record), int(logits.shape[0])
