"""Exploration noise for off-policy collectors: i.i.d. Gaussian, and Ornstein–Uhlenbeck with explicit state.

A deterministic policy (DDPG, SVG(0) in its σ → 0 limit) explores by acting ``a_t = μ_θ(s_t) + x_t``.
``gaussian`` draws ``x_t`` afresh each step (the fixed-scale noise of Smoothie's §6.1 toy);
``ou_step`` draws temporally correlated ``x_t`` (Lillicrap et al. 2016, §7), whose state ``OUState``
the collector carries beside the environment's and resets where episodes end::

    noise = ou_init((num_envs, action_dim))
    noise, x_t = ou_step(noise, key, theta=0.15, sigma=0.2)
    ...                                             # act with mu(s_t) + x_t, step the environments
    noise = ou_reset(noise, done_t)                 # the next episode starts from mu again
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def _check_broadcasts_to(name: str, value, shape: tuple[int, ...]) -> None:
    """A ValueError unless ``value`` broadcasts to ``shape`` without enlarging it (no silent batch axis)."""
    try:
        ok = jnp.broadcast_shapes(jnp.shape(value), shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} of shape {jnp.shape(value)} does not broadcast to the action's shape {shape}")


def gaussian(key: jax.Array, action: jax.Array, sigma, low=None, high=None) -> jax.Array:
    """``action + σ ε``, ``ε ~ N(0, I)``, clipped to ``[low, high]`` where a bound is given.

    Clipping (not resampling) keeps the draw a pure function of ``key`` and puts the mass beyond a
    bound on the bound, as an environment that clips its actions would.

    Args:
      key: a PRNG key.
      action: the policy's action, floating point, any shape.
      sigma: the noise scale, a scalar or an array broadcasting to ``action.shape``.
      low, high: optional bounds (scalars or arrays broadcasting to ``action.shape``).

    Returns:
      The noisy action, with ``action``'s shape and dtype.

    >>> a = gaussian(jax.random.key(0), jnp.zeros(3), 10.0, low=-1.0, high=1.0)
    >>> bool(jnp.all(jnp.abs(a) <= 1.0))
    True
    """
    action = jnp.asarray(action)
    if not jnp.issubdtype(action.dtype, jnp.floating):
        raise ValueError(f"gaussian noise needs a floating-point action, got dtype {action.dtype}")
    for name, value in (("sigma", sigma), ("low", low), ("high", high)):
        if value is not None:
            _check_broadcasts_to(name, value, action.shape)
    noisy = action + sigma * jax.random.normal(key, action.shape, action.dtype)
    if low is not None or high is not None:
        noisy = jnp.clip(noisy, low, high)
    return noisy.astype(action.dtype)


class OUState(NamedTuple):
    x: jax.Array  # the process's current value, shaped like the actions it perturbs


def ou_init(shape, *, mu: float = 0.0, dtype=jnp.float32) -> OUState:
    """The process at its mean ``mu``, shaped ``shape`` (e.g. ``(num_envs, action_dim)``)."""
    return OUState(jnp.full(shape, mu, dtype))


def ou_step(state: OUState, key: jax.Array, theta: float = 0.15, sigma: float = 0.2, dt: float = 1e-2,
            mu: float = 0.0) -> tuple[OUState, jax.Array]:
    """One Euler–Maruyama step of the Ornstein–Uhlenbeck process ``dx = θ(μ − x) dt + σ dW``.

    ``x' = x + θ(μ − x) dt + σ √dt ε``, ``ε ~ N(0, I)`` (Uhlenbeck & Ornstein 1930). The discretised
    process is AR(1) with coefficient ``ρ = 1 − θ dt`` (stable for ``0 < θ dt < 2``); its stationary
    law is ``N(μ, σ² dt / (1 − ρ²))``, which tends to the continuous ``σ² / (2θ)`` as ``dt → 0``
    (0.1334 against 0.1333 at the defaults).

    The defaults come from outside the seed papers (Smoothie only says DDPG's OU scale and damping
    were tuned): ``θ = 0.15``, ``σ = 0.2`` are Lillicrap et al. 2016, §7 (DDPG); ``dt = 1e-2`` is
    a common implementation default that paper does not state. ``dt = 1`` gives the form
    ``x' = x − θx + σε`` (for ``μ = 0``).

    Args:
      state: the process's state.
      key: a PRNG key.
      theta: the rate of mean reversion θ > 0 (the "damping").
      sigma: the diffusion scale σ.
      dt: the time step.
      mu: the mean μ the process reverts to.

    Returns:
      ``(OUState(x'), x')``: the new state, and ``x'`` as this step's noise.

    >>> state, x = ou_step(ou_init((2,)), jax.random.key(0))
    >>> x.shape
    (2,)
    """
    x = state.x
    eps = jax.random.normal(key, x.shape, x.dtype)
    x = x + theta * (mu - x) * dt + sigma * jnp.sqrt(dt) * eps
    return OUState(x), x


def ou_reset(state: OUState, done: jax.Array, *, mu: float = 0.0) -> OUState:
    """``state`` with the rows whose episode ended (``done``) set back to ``mu``.

    ``done`` has the leading shape of ``state.x`` (``[num_envs]`` for ``x`` of ``[num_envs,
    action_dim]``, or a scalar for one environment) and is broadcast over the trailing axes. Call it
    after the environment step that reports ``done_t``, so that ``a_{t+1}``, the first action of the
    next episode, gets noise started afresh.
    """
    x = state.x
    done = jnp.asarray(done)
    if x.shape[:done.ndim] != done.shape:
        raise ValueError(f"done of shape {done.shape} must be a leading part of the noise's shape {x.shape}")
    done = done.reshape(done.shape + (1,) * (x.ndim - done.ndim)).astype(bool)
    return OUState(jnp.where(done, jnp.asarray(mu, x.dtype), x))
