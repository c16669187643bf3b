"""Generate ``notebooks/07_estimators_on_a_discrete_vae.ipynb`` (sources only): ``python notebooks/make_07.py``."""
from _generate import write

NAME = "07_estimators_on_a_discrete_vae.ipynb"

CELLS = [
    ("md", r"""# Gradient estimators on a discrete VAE

The standard test bed of the discrete-estimator literature (REBAR, RELAX, ARM, DisARM, the unordered-set
estimator): a variational autoencoder whose latent code is discrete, so the reparameterisation trick does
not apply and the encoder's gradient must come from somewhere else. Here, at notebook scale: binarised
8×8 digits from scikit-learn (`load_digits`, pixel > 8 → 1), 10 Bernoulli latents, an MLP encoder and
decoder, and the negative ELBO of **one** data point written as a graph

$$\mathcal L(x) = \mathbb E_{z\sim q_\phi(z\mid x)}\big[-\log p_\theta(x\mid z) + \log q_\phi(z\mid x) - \log p(z)\big],$$

two costs under one stochastic node. The node's `estimator=` is the only thing that changes between the
runs below; minibatches are a `jax.vmap` of the compiled one-point gradient. With 2¹⁰ = 1024 codes the
ELBO, and its exact gradient, are computed by enumeration, so every curve is exact and the bias of an
estimator can be measured, not only its variance. `bench/discrete_vae.py` runs the full comparison
(every estimator, 10-way categorical latents too, several seeds)."""),
    ("code", r"""%matplotlib inline
import itertools
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from IPython.display import SVG, display
from sklearn.datasets import load_digits

import scg
from scg import dist
from scg.estimators.arm import arm
from scg.estimators.disarm import disarm
from scg.estimators.gumbel_softmax import gumbel_softmax
from scg.estimators.score import score

t_start = time.time()
X = (load_digits().data > 8).astype(np.float32)
perm = np.random.default_rng(0).permutation(len(X))
X_TRAIN, X_TEST = jnp.asarray(X[perm[360:]]), jnp.asarray(X[perm[:360]])
print(X_TRAIN.shape, X_TEST.shape, "mean pixel", float(X_TRAIN.mean()))"""),
    ("md", r"""## 1. The model, for one data point

`log q(z|x)` is a cost that reads `z` *and* the encoder's logits. For a score-function node the compiler
then differentiates it twice over, as it should: pathwise through the logits at the sampled `z` (the term
∇log q(ẑ), zero in expectation) and, inside Q̂, through the sampling of `z`. Relaxed estimators
(Gumbel-softmax) evaluate the costs at a relaxed z ∈ (0, 1)¹⁰: the Bernoulli log-mass
z log π + (1 − z) log(1 − π) is used there as it is (linear in z), as in Tucker et al. (2017)'s code."""),
    ("code", r"""LATENTS, HIDDEN = 10, 64


def mlp_init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (m, n)) / np.sqrt(m), jnp.zeros(n)) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]


def mlp(layers, h):
    for w, b in layers[:-1]:
        h = jnp.tanh(h @ w + b)
    return h @ layers[-1][0] + layers[-1][1]


def init_params(key):
    k_enc, k_dec = jax.random.split(key)
    decoder = mlp_init(k_dec, (LATENTS, HIDDEN, 64))
    mean = jnp.clip(X_TRAIN.mean(0), 1e-3, 1 - 1e-3)
    decoder[-1] = (decoder[-1][0], jnp.log(mean) - jnp.log1p(-mean))  # start at the mean image
    return {"encoder": mlp_init(k_enc, (64, HIDDEN, LATENTS)), "decoder": decoder}


def log_lik(params, z, x):
    return jnp.sum(dist.Bernoulli(logits=mlp(params["decoder"], z)).log_prob(x))


def log_q(z, logits):  # Bernoulli log-mass; at a relaxed z, the same formula
    return jnp.sum(z * jax.nn.log_sigmoid(logits) + (1 - z) * jax.nn.log_sigmoid(-logits))


LOG_PRIOR = -LATENTS * np.log(2.0)  # uniform prior


def vae_graph(estimator, baseline=None):
    g = scg.Graph("digits_vae")
    params = g.input("params")
    x = g.input("x", differentiable=False)
    logits = g.deterministic("q_logits", lambda p, x: mlp(p["encoder"], x), params, x)
    z = g.stochastic("z", lambda l: dist.Bernoulli(logits=l), logits, estimator=estimator, baseline=baseline)
    g.cost("nll", lambda p, z, x: -log_lik(p, z, x), params, z, x)
    g.cost("log_q_over_p", lambda z, l: log_q(z, l) - LOG_PRIOR, z, logits)
    return g


CODES = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=LATENTS)))  # all 1024 values of z


def exact_elbo(params, x):
    # ELBO(x) = Σ_z q(z|x) [log p(x|z) + log p(z) − log q(z|x)], for every row of x at once
    dec = jax.vmap(lambda z: mlp(params["decoder"], z))(CODES)                    # [1024, 64]
    lik = x @ jax.nn.log_sigmoid(dec).T + (1 - x) @ jax.nn.log_sigmoid(-dec).T    # [N, 1024]
    lq = jax.vmap(lambda l: jax.vmap(lambda z: log_q(z, l))(CODES))(jax.vmap(lambda xi: mlp(params["encoder"], xi))(x))
    return jnp.sum(jnp.exp(lq) * (lik + LOG_PRIOR - lq), axis=-1)


g = vae_graph("score")
display(SVG(scg.render.to_svg(g)))"""),
    ("md", r"""A check before training: the compiled graph's Monte Carlo value of the cost (20,000 samples of z for
one image) against the exact negative ELBO."""),
    ("code", r"""params0 = init_params(jax.random.key(0))
est = scg.compile(g)
x0 = X_TRAIN[0]
values = est.sample({"params": params0, "x": x0}, jax.random.key(1), num_samples=20_000)
cost = np.asarray(values["nll"] + values["log_q_over_p"])
exact = -float(exact_elbo(params0, x0[None])[0])
z_score = (cost.mean() - exact) / (cost.std() / np.sqrt(cost.size))
print(f"Monte Carlo {cost.mean():.3f} ± {cost.std() / np.sqrt(cost.size):.3f}, exact {exact:.3f}, z = {z_score:.2f}")
assert abs(z_score) < 5"""),
    ("md", r"""## 2. Training with each estimator

Adam (learning rate 3·10⁻³), minibatches of 32, 600 steps, the same seed for every estimator; the exact
test ELBO every 50 steps. The training loop is one `jit`: an outer `lax.scan` over evaluations, an inner
one over steps. The estimators:

- `score`: the score function alone (REINFORCE);
- `score + LOO`: two samples per image, each using the other's cost as its baseline
  (`scg.baselines.LeaveOneOut()`, Kool et al. 2019): two decoder evaluations;
- `arm`, `disarm`: the augment-REINFORCE-merge estimator and its Rao-Blackwellised variant
  (Yin & Zhou 2019; Dong et al. 2020): antithetic pairs of binary codes from one uniform draw, two
  decoder evaluations;
- `gumbel_softmax`: the relaxed sample (Jang et al. 2017; Maddison et al. 2017), pathwise through the
  relaxation: biased."""),
    ("code", r"""STEPS, EVERY, BATCH = 600, 50, 32


ESTIMATORS = {  # name: (estimator, baseline, samples per image)
    "score": (score(), None, 1),
    "score + LOO": (score(), scg.baselines.LeaveOneOut(), 2),
    "arm": (arm(), None, 1),
    "disarm": (disarm(), None, 1),
    "gumbel_softmax": (gumbel_softmax(), None, 1),
}


def make_train(estimator, baseline, num_samples):
    est = scg.compile(vae_graph(estimator, baseline))
    grad_fn = est.grad_fn({"params": params0, "x": x0}, num_samples=num_samples)
    batched = jax.vmap(grad_fn, in_axes=({"params": None, "x": 0}, 0))  # write for one image, vmap outside
    opt = optax.adam(3e-3)

    def step(carry, key):
        params, opt_state = carry
        k_batch, k_grad = jax.random.split(key)
        xb = X_TRAIN[jax.random.randint(k_batch, (BATCH,), 0, X_TRAIN.shape[0])]
        grads = batched({"params": params, "x": xb}, jax.random.split(k_grad, BATCH))["params"]
        updates, opt_state = opt.update(jax.tree.map(lambda a: a.mean(0), grads), opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    def chunk(carry, key):
        carry, _ = jax.lax.scan(step, carry, jax.random.split(key, EVERY))
        return carry, jnp.mean(exact_elbo(carry[0], X_TEST))

    @jax.jit
    def train(params, key):
        carry, curve = jax.lax.scan(chunk, (params, opt.init(params)), jax.random.split(key, STEPS // EVERY))
        return carry[0], jnp.concatenate([jnp.mean(exact_elbo(params, X_TEST))[None], curve])

    return est, grad_fn, train


runs = {}
for name, (estimator, baseline, n) in ESTIMATORS.items():
    t = time.time()
    _, grad_fn, train = make_train(estimator, baseline, n)
    params, curve = jax.block_until_ready(train(params0, jax.random.key(2)))
    runs[name] = {"params": params, "curve": np.asarray(curve), "grad_fn": grad_fn, "seconds": time.time() - t}
    print(f"{name:15s} test ELBO {curve[0]:.2f} → {curve[-1]:.2f}   ({runs[name]['seconds']:.1f} s with compiling)")"""),
    ("md", r"""## 3. Variance (and bias) of the one-image gradient

At each run's final parameters, 256 independent gradient estimates for each of 8 fixed training images:
the trace of their covariance, for the encoder's parameters (where the estimators differ; the decoder's
gradient is pathwise for all of them), averaged over the images, and the squared distance of their mean
from the exact gradient (by enumeration) minus its expected noise, tr Cov / 256: an unbiased estimate
of the squared bias, zero up to noise for the unbiased estimators."""),
    ("code", r"""R, X_VAR = 256, X_TRAIN[-8:]


def exact_grad(params, x):
    return jax.grad(lambda p: -exact_elbo(p, x[None])[0])(params)["encoder"]


def variance_and_bias(grad_fn, params):
    def at(x, key):
        draws = jax.vmap(lambda k: grad_fn({"params": params, "x": x}, k)["params"]["encoder"])(jax.random.split(key, R))
        var = sum(jnp.sum(jnp.var(a, 0, ddof=1)) for a in jax.tree.leaves(draws))
        err = sum(jnp.sum((jnp.mean(a, 0) - e) ** 2) for a, e in zip(jax.tree.leaves(draws), jax.tree.leaves(exact_grad(params, x))))
        return var, err - var / R

    var, bias2 = jax.jit(jax.vmap(at))(X_VAR, jax.random.split(jax.random.key(3), X_VAR.shape[0]))
    return float(var.mean()), float(bias2.mean()), float(var.mean()) / R


for name, r in runs.items():
    r["var"], r["bias2"], r["noise"] = variance_and_bias(r["grad_fn"], r["params"])
    print(f"{name:15s} tr Cov (encoder) {r['var']:10.3g}   bias² {r['bias2']:9.3g} (noise ±{r['noise']:.2g})")

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
steps = np.arange(0, STEPS + 1, EVERY)
for name, r in runs.items():
    axes[0].plot(steps, r["curve"], label=name)
axes[0].set(xlabel="training step", ylabel="test ELBO (exact, nats)", title="test ELBO")
axes[0].legend()
names = list(runs)
axes[1].bar(names, [runs[n]["var"] for n in names], color=[f"C{i}" for i in range(len(names))])
axes[1].set(yscale="log", ylabel="tr Cov of the encoder gradient", title="one-image gradient variance at the end")
plt.setp(axes[1].get_xticklabels(), rotation=20)
plt.show()"""),
    ("md", r"""What to take from it. The plain score function's variance is two orders of magnitude above the
others', and its ELBO lags far behind. A baseline from a second sample (LOO) or the antithetic pair of
ARM/DisARM removes most of it, each at the price of a second decoder evaluation; at that equal price ARM
is a little noisier than LOO and DisARM (its Rao-Blackwellisation) closes most of the gap, as Dong et
al. (2020) report. Gumbel-softmax optimises the relaxed objective: its squared bias
against the exact gradient is then visibly above the noise. Asserted below: what holds on every seed
(LOO's variance reduction, the unbiasedness of the unbiased estimators, every ELBO improving); the rest is
printed. `bench/discrete_vae.py` has three seeds, 10,000 steps, every estimator and the 10-way
categorical latent (with the unordered-set and enumeration estimators)."""),
    ("code", r"""assert runs["score + LOO"]["var"] < runs["score"]["var"] / 10, "LOO cuts the score function's variance"
for name in ("score", "score + LOO", "arm", "disarm"):  # unbiased: the squared bias is zero within noise
    assert abs(runs[name]["bias2"]) < 6 * runs[name]["noise"] + 1e-3, name
for name, r in runs.items():
    assert r["curve"][-1] > r["curve"][0], f"{name} improves the ELBO"
print(f"notebook ran in {time.time() - t_start:.0f} s")"""),
]


if __name__ == "__main__":
    write(CELLS, NAME)
