"""Measure-valued derivatives for a Gaussian node (outside the seeds).

Mohamed, Rosca, Figurnov & Mnih 2020, "Monte Carlo Gradient Estimation in Machine
Learning" (JMLR 21), §6 and its Table 1 of weak derivatives. A weak derivative writes
``∂_θ p(x; θ) = c_θ (p⁺(x) − p⁻(x))`` with ``p±`` densities, so that
``∂_θ E_p[f] = c_θ (E_{p⁺}[f] − E_{p⁻}[f])``, an estimate that needs ``f`` only at
points (not its derivative). For ``x ~ N(μ, σ²)`` (Table 1), per element:

- mean: ``∂_μ N = (x − μ)/σ² · N``; its positive and negative halves give
  ``c_μ = 1/(σ√(2π))``, ``p± = μ ± σW`` with ``W ~ Weibull(scale √2, shape 2)``
  (a Rayleigh(1) variable, density ``w e^{−w²/2}``, ``W = sqrt(−2 log U)``);
- scale: ``∂_σ N = (1/σ)(z² − 1) N`` with ``z = (x − μ)/σ``, so ``c_σ = 1/σ``,
  ``p⁺ = μ + σM`` with ``M`` double-sided Maxwell (density ``z² φ(z)``) and
  ``p⁻ = μ + σε``, ``ε ~ N(0, 1)``, the node's own distribution.

Coupling (common random numbers between ``p⁺`` and ``p⁻``, which §6 recommends): the mean's halves share ``W``;
for the scale, ``ε`` is the noise of the node's sample ``x = μ + σε`` and
``M = sign(ε) · sqrt(ε² + G₁² + G₂²)`` with fresh ``G₁, G₂ ~ N(0, 1)``: a valid
coupling (``|M| ~ χ₃`` is independent of the sign of ``ε``), with ``M`` close to
``ε``; ``p⁻`` is then ``f`` at the sample, with no evaluation of its own. So::

    ĝ_μi = (f(x₋ᵢ, μᵢ + σᵢWᵢ) − f(x₋ᵢ, μᵢ − σᵢWᵢ)) / (σᵢ√(2π))
    ĝ_σi = (f(x₋ᵢ, μᵢ + σᵢMᵢ) − f(x)) / σᵢ

where ``f`` is the sum of the costs downstream of the node, re-evaluated with
element ``i`` of its value replaced and every other element and draw kept
(``ctx.downstream``): each element needs its own evaluations, ``3D + 1`` in all
for ``D`` elements (vmapped). Each ``ĝ`` is unbiased (the other elements and
draws are independent of ``Wᵢ, Mᵢ, εᵢ``), for any integrable ``f``, smooth or not.
The extra term ``Σᵢ sg(ĝ_μi) μᵢ + sg(ĝ_σi) σᵢ`` (``μ = dist.loc``, ``σ = dist.scale``;
minus its own value, so it evaluates to 0) passes them to the parameters by the
chain rule. The node's value is a sample without gradient (``passes_gradient = False``);
``uses_score = False``. Surrogate mode only (``any_order = False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.dist import Normal
from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext

sg = jax.lax.stop_gradient


def _is_normal(dist) -> bool:
    # scg.dist.Normal, or a class of the same name and fields (numpyro's Normal)
    return isinstance(dist, Normal) or (type(dist).__name__ == "Normal" and hasattr(dist, "loc") and hasattr(dist, "scale"))


@dataclass(frozen=True)
class MeasureValued(Estimator):
    name = "measure_valued"
    needs_downstream = True

    def check(self, node_name, dist):
        if not _is_normal(dist):
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'measure_valued' needs a Normal with loc and scale "
                f"(scg.dist.Normal), whose weak derivatives it uses (Mohamed et al. 2020, Table 1); "
                f"got {type(dist).__name__}"
            )

    def weak_parts(self, key, eps):
        """``(W, M)`` per element: Rayleigh(1) for the mean, double-sided Maxwell coupled with ``eps`` for the scale."""
        k_w, k_m = jax.random.split(key)
        w = jnp.sqrt(-2.0 * jnp.log1p(-jax.random.uniform(k_w, eps.shape, eps.dtype)))
        g = jax.random.normal(k_m, (2, *eps.shape), eps.dtype)
        return w, jnp.sign(eps) * jnp.sqrt(eps**2 + g[0] ** 2 + g[1] ** 2)

    def constants(self, sigma):
        """``(c_μ, c_σ)`` of Table 1."""
        return 1.0 / (sigma * math.sqrt(2.0 * math.pi)), 1.0 / sigma

    def terms(self, ctx: NodeContext):
        loc, scale = jnp.broadcast_arrays(ctx.dist.loc, ctx.dist.scale)
        mu, sigma, x = sg(loc).ravel(), sg(scale).ravel(), sg(ctx.value).ravel()
        eps = (x - mu) / sigma
        w, m = self.weak_parts(jax.random.fold_in(ctx.key, 1), eps)  # apart from the sample's key
        points = jnp.stack([mu + sigma * w, mu - sigma * w, mu + sigma * m])  # [3, D]
        d = x.shape[0]
        replaced = jnp.where(jnp.eye(d, dtype=bool)[None], points[:, :, None], x[None, None])  # [3, D, D]
        f = sg(jax.vmap(ctx.downstream)(replaced.reshape((3 * d, *jnp.shape(ctx.value)))).reshape(3, d))
        f_x = sg(ctx.downstream(ctx.value))
        c_mu, c_sigma = self.constants(sigma)
        g_mu, g_sigma = c_mu * (f[0] - f[1]), c_sigma * (f[2] - f_x)
        extra = jnp.sum(g_mu * loc.ravel()) + jnp.sum(g_sigma * scale.ravel())
        return jnp.zeros(()), extra - sg(extra)


def measure_valued() -> MeasureValued:
    """Measure-valued derivatives of a Normal node (Mohamed et al. 2020, §6, Table 1)."""
    return MeasureValued()
