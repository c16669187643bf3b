"""Generate ``notebooks/02_policy_gradients.ipynb`` (sources only): ``python notebooks/make_02.py``."""
from _generate import write

NAME = "02_policy_gradients.ipynb"

CELLS = [
    ("md", r"""# Policy gradients: an MDP as a stochastic computation graph

In an MDP (Schulman 2016, §5.10.2) the trajectory τ = (s₁, a₁, s₂, a₂, …) is a stochastic computation
graph: actions are drawn from the policy, a_t ~ π_θ(·|s_t), the environment draws the next state
from p_E(s_{t+1}|s_t, a_t), and every step adds a reward r_t (a negative cost). The graph of one step,
repeated over time, is Figure 14 of the thesis. The actions "block" the differentiable path from θ to the
rewards, so the score-function estimator never differentiates the unknown dynamics; with the time
structure, credit assignment gives the REINFORCE estimator, **Eq. 44**:

$$\frac{\partial}{\partial \theta} \mathbb{E}\Big[\sum_{t=1}^T r_t\Big] = \mathbb{E}_{\tau \sim p_\theta}\Big[\sum_{t=1}^{T} \frac{\partial}{\partial\theta} \log \pi_\theta(a_t \mid s_t)\Big(\sum_{t'=t}^{T} r_{t'} - b_t(s_t)\Big)\Big].$$

The baseline b_t(s_t) leaves the estimator unbiased by **Theorem 2**: a baseline for a stochastic node v may
depend on any nodes that v does not influence (NONINFLUENCED(v)); s_t comes before a_t, so b(s_t) is allowed,
while s_{t+1}, a_t or r_t are not. This notebook draws the compiled step graph, trains REINFORCE on CartPole
with the whole training run inside one `jit`, and measures how much the baseline reduces the variance of the
gradient."""),
    ("code", r"""%matplotlib inline
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import SVG, display

import scg
from scg.algorithms import make_train, reinforce
from scg.algorithms import mdp
from scg.algorithms.networks import make_policy, make_value
from scg.envs.registry import make

t_start = time.time()
env, env_params = make("CartPole-v1")"""),
    ("md", r"""## 1. The MDP graph of Figure 14, drawn by the library

`scg.algorithms.mdp` declares one time step with small builders (critic, policy, transition, bootstrap) and
wraps it in `scg.Temporal` (a `lax.scan` over the horizon); `mdp.actor_critic_graph` assembles the same graph in
one call. In the picture: θ (policy) and φ (value) are inputs; `a` ~ π_θ(·|obs) is a score-function node
whose baseline is `v` = −V_φ(obs_t) (costs are negative rewards); `transition` is the simulated environment
step (its density is unknown, no gradient passes it); `r` is the per-step cost; `obs_next` and `state_next`
are carried into the next step as `obs` and `state`; `terminated`/`truncated` mark episode ends (no credit
crosses them) and `boot` = −V_φ(s_{t+1}) stands in for the costs after a truncation or the last step."""),
    ("code", r"""config = reinforce.ReinforceConfig()  # the defaults, a frozen dataclass
policy = make_policy(env.observation_space(env_params), env.action_space(env_params), config.hidden)
value = make_value(env.observation_space(env_params), config.hidden)


def reinforce_graph(horizon, baseline=True):
    g = mdp.step_graph(mdp.graph_name(env))  # inputs theta, obs, state (obs and state are carried)
    v = mdp.add_critic(g, value)  # input phi, node v = -V_phi(obs_t)
    a = mdp.add_policy(g, policy, baseline=v if baseline else None)  # score function
    mdp.add_transition(g, mdp.simulated_transition(env, env_params), a)  # transition, r, obs_next, ...
    mdp.add_bootstrap(g, value)  # boot = -V_phi(final obs)
    return mdp.temporal(g, horizon=horizon, discount=config.discount)


graph = reinforce_graph(config.horizon)
print(graph)
compiled = scg.compile(graph)
display(SVG(scg.render.to_svg(graph.step, compiled=compiled)))"""),
    ("md", r"""Theorem 2 is checked when the graph is compiled. A "baseline" that reads the next observation
(influenced by a_t) would bias the estimator, and the compiler refuses it, naming the nodes:"""),
    ("code", r"""bad = scg.Graph("bad_baseline")
theta, obs = bad.input("theta"), bad.input("obs", differentiable=False)
a = bad.stochastic("a", policy.dist, theta, obs, estimator="score", baseline="b")
nxt = bad.deterministic("obs_next", lambda o, a: o + (2.0 * a - 1.0), obs, a)
bad.cost("r", lambda o: -jnp.cos(o[2]), nxt)
bad.deterministic("b", lambda o: jnp.sum(o), nxt)  # reads s_{t+1}: not allowed
try:
    scg.compile(scg.Temporal(bad, carry={"obs": "obs_next"}, horizon=10))
    raise AssertionError("a baseline reading s_{t+1} must be rejected")
except scg.GraphError as e:
    print("GraphError:", e)"""),
    ("md", r"""## 2. REINFORCE with a learned baseline

`scg.algorithms.reinforce` (the "vanilla policy gradient" slide): each iteration runs 8 CartPoles for 200 steps
inside the compiled graph, takes an Adam step on θ along the estimate of Eq. 44, and refits V_φ to the
returns of the same batch. `make_train` makes a whole chunk of iterations one `jit` of a `lax.scan`, and
runs seeds in parallel with `vmap`. Two seeds, 30 iterations (48,000 environment steps each):"""),
    ("code", r"""num_seeds, num_iterations = 2, 30
init_all, run_all = make_train("reinforce", env, env_params, config)
states = init_all(jax.random.split(jax.random.key(0), num_seeds))
t0 = time.time()
states, metrics = run_all(states, num_iterations)
mean_return = np.asarray(metrics["mean_return"])  # [seeds, iterations], mean of the last 20 episodes
env_steps = np.cumsum(np.asarray(metrics["env_steps"]), axis=1)
print(f"{num_seeds} seeds x {int(env_steps[0, -1])} env steps in {time.time() - t0:.1f} s (compile included)")
print("final mean return per seed:", mean_return[:, -1].round(1))
assert np.all(mean_return[:, -1] > 3 * np.nanmin(mean_return[:, :3], axis=1)), "REINFORCE did not improve" """),
    ("code", r"""fig, ax = plt.subplots(figsize=(6, 3.5))
for s in range(num_seeds):
    ax.plot(env_steps[s], mean_return[s], label=f"seed {s}")
ax.axhline(500, color="gray", ls=":", lw=1)
ax.set_xlabel("environment steps")
ax.set_ylabel("mean return (last 20 episodes)")
ax.set_title("REINFORCE on CartPole-v1")
ax.legend()
plt.show()"""),
    ("md", r"""## 3. The variance of the gradient with and without the baseline

Take the policy and value function just trained (seed 0) and draw many independent single-trajectory
gradient estimates (100 steps from the same start state) with the compiled graph, once with b_t = −V_φ(s_t)
and once without it (`baseline=False` in `reinforce_graph`). Both are unbiased estimates of the same gradient (Theorem 2); the baseline
changes only their spread. Both graphs have the same nodes in the same order, so the same keys draw the
same trajectories: the two sets of estimates are paired, and the difference is the baseline alone."""),
    ("code", r"""theta = jax.tree_util.tree_map(lambda x: x[0], states.params["theta"])
phi = jax.tree_util.tree_map(lambda x: x[0], states.params["phi"])
obs0, state0 = env.reset(jax.random.key(0), env_params)
inputs = {"theta": theta, "phi": phi, "obs": obs0, "state": state0}
num_replicates, horizon = 200, 100
grads = {}
for name, baseline in [("with baseline", True), ("without baseline", False)]:
    g = scg.compile(reinforce_graph(horizon, baseline))
    samples = g.grad_samples(inputs, jax.random.key(7), num_replicates=num_replicates, wrt="theta")["theta"]
    grads[name] = np.concatenate([np.asarray(x).reshape(num_replicates, -1) for x in jax.tree_util.tree_leaves(samples)], 1)
var = {k: v.var(axis=0, ddof=1) for k, v in grads.items()}
ratio = var["without baseline"].sum() / var["with baseline"].sum()
print(f"total variance (trace of the covariance) without / with baseline: {ratio:.1f}x")
print(f"per component: median ratio {np.median(var['without baseline'] / var['with baseline']):.1f}x")"""),
    ("code", r"""layers = [("W1", 4 * 64), ("b1", 64), ("W2", 64 * 64), ("b2", 64), ("W3", 64 * 2), ("b3", 2)]
bounds = np.cumsum([0] + [n for _, n in layers])
leaf_names = [k for k, _ in layers]
fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
x = np.arange(len(layers))
for i, (name, v) in enumerate(var.items()):
    per_layer = [v[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])]
    ax[0].bar(x + (i - 0.5) * 0.4, per_layer, width=0.4, label=name)
ax[0].set_xticks(x, leaf_names)
ax[0].set_yscale("log")
ax[0].set_ylabel("summed variance of ∂/∂θ")
ax[0].set_title("gradient variance per parameter block")
ax[0].legend()
r = var["without baseline"] / var["with baseline"]
ax[1].hist(np.log10(r[np.isfinite(r) & (r > 0)]), bins=40)
ax[1].set_xlabel("log10 variance ratio (without / with baseline)")
ax[1].set_ylabel("parameters")
ax[1].set_title("per-component variance reduction")
plt.tight_layout()
plt.show()
# Checks of the claims above. Unbiasedness (Theorem 2): the paired difference of the two estimates,
# Σ_t ∇log π(a_t|s_t) b(s_t) per trajectory, has mean zero; per component, a z-test of its mean
# (|z| of a standard normal has median 0.67) ...
d = grads["without baseline"] - grads["with baseline"]
sd = d.std(axis=0, ddof=1)
z = d.mean(0)[sd > 0] / (sd[sd > 0] / np.sqrt(num_replicates))
print(f"paired z of the baseline term: median |z| {np.median(np.abs(z)):.2f}, share |z| > 3: {np.mean(np.abs(z) > 3):.4f}")
assert np.median(np.abs(z)) < 1.0
# ... and the baseline reduces the variance.
assert ratio > 2, ratio"""),
    ("code", r"""print(f"notebook ran in {time.time() - t_start:.0f} s")"""),
]



if __name__ == "__main__":
    write(CELLS, NAME)
