"""Gumbel perturbations: sampling without replacement and the probabilities of its samples.

Pure functions of explicit keys, written for one categorical over the last axis
(``logits`` of shape ``[K]``; batch with ``vmap``), shared by the unordered set
estimator (:mod:`scg.estimators.unordered_set`) and A* / top-down Gumbel
sampling (Lorberbom et al. 2020; Maddison, Tarlow & Minka 2014). Outside the
seeds: Kool, van Hoof & Welling 2019, "Stochastic Beams and Where to Find Them"
(Gumbel-top-k, Eq. 1-3; truncated Gumbels, Appendix B).

- Gumbel-max: ``argmax_i (φ_i + G_i)``, ``G_i ~ Gumbel(0)`` i.i.d., is a sample of
  ``softmax(φ)``, and ``max_i (φ_i + G_i) ~ Gumbel(logsumexp φ)``.
- Gumbel-top-k: the indices of the ``k`` largest ``φ_i + G_i``, in decreasing
  order, are an ordered sample without replacement: the first is drawn from
  ``softmax(φ)``, each next one from ``softmax`` over those not yet drawn.
- Truncated Gumbel: a ``Gumbel(μ)`` conditioned on ``≤ b`` is ``−log(e^{−b} + e^{−g})``
  with ``g ~ Gumbel(μ)``; its CDF is ``exp(−e^{−(x−μ)}) / exp(−e^{−(b−μ)})`` for ``x ≤ b``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from scg import gumbel
    >>> idx, _ = gumbel.gumbel_top_k(jax.random.key(0), jnp.log(jnp.array([0.5, 0.3, 0.2])), 2)
    >>> bool(jnp.exp(gumbel.log_prob_unordered(jnp.zeros(3), jnp.array([0, 1]))) > 0)
    True
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

MAX_UNORDERED_K = 6  # log_prob_unordered enumerates k! orderings: 720 at k = 6


def gumbel(key: jax.Array, location, shape=None) -> jax.Array:
    """Samples of ``Gumbel(location)`` (scale 1), of ``shape`` (default: ``location``'s); ``−inf`` stays ``−inf``."""
    location = _float(location)
    shape = location.shape if shape is None else tuple(shape)
    return location + jax.random.gumbel(key, shape, location.dtype)


def truncated_gumbel(key: jax.Array, location, bound) -> jax.Array:
    """Samples of ``Gumbel(location)`` conditioned on ``≤ bound`` (Kool et al. 2019, App. B; Maddison et al. 2014).

    ``−log(exp(−b) + exp(−g))`` with ``g ~ Gumbel(location)``, formed as
    ``−logaddexp(−b, −g)``: no overflow for any finite ``b``, ``g``, and never
    above ``b`` in floating point (``logaddexp(−b, ·) ≥ −b``). A bound far above
    the location returns ``g`` itself, one far below returns values just under
    ``b``; ``bound = +inf`` gives the untruncated Gumbel, ``location = −inf`` gives ``−inf``.
    """
    location, bound = jnp.broadcast_arrays(_float(location), _float(bound))
    return -jnp.logaddexp(-bound, -gumbel(key, location))


def gumbel_top_k(key: jax.Array, logits, k: int) -> tuple[jax.Array, jax.Array]:
    """An ordered sample of ``k`` categories without replacement from ``softmax(logits)`` (Kool et al. 2019, Eq. 1-3).

    Returns:
        ``(indices, values)``: int32 ``[k]`` indices of the ``k`` largest perturbed logits
        ``logits + G`` in decreasing order, and those perturbed values (``values[0] ~ Gumbel(logsumexp logits)``).
    """
    logits = _float(logits)
    _check_k(logits, k)
    values, indices = jax.lax.top_k(gumbel(key, logits), k)
    return indices.astype(jnp.int32), values


def log_prob_ordered(logits, indices) -> jax.Array:
    """``log p(i_1, ..., i_k)`` of an ordered sample without replacement (distinct ``indices``).

    ``Σ_j [φ_{i_j} − logsumexp_{i ∉ {i_1..i_{j−1}}} φ_i]``: each normaliser is a log-sum-exp over the
    categories left, never ``log(1 − Σ p)``, which cancels catastrophically when the drawn mass is near 1.
    """
    logits = _float(logits)
    indices = jnp.asarray(indices, jnp.int32)
    if logits.ndim != 1 or indices.ndim != 1:
        raise ValueError(f"log_prob_ordered: logits [K] and indices [k], got {logits.shape} and {indices.shape}")
    onehot = jax.nn.one_hot(indices, logits.shape[0], dtype=bool)  # [k, K]
    drawn_before = jnp.cumsum(onehot, axis=0) - onehot > 0
    normalisers = jax.nn.logsumexp(jnp.where(drawn_before, -jnp.inf, logits), axis=-1)
    return jnp.sum(logits[indices] - normalisers)


@lru_cache(maxsize=None)
def orderings(k: int) -> np.ndarray:
    """All ``k!`` orderings of ``range(k)``, ``[k!, k]`` int32 (first index slowest: ``itertools.permutations``)."""
    perms = np.asarray(list(itertools.permutations(range(k))), np.int32).reshape(math.factorial(k), k)
    perms.flags.writeable = False  # cached: shared by every caller
    return perms


def log_prob_unordered(logits, indices) -> jax.Array:
    """``log p({i_1, ..., i_k})`` of the unordered set: log-sum-exp of :func:`log_prob_ordered` over its ``k!`` orderings.

    Raises:
        ValueError: for ``k > MAX_UNORDERED_K`` (6; 720 orderings), where enumeration is too costly.
    """
    indices = jnp.asarray(indices, jnp.int32)
    k = indices.shape[-1]
    if k > MAX_UNORDERED_K:
        raise ValueError(f"log_prob_unordered: enumerates k! orderings, so k <= {MAX_UNORDERED_K}; got k = {k}")
    perms = orderings(k)
    return jax.nn.logsumexp(jax.vmap(lambda p: log_prob_ordered(logits, indices[p]))(perms))


def _float(x) -> jax.Array:
    """``x`` as an array, keeping a floating dtype (float32 stays float32 under x64), else the default float."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(float)


def _check_k(logits, k) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"gumbel_top_k: k must be an int in [1, {logits.shape[-1]}] (the number of categories), got {k!r}")
