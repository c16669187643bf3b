"""Generate ``notebooks/03_gae_trpo.ipynb`` (sources only): ``python notebooks/make_03.py``."""
from _generate import write

NAME = "03_gae_trpo.ipynb"

CELLS = [
    ("md", r"""# Trust regions and generalized advantage estimation

TRPO (Schulman 2016, Ch. 3) improves a policy by minimising the importance-ratio surrogate of a batch
sampled at θ_old (**Eq. 35**, here in cost units, so smaller is better)

$$L_{\theta_\text{old}}(\theta) = \frac1N\sum_n \frac{\pi_\theta(a_n\mid s_n)}{\pi_{\theta_\text{old}}(a_n\mid s_n)}\,\hat A_n
\quad\text{subject to}\quad \overline{\mathrm{KL}}(\theta_\text{old},\theta) = \frac1N\sum_n \mathrm{KL}\big(\pi_{\theta_\text{old}}(\cdot\mid s_n)\,\|\,\pi_\theta(\cdot\mid s_n)\big) \le \delta .$$

§3.12 solves it approximately: the direction s = −F⁻¹g by conjugate gradient on Fisher-vector products
(F the Hessian of the mean KL), scaled to the boundary of the quadratic model of the KL, β = √(2δ / sᵀFs),
then a backtracking line search that accepts only a step that improves L and keeps the real KL ≤ δ.

In `scg` none of this is specific to policies. A compiled graph gives the two functions: `est.advantages`
fixes the weights Â of a sampled batch, `est.replay` re-evaluates the graph at new parameters with the
sampled values kept (log-probabilities and distributions, hence ratios and the KL), and
`scg.trust_region.trpo_step` takes any loss and KL over a parameter pytree.

The second half is about the Â. GAE(γ, λ) (**Eq. 26**) sums TD residuals of a value function,
Â_t = Σ_l (γλ)^l δ_{t+l} with δ_t = r_t + γV(s_{t+1}) − V(s_t); λ = 0 is the one-step residual (Eq. 27,
low variance, biased unless V is exact), λ = 1 the return minus the baseline (Eq. 28, unbiased, high
variance). In `scg` it is one option of a score node, `advantage=scg.GAE(lam)`."""),
    ("code", r"""%matplotlib inline
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import SVG, display

import scg
from scg import dist, trust_region
from scg.dist import kl_divergence

t_start = time.time()"""),
    ("md", r"""## 1. One trust-region step, drawn

A contextual two-armed bandit: a state s is one of four values, the policy picks a ∈ {0, 1} with
P(a = 1) = σ(θ₀ s + θ₁), the cost is 1 − s for a = 1 and 0 for a = 0 (arm 1 pays off in the larger states). Two parameters, so the surrogate
and the KL can be drawn over the plane."""),
    ("code", r"""STATES = jnp.array([0.3, 0.9, 1.6, 2.4])

g = scg.Graph("bandit")
theta = g.input("theta")
s = g.stochastic("s", lambda: dist.Categorical(logits=jnp.zeros(4)), estimator="score")
a = g.stochastic("a", lambda th, s: dist.Bernoulli(logits=th[0] * STATES[s] + th[1]), theta, s, estimator="score")
g.cost("c", lambda s, a: a * (1.0 - STATES[s]), s, a)
est = scg.compile(g)
display(SVG(scg.render.to_svg(g, compiled=est)))

theta_old = jnp.array([0.0, 0.0])
inputs = {"theta": theta_old}
batch = est.sample(inputs, jax.random.key(0), num_samples=512)   # the batch, drawn at θ_old
adv = est.advantages(inputs, batch)["a"]                          # Q̂ − b per sample (no baseline here: Q̂)
old = est.replay(inputs, batch)                                   # log π_old(a|s) and π_old(·|s)


def surrogate(th):
    # Eq. 35 in cost units
    rep = est.replay({"theta": th}, batch)
    return jnp.mean(jnp.exp(rep.log_probs["a"] - old.log_probs["a"]) * adv)


def mean_kl(th):
    rep = est.replay({"theta": th}, batch)
    return jnp.mean(kl_divergence(old.dists["a"], rep.dists["a"]))


DELTA = 0.05
new_theta, info = jax.jit(lambda th: trust_region.trpo_step(surrogate, mean_kl, th, max_kl=DELTA, cg_damping=1e-3))(theta_old)
print(info)
assert bool(info.accepted) and float(info.kl) <= DELTA and float(info.improvement) > 0"""),
    ("md", r"""The surrogate's contours, the trust region (the real mean KL = δ, and its quadratic model
½ΔᵀFΔ = δ, an ellipse), the plain gradient direction, and the natural-gradient step TRPO takes. The
natural gradient bends the step toward directions in which the policy changes little."""),
    ("code", r"""w = jnp.linspace(-1.6, 1.6, 101)
W0, W1 = jnp.meshgrid(w, w)
grid = jnp.stack([W0.ravel(), W1.ravel()], -1)
L = jax.jit(jax.vmap(surrogate))(grid).reshape(W0.shape)
K = jax.jit(jax.vmap(mean_kl))(grid).reshape(W0.shape)
F = jax.hessian(mean_kl)(theta_old)
Q = jnp.einsum("...i,ij,...j->...", grid, F, grid).reshape(W0.shape) / 2
g_old = jax.grad(surrogate)(theta_old)

fig, ax = plt.subplots(figsize=(6, 5.5))
cs = ax.contour(W0, W1, L, levels=20, cmap="viridis", linewidths=0.8)
ax.clabel(cs, fontsize=7)
ax.contour(W0, W1, K, levels=[DELTA], colors="crimson", linewidths=2)
ax.contour(W0, W1, Q, levels=[DELTA], colors="crimson", linestyles="--", linewidths=1)
gdir = -g_old / jnp.linalg.norm(g_old) * 0.6
ax.annotate("", xy=gdir, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="gray", lw=1.5))
ax.annotate("", xy=new_theta, xytext=theta_old, arrowprops=dict(arrowstyle="->", color="black", lw=2))
ax.plot([], [], color="crimson", lw=2, label=f"mean KL = δ = {DELTA}")
ax.plot([], [], color="crimson", ls="--", label="quadratic model ½ΔᵀFΔ = δ")
ax.plot([], [], color="gray", label="−gradient (direction)")
ax.plot([], [], color="black", label="TRPO step (CG + line search)")
ax.set_xlabel("θ₀ (weight of s)"); ax.set_ylabel("θ₁ (bias)"); ax.legend(loc="lower left", fontsize=8)
ax.set_title("surrogate L(θ) contours and the trust region")
plt.show()"""),
    ("md", r"""Far from θ_old the quadratic model of the KL and the linear model of L are poor: with a large
δ the real KL and the improvement fall short of their predictions. The line search halves the step until
the real KL is within δ and L improves by at least `accept_ratio` times the linear prediction (0.1 by
default); asking for half the prediction makes it reject the full step at δ = 2:"""),
    ("code", r"""for delta, accept_ratio in ((0.05, 0.1), (0.5, 0.1), (2.0, 0.1), (2.0, 0.5)):
    step = lambda th: trust_region.trpo_step(surrogate, mean_kl, th, max_kl=delta, cg_damping=1e-3, accept_ratio=accept_ratio)
    _, inf = jax.jit(step)(theta_old)
    print(f"δ = {delta:4}, accept_ratio {accept_ratio}: step fraction {float(inf.step_fraction):.3f}, KL {float(inf.kl):.4f}, "
          f"improvement {float(inf.improvement):.4f} (linear prediction {float(inf.expected_improvement):.4f})")
assert float(inf.step_fraction) < 1.0  # the last one backtracked"""),
    ("md", r"""## 2. GAE: λ = 1 is the plain credit, λ < 1 trades bias for variance

`advantage=scg.GAE(lam)` on the policy's score node changes only what multiplies its score function.
With λ = 1 the compiled gradient equals the default credit `Q̂_t − b_t` exactly, for the same samples:"""),
    ("code", r"""from scg.algorithms.mdp import actor_critic_graph, env_transition
from scg.algorithms.networks import make_policy, make_value
from scg.envs.registry import make

env, env_params = make("CartPole-v1")
policy = make_policy(env.observation_space(env_params), env.action_space(env_params), (32,))
value = make_value(env.observation_space(env_params), (32,))
obs, state = env.reset(jax.random.key(0), env_params)
params = {"theta": policy.init(jax.random.key(1)), "phi": value.init(jax.random.key(2)), "obs": obs, "state": state}


def policy_gradient(lam, key):
    graph = actor_critic_graph(env_transition(env, env_params), policy, value, horizon=64, discount=0.99, gae_lambda=lam)
    return scg.compile(graph).grad(params, key, num_samples=16, wrt="theta")["theta"]


flat = lambda tree: jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(tree)])
plain = flat(scg.compile(actor_critic_graph(env_transition(env, env_params), policy, value, horizon=64, discount=0.99)).grad(params, jax.random.key(3), num_samples=16, wrt="theta")["theta"])
gae_one = flat(policy_gradient(1.0, jax.random.key(3)))
print("max |GAE(1) − plain| =", float(jnp.max(jnp.abs(gae_one - plain))), " (max |plain| =", float(jnp.max(jnp.abs(plain))), ")")
np.testing.assert_allclose(gae_one, plain, rtol=1e-4, atol=1e-6)"""),
    ("md", r"""## 3. A λ sweep with GAE-TRPO on CartPole

`scg.algorithms.trpo` is the §4.6 algorithm: the MDP graph with `gae_lambda=λ`, a TRPO policy step, then the
value function refit by its own trust region (Eq. 33–34), after the advantages were computed with the old
one. A short run per λ (a few seeds in parallel, one `jit` each: λ is part of the graph, so it is not one of
the numbers `make_train(..., sweep=)` can `vmap`); `bench/gae_figure8.py` runs the thesis' full Figure 8
experiment."""),
    ("code", r"""from scg.algorithms import make_train
from scg.algorithms.train import steps_to_reach

LAMBDAS = (0.0, 0.97, 1.0)
SEEDS, ITERATIONS = 2, 12
curves = {}
for lam in LAMBDAS:
    init, run = make_train("trpo", env, env_params, {"gae_lambda": lam})
    states = init(jax.random.split(jax.random.key(0), SEEDS))
    _, metrics = run(states, ITERATIONS)
    curves[lam] = {k: np.asarray(v) for k, v in metrics.items()}

fig, ax = plt.subplots(figsize=(6, 3.5))
for lam, m in curves.items():
    steps = np.cumsum(m["env_steps"], axis=-1)[0]
    ret = np.nan_to_num(m["mean_return"], nan=0.0)
    ax.plot(steps, ret.mean(0), label=f"λ = {lam}")
    ax.fill_between(steps, ret.min(0), ret.max(0), alpha=0.15)
ax.set_xlabel("environment steps"); ax.set_ylabel("mean return (last 20 episodes)"); ax.legend()
ax.set_title("GAE-TRPO on CartPole-v1, γ = 0.99")
plt.show()
final = {lam: float(np.nanmean(m["mean_return"][:, -1])) for lam, m in curves.items()}
print("final mean return per λ:", final)
assert max(final.values()) > 100, "some λ should have learned within this short run"
"""),
    ("code", r"""print(f"notebook ran in {time.time() - t_start:.0f} s")"""),
]



if __name__ == "__main__":
    write(CELLS, NAME)
