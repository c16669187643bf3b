"""RELAX for a Bernoulli node; Grathwohl, Choi, Wu, Roeder & Duvenaud 2018 (ICLR), Eq. 7-8, §3.3 and
Algorithm 2 (outside the seeds; numbers as we read the arXiv version, not checked against a seed).

REBAR's estimator (:mod:`scg.estimators.rebar`, Tucker et al. 2017) with a
free-form control variate ``c_ψ``::

    ĝ = [f(b) − c_ψ(z̃)] ∇_φ log p(b) + ∇_φ c_ψ(z) − ∇_φ c_ψ(z̃),    b = H(z), z̃ ~ p(z | b)   (Eq. 8)

unbiased for any differentiable ``c_ψ`` that depends on ``φ`` only through ``z``
(the same cancellation as REBAR's). As in the paper's Bernoulli experiments,
``c_ψ(z) = η f(σ_λ(z)) + ρ(σ_λ(z))``: REBAR's relaxed cost plus a small network
``ρ`` (one ``tanh`` hidden layer of width ``hidden`` on the node's flattened
relaxed value, scalar out; its output bias acts as a learned baseline). All of
``ψ = (λ, η, ρ)`` lives in ``state["params"]`` and is trained by Adam on the
gradient of ``‖ĝ‖²`` (Eq. 6; Algorithm 2), which the compiler passes to
``update_state``. ``ρ`` sees the graph only through ``z`` and ``z̃``, so its
gradient into the graph goes only through the node's logits.

Everything else (the draws of ``z`` and ``z̃``, the surrogate terms, the
optimiser step, shapes, restrictions) is REBAR's; only the control variate
and its initial parameters differ (``ρ``'s output layer starts small, so RELAX
starts near REBAR). Checked in ``tests/scg/test_rebar_relax.py``: unbiased at
the initial and the trained state; after 400 Adam steps the variance of the
``φ``-gradient is 0.83x (D = 3 graph) and 0.75x (mixed graph) its initial, and
0.17x, 0.22x the score function's, about REBAR's: on these small graphs ``ρ``
adds little to ``η f(σ_λ(z))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.estimators.rebar import REBAR, concrete


def mlp_init(key: jax.Array, inputs: int, hidden: int) -> dict:
    """``ρ``'s weights: Glorot-uniform-like hidden layer, a small output layer, zero biases."""
    k1, k2 = jax.random.split(key)
    w1 = jax.random.uniform(k1, (inputs, hidden), jnp.float32, -1.0, 1.0) * math.sqrt(6.0 / (inputs + hidden))
    w2 = jax.random.normal(k2, (hidden,), jnp.float32) * (0.1 / math.sqrt(hidden))
    return {"w1": w1, "b1": jnp.zeros((hidden,), jnp.float32), "w2": w2, "b2": jnp.zeros((), jnp.float32)}


def mlp(params: dict, x: jax.Array) -> jax.Array:
    """``ρ(x)``, a scalar, for one value ``x`` of the node (flattened)."""
    h = jnp.tanh(jnp.reshape(x, (-1,)) @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


@dataclass(frozen=True)
class RELAX(REBAR):
    """REBAR's fields, and ``hidden``: the width of ``ρ``'s hidden layer."""

    name = "relax"

    hidden: int = 32

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise GraphError(f"RELAX estimator: hidden must be a positive int, got {self.hidden!r}")

    def init_params(self, value_aval, key):
        size = math.prod(value_aval.shape)
        return {**super().init_params(value_aval, key), "rho": mlp_init(key, size, self.hidden)}

    def control_variate(self, params, f, z):
        return super().control_variate(params, f, z) + mlp(params["rho"], concrete(params, z))


def relax(hidden: int = 32, lr: float = 1e-3, init_temperature: float = 0.5, init_eta: float = 1.0) -> RELAX:
    """RELAX for a Bernoulli node (Grathwohl et al. 2018, Eq. 8): REBAR's control variate plus a network ``ρ``."""
    return RELAX(init_temperature, init_eta, lr, hidden)
