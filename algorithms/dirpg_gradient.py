"""The DirPG gradient of one episode from a Top-Down Gumbel search (Lorberbom et al. 2020, Eq. 10).

``a_opt = a*(0)`` and ``a_dir = a*(ε)`` of Eq. 8 come from :func:`scg.search.search` (Algorithms 1-2);
``log Π_θ`` is then re-evaluated at the current ``θ`` along the recorded states and actions of both
(spec B6, step 4), and differentiated with ``jax.grad``::

    ĝ = (∇_θ log Π_θ(a_dir | S) − ∇_θ log Π_θ(a_opt | S)) / ε        (Eq. 10; 0 without improvement)

**Sign convention.** ``ĝ`` is an *ascent* direction: with an exact argmax (exhaustive budget, no
early stop) ``E[ĝ] = ∇_θ l(θ, ε)`` for either sign of ε, where
``l(θ, ε) = E_S[(1/ε) log E_{a~Π_θ}[exp(ε R(a, S))]]`` is the risk-sensitive *reward* objective of
Eq. 11 (Eqs. 12-13: ``a*(ε) ~ P_R ∝ Π_θ e^{εR}`` and ``a*(0) ~ Π_θ`` share Γ). Follow ``+ĝ`` to
increase return (``l = E[R] + (ε/2) E_S[var(R|S)] + O(ε²)``, Eq. 14); a minimiser should use ``−ĝ``
(``scg.estimators.direct``'s surrogate is the cost form ``−(log Π(a_dir) − log Π(a_opt))/ε``).

With early stop or a finite budget ``a_dir`` is only the first (or best found) improvement, not
``a*(ε)``; the estimator then is not unbiased for ``∇l`` (Algorithm 1 claims exactness only with
enough budget and no early termination; App. A.2 shows the stationary points agree for bandits).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from scg.search import Tree
    >>> logits_fn = lambda p, s: p[s]
    >>> make_tree = lambda p: Tree(root=jnp.int32(0), logits=lambda s: logits_fn(p, s),
    ...                            expand=lambda s, a, k: (2 * s + a + 1, a.astype(float), s >= 2))
    >>> out = dirpg_gradient(logits_fn, make_tree, jnp.zeros((7, 2)), jax.random.key(0),
    ...                      epsilon=1.0, budget=6, max_depth=2, early_stop=False)
    >>> out.grad.shape, bool(jnp.all(out.grad[3:] == 0))
    ((7, 2), True)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.search import SearchResult, Tree, Trajectory, search


class DirPGGradient(NamedTuple):
    grad: Any  # ĝ, a pytree like params: the ascent direction of l(θ, ε), Eq. 10
    search: SearchResult  # a_opt, a_dir, improved and the search counters


def trajectory_log_prob(logits_fn: Callable, params, trajectory: Trajectory) -> jax.Array:
    """``log Π_θ(a | S) = Σ_{t < length} log π_θ(a_t | s_t)`` (Eq. 3), from the recorded states and actions.

    ``logits_fn(params, s_t)`` gives ``[A]`` masked logits (``−inf`` illegal), normalised here by
    ``log_softmax`` as in the search; padded steps ``t ≥ length`` contribute 0.
    """
    if trajectory.actions.ndim != 1:
        raise GraphError(f"trajectory_log_prob: one trajectory expected, actions have shape {trajectory.actions.shape}")
    logits = jax.vmap(lambda s: jnp.asarray(logits_fn(params, s), jnp.float32))(trajectory.states)  # [T, A]
    logpi = jax.nn.log_softmax(logits, axis=-1)
    logp_t = jnp.take_along_axis(logpi, trajectory.actions[:, None], axis=-1)[:, 0]
    valid = jnp.arange(trajectory.actions.shape[0]) < trajectory.length
    return jnp.sum(jnp.where(valid, logp_t, 0.0))


def dirpg_surrogate(logits_fn: Callable, params, result: SearchResult, epsilon) -> jax.Array:
    """A scalar whose ``jax.grad`` in ``params`` is ``ĝ`` (Eq. 10; 0 when ``result.improved`` is False).

    ``(log Π_θ(a_dir) − log Π_θ(a_opt)) · [improved] / ε``: maximise it (or minimise its negative).
    """
    scale = jnp.where(result.improved, 1.0 / jnp.where(result.improved, epsilon, 1.0), 0.0)
    diff = trajectory_log_prob(logits_fn, params, result.a_dir) - trajectory_log_prob(logits_fn, params, result.a_opt)
    return scale * diff


def dirpg_gradient(logits_fn: Callable, make_tree: Callable[[Any], Tree], params, key: jax.Array, *,
                   epsilon, budget, max_depth: int, **search_kwargs) -> DirPGGradient:
    """One episode's DirPG gradient ``ĝ`` (Lorberbom et al. 2020, Eq. 10, Algorithm 1 line 14), an ascent direction.

    Args:
        logits_fn: ``(params, state) -> [A]`` masked logits of the policy ``π_θ(· | state)``.
        make_tree: ``params -> Tree`` whose ``logits`` is ``lambda s: logits_fn(params, s)``; it is
            given ``stop_gradient(params)`` (the search is not differentiated).
        params: the policy parameters ``θ`` (any pytree).
        key: PRNG key of the episode (Γ and S, see :func:`scg.search.search`).
        epsilon: ε ≠ 0 of ``D = G + εR`` (Eq. 6), either sign, may be traced.
        budget, max_depth, **search_kwargs: passed to :func:`scg.search.search` (``early_stop=False``
            and an exhaustive budget give the exact ``a*(ε)`` and an unbiased ``∇l(θ, ε)``, Eq. 11).

    Returns:
        :class:`DirPGGradient`: ``grad`` (like ``params``) and the :class:`scg.search.SearchResult`.
        ``jit``- and ``vmap``-able (batch episodes by ``vmap`` over ``key``).
    """
    if isinstance(epsilon, (int, float)) and epsilon == 0:
        raise GraphError("dirpg_gradient: epsilon must be nonzero (Eq. 10 divides by it)")
    tree = make_tree(jax.lax.stop_gradient(params))
    result = search(tree, key, epsilon=epsilon, budget=budget, max_depth=max_depth, **search_kwargs)
    result = jax.lax.stop_gradient(result)
    grad = jax.grad(lambda p: dirpg_surrogate(logits_fn, p, result, epsilon))(params)
    return DirPGGradient(grad=grad, search=result)
