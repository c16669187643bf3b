"""Hand-written JAX surrogates for the graphs of ``bench_compiler.py``: the reference the compiler is timed against.

Each function here writes the score-function surrogate of Corollary 1
(Schulman 2016, Eq. 38 with ``b_w = 0``)::

    L = Σ_w log p(ŵ | DEPS_w) · stop_gradient(Q̂_w) + Σ_c c,   Q̂_w = Σ_{c : w ≺ c} c,

directly in JAX, without the compiler: sampling, log-densities and credit
assignment are spelled out by hand (``jax.random`` draws, closed-form
log-densities, a reversed cumulative sum for the reward-to-go). To reproduce
the compiled estimator's samples exactly, a node draws its randomness from
``jax.random.fold_in(k, i)`` with ``i`` its position in the compiler's
topological order and ``k`` the sample's key from ``jax.random.split(key,
num_samples)`` (the keying scheme of :mod:`scg._program.forward`); only the integer
positions are taken from the compiler, as static Python ints.

The model functions (the policy, the dynamics, the node functions of the
random graph) are shared with the graphs: both sides compute the *same*
estimator, so their gradients must agree to rounding for the same key.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

# -- the toy MDP: s_{t+1} = s_t + 0.1 (a_t - 1) + 0.05 ε, a_t ~ Categorical(softmax(φ(s_t) θ)) ------------
NUM_ACTIONS = 3
NUM_FEATURES = 3


def features(s_t):
    """``φ(s) = [s, s², 1]``."""
    return jnp.stack([s_t, s_t * s_t, jnp.ones_like(s_t)])


def policy_logits(theta, phi_t):
    """Unnormalised action logits ``φ(s)ᵀ θ`` (``theta``: ``(NUM_FEATURES, NUM_ACTIONS)``)."""
    return phi_t @ theta


def dynamics(key, s_t, a_t):
    """The simulator: ``s_{t+1} = s_t + 0.1 (a_t - 1) + 0.05 ε``, ``ε ~ N(0, 1)``."""
    return s_t + 0.1 * (a_t - 1).astype(s_t.dtype) + 0.05 * jax.random.normal(key, s_t.shape, s_t.dtype)


def step_cost(s_tp1):
    """Per-step cost ``c_t = s_{t+1}²``."""
    return s_tp1 * s_tp1


def _reward_to_go(c):
    """``Q̂_t = Σ_{u ≥ t} c_u`` along the last axis."""
    return jnp.flip(jnp.cumsum(jnp.flip(c, -1), -1), -1)


def trajectory_surrogate(horizon: int, num_samples: int, *, a_index, s_index, unrolled: bool = True):
    """REINFORCE surrogate of a ``horizon``-step rollout; ``(inputs, key) -> scalar``.

    Args:
        a_index, s_index: ``(offset, stride)``: action ``a_t`` is node
            ``offset + stride * t`` in the compiler's order, and so is ``s_{t+1}``.
        unrolled: a Python loop (the same straight-line program the compiler
            emits) if True, else a ``lax.scan`` (what one would write by hand).
    """

    def one_step(theta, k, s_t, t):
        logp_all = jax.nn.log_softmax(policy_logits(theta, features(s_t)))
        a_t = jax.random.categorical(jax.random.fold_in(k, a_index[0] + a_index[1] * t), sg(logp_all)).astype(jnp.int32)
        s_tp1 = sg(dynamics(jax.random.fold_in(k, s_index[0] + s_index[1] * t), s_t, a_t))
        return s_tp1, (logp_all[a_t], step_cost(s_tp1))

    def one_sample(theta, s0, k):
        if unrolled:
            s_t, logps, costs = s0, [], []
            for t in range(horizon):
                s_t, (logp, c) = one_step(theta, k, s_t, t)
                logps.append(logp)
                costs.append(c)
            logp, c = jnp.stack(logps), jnp.stack(costs)
        else:
            _, (logp, c) = jax.lax.scan(lambda s, t: one_step(theta, k, s, t), s0, jnp.arange(horizon))
        return jnp.sum(logp * sg(_reward_to_go(c))) + jnp.sum(c)

    def surrogate(inputs, key):
        keys = jax.random.split(key, num_samples)
        per_sample = jax.vmap(one_sample, in_axes=(None, None, 0))(inputs["theta"], inputs["s0"], keys)
        return jnp.mean(per_sample)

    return surrogate


def temporal_trajectory_surrogate(horizon: int, num_samples: int, *, a_pos: int, s_pos: int):
    """The same surrogate keyed as :class:`scg.Temporal` draws: a ``lax.scan`` with per-step keys.

    A sample's key ``k`` splits into ``(init_key, scan_key)``; step ``t`` uses
    ``split(scan_key, horizon)[t]`` folded with the node's position in the *step*
    graph (``a_pos`` for the action, ``s_pos`` for the transition).
    """

    def one_sample(theta, s0, k):
        _, scan_key = jax.random.split(k)

        def step(s_t, k_t):
            logp_all = jax.nn.log_softmax(policy_logits(theta, features(s_t)))
            a_t = jax.random.categorical(jax.random.fold_in(k_t, a_pos), sg(logp_all)).astype(jnp.int32)
            s_tp1 = sg(dynamics(jax.random.fold_in(k_t, s_pos), s_t, a_t))
            return s_tp1, (logp_all[a_t], step_cost(s_tp1))

        _, (logp, c) = jax.lax.scan(step, s0, jax.random.split(scan_key, horizon))
        return jnp.sum(logp * sg(_reward_to_go(c))) + jnp.sum(c)

    def surrogate(inputs, key):
        keys = jax.random.split(key, num_samples)
        return jnp.mean(jax.vmap(one_sample, in_axes=(None, None, 0))(inputs["theta"], inputs["s"], keys))

    return surrogate


# -- the random graph: node functions shared with bench_compiler.random_graph ---------------------------
def mix(*parents):
    """A deterministic combination of a node's parents: ``p₀ + ½ Σ_{i>0} pᵢ``."""
    out = parents[0]
    for p in parents[1:]:
        out = out + 0.5 * p
    return out


def det_fn(*parents):
    return jnp.tanh(mix(*parents))


def pathwise_loc(*parents):
    """``x ~ N(pathwise_loc, 1)``, reparameterised."""
    return 0.5 * mix(*parents)


def score_normal_loc(*parents):
    """``x ~ N(score_normal_loc, SCORE_NORMAL_SCALE²)``, score function."""
    return jnp.tanh(mix(*parents))


SCORE_NORMAL_SCALE = 0.5


def bernoulli_logits(*parents):
    return mix(*parents)


def cost_fn(parent):
    return 0.1 * jnp.sum(parent * parent)


def downstream_costs(spec) -> dict:
    """``w -> costs c with w ≺ c`` (in spec order), by reachability over the spec: independent of scg._program.analysis."""
    names = [s[0] for s in spec]
    children = {n: [] for n in names}
    for name, _, parents in spec:
        for p in parents:
            children[p].append(name)
    cost_bit = {name: 1 << i for i, (name, op, _) in enumerate(spec) if op == "cost"}
    reach = {}
    for name in reversed(names):
        bits = 0
        for c in children[name]:
            bits |= reach[c] | cost_bit.get(c, 0)
        reach[name] = bits
    return {name: tuple(c for c in cost_bit if reach[name] & cost_bit[c]) for name in names}


def random_graph_surrogate(spec, index: dict, num_samples: int):
    """The surrogate of a random graph given as ``spec = [(name, op, parents), ...]`` in a topological order.

    ``op`` is one of ``input``, ``det``, ``pathwise`` (Normal, reparameterised),
    ``score_normal`` (Normal, score function), ``bernoulli`` (score function),
    ``cost``. ``index[name]`` is the node's position in the compiler's order.
    """
    down = downstream_costs(spec)

    def one_sample(inputs, k):
        values, logps = dict(inputs), {}
        for name, op, parents in spec:
            if op == "input":
                continue
            ps = [values[p] for p in parents]
            key = jax.random.fold_in(k, index[name])
            if op == "det":
                values[name] = det_fn(*ps)
            elif op == "cost":
                values[name] = cost_fn(*ps)
            elif op == "pathwise":
                loc = jnp.asarray(pathwise_loc(*ps), jnp.float32)
                values[name] = loc + jax.random.normal(key, loc.shape, loc.dtype)
            elif op == "score_normal":
                loc = jnp.asarray(score_normal_loc(*ps), jnp.float32)
                x = sg(loc + SCORE_NORMAL_SCALE * jax.random.normal(key, loc.shape, loc.dtype))
                z = (x - loc) / SCORE_NORMAL_SCALE
                logps[name] = jnp.sum(-0.5 * z * z - math.log(SCORE_NORMAL_SCALE) - _LOG_SQRT_2PI)
                values[name] = x
            elif op == "bernoulli":
                logits = jnp.asarray(bernoulli_logits(*ps), jnp.float32)
                u = jax.random.uniform(key, logits.shape, logits.dtype)
                x = sg((u < jax.nn.sigmoid(logits)).astype(logits.dtype))
                logps[name] = jnp.sum(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))
                values[name] = x
            else:
                raise ValueError(f"unknown op {op!r}")
        costs = [name for name, op, _ in spec if op == "cost"]
        total = sum(values[c] for c in costs)
        for w, logp in logps.items():
            total = total + logp * sg(sum((values[c] for c in down[w]), jnp.zeros(())))
        return total

    def surrogate(inputs, key):
        keys = jax.random.split(key, num_samples)
        return jnp.mean(jax.vmap(one_sample, in_axes=(None, 0))(inputs, keys))

    return surrogate


def grad_of(surrogate, wrt):
    """``(inputs, key) -> {name: ∂L/∂inputs[name] for name in wrt}``."""

    def grad(inputs, key):
        diff = {n: inputs[n] for n in wrt}
        return jax.grad(lambda d: surrogate({**inputs, **d}, key))(diff)

    return grad
