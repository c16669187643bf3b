"""scg.search against exact enumeration: Top-Down Gumbel search for a_opt and a_dir (Lorberbom et al. 2020, Alg. 1-2).

A random tree MDP (3 actions, depth ≤ 3, one illegal action, one early terminal, deterministic
rewards, a fixed random policy) is small enough to enumerate its 16 trajectories, their
``Π_θ(a)`` (Eq. 3) and ``R(a)``. Frequencies over vmapped keys are chi-square tested against
``Π_θ`` (a_opt, Eq. 4) and against ``P_R ∝ Π_θ e^{εR}`` (a_dir of an exhaustive search, Eq. 12),
with fixed seeds and rejection at p < 1e-4, plus a per-cell z bound Bonferroni-corrected to the
same level (a correct sampler fails about once in 10⁴ seeds; a wrong one at these sizes for sure).
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from scg.envs.paper.deep_sea import DeepSea
from scg.errors import GraphError
from scg.search import SearchResult, Tree, search
from support import A, DEPTH, ILLEGAL, NUM_IDS, is_done

ALPHA = 1e-4
N = 20_000

_rng = np.random.default_rng(14)
REWARD = _rng.uniform(-0.5, 0.5, NUM_IDS).astype(np.float32)  # reward of the step into each node
LOGITS = _rng.normal(0.0, 1.0, (NUM_IDS, A)).astype(np.float32)
LOGITS[ILLEGAL] = -np.inf


def enumerate_tree():
    """{leaf id: (actions, Π_θ(a), R(a))} by recursion, in float64."""
    logp = LOGITS.astype(np.float64) - np.logaddexp.reduce(LOGITS.astype(np.float64), axis=1, keepdims=True)
    out = {}

    def walk(i, actions, lp, ret):
        if i and is_done(i):
            out[i] = (actions, np.exp(lp), ret)
            return
        for a in range(A):
            if np.isfinite(logp[i, a]):
                j = A * i + 1 + a
                walk(j, actions + (a,), lp + logp[i, a], ret + float(REWARD[j]))

    walk(0, (), 0.0, 0.0)
    return out


LEAVES = enumerate_tree()
LEAF_IDS = np.array(sorted(LEAVES))
PI = np.array([LEAVES[i][1] for i in LEAF_IDS])
RET = np.array([LEAVES[i][2] for i in LEAF_IDS])
EXPANSIONS = 23  # every node but the root: 3 + 5 + 15
UPPER = np.zeros(NUM_IDS, np.float32)  # exact max return-to-go below each node: a tight valid bound
for _i in reversed(range(NUM_IDS)):
    _kids = [A * _i + 1 + a for a in range(A) if A * _i + 1 + a < NUM_IDS and not (_i, a) == ILLEGAL]
    UPPER[_i] = 0.0 if is_done(_i) or not _kids else max(REWARD[k] + UPPER[k] for k in _kids)


def make_tree(noise=0.0, bound=False):
    done_ids = jnp.asarray([is_done(i) for i in range(NUM_IDS)])

    def expand(s, a, key):
        child = A * s + 1 + a
        reward = jnp.asarray(REWARD)[child] + noise * jax.random.normal(key)
        return child, reward, done_ids[child]

    upper = (lambda s: jnp.asarray(UPPER)[s]) if bound else None
    return Tree(root=jnp.int32(0), expand=expand, logits=lambda s: jnp.asarray(LOGITS)[s], upper_bound=upper)


def leaf_id(actions, length):
    """Heap id of each trajectory's last node, from its padded actions (numpy, batched)."""
    actions, length = np.asarray(actions), np.asarray(length)
    ids = np.zeros(actions.shape[:-1], np.int64)
    for t in range(actions.shape[-1]):
        ids = np.where(t < length, A * ids + 1 + actions[..., t], ids)
    return ids


def check_frequencies(ids, leaf_ids, probs):
    """Chi-square (cells with expected < 5 pooled) and Bonferroni z per cell, both at ALPHA; returns (χ², p, max|z|)."""
    counts = np.array([(ids == i).sum() for i in leaf_ids])
    assert counts.sum() == len(ids), "a trajectory outside the enumerated support"
    n, probs = len(ids), probs / probs.sum()
    expected = n * probs
    small = expected < 5
    obs_c = np.append(counts[~small], counts[small].sum()) if small.any() else counts
    exp_c = np.append(expected[~small], expected[small].sum()) if small.any() else expected
    chi2, p = stats.chisquare(obs_c, exp_c)
    z = (counts - expected) / np.sqrt(n * probs * (1 - probs))
    z_max = stats.norm.isf(ALPHA / (2 * len(probs)))
    assert p > ALPHA, (chi2, p, counts, expected)
    assert np.abs(z).max() < z_max, (z, z_max)
    return chi2, p, np.abs(z).max()


@functools.lru_cache(maxsize=None)
def _batched(**config):
    tree = make_tree(bound=config.pop("bound", False))
    run = lambda k, eps, budget: search(tree, k, epsilon=eps, budget=budget, capacity=EXPANSIONS + 1,
                                        max_depth=DEPTH, **config)
    return jax.jit(jax.vmap(run, (0, None, None)))


def batched(budget=EXPANSIONS, **config):
    """A jitted search vmapped over keys, with ε and the budget traced: one compilation per config."""
    return lambda ks, eps: _batched(**config)(ks, jnp.float32(eps), jnp.int32(budget))


EXHAUSTIVE = dict(priority="gumbel", early_stop=False, record=len(LEAVES))


def keys(n, seed):
    return jax.random.split(jax.random.key(seed), n)


def test_enumeration_is_a_distribution():
    assert len(LEAVES) == 16 and abs(PI.sum() - 1.0) < 1e-12


def test_gumbel_priority_yields_every_leaf_in_descending_g_first_a_opt():
    out = batched(**EXHAUSTIVE)(keys(N, 0), 0.5)
    g, d = np.asarray(out.yields.g), np.asarray(out.yields.d)
    assert np.all(np.asarray(out.num_yields) == len(LEAVES)) and np.all(np.asarray(out.complete))
    assert np.all(np.asarray(out.expansions) == EXPANSIONS)
    assert np.all(np.diff(g, axis=1) <= 0), "yields not in descending G"
    ids = leaf_id(out.yields.actions, out.yields.length)
    assert np.all(np.sort(ids, axis=1) == LEAF_IDS), "each trajectory yielded exactly once"
    np.testing.assert_array_equal(ids[:, 0], leaf_id(out.a_opt.actions, out.a_opt.length))
    np.testing.assert_allclose(out.a_opt.g, g[:, 0])
    # Every yield carries its exact log Π and R, and D = G + εR; a_dir is the argmax of D.
    lookup = {i: k for k, i in enumerate(LEAF_IDS)}
    col = np.vectorize(lookup.get)(ids)
    np.testing.assert_allclose(np.exp(out.yields.log_prob), PI[col], rtol=1e-5)
    np.testing.assert_allclose(out.yields.ret, RET[col], atol=1e-5)
    np.testing.assert_allclose(d, g + 0.5 * RET[col], atol=1e-5)
    np.testing.assert_array_equal(leaf_id(out.a_dir.actions, out.a_dir.length), ids[np.arange(N), d.argmax(1)])
    # The recorded path states are the prefixes' nodes: state t of action t.
    np.testing.assert_array_equal(np.asarray(out.a_opt.states)[:, 0], 0)


def test_a_opt_frequencies_match_the_policy():
    out = batched(**EXHAUSTIVE)(keys(N, 1), 0.5)
    check_frequencies(leaf_id(out.a_opt.actions, out.a_opt.length), LEAF_IDS, PI)


@pytest.mark.parametrize("epsilon", [0.5, 2.0, -1.0])
def test_exhaustive_a_dir_frequencies_match_p_r(epsilon):
    """Eq. 12: a*(ε) ~ P_R ∝ Π_θ e^{εR}, either sign of ε; and Lemma 1 sample by sample."""
    out = batched(**EXHAUSTIVE)(keys(N, 2), epsilon)
    check_frequencies(leaf_id(out.a_dir.actions, out.a_dir.length), LEAF_IDS, PI * np.exp(epsilon * RET))
    sign = np.sign(epsilon)
    assert np.all(sign * np.asarray(out.a_dir.ret) >= sign * np.asarray(out.a_opt.ret) - 1e-6)
    assert np.all(np.asarray(out.a_dir.d) >= np.asarray(out.a_opt.d))
    same = np.asarray(out.a_dir.d) == np.asarray(out.a_opt.d)
    assert np.all(np.asarray(out.improved) == ~same)


@pytest.mark.parametrize("epsilon", [0.5, 2.0, -1.0])
def test_astar_with_pruning_finds_the_same_a_dir(epsilon):
    """Γ is keyed by region, so the priority changes the visiting order, never the answer of a complete search."""
    ks = keys(N, 3)
    ref = batched(**EXHAUSTIVE)(ks, epsilon)
    out = batched(priority="astar", alpha=0.5, bound=True, early_stop=False)(ks, epsilon)
    for name in ("a_opt", "a_dir"):
        np.testing.assert_array_equal(getattr(out, name).actions, getattr(ref, name).actions)
        np.testing.assert_array_equal(getattr(out, name).d, getattr(ref, name).d)
    assert np.all(np.asarray(out.complete))
    if epsilon > 0:  # the bound prunes, so fewer expansions
        assert np.asarray(out.pruned).sum() > 0
        assert np.asarray(out.expansions).mean() < EXPANSIONS
    else:
        assert np.asarray(out.pruned).sum() == 0 and np.all(np.asarray(out.expansions) == EXPANSIONS)


@pytest.mark.parametrize("priority", ["gumbel", "astar"])
@pytest.mark.parametrize("epsilon", [0.5, -1.0])
def test_early_stop_returns_the_first_improvement(priority, epsilon):
    """Algorithm 1 lines 5-10: a_dir is the first yield with d > d_opt, every earlier yield has d <= d_opt."""
    out = batched(priority=priority, early_stop=True, record=len(LEAVES))(keys(N, 4), epsilon)
    improved, n = np.asarray(out.improved), np.asarray(out.num_yields)
    d, d_opt = np.asarray(out.yields.d), np.asarray(out.a_opt.d)[:, None]
    last = n - 1
    rows = np.arange(len(n))
    assert 0.05 < improved.mean() < 1.0
    np.testing.assert_array_equal(np.asarray(out.leaves_to_improvement)[improved], n[improved])
    assert np.all((d[rows, last] > d_opt[:, 0]) == improved)
    earlier = np.arange(d.shape[1])[None, :] < last[:, None]
    assert np.all(np.where(earlier, d <= d_opt, True))
    np.testing.assert_array_equal(leaf_id(out.a_dir.actions, out.a_dir.length)[improved],
                                  leaf_id(out.yields.actions, out.yields.length)[rows, last][improved])
    # Lemma 1 (App. A.2) holds for the first improvement too; without one a_dir is a_opt.
    sign = np.sign(epsilon)
    assert np.all(sign * np.asarray(out.a_dir.ret) >= sign * np.asarray(out.a_opt.ret) - 1e-6)
    np.testing.assert_array_equal(np.asarray(out.a_dir.actions)[~improved], np.asarray(out.a_opt.actions)[~improved])
    e2i = np.asarray(out.expansions_to_improvement)
    assert np.all(e2i[~improved] == -1) and np.all(e2i[improved] == np.asarray(out.expansions)[improved])


def test_budget_of_phase_one_never_improves():
    out = batched(budget=1, priority="gumbel", early_stop=True, record=len(LEAVES))(keys(N, 5), 2.0)
    assert not np.asarray(out.improved).any()
    assert np.all(np.asarray(out.expansions) == np.asarray(out.a_opt.length))  # phase 1 runs to its leaf
    np.testing.assert_array_equal(out.a_dir.actions, out.a_opt.actions)


def test_same_prefix_same_step_whatever_the_search_order():
    """The state-reward tree S is keyed by prefix: another Γ visits leaves in another order, with the same returns."""
    tree = make_tree(noise=1.0)
    run = jax.jit(lambda k, e: search(tree, k, env_key=e, epsilon=1.0, budget=EXPANSIONS, max_depth=DEPTH, **EXHAUSTIVE))

    def returns(out):
        ids = leaf_id(out.yields.actions, out.yields.length).tolist()
        assert len(set(ids)) == len(LEAVES)
        return ids, dict(zip(ids, np.asarray(out.yields.ret).tolist()))

    (order_a, ret_a), (order_b, ret_b) = (returns(run(jax.random.key(s), jax.random.key(7))) for s in (1, 2))
    assert order_a != order_b and ret_a == ret_b
    _, ret_c = returns(run(jax.random.key(1), jax.random.key(8)))
    assert all(ret_c[i] != ret_a[i] for i in ret_a)  # another S: other rewards everywhere
    first, second = (run(jax.random.key(1), jax.random.key(7)) for _ in range(2))
    for x, y in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        np.testing.assert_array_equal(x, y)  # same key, same numbers


def test_traced_budget_and_small_capacity_stop_when_full():
    tree = make_tree()
    f = jax.jit(lambda k, b: search(tree, k, epsilon=1.0, budget=b, max_depth=DEPTH, capacity=8, early_stop=False))
    out = f(jax.random.key(0), jnp.int32(100))
    assert int(out.expansions) == 7 and not bool(out.complete)
    assert int(out.a_opt.length) >= 1


# -- DeepSea (envs/paper/deep_sea.py) wrapped as a Tree -----------------------------------------
DS = DeepSea()
DS_PARAMS = DS.default_params
DS_LOGITS = np.random.default_rng(3).normal(0.0, 0.8, (25, 2)).astype(np.float32)


def deep_sea_tree():
    _, root = DS.reset(jax.random.key(0), DS_PARAMS)

    def expand(s, a, key):
        ts = DS.step(key, s, a, DS_PARAMS)
        return ts.state, ts.reward, ts.terminated

    logits = lambda s: jnp.asarray(DS_LOGITS)[s.row * DS_PARAMS.size + s.col]
    return Tree(root=root, expand=expand, logits=logits)


def deep_sea_policy():
    """Π_θ of each of the 16 action sequences, by walking the deterministic moves."""
    probs = {}
    for seq in itertools.product(range(2), repeat=4):
        row, col, p = 0, 0, 1.0
        for a in seq:
            z = DS_LOGITS[row * 5 + col].astype(np.float64)
            p *= np.exp(z[a] - np.logaddexp.reduce(z))
            row, col = row + 1, min(col + 1, 4) if a else max(col - 1, 0)
        probs[int("".join(map(str, seq)), 2)] = p
    return np.array([probs[i] for i in range(16)])


def test_deep_sea_a_opt_frequencies_under_jit_and_vmap():
    tree = deep_sea_tree()
    run = jax.jit(jax.vmap(lambda k: search(tree, k, epsilon=1.0, budget=30, max_depth=4, early_stop=False)))
    out = run(keys(N, 8))
    assert np.all(np.asarray(out.a_opt.length) == 4) and np.all(np.asarray(out.complete))
    code = np.asarray(out.a_opt.actions) @ np.array([8, 4, 2, 1])
    check_frequencies(code, np.arange(16), deep_sea_policy())
    # RRRR meets N(1, 1) at the goal; S is keyed by env_key, so its return varies across episodes ...
    rrrr = np.asarray(out.a_dir.ret)[code == 15]
    assert rrrr.std() > 0.5
    # ... and LLLL always returns 0.
    np.testing.assert_array_equal(np.asarray(out.a_opt.ret)[code == 0], 0.0)
    assert isinstance(out, SearchResult)


# -- bad arguments: GraphError at trace time, naming the argument --------------------------------
@pytest.mark.parametrize("kwargs, word", [
    (dict(priority="bfs"), "priority"),
    (dict(budget=0), "budget"),
    (dict(budget=2.5), "budget"),
    (dict(max_depth=0), "max_depth"),
    (dict(capacity=10), "capacity"),
    (dict(capacity=2, budget=1), "capacity"),
    (dict(alpha=0.5), "alpha"),
    (dict(record=-1), "record"),
])
def test_bad_arguments_are_graph_errors(kwargs, word):
    args = dict(epsilon=1.0, budget=EXPANSIONS, max_depth=DEPTH) | kwargs
    with pytest.raises(GraphError, match=word):
        search(make_tree(), jax.random.key(0), **args)


def test_traced_budget_needs_capacity():
    with pytest.raises(GraphError, match="capacity"):
        jax.jit(lambda b: search(make_tree(), jax.random.key(0), epsilon=1.0, budget=b, max_depth=DEPTH))(5)


def test_bad_tree_functions_are_graph_errors():
    tree = make_tree()
    with pytest.raises(GraphError, match="expand"):
        search(tree._replace(expand=lambda s, a, k: (s.astype(float), 0.0, False)), jax.random.key(0),
               epsilon=1.0, budget=5, max_depth=DEPTH)
    with pytest.raises(GraphError, match="logits"):
        search(tree._replace(logits=lambda s: jnp.zeros((2, 3))), jax.random.key(0), epsilon=1.0, budget=5, max_depth=DEPTH)
    with pytest.raises(GraphError, match="tree"):
        search((tree.root, tree.expand, tree.logits), jax.random.key(0), epsilon=1.0, budget=5, max_depth=DEPTH)
