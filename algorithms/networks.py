"""Small pure-JAX networks and policy heads: parameters are pytrees, functions are pure."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from scg.envs.spaces import Box, Discrete
from scg import dist


def mlp_init(key: jax.Array, sizes: Sequence[int], *, last_scale: float = 1.0) -> list[dict]:
    """Weights of an MLP with layer sizes ``sizes`` (input first); orthogonal-ish scaled normal init."""
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        scale = (last_scale if i == len(sizes) - 2 else 1.0) * jnp.sqrt(1.0 / n_in)
        params.append({"w": scale * jax.random.normal(k, (n_in, n_out)), "b": jnp.zeros(n_out)})
    return params


def mlp_apply(params: list[dict], x: jax.Array) -> jax.Array:
    """``tanh`` hidden layers, linear output; ``x`` is one example (rank 1)."""
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


class Policy(NamedTuple):
    """A stochastic policy: ``init(key) -> params`` and ``dist(params, obs) -> distribution`` (one observation)."""

    init: Callable
    dist: Callable
    kind: str  # "discrete" or "continuous"


def make_policy(obs_space: Box, action_space: Box | Discrete, hidden: Sequence[int] = (64, 64)) -> Policy:
    """Categorical policy for a Discrete space, diagonal Gaussian (state-independent log-std) for a Box."""
    obs_dim = math.prod(obs_space.shape)
    if isinstance(action_space, Discrete):
        sizes = [obs_dim, *hidden, action_space.n]

        def init(key):
            return {"net": mlp_init(key, sizes, last_scale=0.01)}

        def policy_dist(params, obs):
            return dist.Categorical(logits=mlp_apply(params["net"], jnp.ravel(obs).astype(jnp.float32)))

        return Policy(init, policy_dist, "discrete")
    act_dim = math.prod(action_space.shape)
    sizes = [obs_dim, *hidden, act_dim]

    def init(key):
        return {"net": mlp_init(key, sizes, last_scale=0.01), "log_std": jnp.zeros(act_dim)}

    def policy_dist(params, obs):
        mean = mlp_apply(params["net"], jnp.ravel(obs).astype(jnp.float32))
        return dist.Normal(mean.reshape(action_space.shape), jnp.exp(params["log_std"]).reshape(action_space.shape))

    return Policy(init, policy_dist, "continuous")


class ValueFn(NamedTuple):
    """A state-value network: ``init(key) -> params``, ``apply(params, obs) -> scalar``."""

    init: Callable
    apply: Callable


def make_value(obs_space: Box, hidden: Sequence[int] = (64, 64)) -> ValueFn:
    obs_dim = math.prod(obs_space.shape)
    sizes = [obs_dim, *hidden, 1]
    return ValueFn(
        lambda key: mlp_init(key, sizes, last_scale=1.0),
        lambda params, obs: mlp_apply(params, jnp.ravel(obs).astype(jnp.float32))[0],
    )
