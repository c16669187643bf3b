"""Small pure-JAX networks and policy heads: parameters are pytrees, functions are pure.

Any network is a :class:`Network`, a pair ``init(key) -> params``,
``apply(params, x) -> y`` on one example: the MLPs here, or a flax or equinox
module wrapped in two lines (README, "Your own optimizer and network").
:func:`policy_head` and :func:`value_head` make a policy and a state-value
function of one; ``make_policy`` and ``make_value`` are those heads on an MLP.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from scg.envs.spaces import Box, Discrete
from scg import dist


INITS = ("default", "orthogonal")  # the weight initialisations of mlp_init
HIDDEN_GAIN = math.sqrt(2.0)  # the orthogonal init's gain of a hidden layer, as purejaxrl's ppo.py


def mlp_init(key: jax.Array, sizes: Sequence[int], *, last_scale: float = 1.0, init: str = "default") -> list[dict]:
    """Weights of an MLP with layer sizes ``sizes`` (input first), zero biases.

    ``init="default"``: ``w ~ N(0, 1/n_in)``, the last layer's scaled by ``last_scale``.
    ``init="orthogonal"``: orthogonal matrices (``jax.nn.initializers.orthogonal``) with gain
    ``√2`` in the hidden layers and ``last_scale`` in the last, as purejaxrl's ``ppo.py`` (0.01 for a
    policy head, 1 for a value head). Both draw layer ``i`` from the ``i``-th of ``split(key, layers)``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
    params = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        if init == "orthogonal":
            w = jax.nn.initializers.orthogonal(last_scale if last else HIDDEN_GAIN)(k, (n_in, n_out), jnp.float32)
        else:
            w = (last_scale if last else 1.0) * jnp.sqrt(1.0 / n_in) * jax.random.normal(k, (n_in, n_out))
        params.append({"w": w, "b": jnp.zeros(n_out)})
    return params


ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def mlp_apply(params: list[dict], x: jax.Array, activation: str = "tanh") -> jax.Array:
    """``activation`` (``"tanh"`` or ``"relu"``) hidden layers, linear output; ``x`` is one example (rank 1)."""
    act = ACTIVATIONS[activation]
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


class Network(NamedTuple):
    """Any network: ``init(key) -> params`` (a pytree) and ``apply(params, x) -> y`` on one example."""

    init: Callable
    apply: Callable


def as_network(net, argument: str) -> Network:
    """``net`` (an object with ``init`` and ``apply``, or a pair ``(init, apply)``) as a :class:`Network`;
    ``TypeError`` naming ``argument`` otherwise."""
    if any(c.__module__.split(".")[0] == "flax" for c in type(net).__mro__):  # its init needs an example input
        raise TypeError(f"{argument}= got a flax module; pass (lambda key: module.init(key, obs), module.apply) "
                        "with obs an example observation")
    if hasattr(net, "init") and hasattr(net, "apply"):
        net = (net.init, net.apply)
    if not (isinstance(net, tuple) and len(net) == 2 and all(map(callable, net))):
        raise TypeError(f"{argument}= takes a network: a pair (init, apply) of functions init(key) -> params and "
                        f"apply(params, obs) -> output, or an object with those two methods; got {type(net).__name__}")
    return Network(*net)


def mlp(sizes: Sequence[int], *, last_scale: float = 1.0, init: str = "default") -> Network:
    """:func:`mlp_init` (``init``: its weight initialisation) and a tanh :func:`mlp_apply` on the flattened
    observation, as float32."""
    return Network(lambda key: mlp_init(key, sizes, last_scale=last_scale, init=init),
                   lambda params, obs: mlp_apply(params, jnp.ravel(obs).astype(jnp.float32)))


class Policy(NamedTuple):
    """A stochastic policy: ``init(key) -> params`` and ``dist(params, obs) -> distribution`` (one observation)."""

    init: Callable
    dist: Callable
    kind: str  # "discrete" or "continuous"


def _output(y, shape: tuple, what: str):
    """``y`` of shape ``shape``, or flat (``[prod(shape)]``), as ``shape``; at trace time, an error naming ``what``
    otherwise (a ``[1, n]`` output would broadcast silently downstream)."""
    y, flat = jnp.asarray(y), (math.prod(shape),)
    if y.shape not in (shape, flat):
        raise ValueError(f"{what} returned an output of shape {y.shape}; it must have shape {shape} or {flat}")
    return y.reshape(shape)


def policy_head(net: Network, action_space: Box | Discrete) -> Policy:
    """The policy of a network's output on one observation: ``Categorical(logits=net(obs))`` for a Discrete
    space (output ``[n]``), a diagonal Gaussian for a Box, mean ``net(obs)`` (the action's shape or flat)
    and a state-independent log-std. Parameters ``{"net": ...}`` (Box: ``"log_std"`` too, starting at 0)."""
    if isinstance(action_space, Discrete):
        n = action_space.n

        def policy_dist(params, obs):
            return dist.Categorical(logits=_output(net.apply(params["net"], obs), (n,), "the policy network"))

        return Policy(lambda key: {"net": net.init(key)}, policy_dist, "discrete")
    shape, act_dim = action_space.shape, math.prod(action_space.shape)

    def init(key):
        return {"net": net.init(key), "log_std": jnp.zeros(act_dim)}

    def gaussian(params, obs):
        mean = _output(net.apply(params["net"], obs), shape, "the policy network")
        return dist.Normal(mean, jnp.exp(params["log_std"]).reshape(shape))

    return Policy(init, gaussian, "continuous")


def make_policy(obs_space: Box, action_space: Box | Discrete, hidden: Sequence[int] = (64, 64), *,
                init: str = "default") -> Policy:
    """Categorical policy for a Discrete space, diagonal Gaussian (state-independent log-std) for a Box, on an
    MLP whose last layer starts small (:func:`policy_head` of :func:`mlp`; ``init``: :func:`mlp_init`'s)."""
    out = action_space.n if isinstance(action_space, Discrete) else math.prod(action_space.shape)
    return policy_head(mlp([math.prod(obs_space.shape), *hidden, out], last_scale=0.01, init=init), action_space)


def as_policy(policy, action_space: Box | Discrete) -> Policy:
    """A :class:`Policy` as it is, or :func:`policy_head` of a network (:func:`as_network`: ``policy=``)."""
    return policy if isinstance(policy, Policy) else policy_head(as_network(policy, "policy"), action_space)


class ValueFn(NamedTuple):
    """A state-value network: ``init(key) -> params``, ``apply(params, obs) -> scalar``."""

    init: Callable
    apply: Callable


def value_head(net: Network) -> ValueFn:
    """``V(obs)``: the network's output on one observation, a scalar or of shape ``[1]``, as a scalar."""
    return ValueFn(net.init, lambda params, obs: _output(net.apply(params, obs), (), "the value network"))


def make_value(obs_space: Box, hidden: Sequence[int] = (64, 64), *, init: str = "default") -> ValueFn:
    """:func:`value_head` of an MLP with a last layer of scale 1 (``init``: :func:`mlp_init`'s)."""
    return value_head(mlp([math.prod(obs_space.shape), *hidden, 1], init=init))


def as_value(value) -> ValueFn:
    """:func:`value_head` of a network (:func:`as_network`: ``value=``)."""
    return value_head(as_network(value, "value"))


def _activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return activation


class Actor(NamedTuple):
    """A deterministic actor ``a = μ_θ(s)`` in the action box: ``init(key) -> params``, ``apply(params, obs) -> action``."""

    init: Callable
    apply: Callable


def action_scale(action_space: Box) -> tuple[jax.Array, jax.Array]:
    """Centre and half-width of a bounded Box (``low + (high - low)(tanh(x) + 1)/2`` maps ℝ onto it)."""
    low, high = action_space.low_array, action_space.high_array
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"a squashed actor needs a bounded action box, got low={low}, high={high}")
    return jnp.asarray((high + low) / 2, jnp.float32), jnp.asarray((high - low) / 2, jnp.float32)


def make_actor(obs_space: Box, action_space: Box, hidden: Sequence[int] = (256, 256), *, activation: str = "relu",
               init_action=None) -> Actor:
    """``μ_θ(s) = c + h · tanh(MLP_θ(s))``, inside the Box ``[c - h, c + h]`` (Lillicrap et al. 2016, §7).

    ``init_action`` (a scalar or an action-shaped array strictly inside the box) sets the output bias
    so that the actor starts near that action for every state (the last layer is initialised small);
    ``None`` starts near the centre.
    """
    if not isinstance(action_space, Box):
        raise ValueError(f"a deterministic actor needs a continuous (Box) action space, got {action_space}")
    activation = _activation(activation)
    centre, half = action_scale(action_space)
    obs_dim, act_dim = math.prod(obs_space.shape), math.prod(action_space.shape)
    sizes = [obs_dim, *hidden, act_dim]
    bias = None
    if init_action is not None:
        u = (np.broadcast_to(np.asarray(init_action, np.float64), action_space.shape) - np.asarray(centre)) / np.asarray(half)
        if not np.all(np.abs(u) < 1):
            raise ValueError(f"init_action {init_action} must lie strictly inside the action box")
        bias = jnp.asarray(np.arctanh(u).reshape(-1), jnp.float32)

    def init(key):
        params = mlp_init(key, sizes, last_scale=0.01)
        if bias is not None:
            params[-1]["b"] = bias
        return params

    def apply(params, obs):
        x = mlp_apply(params, jnp.ravel(obs).astype(jnp.float32), activation)
        return centre + half * jnp.tanh(x.reshape(action_space.shape))

    return Actor(init, apply)


class QFn(NamedTuple):
    """An action-value network ``Q_φ(s, a)``: ``init(key) -> params``, ``apply(params, obs, action) -> scalar``."""

    init: Callable
    apply: Callable


def make_q(obs_space: Box, action_space: Box, hidden: Sequence[int] = (256, 256), *, activation: str = "relu") -> QFn:
    """``Q_φ(s, a)``: an MLP on the concatenation ``[s, a]``, scalar output."""
    activation = _activation(activation)
    sizes = [math.prod(obs_space.shape) + math.prod(action_space.shape), *hidden, 1]

    def apply(params, obs, action):
        x = jnp.concatenate([jnp.ravel(obs).astype(jnp.float32), jnp.ravel(action).astype(jnp.float32)])
        return mlp_apply(params, x, activation)[0]

    return QFn(lambda key: mlp_init(key, sizes, last_scale=1.0), apply)
