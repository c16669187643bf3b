"""The relaxed-expectation estimator (RPG, Levy & Ermon 2018) on a toy with exact answers.

The toy: a 2-dimensional state, 3 actions, 5 steps, a softmax policy
``π_θ(a|x) = softmax(W x + b)`` with ``θ = {W, b}``, smooth dynamics
``f(x, a) = A x + B_a + 0.1 tanh(x)`` and terminal cost ``r(x_T) = |x_T - goal|²``.

- The relaxed system (Eq. 5) is ``x̄_{t+1} = E_{a~π_θ(·|x̄_t)}[f(x̄_t, a)]``; its cost
  ``r(x̄_T)`` and gradient come from plain JAX (``jax.grad`` through the exact
  recursion), independently of the compiler.
- ``exact=True`` evaluates the estimator of Theorem 3 / Eq. 8 along ``x̄`` with one
  sampled action per step. Each step's Jacobian estimate
  ``∂f(x̄_t, â)/∂x + f(x̄_t, â) ∇ log π(â|x̄_t)`` is unbiased for ``∂x̄_{t+1}/∂(x̄_t, θ)``
  and the steps draw independently, so the chained product is unbiased for
  ``∇ r(x̄_T)`` (``x0`` is differentiated too, so the pathwise part is tested on its own).
- Wrong variants must fail the same z-test: dropping the score part (pathwise only),
  and dropping the third line of Eq. 8 (the policy's dependence on the state).
- ``exact=False`` is Algorithm 1: the same recursion along sampled *real*
  trajectories ``x_{t+1} = f(x_t, a_t)``. It is unbiased for neither the relaxed
  gradient nor the gradient of the real ``E[r(x_T)]`` on this toy; the gap is
  measured, not asserted, by ``bench/rpg_algorithm1_gap.py``.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.estimators import Relaxed

T, K = 5, 3
A = jnp.array([[0.9, -0.2], [0.2, 0.9]])
B = jnp.array([[0.5, 0.0], [-0.25, 0.45], [-0.25, -0.45]])
GOAL = jnp.array([1.0, 0.5])
PARAMS = {
    "x0": jnp.array([0.3, -0.4]),
    "W": jnp.array([[0.5, -0.3], [-0.2, 0.4], [0.1, 0.2]]),
    "b": jnp.array([0.1, -0.2, 0.05]),
}
REPLICATES = 20 * 1024  # a multiple of grad_samples' batch of 1024: one compiled loop body, no remainder


def dynamics(x, a):
    """``f(x_t, a_t)``: the real (deterministic) transition."""
    return A @ x + B[a] + 0.1 * jnp.tanh(x)


def policy(x, W, b):
    return dist.Categorical(logits=W @ x + b)


def terminal_cost(x_T):
    return jnp.sum((x_T - GOAL) ** 2)


def build_toy(*, exact: bool, estimator=None, state_score: bool = True, delta: bool = False, f=dynamics) -> scg.Graph:
    """The toy as an scg graph, one expectation node per step.

    Args:
        exact: the expectation nodes' ``exact`` option (True: along ``x̄``; False: Algorithm 1).
        estimator: the expectation nodes' estimator (default: ``Relaxed``).
        state_score: False stops the gradient of ``log π`` through the state (drops Eq. 8, line 3).
        delta: write the step as ``x_{t+1} = x_t + E[f(x_t, a) - x_t]``, so the score multiplies
            ``f̂_t = x_{t+1} - x_t`` as in the paper's Algorithm 1.
        f: the dynamics (default :func:`dynamics`).
    """
    g = scg.Graph("rpg_toy")
    x, W, b = g.input("x0"), g.input("W"), g.input("b")
    pi = policy if state_score else (lambda x, W, b: policy(jax.lax.stop_gradient(x), W, b))
    kw = {} if estimator is None else {"estimator": estimator}
    for t in range(T):
        if delta:
            d = g.expectation(f"dx{t + 1}", lambda x, W, b, a: f(x, a) - x, pi, x, W, b, exact=exact, **kw)
            x = g.deterministic(f"x{t + 1}", lambda x, d: x + d, x, d)
        else:
            x = g.expectation(f"x{t + 1}", lambda x, W, b, a: f(x, a), pi, x, W, b, exact=exact, **kw)
    g.cost("r", terminal_cost, x)
    return g


def relaxed_trajectory(params, f=dynamics) -> list:
    """``x̄_0, ..., x̄_T`` by the exact relaxed recursion (Eq. 5), in plain JAX."""
    xs = [params["x0"]]
    for _ in range(T):
        x = xs[-1]
        probs = jax.nn.softmax(params["W"] @ x + params["b"])
        xs.append(jnp.tensordot(probs, jax.vmap(lambda a: f(x, a))(jnp.arange(K)), axes=1))
    return xs


def relaxed_cost(params, f=dynamics):
    """``r(x̄_T)``: the objective of the relaxed program (Eq. 5)."""
    return terminal_cost(relaxed_trajectory(params, f)[-1])


def real_rollouts(params, f=dynamics):
    """Every action sequence of the real system: its probability under π_θ and its ``x_T``."""
    seqs = jnp.asarray(list(itertools.product(range(K), repeat=T)), jnp.int32)

    def one(seq):
        x, logp = params["x0"], jnp.zeros(())
        for t in range(T):
            logp = logp + jax.nn.log_softmax(params["W"] @ x + params["b"])[seq[t]]
            x = f(x, seq[t])
        return jnp.exp(logp), x

    return jax.vmap(one)(seqs)


def real_cost(params, f=dynamics):
    """``E[r(x_T)]`` of the real stochastic system, by enumerating all ``K**T`` action sequences."""
    probs, x_T = real_rollouts(params, f)
    return jnp.sum(probs * jax.vmap(terminal_cost)(x_T))


class PathwiseOnly(Relaxed):
    """Deliberately wrong: ``∂f(x, â)/∂x`` only, no score term (drops Eq. 8, lines 2-3)."""

    name = "relaxed_pathwise_only"

    def expect(self, ctx):
        a_hat = jax.lax.stop_gradient(ctx.dist.sample(ctx.key))
        f_hat = ctx.fn(*ctx.parents, a_hat)
        support, weights = ctx.dist.enumerate_support()
        exact = jnp.tensordot(weights, jax.vmap(lambda a: ctx.fn(*ctx.parents, a))(support), axes=1)
        return jax.lax.stop_gradient(exact - f_hat) + f_hat


@pytest.fixture(scope="module")
def relaxed_grad():
    return jax.jit(jax.grad(relaxed_cost))(PARAMS)


def test_reference_gradient_agrees_with_testing_enumeration(relaxed_grad):
    """Two independent exact paths: plain JAX recursion and ``testing.exact_grad`` over the graph."""
    via_graph = jax.jit(lambda p: testing.exact_grad(build_toy(exact=True), p))(PARAMS)
    for k in PARAMS:
        np.testing.assert_allclose(via_graph[k], relaxed_grad[k], rtol=1e-5, atol=1e-6)


def test_exact_option_values_follow_the_relaxed_recursion():
    """With ``exact=True`` every sample's forward values are ``x̄_t`` (no noise in the value)."""
    xs = relaxed_trajectory(PARAMS)
    values = scg.compile(build_toy(exact=True)).sample(PARAMS, jax.random.key(3), num_samples=8)
    for t in range(1, T + 1):
        np.testing.assert_allclose(values[f"x{t}"], jnp.broadcast_to(xs[t], (8, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["r"], relaxed_cost(PARAMS), rtol=1e-5)


def test_algorithm1_values_are_real_trajectories():
    """With ``exact=False`` each sample's ``x_T`` is a state the real system reaches (Algorithm 1)."""
    reachable = jax.jit(real_rollouts)(PARAMS)[1]
    values = scg.compile(build_toy(exact=False)).sample(PARAMS, jax.random.key(4), num_samples=64)
    dist_to_set = jnp.min(jnp.linalg.norm(values["x5"][:, None, :] - reachable[None], axis=-1), axis=1)
    assert float(jnp.max(dist_to_set)) < 1e-5
    assert len(np.unique(np.round(np.asarray(values["x5"]), 4), axis=0)) > 1  # really sampled


@pytest.mark.parametrize("delta", [False, True], ids=["f", "f_minus_x"])
def test_relaxed_estimator_is_unbiased_along_relaxed_trajectory(relaxed_grad, delta):
    """Theorem 3 / Eq. 8 evaluated along ``x̄`` (``exact=True``): unbiased for ``∇ r(x̄_T)``.

    ``delta`` scores ``f - x`` instead of ``f`` (Algorithm 1's ``f̂_t = x_{t+1} - x_t``):
    a baseline that does not depend on the action, so also unbiased.
    """
    est = scg.compile(build_toy(exact=True, delta=delta))
    draws = est.grad_samples(PARAMS, jax.random.key(0), num_replicates=REPLICATES)
    testing.assert_unbiased(draws, relaxed_grad)


def test_pathwise_only_relaxed_node_is_biased(relaxed_grad):
    """Without the score part the θ-gradient is zero and the x0-gradient misses the policy's pull."""
    est = scg.compile(build_toy(exact=True, estimator=PathwiseOnly()))
    draws = est.grad_samples(PARAMS, jax.random.key(1), num_replicates=REPLICATES)
    testing.assert_biased(draws, relaxed_grad)
    testing.assert_biased({"x0": draws["x0"]}, {"x0": relaxed_grad["x0"]})


def test_dropping_state_dependence_of_the_policy_is_biased(relaxed_grad):
    """Eq. 8 without its third line (``f ∇_x log π · ∇_φ x_t``): biased."""
    est = scg.compile(build_toy(exact=True, state_score=False))
    draws = est.grad_samples(PARAMS, jax.random.key(2), num_replicates=REPLICATES)
    testing.assert_biased(draws, relaxed_grad)
