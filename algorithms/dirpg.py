"""Direct Policy Gradients: whole-episode search for an improvement, then (∇log Π(a_dir) − ∇log Π(a_opt))/ε (Lorberbom et al. 2020).

One update (Algorithm 1, batched): for each of ``num_episodes`` episodes, reset the environment
(the episode's ``S``; the combinatorial bandit draws its edge rewards here and every queried tree
shares them, §6.1), run the top-down Gumbel search of :func:`scg.search.search` on the episode tree of
:mod:`scg.algorithms.trajectories` (Algorithm 2; the env branched by copying its pure state) for
``a_opt = a*(0) ~ Π_θ`` and ``a_dir``, the first (``early_stop``) or best trajectory with
``D(a; ε) = G + εR > D(a_opt; ε)`` within ``budget`` expansions, and take::

    ĝ = (∇_θ log Π_θ(a_dir) − ∇_θ log Π_θ(a_opt)) / ε,   0 if no improvement was found   (Eq. 10)

(:func:`scg.algorithms.dirpg_gradient.dirpg_gradient`), averaged over the episodes, as an optax Adam
*ascent* step. With an exhaustive budget and no early stop, ``E[ĝ] = ∇l(θ, ε)``, the gradient of
the risk-sensitive objective ``l = E_S[(1/ε) log E_{a~Π_θ} e^{εR}]`` (Eq. 11; ε > 0 seeks, ε < 0
avoids variance of the return that the policy controls, Eq. 14); early stop and a finite budget
trade that exactness for fewer interactions (Algorithm 1).

Search settings: ``priority="gumbel"`` pops by ``G`` throughout (§6.1's "Gumbel only");
``"astar"`` pops by ``G + ε(L + αU)`` after the first leaf (§5, ~L211), ``U`` from the env's
``upper_bound(state)`` if it has one (α must then be 0 otherwise). ``budget`` counts ``env.step``
calls (expansions, Algorithm 2 line 8), phase 1 included.

Metrics: ``env_steps`` the expansions of all searches (every one is an environment step);
``mean_return`` the mean return of ``a_opt`` over the last ``window`` episodes (``a_opt`` is the
on-policy sample, Eq. 4); ``dir_return`` the batch mean return of ``a_dir``; ``improved`` the
fraction of searches that found an improvement; ``queries`` the trajectories (leaves) yielded per
search, the x-axis of Fig. 2a; ``expansions_to_improvement`` and ``queries_to_improvement`` their
means over the searches that improved (Fig. 2b); ``loss`` minus the batch mean of the surrogate.

Defaults (``TUNED`` per env): the paper gives ε, budget and learning rate only in part (App. C):
the bandit's budget of 100 interactions with early stop and ``G`` priority is §6.1's (~L226); Adam
1e-3 on DeepSea with a linear policy on the one-hot state is App. C.2's (~L412), the exhaustive
30-expansion search there is our choice (the paper does not say); ε = 1, 16 episodes per update on
DeepSea and the bandit's Adam 0.05 are our choices (a few short runs, not a sweep; App. C.1 gives no
optimiser settings). The bandit takes one step per search, as Algorithm 1 does (4 searches per
step measured worse per tree query: bench/README.md, DirPG's Figure 2).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from scg.algorithms import episodes, trajectories
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import Check, ConfigError, non_negative, option, positive, resolve
from scg.algorithms.dirpg_gradient import dirpg_gradient, dirpg_surrogate
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer
from scg.search import PRIORITIES, Tree

nonzero = Check(lambda x: x != 0, "nonzero (Eq. 10 divides by it)")


@dataclasses.dataclass(frozen=True)
class DirPGConfig(OptimizerConfig):
    name: ClassVar[str] = "dirpg"
    num_episodes: int = option(16, positive)  # searches (episodes) per update, vmapped
    epsilon: float = option(1.0, nonzero)  # ε of D = G + εR: > 0 risk seeking, < 0 risk averse (Eqs. 6, 11)
    budget: int = option(100, positive)  # expansions (env steps) per search, phase 1 included
    early_stop: bool = True  # stop at the first improvement (Algorithm 1, line 9)
    priority: str = "gumbel"  # "gumbel": G; "astar": G + ε(L + αU) after the first leaf
    alpha: float = option(0.0, non_negative)  # weight of the env's upper_bound U in the A* priority
    policy: str = "tabular"  # "tabular" (env.state_index) or "mlp" on env.get_obs
    hidden: tuple[int, ...] = ()
    learning_rate: float = option(1e-2, positive)  # the optimizer's (Adam by default)
    max_depth: int = option(0, non_negative)  # search horizon; 0 takes the env's episode length
    window: int = option(20, positive)  # episodes in the mean_return window

    def __post_init__(self):
        super().__post_init__()
        if self.priority not in PRIORITIES:
            raise ConfigError(f"dirpg config: priority must be one of {PRIORITIES}, got {self.priority!r}")
        if self.policy not in trajectories.POLICY_KINDS:
            raise ConfigError(f"dirpg config: policy must be one of {trajectories.POLICY_KINDS}, got {self.policy!r}")


TUNED = {
    "CombinatorialBandit-v0": dict(num_episodes=1, budget=100, early_stop=True, priority="gumbel", learning_rate=0.05),
    "DeepSea-v0": dict(budget=30, early_stop=False, priority="gumbel", learning_rate=1e-3),
}


TrainState = trajectories.PolicyTrainState


def make(env, env_params, config: DirPGConfig | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer (:mod:`scg.algorithms.optimizers`)."""
    config = resolve(DirPGConfig, config)
    policy = trajectories.make_state_policy(env, env_params, config.policy, config.hidden)
    max_depth = trajectories.episode_length(env, env_params, config.max_depth)
    upper_bound = getattr(env, "upper_bound", None)
    if config.alpha != 0 and upper_bound is None:
        raise ConfigError(f"dirpg config: alpha = {config.alpha} weighs an upper bound U on the return-to-go, and "
                          f"{env.name} defines no upper_bound(state); use alpha = 0")
    tx = make_optimizer(config, config.learning_rate, optimizer)
    search_options = dict(epsilon=config.epsilon, budget=config.budget, max_depth=max_depth, alpha=config.alpha,
                          priority=config.priority, early_stop=config.early_stop)

    def one_episode(params, key):
        reset_key, search_key = jax.random.split(key)
        _, root = env.reset(reset_key, env_params)

        def make_tree(p):
            tree = trajectories.episode_tree(env, env_params, policy.logits, p, root)
            if upper_bound is None:
                return tree
            return Tree(tree.root, tree.expand, tree.logits, lambda s: upper_bound(s, env_params))

        return dirpg_gradient(policy.logits, make_tree, params, search_key, **search_options)

    def init(key):
        return trajectories.init_train_state(policy, tx, config.window, key)

    def update(state: TrainState, batch=None):
        if batch is not None:
            raise ConfigError("dirpg searches its own episodes in the environment; it takes no batch")
        key, k = jax.random.split(state.key)
        out = jax.vmap(one_episode, in_axes=(None, 0))(state.params, jax.random.split(k, config.num_episodes))
        ascent = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), out.grad)
        params, opt_state = trajectories.descend(tx, jax.tree_util.tree_map(jnp.negative, ascent), state)
        s = out.search
        surrogate = jax.vmap(lambda r: dirpg_surrogate(policy.logits, state.params, r, config.epsilon))(s)
        improved = s.improved.astype(jnp.float32)
        n_improved = jnp.maximum(jnp.sum(improved), 1.0)
        recent = episodes.push(state.recent, s.a_opt.ret)
        metrics = episodes.metrics(
            recent, env_steps=jnp.sum(s.expansions), loss=-jnp.mean(surrogate), grads=ascent,
            dir_return=jnp.mean(s.a_dir.ret), improved=jnp.mean(improved), queries=jnp.mean(s.leaves),
            expansions_to_improvement=jnp.sum(improved * s.expansions_to_improvement) / n_improved,
            queries_to_improvement=jnp.sum(improved * s.leaves_to_improvement) / n_improved)
        return TrainState(params, opt_state, recent, key), metrics

    return init, update


def gaussian_choice_objective(p, epsilon, order: int = 64) -> jax.Array:
    """Eq. 11 for Fig. 2d's "Gaussian choice": ``l(p, ε) = E_S[(1/ε) log(p e^{εS} + 1 − p)]``, ``S ~ N(0, 1)``.

    The policy picks the action paying ``S`` with probability ``p`` and the one paying 0 otherwise;
    the inner expectation is over the policy only (the risk it controls), the outer one over the
    environment's ``S`` (Gauss–Hermite quadrature of ``order`` nodes). ``l(0) = l(1) = 0``; for
    ε > 0 it peaks at ``p = ½`` (``l(½, 1) ≈ 0.1129``), for ε < 0 it bottoms out there.
    """
    x, w = np.polynomial.hermite_e.hermegauss(order)  # ∫ f(x) e^{-x²/2} dx ≈ Σ w f(x)
    x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w / np.sqrt(2 * np.pi), jnp.float32)
    p = jnp.asarray(p, jnp.float32)[..., None]
    inner = jnp.logaddexp(jnp.log(p) + epsilon * x, jnp.log1p(-p)) / epsilon
    return jnp.sum(w * inner, axis=-1)


def joint_variance_objective(p, epsilon) -> jax.Array:
    """The classical risk-sensitive objective ``(1/ε) log E_{a,S}[e^{εR}] = (1/ε) log(p e^{ε²/2} + 1 − p)``.

    It counts the environment's variance as well as the policy's, so for ε > 0 it rises
    monotonically in ``p`` (to ``ε/2`` at ``p = 1``): the contrast Fig. 2d draws with Eq. 11.
    """
    p = jnp.asarray(p, jnp.float32)
    return jnp.logaddexp(jnp.log(p) + epsilon**2 / 2, jnp.log1p(-p)) / epsilon


ALGORITHM = register(Algorithm("dirpg", __doc__.splitlines()[0], ("discrete",), DirPGConfig, make, TUNED))
