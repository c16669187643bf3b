"""RPG's smooth surrogate of an indicator reward (Levy & Ermon 2018, "Extension to discrete rewards", Eq. 9).

A reward ``r(s) = λ 1[h(s) ≥ 0]`` (Eq. 9 with one set ``K = {h ≥ 0}``) is replaced
by ``r̃_α(s) = λ σ(α h(s))`` (~L188): smooth for every ``α`` and converging to
``r`` pointwise where ``h(s) ≠ 0`` as ``α → ∞`` (Proposition 4's ``ψ``). One
function for every task, so the tasks differ only in their ``h``:

- Cart Pole: ``h(s) = min(1 - |x| / 2.4, 1 - |θ| / θ_max)``, the alive set of
  gymnasium's termination test (our choice; the paper gives no Cart Pole ``h``);
- Acrobot: ``h(s) = -cos θ₁ - cos(θ₁ + θ₂) - 1``, the tip's height above the bar;
- Mountain Car: ``h(s) = position - goal_position`` (the velocity condition left out).

``λ`` is a reward scale (Eq. 9's ``λ_i``), not the policy-stochasticity ``λ``
of the relaxation. The paper's appendix with its values is not in the seed:
the ``α`` defaults of each environment are ours.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_indicator(h: jax.Array, lam: float = 1.0, alpha: float = 10.0) -> jax.Array:
    """``λ σ(α h)``: RPG's surrogate of ``λ 1[h ≥ 0]`` (Levy & Ermon 2018, ~L188).

    Example:
        >>> float(smooth_indicator(jnp.float32(0.0), lam=2.0))
        1.0
    """
    return lam * jax.nn.sigmoid(alpha * jnp.asarray(h))
