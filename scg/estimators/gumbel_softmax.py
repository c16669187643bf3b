"""The Gumbel-softmax (Concrete) relaxation of a discrete node; biased. Outside the seeds.

Jang, Gu & Poole 2017, "Categorical Reparameterization with Gumbel-Softmax", Eq. 1-2;
Maddison, Mnih & Teh 2017, "The Concrete Distribution", Eq. for the binary Concrete
(§3.3, the logistic form). The discrete draw is replaced by a differentiable function
of the parameters and of noise, and the gradient flows through it (pathwise,
Schulman 2016 §5.2.1) to the node's children:

- Categorical, ``log π`` the normalised logits over the last axis, ``G_k ~ Gumbel(0)``::

      y = softmax((log π + G) / τ)                                  (Jang et al. Eq. 2)

  a point of the simplex, of shape ``[*dist.shape, K]``; as ``τ → 0`` it tends to
  ``one_hot(argmax(log π + G))``, an exact draw (Gumbel-max, Jang et al. Eq. 1).
- Bernoulli, ``logits`` of any shape, ``L = log u − log(1 − u)``, ``u ~ U(0, 1)`` (logistic)::

      y = σ((logits + L) / τ)                                       (Maddison et al., binary Concrete)

  a float in ``(0, 1)`` of the node's shape; as ``τ → 0`` it tends to ``1[logits + L > 0]``,
  a ``Bernoulli(σ(logits))`` draw.

For a Categorical node the node's value becomes a (relaxed) one-hot VECTOR
``[*dist.shape, K]``, not an int32 index: the graph's functions must accept a
one-hot (``bench/discrete_vae.py``'s ``code()`` does: ``jax.nn.one_hot(z, K)`` for an
index, the vector as it is otherwise), and ``scg.testing.exact_expectation``
still enumerates indices. Children see relaxed values, never seen by the real
system, so the estimate is unbiased for ``∇ E[f(y_τ)]``, not for ``∇ E[f(z)]``:
``unbiased = False`` (``scg.compile(g, unbiased=True)`` refuses it). The bias
shrinks as ``τ → 0`` while the variance grows (about ``1/τ``);
``bench/estimator_bias.py`` measures both. No surrogate term of its own; first
order only (``any_order = False``); no ``observed=`` (a relaxed value cannot be
recovered from a recorded discrete draw). The relaxations are pure functions,
shared with :mod:`scg.estimators.straight_through`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.dist import Bernoulli, Categorical
from scg.errors import GraphError
from scg.estimators.base import Estimator
from scg.gumbel import gumbel


def logistic_noise(key: jax.Array, logits) -> jax.Array:
    """``log u − log(1 − u)``, ``u ~ U(0, 1)`` of ``logits``' shape and dtype (never ±inf)."""
    tiny = jnp.finfo(logits.dtype).tiny
    u = jax.random.uniform(key, logits.shape, logits.dtype, minval=tiny, maxval=1.0)
    return jnp.log(u) - jnp.log1p(-u)


def relaxed_bernoulli(logits, key: jax.Array, temperature) -> tuple[jax.Array, jax.Array]:
    """``(σ((logits + L)/τ), 1[logits + L > 0])``: the binary Concrete sample and the exact draw of the same noise."""
    logits = jnp.asarray(logits)
    perturbed = logits + jax.lax.stop_gradient(logistic_noise(key, logits))
    hard = jax.lax.stop_gradient((perturbed > 0).astype(logits.dtype))
    return jax.nn.sigmoid(perturbed / temperature), hard


def relaxed_one_hot(logits, key: jax.Array, temperature) -> tuple[jax.Array, jax.Array]:
    """``(softmax((log π + G)/τ), one_hot(argmax(log π + G)))`` over the last axis, ``logits = log π``."""
    logits = jnp.asarray(logits)
    perturbed = logits + jax.lax.stop_gradient(gumbel(key, jnp.zeros_like(logits)))
    hard = jax.nn.one_hot(jnp.argmax(perturbed, axis=-1), logits.shape[-1], dtype=logits.dtype)
    return jax.nn.softmax(perturbed / temperature, axis=-1), jax.lax.stop_gradient(hard)


def relax(dist, key: jax.Array, temperature) -> tuple[jax.Array, jax.Array]:
    """``(soft, hard)`` for a Bernoulli or Categorical ``dist`` (checked by :func:`check_relaxable`)."""
    if isinstance(dist, Bernoulli):
        return relaxed_bernoulli(dist.logits, key, temperature)
    return relaxed_one_hot(dist.logits, key, temperature)


def check_relaxable(estimator: str, node_name: str, dist) -> None:
    """GraphError naming the node and the estimator unless ``dist`` is a Bernoulli or a Categorical."""
    if not isinstance(dist, (Bernoulli, Categorical)):
        raise GraphError(
            f"stochastic node {node_name!r}: estimator {estimator!r} relaxes a scg.dist.Bernoulli or "
            f"scg.dist.Categorical, got {type(dist).__name__}; use 'pathwise' or 'score' for it"
        )


def check_temperature(estimator: str, temperature) -> None:
    ok = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (ok and math.isfinite(temperature) and temperature > 0):
        raise GraphError(f"estimator {estimator!r}: temperature must be a finite number > 0, got {temperature!r}")


def refuse_observed(estimator: str, node_name: str):
    raise GraphError(
        f"stochastic node {node_name!r}: estimator {estimator!r} cannot take a recorded value (observed=): its "
        f"value is a relaxed sample, which a discrete record does not determine; use estimator='score' there"
    )


@dataclass(frozen=True)
class GumbelSoftmax(Estimator):
    temperature: float = 0.5

    name = "gumbel_softmax"
    passes_gradient = True
    observable = False
    unbiased = False  # unbiased for the relaxed objective E[f(y_τ)], not for E[f(z)]

    def __post_init__(self):
        check_temperature(self.name, self.temperature)
        object.__setattr__(self, "temperature", float(self.temperature))  # 1 and 1.0: one value, one repr

    def check(self, node_name, dist):
        check_relaxable(self.name, node_name, dist)

    def sample(self, dist, key):
        return relax(dist, key, self.temperature)[0]

    def observe(self, node_name, dist, value):
        refuse_observed(self.name, node_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(temperature={self.temperature})"


def gumbel_softmax(temperature: float = 0.5) -> GumbelSoftmax:
    """The Gumbel-softmax / Concrete relaxation (Jang et al. 2017, Eq. 2; Maddison et al. 2017): biased."""
    return GumbelSoftmax(temperature)
