"""Generate ``notebooks/06_direct_policy_gradients.ipynb`` (sources only): ``python notebooks/make_06.py``."""
from _generate import write

NAME = "06_direct_policy_gradients.ipynb"

CELLS = [
    ("md", r"""# Direct policy gradients: search for a better trajectory, then step towards it

Lorberbom et al. (2020) turn the Gumbel-max trick on whole trajectories. Perturb the log-probability of
every complete action sequence `a` of an episode with an independent Gumbel, $G(a) = \log\Pi_\theta(a) + \Gamma(a)$;
the sequence of largest $G$ is then an exact sample of $\Pi_\theta$ (Eq. 4–5), called $a_{\rm opt}$. Add the
return, $D(a;\varepsilon) = G(a) + \varepsilon R(a)$ (Eq. 6), and the sequence of largest $D$, $a_{\rm dir}$, is a
sample of $\Pi_\theta\, e^{\varepsilon R}$ normalised. The direct policy gradient is the difference of the two
(Eq. 10),

$$\hat g = \frac{1}{\varepsilon}\Big(\nabla_\theta \log \Pi_\theta(a_{\rm dir}) - \nabla_\theta \log \Pi_\theta(a_{\rm opt})\Big),$$

an unbiased estimate of the gradient of the risk-sensitive objective
$l(\theta, \varepsilon) = \mathbb E_S\big[\tfrac1\varepsilon \log \mathbb E_{a\sim\Pi_\theta} e^{\varepsilon R(a)}\big]$ (Eq. 11):
risk seeking for ε > 0, risk averse for ε < 0. Nobody enumerates the trajectories: `scg.search` builds the
Gumbel process top-down and lazily (Algorithm 2), expanding one environment step at a time, under `jit` and
`vmap`. This notebook draws one search, checks the gradient against enumeration, and trains on the two
tasks of the paper's Figure 2 (small settings; `bench/dirpg_figure2.py` runs the full figure)."""),
    ("code", r"""%matplotlib inline
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import scg.testing
from scg.algorithms import ALGORITHMS, make_train, trajectories
from scg.algorithms.dirpg import gaussian_choice_objective, joint_variance_objective
from scg.algorithms.dirpg_gradient import dirpg_gradient
from scg.algorithms.train import seed_keys
from scg.envs.registry import make
from scg.search import search

t_start = time.time()
env, params = make("DeepSea-v0")
DEPTH = trajectories.episode_length(env, params)
policy = trajectories.make_state_policy(env, params, "tabular")
theta = jax.tree_util.tree_map(lambda x: 0.8 * jax.random.normal(jax.random.key(1), x.shape),
                               policy.init(jax.random.key(0)))  # a non-uniform policy to look at
print(env.name, "grid", params.size, "x", params.size, "- episode length", DEPTH)"""),
    ("md", r"""## 1. One search on DeepSea

DeepSea 5×5: four steps, each L (reward 0) or R (reward −1/3), except that `RRRR`'s last step pays
$r\sim\mathcal N(1,1)$ instead, so `LLLL` returns 0 and `RRRR` returns $\mathcal N(0,1)$: the same mean,
different risk. The episode's randomness $S$ (here the corner reward) is fixed by the episode key and
shared by every branch of the search; the environment is branched by copying its pure state.

With the priority $G$ throughout (`priority="gumbel"`), trajectories come out of the search in descending
$G$, so the first is $a_{\rm opt}$; an exhaustive budget (30 expansions cover the 16 sequences) without
early stop makes $a_{\rm dir}$ the exact $\arg\max D$. We pick an episode key whose corner reward is
high, so that ε = 1 prefers the risky `RRRR`."""),
    ("code", r"""EPS = 1.0


def one_search(theta, key, eps=EPS, budget=30, early_stop=False):
    reset_key, search_key = jax.random.split(key)
    _, root = env.reset(reset_key, params)
    tree = trajectories.episode_tree(env, params, policy.logits, theta, root)
    return search(tree, search_key, epsilon=eps, budget=budget, max_depth=DEPTH, priority="gumbel",
                  early_stop=early_stop, record=16)


run_search = jax.jit(one_search, static_argnames=("budget", "early_stop"))
for k in range(200):  # the first key whose a_dir is RRRR != a_opt (for the picture)
    result = run_search(theta, jax.random.key(k))
    if bool(result.improved) and int(result.a_dir.actions.sum()) == DEPTH:
        break
word = lambda actions: "".join("LR"[int(a)] for a in actions)
y = result.yields
print(f"key {k}: {int(result.num_yields)} trajectories, {int(result.expansions)} expansions, complete={bool(result.complete)}")
print("rank  actions        G        R     D(eps=1)")
for i in range(int(result.num_yields)):
    print(f"{i:4d}  {word(y.actions[i]):7s} {float(y.g[i]):8.3f} {float(y.ret[i]):8.3f} {float(y.d[i]):8.3f}")
print("a_opt =", word(result.a_opt.actions), " a_dir =", word(result.a_dir.actions))
assert np.all(np.diff(np.asarray(y.g)) <= 0)  # descending G: the first yield is a_opt
assert word(y.actions[0]) == word(result.a_opt.actions)"""),
    ("code", r"""def draw_search(result, ax):
    # Every prefix at (position among the 2^d prefixes of its depth, -d); a_opt blue, a_dir red.
    y, n = result.yields, int(result.num_yields)
    pos = lambda prefix: ((int("".join(map(str, prefix)), 2) if prefix else 0) + 0.5) / 2 ** len(prefix)
    for d in range(DEPTH):
        for i in range(2 ** d):
            prefix = [int(c) for c in format(i, f"0{d}b")] if d else []
            for a in (0, 1):
                ax.plot([pos(prefix), pos(prefix + [a])], [-d, -d - 1], color="0.85", lw=1, zorder=1)
    for traj, color, label in ((result.a_opt, "tab:blue", "a_opt (max G)"), (result.a_dir, "tab:red", "a_dir (max G + εR)")):
        acts = [int(a) for a in traj.actions]
        xs = [pos(acts[:d]) for d in range(DEPTH + 1)]
        ax.plot(xs, -np.arange(DEPTH + 1), color=color, lw=3, label=label, zorder=2)
    for i in range(n):
        acts = [int(a) for a in y.actions[i]]
        ax.text(pos(acts), -DEPTH - 0.25, f"#{i}\n{word(acts)}\nG {float(y.g[i]):.1f}\nR {float(y.ret[i]):.1f}",
                ha="center", va="top", fontsize=6.5)
    ax.set(xlim=(0, 1), ylim=(-DEPTH - 1.6, 0.3), yticks=-np.arange(DEPTH + 1), yticklabels=range(DEPTH + 1), xticks=[])
    ax.set_ylabel("step"), ax.legend(loc="upper right", fontsize=8)


fig, ax = plt.subplots(figsize=(11, 4.2))
draw_search(result, ax)
ax.set_title("the search tree of one DeepSea episode: #k = k-th trajectory out of the Gumbel process (descending G)")
plt.show()"""),
    ("md", r"""Algorithm 1 need not search exhaustively: with **early stop** the search returns the first trajectory
that beats $D(a_{\rm opt};\varepsilon)$, and with a **budget** it gives up (and the gradient is zero). Both trade
exactness for interactions: on the same episode,"""),
    ("code", r"""for budget, early in ((30, False), (30, True), (6, True)):
    r = run_search(theta, jax.random.key(k), budget=budget, early_stop=early)
    print(f"budget {budget:2d}, early stop {early!s:5s}: {int(r.expansions):2d} expansions, {int(r.leaves):2d} trajectories, "
          f"improved {bool(r.improved)!s:5s}, a_dir = {word(r.a_dir.actions)}")"""),
    ("md", r"""## 2. The gradient is unbiased for Eq. 11

On DeepSea the objective can be computed exactly: enumerate the 16 sequences with their $\log\Pi_\theta$
(`trajectories.enumerate_episodes`), integrate the corner reward by Gauss–Hermite quadrature, and let
`jax.grad` differentiate. The Monte Carlo mean of $\hat g$ over 2000 independent episodes (exhaustive
search, no early stop) must agree with it component by component (a z-test, 5σ corrected for the 50
parameters), for either sign of ε; the sign-flipped estimator must not."""),
    ("code", r"""num_R = trajectories.enumerate_episodes(env, params, policy.logits, theta, DEPTH).actions.sum(1)
is_RRRR = num_R == DEPTH
gh_nodes, gh_weights = np.polynomial.hermite_e.hermegauss(40)
gh_weights = gh_weights / gh_weights.sum()


def exact_objective(theta, eps):  # Eq. 11 on DeepSea (returns as in envs/paper/deep_sea.py)
    logp = trajectories.enumerate_episodes(env, params, policy.logits, theta, DEPTH).log_prob

    def given(r):
        R = jnp.where(is_RRRR, -(DEPTH - 1) * params.move_cost + r, -num_R * params.move_cost)
        return jax.scipy.special.logsumexp(logp + eps * R) / eps

    return jnp.sum(gh_weights * jax.vmap(given)(params.goal_mean + params.goal_std * gh_nodes))


def dirpg_samples(eps, n=2000, seed=0):
    def one(key):
        reset_key, search_key = jax.random.split(key)
        _, root = env.reset(reset_key, params)
        make_tree = lambda p: trajectories.episode_tree(env, params, policy.logits, p, root)
        return dirpg_gradient(policy.logits, make_tree, theta, search_key, epsilon=eps, budget=30,
                              max_depth=DEPTH, priority="gumbel", early_stop=False).grad
    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), n))


for eps in (1.0, -1.0):
    exact, samples = jax.grad(exact_objective)(theta, eps), dirpg_samples(eps)
    print(f"eps = {eps:+}:", scg.testing.assert_unbiased(samples, exact))
    print("   sign flipped:", scg.testing.assert_biased(jax.tree_util.tree_map(jnp.negative, samples), exact))"""),
    ("md", r"""## 3. The risk trade-off

Figure 2d of the paper: choose between a sure 0 and a $\mathcal N(0,1)$ reward with probabilities $1-p$ and $p$.
The expected return is 0 for every $p$, but Eq. 11 is not: for ε > 0 it peaks at $p=\tfrac12$, where the
*policy's* choice is most random (risk it controls), and it ignores the environment's noise of the
Gaussian arm beyond that; an objective on the joint variance would just push $p\to1$."""),
    ("code", r"""p = jnp.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(6, 3.5))
for eps in (-1.0, 1.0, 2.0):
    line, = ax.plot(p, gaussian_choice_objective(p, eps), label=f"Eq. 11, ε = {eps:g}")
    ax.plot(p, joint_variance_objective(p, eps), ls="--", color=line.get_color(), lw=0.8)
ax.set(xlabel="p (probability of the N(0,1) arm)", ylabel="objective", title="Fig. 2d (dashed: joint-variance objective)")
ax.legend(fontsize=8)
plt.show()
print("l(1/2, 1) =", round(float(gaussian_choice_objective(0.5, 1.0)), 4), "(paper's figure: 0.113)")"""),
    ("md", r"""Training DirPG on DeepSea (tabular policy, 16 episodes per update, exhaustive search, Adam 1e-2 here for
speed, 2 seeds) shows the same thing on a real MDP. Risk seeking (ε = 1) splits the mass between `LLLL`
and `RRRR`, the exact optimum of Eq. 11 being $\Pi(\mathtt{LLLL}) = \Pi(\mathtt{RRRR}) = \tfrac12$; risk averse
(ε = −1) puts it on the sure `LLLL`. Probabilities are exact (enumeration), not estimates."""),
    ("code", r"""fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
for ax, eps in zip(axes, (1.0, -1.0)):
    config = ALGORITHMS["dirpg"].configure("DeepSea-v0", {"epsilon": eps, "learning_rate": 1e-2})
    pol = trajectories.make_state_policy(env, params, config.policy, config.hidden)
    ends = jax.jit(jax.vmap(lambda th: jnp.exp(trajectories.enumerate_episodes(env, params, pol.logits, th, DEPTH).log_prob)[jnp.array([0, -1])]))
    init, run = make_train("dirpg", env, params, config)
    states, history = init(seed_keys(2)), []
    for _ in range(10):
        history.append(np.asarray(ends(states.params)))
        states, _ = run(states, 100)
    history.append(np.asarray(ends(states.params)))
    h = np.stack(history)  # [chunks, seeds, 2]
    x = np.arange(len(h)) * 100 * config.num_episodes
    for s in range(h.shape[1]):
        ax.plot(x, h[:, s, 0], color="tab:green", label="Π(LLLL)" if s == 0 else None)
        ax.plot(x, h[:, s, 1], color="tab:purple", label="Π(RRRR)" if s == 0 else None)
    ax.set(title=f"ε = {eps:g}", xlabel="episodes")
    print(f"eps = {eps:+}: final Π(LLLL) = {h[-1, :, 0].round(2)}, Π(RRRR) = {h[-1, :, 1].round(2)}")
axes[0].set_ylabel("probability"), axes[0].legend()
plt.show()"""),
    ("md", r"""## 4. A combinatorial bandit

Figure 2a: every episode draws the rewards of the 10 edges of $K_5$ once (edge $e$ pays $U(0, 2\mu_e)$), and
an action sequence builds a spanning tree edge by edge; the return is the sum over its edges. The search
queries several trees of the *same* draws and DirPG steps from the sampled tree toward the better one
found (budget 100, early stop, one update per search: the paper's setting). The exact expected return under $\Pi_\theta$ is a sum over
the 125 spanning trees; it starts at the uniform policy's 1.988 (the optimum is 3.0)."""),
    ("code", r"""benv, bparams = make("CombinatorialBandit-v0")
config = ALGORITHMS["dirpg"].configure("CombinatorialBandit-v0")  # the tuned defaults of `scg train`
bpol = trajectories.make_state_policy(benv, bparams, config.policy, config.hidden)
bdepth = trajectories.episode_length(benv, bparams)


@jax.jit
@jax.vmap
def exact_return(th):
    e = trajectories.enumerate_episodes(benv, bparams, bpol.logits, th, bdepth)
    return jnp.sum(jnp.exp(e.log_prob) * (e.final_state.included.astype(jnp.float32) @ bparams.mu))


init, run = make_train("dirpg", benv, bparams, config)
states = init(seed_keys(2))
curve, queries, total = [np.asarray(exact_return(states.params))], [0.0], 0.0
for _ in range(8):
    states, m = run(states, 100)
    total += float(np.mean(np.sum(np.asarray(m["queries"]), axis=-1))) * config.num_episodes
    curve.append(np.asarray(exact_return(states.params))), queries.append(total)
curve = np.stack(curve)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(queries, curve, color="tab:blue", alpha=0.8)
ax.axhline(3.0, color="k", ls=":", label="optimum")
ax.set(xlabel="tree queries (every trajectory a search yields)", ylabel="exact expected return", title="DirPG on the K5 spanning-tree bandit")
ax.legend()
plt.show()
print("exact expected return per seed: start", curve[0].round(3), "-> end", curve[-1].round(3))
assert curve[-1].mean() > curve[0].mean() + 0.3, "DirPG did not learn"
print(f"notebook ran in {time.time() - t_start:.0f} s")"""),
]

if __name__ == "__main__":
    write(CELLS, NAME)
