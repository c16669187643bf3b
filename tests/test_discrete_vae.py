"""The model code of ``bench/discrete_vae.py`` (the digits VAE) against exact answers.

- the exact ELBO by enumeration equals ``-scg.testing.exact_expectation`` of the graph (an
  independent enumeration) and a Monte Carlo estimate from the compiled graph's samples, within
  5 standard errors;
- the compiled one-point gradient (score function + leave-one-out baseline, the ``log q`` cost
  reading ``z`` and the encoder) is unbiased for the exact gradient of the negative ELBO;
- a few hundred training steps with score + LOO raise the exact test ELBO; a stateful baseline's
  state advances through the vmapped, averaged training step.
"""
import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")

import scg  # noqa: E402
from scg import testing  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vae():
    spec = importlib.util.spec_from_file_location("bench_discrete_vae", ROOT / "bench" / "discrete_vae.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(vae):
    return vae.load_digits_binary(0)


def small_params(vae, x_train, seed=0):
    return vae.init_params(jax.random.key(seed), 16, x_train.mean(0))


def test_data_is_binary_and_split(data):
    x_train, x_test = data
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert set(np.unique(x_train)) == {0.0, 1.0}


def test_relaxed_log_q_agrees_with_the_discrete_one(vae):
    """``log q`` at a one-hot vector (a relaxed value at its corner) equals ``log q`` at the index."""
    logits = jnp.array([0.3, -1.0, 2.0, 0.0, 0.5, -0.2, 1.1, -2.0, 0.0, 0.7])
    for k in (0, 2, 9):
        np.testing.assert_allclose(vae.log_q(jax.nn.one_hot(k, 10), logits, "categorical"),
                                   vae.log_q(jnp.int32(k), logits, "categorical"), rtol=1e-6)
    z = (logits > 0).astype(jnp.float32)
    np.testing.assert_allclose(vae.log_q(z, logits, "bernoulli"),
                               jnp.sum(scg.dist.Bernoulli(logits=logits).log_prob(z)), rtol=1e-6)


@pytest.mark.parametrize("latent", ["bernoulli", "categorical"])
def test_exact_elbo_matches_enumeration_and_monte_carlo(vae, data, latent):
    x_train, _ = data
    params = small_params(vae, x_train)
    xs = jnp.asarray(x_train[:2])
    elbo, log_px = jax.jit(vae.exact_elbo, static_argnums=2)(params, xs, latent)
    assert bool(jnp.all(log_px >= elbo - 1e-4))  # Jensen
    g = vae.vae_graph(latent, "score")
    est = scg.compile(g)
    enumerated = jax.jit(lambda inputs: testing.exact_expectation(g, inputs))
    for i in range(xs.shape[0]):
        inputs = {"params": params, "x": xs[i]}
        np.testing.assert_allclose(-enumerated(inputs), elbo[i], rtol=1e-5)
        values = est.sample(inputs, jax.random.key(i), num_samples=20_000)
        cost = np.asarray(values["nll"] + values["log_q_over_p"], np.float64)
        z = (cost.mean() + float(elbo[i])) / (cost.std(ddof=1) / np.sqrt(cost.size))
        assert abs(z) < 5, (i, cost.mean(), float(elbo[i]), z)


def test_score_loo_gradient_is_unbiased_for_the_exact_elbo_gradient(vae, data):
    """The log q term (a cost reading z and the encoder's logits) is credited correctly."""
    x_train, _ = data
    params = small_params(vae, x_train, seed=1)
    x = jnp.asarray(x_train[5])
    est = scg.compile(vae.vae_graph("bernoulli", "score", scg.baselines.LeaveOneOut()))
    samples = est.grad_samples({"params": params, "x": x}, jax.random.key(3), num_replicates=4096, num_samples=2)
    exact = jax.jit(jax.grad(lambda p: -vae.exact_elbo(p, x[None], "bernoulli")[0][0]))(params)
    testing.assert_unbiased({"params": samples["params"]}, {"params": exact})
    wrong = jax.tree_util.tree_map(lambda a: 1.5 * a, exact)  # the test has power on this model
    testing.assert_biased({"params": samples["params"]}, {"params": wrong})


def test_mean_state_averages_floats_and_keeps_the_rest(vae):
    states = {"mean": jnp.array([[1.0], [3.0]]), "count": jnp.array([4, 4], jnp.int32)}
    out = vae.mean_state(states)
    np.testing.assert_allclose(out["mean"], [2.0])
    assert out["count"].dtype == jnp.int32 and int(out["count"]) == 4


def test_training_with_score_loo_improves_the_elbo(vae, data):
    x_train, x_test = data
    cfg = vae.Config(steps=200, batch=32, hidden=32, eval_every=200)
    harness = vae.make_harness("bernoulli", vae.SPECS["bernoulli"]["score+loo"], cfg, x_train)
    ts = harness.init(jax.random.key(0))
    before = float(vae.elbo_metrics(ts.params, jnp.asarray(x_test), "bernoulli")["elbo"])
    ts = harness.chunk(ts, cfg.steps)
    after = float(vae.elbo_metrics(ts.params, jnp.asarray(x_test), "bernoulli")["elbo"])
    assert after > before + 1.0, (before, after)


def test_stateful_baseline_state_advances(vae, data):
    x_train, _ = data
    cfg = vae.Config(batch=8, hidden=16)
    harness = vae.make_harness("categorical", vae.SPECS["categorical"]["score+ema"], cfg, x_train)
    assert harness.stateful
    ts = harness.init(jax.random.key(0))
    ts2 = harness.chunk(ts, 5)
    weight = ts2.est_state["z"]["baseline"]["weight"]
    np.testing.assert_allclose(weight, 1 - 0.9**5, rtol=1e-5)  # the bias-corrected EMA's weight after 5 calls
