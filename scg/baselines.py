"""Built-in baselines for score-function terms (Schulman 2016, §5.4, Theorem 2).

A baseline ``b_w`` is subtracted from ``Q̂_w`` in the term ``∇log p(w) (Q̂_w - b_w)``.
It leaves the estimator unbiased when it depends only on nodes that ``w`` does
not influence. Besides a node of the graph (checked at compile time), the
built-ins here use the other samples of the same call: :class:`LeaveOneOut`, and
:class:`PairedLeaveOneOut` for antithetic pairs; :class:`BatchMean` includes the
sample itself (biased); :class:`MovingAverage` averages earlier calls (its state
is carried between calls).
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class MovingAverage:
    """``b_w`` = the exponential moving average of ``Q̂_w`` over earlier calls: state in, state out.

    The state ``{"mean": m, "weight": c}`` starts at zero; after a call with
    batch mean ``q̄`` it is ``m ← decay·m + (1−decay)·q̄`` and ``c ← decay·c +
    (1−decay)``, and the baseline is ``m / c`` (the bias-corrected average, as
    Adam corrects its moments; zero before the first update). Unbiased:
    ``b_w`` reads only earlier calls' samples, which this call's node does not
    influence (Schulman 2016, Theorem 2). In a temporal graph the average is
    per time step. Thread the state with ``est.init_state(inputs)`` and
    ``grads, state = est.grad(inputs, key, state=state)``; without a state
    every call reads the initial one (a zero baseline).
    """

    decay: float = 0.9

    def __post_init__(self):
        if not isinstance(self.decay, (int, float)) or isinstance(self.decay, bool) or not 0.0 <= self.decay < 1.0:
            raise GraphError(f"MovingAverage: decay must be a number in [0, 1), got {self.decay!r}")

    def init_state(self, node_name: str, q_shape: tuple) -> dict:
        return {"mean": jnp.zeros(q_shape), "weight": jnp.zeros(())}

    def __call__(self, node_name: str, q_hat: jnp.ndarray, state: dict) -> jnp.ndarray:
        weight = state["weight"]
        b = jnp.where(weight > 0, state["mean"] / jnp.where(weight > 0, weight, 1.0), 0.0)
        return jnp.broadcast_to(b, q_hat.shape)

    def update_state(self, state: dict, q_hat: jnp.ndarray) -> dict:
        d = self.decay
        return {"mean": d * state["mean"] + (1.0 - d) * jnp.mean(q_hat, axis=0), "weight": d * state["weight"] + (1.0 - d)}
