"""Discounted, episode-aware sums of future costs: the one reverse scan every temporal estimate uses.

For one trajectory of ``T`` steps with per-step costs ``c_t``, episode flags
``term_t`` (the episode ended at step ``t``: nothing follows) and ``trunc_t``
(it was cut by a time limit: an estimate ``boot_t`` stands in for what
follows), and discount ``γ``::

    F_t = γ (1 - term_t) [(1 - trunc_t) G_{t+1} + trunc_t · boot_t],   F_{T-1} = γ (1 - term_{T-1}) boot_{T-1}
    G_t = c_t + F_t

``G_t`` is the (discounted) cost-to-go from step ``t`` (Schulman 2016, Eq. 44
with a bootstrap; Sutton & Barto's n-step return when ``boot`` is a critic),
and ``F_t`` the part of it after step ``t``. Computed with one reverse
``lax.scan``; single trajectory in, ``vmap`` outside.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def future_costs(c, term, trunc, boot, discount: float) -> jax.Array:
    """``F_t`` for one trajectory; all arguments have shape ``(T,)``."""
    c = jnp.asarray(c)
    term, trunc, boot = (jnp.asarray(x, c.dtype) for x in (term, trunc, boot))
    last = jnp.arange(c.shape[0]) == c.shape[0] - 1

    def back(g_tp1, xs):
        c_t, term_t, trunc_t, boot_t, last_t = xs
        follow = jnp.where(last_t, boot_t, (1 - trunc_t) * g_tp1 + trunc_t * boot_t)
        f_t = discount * (1 - term_t) * follow
        return c_t + f_t, f_t

    _, f = jax.lax.scan(back, jnp.zeros((), c.dtype), (c, term, trunc, boot, last), reverse=True)
    return f


def cost_to_go(c, term, trunc, boot, discount: float) -> jax.Array:
    """``G_t = c_t + F_t`` for one trajectory."""
    return jnp.asarray(c) + future_costs(c, term, trunc, boot, discount)


class GAE:
    """Generalized advantage estimation (Schulman 2016, Ch. 4, Eq. 26) as the credit of a score node.

    Pass ``advantage=scg.GAE(lam)`` to :meth:`scg.Graph.stochastic` inside a
    :class:`scg.Temporal` graph whose node has a baseline node ``b_t`` (the
    critic's estimate of the cost-to-go, ``-V(s_t)`` in reward terms). The score
    term of step ``t`` is then ``log π(a_t|s_t) · Â_t`` with ``Â_t`` from
    :func:`gae`: ``λ = 1`` gives ``G_t - b_t`` (Eq. 28, the plain baseline form,
    unbiased), ``λ = 0`` the one-step TD residual ``δ_t`` (Eq. 27); ``λ < 1``
    trades bias (unless ``b = -V^π``) for variance.
    """

    def __init__(self, lam: float):
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"GAE: lam must lie in [0, 1], got {lam!r}")
        self.lam = float(lam)

    def __repr__(self) -> str:
        return f"GAE(lam={self.lam})"


def gae(c, term, trunc, boot, b, discount: float, lam: float) -> jax.Array:
    """``Â_t = Σ_l (γλ)^l δ_{t+l}`` for one trajectory, in cost units (Eq. 26), by one reverse scan.

    ``δ_t = c_t + γ (1 - term_t) b'_{t+1} - b_t`` (Eq. 26's ``δ^V``, costs for
    negated rewards), where the next state's estimate ``b'_{t+1}`` is ``b_{t+1}``
    inside an episode and ``boot_t`` where the episode was truncated or the
    trajectory ends. The sum stops at episode boundaries (``term`` or ``trunc``).
    All arguments have shape ``(T,)``.
    """
    c = jnp.asarray(c)
    term, trunc, boot, b = (jnp.asarray(x, c.dtype) for x in (term, trunc, boot, b))
    last = jnp.arange(c.shape[0]) == c.shape[0] - 1
    b_next = jnp.concatenate([b[1:], jnp.zeros((1,), c.dtype)])
    cut = jnp.logical_or(last, trunc > 0)
    delta = c + discount * (1 - term) * jnp.where(cut, boot, b_next) - b
    keep = discount * lam * (1 - term) * (1 - cut.astype(c.dtype))

    def back(a_tp1, xs):
        delta_t, keep_t = xs
        a_t = delta_t + keep_t * a_tp1
        return a_t, a_t

    _, adv = jax.lax.scan(back, jnp.zeros((), c.dtype), (delta, keep), reverse=True)
    return adv
