"""DirPG gradient (Lorberbom et al. 2020, Eq. 10) against the exact ∇l(θ, ε) of Eq. 11 by enumeration.

A random tree MDP (3 actions, depth ≤ 3, one illegal action, one early terminal, deterministic
rewards) with a tabular softmax policy ``θ[node]``: its 16 trajectories are enumerated, so
``l(θ, ε) = (1/ε) log Σ_a Π_θ(a) e^{εR(a)}`` and ``jax.grad`` of it are exact. The mean of ``ĝ``
over vmapped keys (exhaustive search, no early stop) is z-tested (``scg.testing``, 5σ Bonferroni)
against it; the sign-flipped estimator and Algorithm 1's ``D(a_opt; 0)`` threshold must fail.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.algorithms.dirpg_gradient import DirPGGradient, dirpg_gradient, dirpg_surrogate, trajectory_log_prob
from scg import testing
from scg.errors import GraphError
from scg.search import Tree
from support import A, DEPTH, ILLEGAL, NUM_IDS, is_done

N = 20_000
EXPANSIONS = 23  # every reachable node but the root

_rng = np.random.default_rng(2014)
REWARD = _rng.uniform(-0.5, 0.5, NUM_IDS).astype(np.float32)  # reward of the step into each node
THETA = _rng.normal(0.0, 1.0, (NUM_IDS, A)).astype(np.float32)
LEGAL = np.ones((NUM_IDS, A), bool)
LEGAL[ILLEGAL] = False


def _enumerate(i=0, path=()):
    """Every complete trajectory as a tuple of (node, action) steps."""
    if is_done(i):
        return [path]
    return [t for a in range(A) if LEGAL[i, a] for t in _enumerate(A * i + 1 + a, path + ((i, a),))]


PATHS = _enumerate()
RET = np.array([sum(REWARD[A * s + 1 + a] for s, a in p) for p in PATHS])


def logits_fn(params, s):
    return jnp.where(jnp.asarray(LEGAL)[s], params[s], -jnp.inf)


def make_tree(params):
    done = jnp.asarray([is_done(i) for i in range(NUM_IDS)])

    def expand(s, a, key):
        child = A * s + 1 + a
        return child, jnp.asarray(REWARD)[child], done[child]

    return Tree(root=jnp.int32(0), expand=expand, logits=lambda s: logits_fn(params, s))


def log_pi(params):
    """``log Π_θ(a)`` of every enumerated trajectory (Eq. 3)."""
    logpi = jax.nn.log_softmax(jnp.where(jnp.asarray(LEGAL), params, -jnp.inf), axis=-1)
    return jnp.stack([sum(logpi[s, a] for s, a in p) for p in PATHS])


def objective(params, epsilon):
    """Eq. 11 with deterministic S: ``l(θ, ε) = (1/ε) log Σ_a Π_θ(a) e^{εR(a)}``."""
    return jax.nn.logsumexp(log_pi(params) + epsilon * jnp.asarray(RET)) / epsilon


@functools.lru_cache(maxsize=None)
def _batched(early_stop):
    run = lambda k, eps, budget: dirpg_gradient(logits_fn, make_tree, jnp.asarray(THETA), k, epsilon=eps, budget=budget,
                                                max_depth=DEPTH, capacity=EXPANSIONS + 1, priority="gumbel",
                                                early_stop=early_stop, record=len(PATHS))
    return jax.jit(jax.vmap(run, (0, None, None)))


@functools.lru_cache(maxsize=None)
def estimates(epsilon, seed=0, early_stop=False, budget=EXPANSIONS):
    keys = jax.random.split(jax.random.key(seed), N)
    return jax.block_until_ready(_batched(early_stop)(keys, jnp.float32(epsilon), jnp.int32(budget)))


def exact_grad(epsilon):
    return jax.grad(objective)(jnp.asarray(THETA), epsilon)


def test_enumeration_is_a_distribution():
    assert len(PATHS) == 16
    np.testing.assert_allclose(jax.nn.logsumexp(log_pi(jnp.asarray(THETA))), 0.0, atol=1e-6)
    # ε → 0: l → E[R] (Eq. 14 at order 0).
    expected_return = np.sum(np.exp(log_pi(jnp.asarray(THETA))) * RET)
    np.testing.assert_allclose(objective(jnp.asarray(THETA), 1e-3), expected_return, atol=1e-3)


@pytest.mark.parametrize("epsilon", [-1.0, 0.5, 2.0])
def test_exhaustive_dirpg_is_unbiased_for_grad_l(epsilon):
    out = estimates(epsilon)
    assert np.all(np.asarray(out.search.complete))
    testing.assert_unbiased(out.grad, exact_grad(epsilon))


@pytest.mark.parametrize("epsilon", [-1.0, 0.5, 2.0])
def test_sign_flipped_dirpg_is_biased(epsilon):
    testing.assert_biased(-estimates(epsilon).grad, exact_grad(epsilon))


def _typo_a_dir(out):
    """Algorithm 1 as printed: threshold ``d_opt = D(a_opt; 0) = G(a_opt)``, best D among the later yields."""
    g, d = np.asarray(out.search.yields.g), np.asarray(out.search.yields.d)
    later = d[:, 1:]
    best = 1 + np.argmax(later, axis=1)
    take = later.max(axis=1) > g[:, 0]
    return np.where(take, best, 0)


@pytest.mark.parametrize("epsilon", [-1.0, 0.5, 2.0])
def test_typo_threshold_d_opt_at_zero_is_biased(epsilon):
    out = estimates(epsilon)
    idx = jnp.asarray(_typo_a_dir(out))
    pick = lambda y, i: jax.tree_util.tree_map(lambda x: x[i], y)
    a_typo = jax.vmap(pick)(out.search.yields, idx)

    def grad(a_dir, a_opt):
        diff = lambda p: (trajectory_log_prob(logits_fn, p, a_dir) - trajectory_log_prob(logits_fn, p, a_opt)) / epsilon
        return jax.grad(diff)(jnp.asarray(THETA))

    g_typo = jax.jit(jax.vmap(grad))(a_typo, out.search.a_opt)
    testing.assert_biased(g_typo, exact_grad(epsilon))


def test_exhaustive_dirpg_is_biased_for_grad_expected_return_at_large_epsilon():
    """Eq. 14: E[ĝ] = ∇E[R] + (ε/2)∇E[var(R|S)] + O(ε²); at ε = 2 the gap is detectable."""
    grad_return = jax.grad(lambda p: jnp.sum(jnp.exp(log_pi(p)) * jnp.asarray(RET)))(jnp.asarray(THETA))
    testing.assert_biased(estimates(2.0).grad, grad_return)


def test_early_stop_is_biased_for_grad_l():
    """First improvement is not a*(ε): Algorithm 1 is exact only without early termination [D L101].

    Measured max|z| vs ∇l (N = 20k, threshold 5.85): 22 at ε = 2 (tested), 6.0 at ε = −1, 2.8 at ε = 0.5.
    """
    out = estimates(2.0, early_stop=True)
    assert np.mean(np.asarray(out.search.expansions)) < EXPANSIONS
    testing.assert_biased(out.grad, exact_grad(2.0))


def test_each_estimate_is_the_tabular_score_difference():
    """Per sample, ĝ = (Σ_t ∇ log π(a_t|s_t) over a_dir − over a_opt)/ε with ∇_{θ[s]} log π(a|s) = e_a − π(·|s)."""
    epsilon = 0.5
    out = estimates(epsilon)
    pi = np.asarray(jax.nn.softmax(jnp.where(jnp.asarray(LEGAL), jnp.asarray(THETA), -jnp.inf), axis=-1))

    def score(traj, b):
        g = np.zeros_like(THETA)
        for t in range(int(traj.length[b])):
            s, a = int(traj.states[b, t]), int(traj.actions[b, t])
            g[s] -= pi[s]
            g[s, a] += 1.0
        return g

    grads, improved = np.asarray(out.grad), np.asarray(out.search.improved)
    for b in range(40):
        expected = (score(out.search.a_dir, b) - score(out.search.a_opt, b)) / epsilon if improved[b] else 0.0
        np.testing.assert_allclose(grads[b], expected, atol=1e-5)
    assert np.all(np.isfinite(grads))
    assert np.all(grads[~improved] == 0.0) and improved.mean() > 0.05


def test_no_improvement_within_budget_gives_zero_gradient():
    out = estimates(2.0, budget=DEPTH)  # phase 1 only: a_dir = a_opt
    assert not np.any(np.asarray(out.search.improved))
    assert np.all(np.asarray(out.grad) == 0.0)


def test_surrogate_gradient_matches_and_epsilon_zero_is_rejected():
    key = jax.random.key(3)
    out = dirpg_gradient(logits_fn, make_tree, jnp.asarray(THETA), key, epsilon=2.0, budget=EXPANSIONS,
                         max_depth=DEPTH, early_stop=False)
    assert isinstance(out, DirPGGradient) and out.grad.shape == THETA.shape
    g = jax.grad(lambda p: dirpg_surrogate(logits_fn, p, out.search, 2.0))(jnp.asarray(THETA))
    np.testing.assert_allclose(g, out.grad)
    with pytest.raises(GraphError):
        dirpg_gradient(logits_fn, make_tree, jnp.asarray(THETA), key, epsilon=0.0, budget=EXPANSIONS, max_depth=DEPTH)
