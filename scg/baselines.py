"""Built-in baselines for score-function terms (Schulman 2016, §5.4, Theorem 2).

A baseline ``b_w`` is subtracted from ``Q̂_w`` in the term ``∇log p(w) (Q̂_w - b_w)``.
It leaves the estimator unbiased when it depends only on nodes that ``w`` does
not influence. Besides a node of the graph (checked at compile time), the
built-ins here use the other samples of the same call: :class:`LeaveOneOut`, and
:class:`PairedLeaveOneOut` for antithetic pairs.
"""
from __future__ import annotations

import jax.numpy as jnp

from scg.errors import GraphError


class LeaveOneOut:
    """``b_w[n] = mean_{m != n} Q̂_w[m]`` over the ``num_samples`` independent samples of one call.

    Unbiased: sample ``n``'s baseline is independent of sample ``n``
    (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free").
    Needs ``num_samples >= 2``. In a temporal graph the mean is per time step.
    """

    def __call__(self, node_name: str, q_hat: jnp.ndarray) -> jnp.ndarray:
        n = q_hat.shape[0]
        if n < 2:
            raise GraphError(f"node {node_name!r}: the LeaveOneOut baseline needs num_samples >= 2, got {n}")
        return (jnp.sum(q_hat, axis=0, keepdims=True) - q_hat) / (n - 1)

    def __repr__(self) -> str:
        return "LeaveOneOut()"


class BatchMean:
    """``b_w = mean_m Q̂_w[m]`` including sample ``n`` itself.

    Biased by a factor ``(1 - 1/N)`` on the score term: kept as the
    "deliberately wrong" variant that the statistical tests must reject.
    """

    def __call__(self, node_name: str, q_hat: jnp.ndarray) -> jnp.ndarray:
        return jnp.broadcast_to(jnp.mean(q_hat, axis=0, keepdims=True), q_hat.shape)

    def __repr__(self) -> str:
        return "BatchMean()"


class PairedLeaveOneOut:
    """For antithetic pairs laid out ``[+ half; - half]``: ``b`` = the mean ``Q̂`` of the *other* pairs.

    Pair ``j`` (samples ``j`` and ``j + m`` of ``n = 2m``) gets
    ``b = mean_{k != j} (Q̂_k + Q̂_{k+m}) / 2``. A per-sample :class:`LeaveOneOut`
    would include the partner ``θ_{j+m} = 2μ - θ_j``, which depends on draw ``j``
    (Theorem 2 fails, the ``σ`` gradient is biased); this one reads only the other
    pairs' draws, so it is unbiased. Needs ``m >= 2`` pairs (an even ``num_samples >= 4``).

    >>> import jax.numpy as jnp
    >>> PairedLeaveOneOut()("theta", jnp.array([1.0, 3.0, 5.0, 7.0]))  # pairs (1, 5) and (3, 7)
    Array([5., 3., 5., 3.], dtype=float32)
    """

    def __call__(self, node_name: str, q_hat: jnp.ndarray) -> jnp.ndarray:
        n = q_hat.shape[0]
        if n % 2 or n < 4:
            raise GraphError(f"node {node_name!r}: PairedLeaveOneOut needs an even num_samples >= 4, got {n}")
        m = n // 2
        pair = 0.5 * (q_hat[:m] + q_hat[m:])
        others = (jnp.sum(pair, axis=0, keepdims=True) - pair) / (m - 1)
        return jnp.concatenate([others, others])

    def __repr__(self) -> str:
        return "PairedLeaveOneOut()"
