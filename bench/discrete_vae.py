"""Gradient estimators on a discrete VAE: binarised 8x8 digits, one layer of discrete latents.

The standard comparison of the discrete-estimator literature (REBAR, Tucker et al. 2017 §6; RELAX,
Grathwohl et al. 2018 §6.2; ARM, Yin & Zhou 2019 §4; DisARM, Dong et al. 2020 §5; unordered-set,
Kool et al. 2020 §4.3), at laptop scale. Data: ``sklearn.datasets.load_digits`` (1,797 images of
8x8 pixels, shipped with scikit-learn), binarised (pixel value > 8 -> 1), split 1,437 / 360 with a
fixed seed. Model, written for ONE data point as an ``scg.Graph``:

    q_logits = encoder(params, x)            MLP 64 -> 64 (tanh) -> 10
    z ~ q(z | x)                             10 Bernoulli latents, or one 10-way categorical
    cost  nll          = -log p(x | z)       decoder MLP 10 -> 64 (tanh) -> 64 Bernoulli logits
    cost  log_q_over_p = log q(z | x) - log p(z)      uniform prior

so the expected cost is the negative ELBO. ``log q`` reads ``z`` and the encoder's logits: for a
score-function node its gradient is ``∇log q(ẑ)`` (the cost's pathwise part, expectation zero) plus
``∇log q(ẑ)·log q(ẑ)`` (inside Q̂), the exact derivative of ``E_q[log q]``. For the relaxed estimators
(Gumbel-softmax, REBAR's and RELAX's control variates) the costs are evaluated at relaxed values
``z ∈ [0, 1]^10`` (or the simplex): ``log q`` is the discrete log-mass extended linearly,
``Σ z log π + (1 - z) log(1 - π)`` (``Σ_k z_k log π_k``), as Tucker et al. (2017)'s code evaluates
the ELBO at σ(z/λ); Maddison et al. (2017, App. C) use Concrete densities instead. ``log p(z)`` of
the uniform prior is a constant either way. The reported ELBO is always the exact discrete one:
enumerating the 2^10 = 1024 codes (or 10 categories) is cheap, so test ELBO, ``log p(x)`` and the
exact gradient are computed, not estimated.

Training: Adam, the same steps, batch, learning rate and seed for every estimator. The compiled
``grad_fn`` of the one-point graph is ``vmap``-ed over a minibatch and the gradients averaged; for
estimators or baselines with state (moving-average baseline, REBAR/RELAX parameters) the
``with_state=True`` form is vmapped with the state broadcast and the returned states are averaged
over the batch (their floating leaves; other leaves are equal across the batch and taken from the
first example). For REBAR and RELAX each example takes its own Adam step on its ``∂‖ĝ_i‖²`` (the
per-example variance) and the new parameters and Adam moments are averaged: Adam's first moment is
then that of the mean gradient, its second moment the mean of the squares, so the step is close to,
not the same as, one Adam step on the batch mean. The steps run in ``lax.scan`` chunks
under one ``jit``; between chunks the host evaluates.

Measured per estimator:

- the exact test (and train-subset) ELBO every ``eval_every`` steps;
- gradient variance every ``var_every`` steps: for ``var_points`` fixed training points, the trace of
  the covariance of the *single-datapoint* estimator over ``var_replicates`` draws at the current
  parameters (and state), averaged over the points; for the encoder (where the estimators differ)
  and the decoder; with the squared bias ``‖mean ĝ - ∇‖² - tr Cov / R`` (an unbiased estimate, noise
  of order ``tr Cov / R``) against the exact gradient ``∇`` of the negative ELBO by enumeration
  (nonzero for Gumbel-softmax and straight-through);
- the same at SHARED parameters: every estimator measured at the parameters of the ``score+loo`` run
  (seed 0) at each checkpoint, with its own state from its seed-0 run at the same step; variances
  along each estimator's own trajectory also reflect where that trajectory went (a sharper posterior
  has a smaller variance), these compare the estimators alone;
- time per training step: the median over the timed chunks (after compiling, ``block_until_ready``)
  divided by the chunk length, and the compile time.

``score + LOO`` draws two samples per data point (``num_samples=2``, two decoder evaluations); the
others one sample per point, but ARM/DisARM evaluate the decoder twice, REBAR/RELAX three times,
unordered-set k=4 four times and enumeration ten times, inside their estimators: the time column
shows it. Enumeration is run on the categorical latent only (on 10 Bernoulli latents it would
evaluate the decoder 1024 times per data point).

Usage::

    python bench/discrete_vae.py            # default: 10,000 steps, batch 32, 3 seeds (3.5 min for the 11
                                            # estimators present on 2 shared cores; all 15: about 6 min)
    python bench/discrete_vae.py --quick    # smoke run: 60 steps, 1 seed, few replicates (about 1.5 min)
    python bench/discrete_vae.py --report   # print the table of results/discrete_vae.json

Writes ``bench/results/discrete_vae.json`` and ``bench/results/discrete_vae.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import sys
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, summary, write_json_atomic  # noqa: E402

import scg  # noqa: E402
from scg import dist  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PIXELS, LATENTS = 64, 10


# -- data ------------------------------------------------------------------------------------------
def load_digits_binary(seed: int = 0, n_test: int = 360) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)``: binarised 8x8 digits (pixel > 8 -> 1.0), float32 ``[N, 64]``, a fixed split."""
    from sklearn.datasets import load_digits

    x = (load_digits().data > 8).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm[n_test:]], x[perm[:n_test]]


# -- model (one data point) -------------------------------------------------------------------------
def mlp_init(key, sizes, out_bias=None) -> list:
    """``[(w, b), ...]`` with ``w ~ N(0, 1/fan_in)``; the last bias is ``out_bias`` if given."""
    layers = []
    for k, (m, n) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        layers.append((jax.random.normal(k, (m, n)) / np.sqrt(m), jnp.zeros(n)))
    if out_bias is not None:
        layers[-1] = (layers[-1][0], jnp.asarray(out_bias, jnp.float32))
    return layers


def mlp(layers, h):
    for w, b in layers[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = layers[-1]
    return h @ w + b


def init_params(key, hidden: int = 64, pixel_mean=None) -> dict:
    """Encoder 64 -> hidden -> 10 and decoder 10 -> hidden -> 64; the decoder's output bias starts at
    the logit of the mean image (``pixel_mean``) when given."""
    k_enc, k_dec = jax.random.split(key)
    bias = None if pixel_mean is None else np.log(np.clip(pixel_mean, 1e-3, 1 - 1e-3)) - np.log1p(-np.clip(pixel_mean, 1e-3, 1 - 1e-3))
    return {"encoder": mlp_init(k_enc, (PIXELS, hidden, LATENTS)),
            "decoder": mlp_init(k_dec, (LATENTS, hidden, PIXELS), out_bias=bias)}


def code(z, latent: str):
    """The decoder's input: the 10 Bernoulli values, or a category's one-hot (a relaxed vector as it is)."""
    if latent == "categorical" and jnp.ndim(z) == 0:
        return jax.nn.one_hot(z, LATENTS)
    return jnp.asarray(z, jnp.float32)


def log_lik(params, z, x, latent: str):
    """``log p(x | z)``: 64 independent Bernoulli pixels with the decoder's logits."""
    return jnp.sum(dist.Bernoulli(logits=mlp(params["decoder"], code(z, latent))).log_prob(x))


def log_q(z, logits, latent: str):
    """``log q(z | x)``; at a relaxed ``z`` the log-mass extended linearly in ``z`` (module docstring)."""
    if latent == "bernoulli":
        return jnp.sum(z * jax.nn.log_sigmoid(logits) + (1 - z) * jax.nn.log_sigmoid(-logits))
    logp = jax.nn.log_softmax(logits)
    return logp[z] if jnp.ndim(z) == 0 else jnp.sum(z * logp)


def log_prior(latent: str) -> float:
    """``log p(z)`` of the uniform prior: ``-10 log 2`` (or ``-log 10``), the same for every (relaxed) ``z``."""
    return -LATENTS * np.log(2.0) if latent == "bernoulli" else -np.log(LATENTS)


def vae_graph(latent: str, estimator, baseline=None) -> scg.Graph:
    """The negative ELBO of one data point as a graph: ``E_q[-log p(x|z) + log q(z|x) - log p(z)]``."""
    family = {"bernoulli": dist.Bernoulli, "categorical": dist.Categorical}[latent]
    g = scg.Graph(f"digits_vae_{latent}")
    params = g.input("params")
    x = g.input("x", differentiable=False)
    logits = g.deterministic("q_logits", lambda p, x: mlp(p["encoder"], x), params, x)
    z = g.stochastic("z", lambda l: family(logits=l), logits, estimator=estimator, baseline=baseline)
    g.cost("nll", lambda p, z, x: -log_lik(p, z, x, latent), params, z, x)
    g.cost("log_q_over_p", lambda z, l: log_q(z, l, latent) - log_prior(latent), z, logits)
    return g


def all_codes(latent: str):
    """Every value of ``z``: the 1024 binary codes ``[1024, 10]``, or the 10 category indices."""
    if latent == "bernoulli":
        return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=LATENTS)), jnp.float32)
    return jnp.arange(LATENTS, dtype=jnp.int32)


def exact_elbo(params, x, latent: str):
    """``(elbo, log p(x))`` per row of ``x [N, 64]``, exactly, by enumerating every ``z``."""
    codes = all_codes(latent)
    dec = jax.vmap(lambda z: mlp(params["decoder"], code(z, latent)))(codes)  # [C, 64]
    lik = x @ jax.nn.log_sigmoid(dec).T + (1 - x) @ jax.nn.log_sigmoid(-dec).T  # [N, C]
    q_logits = jax.vmap(lambda xi: mlp(params["encoder"], xi))(x)  # [N, 10]
    lq = jax.vmap(lambda l: jax.vmap(lambda z: log_q(z, l, latent))(codes))(q_logits)  # [N, C]
    joint = lik + log_prior(latent)
    return jnp.sum(jnp.exp(lq) * (joint - lq), axis=-1), jax.nn.logsumexp(joint, axis=-1)


# -- estimators --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One estimator setting: ``scg.estimators.<module>.<factory>(**kwargs)``, a baseline, samples per point."""

    module: str
    factory: str
    kwargs: tuple = ()
    baseline: Any = None
    num_samples: int = 1

    def build(self):
        return getattr(importlib.import_module(f"scg.estimators.{self.module}"), self.factory)(**dict(self.kwargs))


def _specs() -> dict:
    loo, ema = scg.baselines.LeaveOneOut(), scg.baselines.MovingAverage(0.9)
    common = {
        "score": Spec("score", "score"),
        "score+loo": Spec("score", "score", baseline=loo, num_samples=2),
        "score+ema": Spec("score", "score", baseline=ema),
    }
    relaxed = {"gumbel_softmax": Spec("gumbel_softmax", "gumbel_softmax"),
               "straight_through": Spec("straight_through", "straight_through")}
    return {
        "bernoulli": {**common, "arm": Spec("arm", "arm"), "disarm": Spec("disarm", "disarm"),
                      "rebar": Spec("rebar", "rebar"), "relax": Spec("relax", "relax"), **relaxed},
        "categorical": {**common, "unordered_set": Spec("unordered_set", "unordered_set", (("k", 4),)),
                        "enumeration": Spec("enumeration", "enumeration"), **relaxed},
    }


SPECS = _specs()


# -- training ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    steps: int = 10_000
    batch: int = 32
    lr: float = 3e-3
    hidden: int = 64
    eval_every: int = 250  # the exact ELBOs
    var_every: int = 1000  # the variance checkpoints (a multiple of eval_every)
    var_points: int = 16
    var_replicates: int = 256
    seeds: int = 3
    seed: int = 0


class TrainState(NamedTuple):
    params: dict
    opt_state: Any
    est_state: Any  # the estimators' and baselines' state ({} when stateless)
    key: jax.Array


def mean_state(states):
    """A batch of states (leading axis) as one: floating leaves averaged, other leaves from the first example."""
    return jax.tree_util.tree_map(lambda s: jnp.mean(s, 0) if jnp.issubdtype(s.dtype, jnp.floating) else s[0], states)


class Harness(NamedTuple):
    """The jitted pieces of one estimator's run."""

    init: Any  # key -> TrainState (parameters, optimiser and estimator state initialised from the key)
    chunk: Any  # (TrainState, steps) -> TrainState   (a lax.scan of `steps` training steps)
    point_grads: Any  # (params, est_state, x [V, 64], key) -> grads [V, R, ...] of the one-point estimator
    stateful: bool


def make_harness(latent: str, spec: Spec, cfg: Config, x_train: np.ndarray) -> Harness:
    """Compile the one-point graph with ``spec``'s estimator and build its training and variance functions."""
    est = scg.compile(vae_graph(latent, spec.build(), spec.baseline))
    example = {"params": init_params(jax.random.key(0), cfg.hidden, x_train.mean(0)), "x": jnp.asarray(x_train[0])}
    stateful = bool(jax.tree_util.tree_leaves(est.init_state(example)))
    gfn = est.grad_fn(example, num_samples=spec.num_samples, wrt=("params",), with_state=stateful)
    opt = optax.adam(cfg.lr)
    data = jnp.asarray(x_train)
    in_axes = ({"params": None, "x": 0}, 0)

    def one(params, est_state, x, key):
        if stateful:
            grads, new = gfn({"params": params, "x": x}, key, est_state)
            return grads["params"], new
        return gfn({"params": params, "x": x}, key)["params"], est_state

    def batch_grad(params, est_state, xb, key):
        keys = jax.random.split(key, xb.shape[0])
        if stateful:
            grads, states = jax.vmap(gfn, in_axes=(*in_axes, None))({"params": params, "x": xb}, keys, est_state)
            est_state = mean_state(states)
        else:
            grads = jax.vmap(gfn, in_axes=in_axes)({"params": params, "x": xb}, keys)
        return jax.tree_util.tree_map(lambda a: jnp.mean(a, 0), grads["params"]), est_state

    def step(ts: TrainState, _):
        key, k_batch, k_grad = jax.random.split(ts.key, 3)
        xb = data[jax.random.randint(k_batch, (cfg.batch,), 0, data.shape[0])]
        grads, est_state = batch_grad(ts.params, ts.est_state, xb, k_grad)
        updates, opt_state = opt.update(grads, ts.opt_state, ts.params)
        return TrainState(optax.apply_updates(ts.params, updates), opt_state, est_state, key), None

    def init(key):
        k_params, k_state, k_run = jax.random.split(key, 3)
        params = init_params(k_params, cfg.hidden, x_train.mean(0))
        return TrainState(params, opt.init(params), est.init_state({**example, "params": params}, k_state), k_run)

    def chunk(ts, steps):
        return jax.lax.scan(step, ts, None, length=steps)[0]

    def point_grads(params, est_state, xs, key):
        def at_point(args):
            x, k = args
            keys = jax.random.split(k, cfg.var_replicates)
            return jax.vmap(lambda kk: one(params, est_state, x, kk)[0])(keys)

        return jax.lax.map(at_point, (xs, jax.random.split(key, xs.shape[0])))

    return Harness(jax.jit(init), jax.jit(chunk, static_argnums=1), jax.jit(point_grads), stateful)



# -- measurements -------------------------------------------------------------------------------------
def _sq(tree, axis_keep: int) -> jax.Array:
    """Sum of squares of every leaf over all but the first ``axis_keep`` axes."""
    return sum(jnp.sum(jnp.reshape(a**2, a.shape[:axis_keep] + (-1,)), -1) for a in jax.tree_util.tree_leaves(tree))


def make_measure(harness: Harness, latent: str):
    """``(params, est_state, xs [V, 64], key) -> dict of scalars``: variance, squared bias and norm per part."""

    def exact_grad(params, x):
        return jax.grad(lambda p: -exact_elbo(p, x[None], latent)[0][0])(params)

    def measure(params, est_state, xs, key):
        grads = harness.point_grads(params, est_state, xs, key)  # [V, R, ...]
        exact = jax.vmap(exact_grad, (None, 0))(params, xs)  # [V, ...]
        r = jax.tree_util.tree_leaves(grads)[0].shape[1]
        out = {}
        for part in ("encoder", "decoder"):
            g, e = grads[part], exact[part]
            mean = jax.tree_util.tree_map(lambda a: jnp.mean(a, 1), g)
            var = sum(jnp.sum(jnp.reshape(jnp.var(a, 1, ddof=1), (a.shape[0], -1)), -1) for a in jax.tree_util.tree_leaves(g))
            diff = jax.tree_util.tree_map(jnp.subtract, mean, e)
            out[f"{part}_var"] = jnp.mean(var)  # E_points tr Cov[ĝ(x)]
            out[f"{part}_bias2"] = jnp.mean(_sq(diff, 1) - var / r)  # E_points ‖E ĝ - ∇‖² (unbiased estimate)
            out[f"{part}_norm2"] = jnp.mean(_sq(e, 1))  # E_points ‖∇‖², the scale the variance compares to
        out["total_var"] = out["encoder_var"] + out["decoder_var"]
        return out

    return jax.jit(measure)


@partial(jax.jit, static_argnums=2)
def elbo_metrics(params, x, latent):
    elbo, log_px = exact_elbo(params, x, latent)
    return {"elbo": jnp.mean(elbo), "log_px": jnp.mean(log_px)}


def train_seed(harness: Harness, chunk, measure, cfg: Config, latent: str, seed: int, data: dict,
               snapshots: list | None = None) -> dict:
    """One training run from ``seed``: the ELBO curve, the variance checkpoints and the chunk timings.

    ``snapshots``: if given, ``(params, est_state)`` at every variance checkpoint is appended to it.
    """
    ts = harness.init(jax.random.key(seed))
    curve = {"step": [], "test_elbo": [], "test_log_px": [], "train_elbo": []}
    var: dict = {"step": []}
    chunk_s = []
    var_key = jax.random.fold_in(jax.random.key(seed), 1)
    for i in range(cfg.steps // cfg.eval_every + 1):
        m_test, m_train = elbo_metrics(ts.params, data["test"], latent), elbo_metrics(ts.params, data["train"], latent)
        curve["step"].append(i * cfg.eval_every)
        curve["test_elbo"].append(float(m_test["elbo"]))
        curve["test_log_px"].append(float(m_test["log_px"]))
        curve["train_elbo"].append(float(m_train["elbo"]))
        if (i * cfg.eval_every) % cfg.var_every == 0:
            var["step"].append(i * cfg.eval_every)
            if snapshots is not None:
                snapshots.append((ts.params, ts.est_state))
            for k, v in measure(ts.params, ts.est_state, data["var"], jax.random.fold_in(var_key, i)).items():
                var.setdefault(k, []).append(float(v))
        if i * cfg.eval_every >= cfg.steps:
            break
        t = time.perf_counter()
        ts = jax.block_until_ready(chunk(ts))
        chunk_s.append(time.perf_counter() - t)
    return {"seed": seed, "curve": curve, "variance": var, "chunk_s": chunk_s}


def run_one(latent: str, name: str, spec: Spec, cfg: Config, x_train, x_test) -> tuple[dict, dict]:
    """Train with one estimator from ``cfg.seeds`` seeds (one compile): a JSON-ready dict, and what the
    shared-parameter measurement needs (the measure function, the data, seed 0's snapshots)."""
    t0 = time.perf_counter()
    harness = make_harness(latent, spec, cfg, x_train)
    measure = make_measure(harness, latent)
    data = {"test": jnp.asarray(x_test), "train": jnp.asarray(x_train[: len(x_test)]),
            "var": jnp.asarray(x_train[-cfg.var_points:])}
    t1 = time.perf_counter()
    chunk = harness.chunk.lower(harness.init(jax.random.key(0)), cfg.eval_every).compile()
    compile_s = time.perf_counter() - t1
    snapshots: list = []
    seeds = [train_seed(harness, chunk, measure, cfg, latent, cfg.seed + s, data, snapshots if s == 0 else None)
             for s in range(cfg.seeds)]
    per_step = summary(np.concatenate([s["chunk_s"] for s in seeds]) / cfg.eval_every)
    test = np.array([s["curve"]["test_elbo"] for s in seeds])  # [seeds, checkpoints]
    log_px = np.array([s["curve"]["test_log_px"] for s in seeds])
    enc_var = np.array([s["variance"]["encoder_var"] for s in seeds])
    enc_bias2 = np.array([s["variance"]["encoder_bias2"] for s in seeds])
    finite = bool(np.all(np.isfinite(test)))
    return {
        "status": "ok" if finite else "diverged (non-finite ELBO)",
        "estimator": repr(spec.build()), "baseline": repr(spec.baseline), "num_samples": spec.num_samples,
        "stateful": harness.stateful,
        "final": {  # means (and standard deviations) over seeds
            "test_elbo": float(test[:, -1].mean()), "test_elbo_sd": float(test[:, -1].std(ddof=1)) if len(seeds) > 1 else None,
            "test_log_px": float(log_px[:, -1].mean()),
            "train_elbo": float(np.mean([s["curve"]["train_elbo"][-1] for s in seeds])),
            "encoder_var_mean_log10": float(np.mean(np.log10(np.maximum(enc_var[:, 1:], 1e-30)))),  # after step 0
            "encoder_var_final": float(enc_var[:, -1].mean()), "encoder_bias2_final": float(enc_bias2[:, -1].mean()),
            "encoder_bias2_noise": float(enc_var[:, -1].mean() / cfg.var_replicates),
            "time_per_step_s": per_step["median_s"]},
        "steps": seeds[0]["curve"]["step"], "test_elbo_mean": test.mean(0).tolist(),
        "var_steps": seeds[0]["variance"]["step"], "encoder_var_mean": enc_var.mean(0).tolist(),
        "seeds": seeds,
        "time_per_step": per_step, "compile_s": compile_s, "wall_s": time.perf_counter() - t0,
    }, {"measure": measure, "data": data, "snapshots": snapshots}


REFERENCE = "score+loo"  # whose trajectory (seed 0) gives the shared parameters


def shared_variance(runs: dict, private: dict, cfg: Config) -> None:
    """Every estimator's variance and squared bias at the SAME parameters: those of the reference run
    (:data:`REFERENCE`, seed 0) at each variance checkpoint, with the estimator's own state from its seed-0
    run at the same step (a stateful baseline's average, REBAR's and RELAX's parameters). Written into
    ``runs[name]["variance_at_shared_params"]``."""
    ok = [n for n in private if runs[n].get("status") == "ok"]
    if not ok:
        return
    ref = REFERENCE if REFERENCE in ok else ok[0]
    key = jax.random.key(cfg.seed + 7)
    for name in ok:
        p = private[name]
        out: dict = {"reference": f"{ref} (seed {cfg.seed})", "step": runs[name]["var_steps"]}
        for j, ((params, _), (_, state)) in enumerate(zip(private[ref]["snapshots"], p["snapshots"])):
            for k, v in p["measure"](params, state, p["data"]["var"], jax.random.fold_in(key, j)).items():
                out.setdefault(k, []).append(float(v))
        runs[name]["variance_at_shared_params"] = out
        runs[name]["final"]["encoder_var_shared_mean_log10"] = float(np.mean(np.log10(np.maximum(out["encoder_var"][1:], 1e-30))))


def run(cfg: Config, latents=("bernoulli", "categorical"), only=None) -> dict:
    x_train, x_test = load_digits_binary(cfg.seed)
    out = {}
    for latent in latents:
        out[latent], private = {}, {}
        for name, spec in SPECS[latent].items():
            if only and name not in only:
                continue
            try:
                spec.build()
            except Exception as err:  # a module not written yet, or a factory that fails
                print(f"[{latent}] {name}: skipped ({type(err).__name__}: {err})", flush=True)
                out[latent][name] = {"status": f"missing: {type(err).__name__}: {err}"}
                continue
            try:
                res, private[name] = run_one(latent, name, spec, cfg, x_train, x_test)
            except Exception as err:
                traceback.print_exc()
                print(f"[{latent}] {name}: failed ({type(err).__name__}: {err})", flush=True)
                out[latent][name] = {"status": f"failed: {type(err).__name__}: {str(err)[:500]}"}
                continue
            out[latent][name] = res
            f = res["final"]
            print(f"[{latent}] {name:17s} test ELBO {f['test_elbo']:8.3f}  log p(x) {f['test_log_px']:8.3f}  "
                  f"enc var (mean log10) {f['encoder_var_mean_log10']:6.2f}  bias² {f['encoder_bias2_final']:9.3g}  "
                  f"{1e3 * f['time_per_step_s']:6.2f} ms/step  (compile {res['compile_s']:.1f} s, wall {res['wall_s']:.0f} s)",
                  flush=True)
        shared_variance(out[latent], private, cfg)
        del private
    return out


# -- output ----------------------------------------------------------------------------------------------
def plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latents = [l for l in results["runs"] if any(r.get("status") == "ok" for r in results["runs"][l].values())]
    fig, axes = plt.subplots(len(latents), 4, figsize=(21, 4.4 * len(latents)), squeeze=False)
    for row, latent in zip(axes, latents):
        ok = {n: r for n, r in results["runs"][latent].items() if r.get("status") == "ok"}
        # an exact estimator's variance is float rounding (~1e-13): drawn at a floor below the others
        drawn = [r["encoder_var_mean"] + r.get("variance_at_shared_params", {}).get("encoder_var", []) for r in ok.values()]
        positive = [v for vs in drawn for v in vs if v > 1e-8]
        floor = 0.1 * min(positive) if positive else 1e-12
        for i, (name, r) in enumerate(ok.items()):
            color = f"C{i % 10}"
            style = "--" if i >= 10 else "-"
            row[0].plot(r["steps"], r["test_elbo_mean"], style, color=color, label=name)
            zero = max(r["encoder_var_mean"]) < floor
            label = f"{name} (≈0, drawn at the floor)" if zero else name
            row[1].plot(r["var_steps"], np.maximum(r["encoder_var_mean"], floor), style, color=color, marker=".", label=label)
            shared = r.get("variance_at_shared_params")
            if shared:
                row[2].plot(shared["step"], np.maximum(shared["encoder_var"], floor), style, color=color, marker=".", label=label)
        names = list(ok)
        row[3].barh(names, [1e3 * ok[n]["time_per_step"]["median_s"] for n in names], color=[f"C{i % 10}" for i in range(len(names))])
        row[0].set(xlabel="training step", ylabel="test ELBO (exact, nats)",
                   title=f"{latent}: test ELBO (mean of {results['config']['seeds']} seeds)")
        lo = np.nanmin([min(r["test_elbo_mean"][1:] or r["test_elbo_mean"]) for r in ok.values()])
        hi = np.nanmax([max(r["test_elbo_mean"]) for r in ok.values()])
        row[0].set_ylim(max(lo, hi - 15) - 0.5, hi + 0.5)
        row[1].set(xlabel="training step", ylabel="tr Cov of the one-point encoder gradient", yscale="log",
                   title=f"{latent}: encoder gradient variance (own run, {results['config']['seeds']} seeds)")
        ref = next((r["variance_at_shared_params"]["reference"] for r in ok.values() if "variance_at_shared_params" in r), "")
        row[2].set(xlabel=f"step of the reference run ({ref})", ylabel="tr Cov of the one-point encoder gradient",
                   yscale="log", title=f"{latent}: encoder gradient variance at shared parameters")
        row[3].set(xlabel="ms per training step (median)", title=f"{latent}: time per step (batch {results['config']['batch']})")
        row[3].invert_yaxis()
        row[0].legend(fontsize=8, ncol=2)
        row[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict) -> str:
    lines = ["| latent | estimator | samples/point | final test ELBO | final test log p(x) | log10 encoder var, own run "
             "| log10 encoder var, shared params | encoder var (final) | encoder bias² (final) | ms/step | compile s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for latent, runs in results["runs"].items():
        for name, r in runs.items():
            if r.get("status") != "ok":
                lines.append(f"| {latent} | {name} | | {r.get('status')} | | | | | | | |")
                continue
            f = r["final"]
            sd = "" if f["test_elbo_sd"] is None else f" ± {f['test_elbo_sd']:.2f}"
            lines.append(f"| {latent} | {name} | {r['num_samples']} | {f['test_elbo']:.2f}{sd} | {f['test_log_px']:.2f} | "
                         f"{f['encoder_var_mean_log10']:.2f} | {f.get('encoder_var_shared_mean_log10', float('nan')):.2f} | "
                         f"{f['encoder_var_final']:.3g} | {f['encoder_bias2_final']:.2g} | "
                         f"{1e3 * f['time_per_step_s']:.2f} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps and replicates")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--only", nargs="*", help="estimator names to run (default: all)")
    parser.add_argument("--latents", nargs="*", default=["bernoulli", "categorical"])
    parser.add_argument("--out", default=str(RESULTS / "discrete_vae.json"))
    parser.add_argument("--report", action="store_true", help="print the table of an existing results file")
    args = parser.parse_args(argv)
    if args.report:
        import json

        print(table(json.load(open(args.out))))
        return {}
    cfg = Config(steps=60, eval_every=30, var_every=30, var_points=4, var_replicates=32, seeds=1) if args.quick else Config()
    if args.steps:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)
    env = environment()
    t0 = time.perf_counter()
    runs = run(cfg, tuple(args.latents), args.only)
    results = {"environment": env, "config": {**dataclasses.asdict(cfg), "quick": args.quick},
               "model": {"pixels": PIXELS, "latents": LATENTS, "data": "sklearn load_digits, pixel > 8, 1437/360 split",
                         "encoder": f"{PIXELS}-{cfg.hidden}-{LATENTS} tanh MLP", "decoder": f"{LATENTS}-{cfg.hidden}-{PIXELS} tanh MLP",
                         "prior": "uniform", "optimizer": f"adam({cfg.lr})"},
               "variance_definition": ("tr Cov over var_replicates draws of the one-data-point gradient estimator (encoder "
                                       "or decoder parameters) at the current params and state, averaged over var_points "
                                       "fixed training points; bias2 = ||mean - exact||^2 - var/R (unbiased; noise ~ var/R)"),
               "runs": runs, "wall_s": time.perf_counter() - t0}
    write_json_atomic(args.out, results)
    plot(Path(args.out).with_suffix(".png"), results)
    print(table(results))
    print(f"wrote {args.out} and its .png in {results['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
