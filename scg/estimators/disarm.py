"""DisARM for a Bernoulli node; Dong, Mnih & Tucker 2020 (NeurIPS), Eq. 5 and Algorithm 1 (outside the seeds).

The same antithetic pair as ARM (:mod:`scg.estimators.arm`; Yin & Zhou 2019),
``b = 1[u < σ(φ)]`` and ``b̃ = 1[1 − u < σ(φ)]`` with ``u ~ U(0, 1)^D``, but the
noise ``u`` is integrated out given the pair, element by element::

    g_d = ½ (f(b) − f(b̃)) (−1)^{b̃_d} 1[b_d ≠ b̃_d] σ(|φ_d|)          (Eq. 5)

(the same estimator as U2G, Yin et al. 2020). Derivation: ``f(b)`` and ``f(b̃)``
are functions of the pair, and given the pair each ``u_d`` depends on
``(b_d, b̃_d)`` only, so ``E[g_ARM | b, b̃]`` replaces ARM's weight ``u_d − ½``
by its conditional mean. With ``p = σ(φ_d)``: where ``b_d = b̃_d`` the noise is
uniform on an interval symmetric about ½ (``(p, 1 − p)`` or ``(1 − p, p)``):
mean 0. Where ``b_d = 1, b̃_d = 0`` it is uniform on ``(0, min(p, 1 − p))``:
``E[u_d − ½] = −½ max(p, 1 − p) = −½ σ(|φ_d|)``; where ``b_d = 0, b̃_d = 1``,
on ``(max(p, 1 − p), 1)``: ``+½ σ(|φ_d|)``. Times ARM's ``f(b̃) − f(b)`` this is
Eq. 5. So DisARM is ARM Rao-Blackwellised: unbiased, and never of larger
variance, in any dimension. Check, ``D = 1``, ``f(z) = z``: ``b ≠ b̃`` with
probability ``2 min(p, 1 − p)``, where ``g = ½ σ(|φ|)``; the mean is
``min(p, 1 − p) max(p, 1 − p) = p(1 − p) = ∂σ(φ)/∂φ``.

``b`` is the node's value (a proper Bernoulli draw from the node's key); ``f`` is
the sum of the downstream costs, re-evaluated at ``b`` and ``b̃`` with every
other draw kept. The gradient enters as ``extra = Σ_d stop_gradient(g_d) φ_d``.
Recorded values (``observed=``), shapes, ``mode="dice"`` and the ratio form: as
for ARM (:mod:`scg.estimators.arm`). Checked in ``tests/scg/test_arm.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.estimators.arm import ARM


@dataclass(frozen=True)
class DisARM(ARM):
    """ARM's pair and checks; the Rao-Blackwellised weight of Eq. 5."""

    name = "disarm"

    def logit_gradient(self, logits, u, b, b_anti, f_b, f_anti):
        sign = 1.0 - 2.0 * b_anti  # (−1)^{b̃_d}
        return 0.5 * (f_b - f_anti) * sign * (b != b_anti) * jax.nn.sigmoid(jnp.abs(logits))


def disarm() -> DisARM:
    """DisARM for a Bernoulli node (Dong, Mnih & Tucker 2020, Eq. 5)."""
    return DisARM()
