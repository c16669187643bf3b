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
