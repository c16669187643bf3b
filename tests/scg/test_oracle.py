"""Algorithm 4 (Schulman 2016, §5.5) as an independent slow path for the compiled surrogate.

:mod:`scg.testing.oracle` runs the thesis' backward pass node by node (``jax.vjp`` of
one node's function at a time, score terms ``∂log p(v̂|PARENTS_v)/∂w (Q̂_v - b_v)``);
the compiler differentiates the whole surrogate of Corollary 1 at once. On the
same samples they must agree to float64 round-off, on random graphs mixing
Bernoulli, Categorical, pathwise and score Normal nodes, node and
leave-one-out baselines (Theorem 2). The DiCE objective's first derivative
must agree too.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.testing import oracle
from scg.testing.random_graphs import quick_call, random_graph

SEEDS = range(50)
CHUNK = 10  # graphs compiled together: one XLA compile per chunk
KEYS_PER_GRAPH = 2
DICE_EVERY = 5  # also compare the DiCE gradient on every fifth graph (it doubles the compile)


def _max_abs(tree) -> float:
    return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree_util.tree_leaves(tree))


def _max_abs_diff(a, b) -> float:
    return _max_abs(jax.tree_util.tree_map(lambda x, y: np.asarray(x) - np.asarray(y), a, b))


@pytest.mark.parametrize("first", range(SEEDS.start, SEEDS.stop, CHUNK))
def test_algorithm4_equals_autodiff_of_surrogate_on_random_graphs(first):
    with jax.enable_x64():
        rgs = [random_graph(s) for s in range(first, first + CHUNK)]
        ests = [scg.compile(rg.graph) for rg in rgs]
        dices = [scg.compile(rg.graph, mode="dice") for rg in rgs]  # DiCE's first derivative: the same estimator
        inputs = [rg.jax_inputs() for rg in rgs]

        def everything(inputs, key):
            out = []
            for i, (rg, est, dice, x, k) in enumerate(zip(rgs, ests, dices, inputs, jax.random.split(key, CHUNK))):
                n = rg.num_samples  # 1, or 2 where a LeaveOneOut baseline needs it

                def one(k, est=est, dice=dice, x=x, n=n, check_dice=i % DICE_EVERY == 0):
                    grads = est.grad(x, k, num_samples=n), oracle.grad(est, x, k, num_samples=n)
                    return grads + ((dice.grad(x, k, num_samples=n),) if check_dice else ())

                out.append(jax.vmap(one)(jax.random.split(k, KEYS_PER_GRAPH)))
            return out

        results = quick_call(everything, inputs, jax.random.key(first))
    for rg, (surrogate, algorithm4, *dice) in zip(rgs, results):
        scale = 1.0 + _max_abs(surrogate)
        assert _max_abs_diff(surrogate, algorithm4) < 1e-10 * scale, (rg.seed, surrogate, algorithm4)
        for d in dice:
            assert _max_abs_diff(surrogate, d) < 1e-10 * scale, (rg.seed, surrogate, d)
    assert any(_max_abs(r[0]) > 0.1 for r in results)  # not vacuous: the gradients are not all zero


def test_random_graphs_cover_every_node_kind():
    """The graphs above exercise what the brief promises (checked on their structure)."""
    seen = set()
    for s in SEEDS:
        rg = random_graph(s)
        for node in rg.graph.nodes:
            prefix = node.name.rstrip("0123456789")
            seen.add((prefix, getattr(node.estimator, "name", None)))
            if node.baseline is not None:
                seen.add(("baseline", type(node.baseline).__name__))
        seen |= {("input", np.shape(v)) for v in rg.inputs.values()}
        seen.add(("costs", sum(n.kind == "cost" for n in rg.graph.nodes)))
        assert rg.worlds <= 10_000
    for kind in [("bern", "score"), ("cat", "score"), ("norm", "score"), ("norm", "pathwise"), ("det", None),
                 ("baseline", "str"), ("baseline", "LeaveOneOut"), ("input", ()), ("input", (2,)),
                 ("costs", 1), ("costs", 2), ("costs", 3)]:
        assert kind in seen, kind


def test_algorithm4_by_hand():
    """Closed forms: pathwise ``g = 2x̂`` for ``x ~ N(θ, 1)``, cost ``x²``; score ``(ẑ - σ(θ)) Q̂``."""
    with jax.enable_x64():
        g = scg.Graph()
        theta = g.input("theta")
        x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta, estimator="pathwise")
        z = g.stochastic("z", lambda t: dist.Bernoulli(logits=t), theta, estimator="score")
        g.cost("fx", lambda x: x**2, x)
        g.cost("fz", lambda z, t: (z - 0.3) * t, z, theta)
        est = scg.compile(g)
        inputs = {"theta": jnp.asarray(0.4)}
        got, s = quick_call(lambda k: (oracle.grad(est, inputs, k)["theta"], est.sample(inputs, k, num_samples=1)), jax.random.key(7))
        xh, zh = s["x"][0], s["z"][0]
        want = 2 * xh + (zh - jax.nn.sigmoid(0.4)) * (zh - 0.3) * 0.4 + (zh - 0.3)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_printed_q_hat_of_the_parent_is_unbiased_but_not_the_surrogate():
    """The printed ``Q̂_w`` (``w`` the parent) adds costs ``w`` reaches around ``v``: unbiased, not Corollary 1.

    Here ``d = tanh(θ)`` feeds both ``z ~ Bernoulli(logits=2d)`` and the cost
    ``d²``; with ``Q̂_d`` the score term of ``z`` gains ``∂log p(ẑ|d)/∂d · d²``,
    whose conditional mean given ``d`` is zero (``d²`` is not downstream of ``z``).
    """
    with jax.enable_x64():
        g = scg.Graph()
        theta = g.input("theta")
        d = g.deterministic("d", jnp.tanh, theta)
        z = g.stochastic("z", lambda d: dist.Bernoulli(logits=2.0 * d), d, estimator="score")
        g.cost("fd", lambda d: 3.0 * d**2, d)
        g.cost("fz", lambda z: 2.0 * z, z)
        est = scg.compile(g)
        inputs = {"theta": jnp.asarray(0.3)}
        keys = jax.random.split(jax.random.key(0), 20_000)

        def both(k):
            return est.grad(inputs, k), oracle.grad(est, inputs, k), oracle.grad(est, inputs, k, q_of="parent")

        surrogate, node_q, parent_q = quick_call(jax.vmap(both), keys)
        exact = quick_call(lambda x: testing.exact_grad(g, x), inputs)
    np.testing.assert_allclose(node_q["theta"], surrogate["theta"], rtol=1e-12)
    assert _max_abs_diff(parent_q, surrogate) > 0.1
    testing.assert_unbiased(parent_q, exact)
    testing.assert_unbiased(node_q, exact)
