"""Score-function gradient ascent on the parameter distribution, plain and antithetic ("stochastic gradient ascent on distribution" slides).

The graph is CEM's (:func:`scg.algorithms.cem.parameter_graph`): ``θ ~ N(μ, σ²)``,
one episode per ``θ``, cost ``-R``. With ``estimator="score"`` on ``θ`` the
compiler's gradient of ``E_{θ,ζ}[-R(θ, ζ)]`` with respect to ``μ`` (and
``log σ`` if ``learn_sigma``) is the slide's estimator (Schulman 2017,
"Stochastic Gradient Ascent on Distribution")::

    ∇_μ E[R] ≈ (1/N) Σ_i ∇_μ log P_μ(θ_i) (R_i - b_i),     ∇_μ log P_μ(θ) = (θ - μ) / σ²

- ``es``: ``N`` independent draws of ``θ`` and of the episode noise ``ζ``;
  ``b_i`` is the leave-one-out mean of the other returns (Theorem 2: it does
  not depend on draw ``i``; :class:`scg.baselines.LeaveOneOut`).
- ``es_antithetic``: ``N/2`` pairs ``θ_± = μ ± σz`` sharing the episode noise
  ``ζ`` ("Connection to Finite Differences" slide), fed to the same compiled
  graph as observed values of ``θ`` and ``ζ``. For ``μ`` the pair's two score
  terms sum to the central finite difference
  ``½ (R(μ+σz, ζ) - R(μ-σz, ζ)) z / σ`` (the slide writes it without the ½;
  the mean over the pair has it), whatever the baseline. The baseline is the
  mean return of the *other* pairs (:class:`scg.baselines.PairedLeaveOneOut`): a
  leave-one-out over samples would include the partner, which depends on
  ``θ_i``, and bias the ``σ`` gradient. Each draw is marginally ``N(μ, σ²)``,
  so the estimator is unbiased; sharing ``ζ`` is what makes the difference
  small when ``R`` is smooth in ``θ``.

The same antithetic estimator, for any graph with a Gaussian node, is
:class:`scg.estimators.Antithetic` (it re-evaluates the partner downstream of
the node with common random numbers); this algorithm instead feeds both
members as samples so that every episode's return and length is in the
compiled function's values (for the metrics below).

The update is an optax step of the config's ``optimizer`` (Adam by default; descent on the cost). Metrics:
``env_steps`` the steps of all episodes of the iteration; ``mean_return``
the mean return of the last 20 evaluated episodes (population members, as
in :mod:`scg.algorithms.cem`); ``loss`` the batch mean of ``-R`` (the Monte Carlo
objective); ``grad_norm`` the norm of the estimated gradient.

``update(state, batch=None)`` (:mod:`scg.algorithms.base`): ``batch`` may hold observed
values of the graph's nodes in place of those drawn inside the compiled call
(for ``es_antithetic`` they override the pairs).
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg import baselines
from scg.algorithms import episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.cem import compile_search
from scg.algorithms.config import ConfigError, option, positive, resolve
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer


@dataclasses.dataclass(frozen=True)
class SearchGradientConfig(OptimizerConfig):
    name: ClassVar[str] = "es"
    population: int = option(50, positive)  # episodes per iteration (pairs × 2 for the antithetic variant)
    hidden: tuple[int, ...] = ()  # () is a linear policy
    greedy: bool = True  # act with the mode of the policy
    init_std: float = option(0.5, positive)
    learn_sigma: bool = True  # also follow the gradient with respect to log σ
    lr: float = option(0.1, positive)
    window: int = option(20, positive)  # episodes in the mean_return window


@dataclasses.dataclass(frozen=True)
class AntitheticConfig(SearchGradientConfig):
    name: ClassVar[str] = "es_antithetic"

    def __post_init__(self):
        super().__post_init__()
        if self.population % 2 or self.population < 4:
            raise ConfigError(f"es_antithetic config: population must be even and >= 4 (pairs), got {self.population}")


class TrainState(NamedTuple):
    params: dict  # {"mu": [d], "log_sigma": [d]}
    opt_state: optax.OptState
    recent: episodes.EpisodeStats  # the window of evaluated episodes' returns (no running returns)
    key: jax.Array


def antithetic_pairs(key: jax.Array, mu: jax.Array, log_sigma: jax.Array, num_pairs: int) -> tuple[jax.Array, jax.Array]:
    """``θ = [μ + σz; μ - σz]`` (``[2m, d]``) and episode noise ``ζ`` shared within each pair (``[2m, ...]``)."""
    assert mu.ndim == 1 and log_sigma.shape == mu.shape, (mu.shape, log_sigma.shape)
    k_z, k_zeta = jax.random.split(key)
    z = jax.random.normal(k_z, (num_pairs, mu.shape[0]), mu.dtype)
    offset = jnp.exp(log_sigma) * z
    zeta = jax.random.key_data(jax.random.split(k_zeta, num_pairs))
    return jnp.concatenate([mu + offset, mu - offset]), jnp.concatenate([zeta, zeta])


def make_factory(antithetic: bool):
    """``make`` of ``es`` (independent draws, :class:`scg.baselines.LeaveOneOut`) or ``es_antithetic``."""
    config_cls = AntitheticConfig if antithetic else SearchGradientConfig

    def make(env, env_params, config: SearchGradientConfig | dict | None = None, *, optimizer=None):
        """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's
        named optimizer (:mod:`scg.algorithms.optimizers`)."""
        config = resolve(config_cls, config)
        n = config.population
        baseline = baselines.PairedLeaveOneOut() if antithetic else baselines.LeaveOneOut()
        search = compile_search(env, env_params, hidden=config.hidden, greedy=config.greedy, baseline=baseline)
        wrt = ("mu", "log_sigma") if config.learn_sigma else ("mu",)
        grad_fn = search.compiled.grad_fn(search.example, num_samples=n, wrt=wrt, with_values=True)
        opt = make_optimizer(config, config.lr, optimizer)

        def init(key: jax.Array) -> TrainState:
            params = {
                "mu": jnp.zeros(search.dim, jnp.float32),
                "log_sigma": jnp.full(search.dim, math.log(config.init_std), jnp.float32),
            }
            return TrainState(params, opt.init(params), episodes.init(0, config.window), key)

        def update(state: TrainState, batch: dict | None = None):
            key, k_pairs, k_graph = jax.random.split(state.key, 3)
            observed = {}
            if antithetic:
                theta, zeta = antithetic_pairs(k_pairs, state.params["mu"], state.params["log_sigma"], n // 2)
                observed = {"theta": theta, "zeta": zeta}
            grads, values = grad_fn(state.params, k_graph, {**observed, **(batch or {})} or None)
            grads = {name: grads.get(name, jnp.zeros_like(p)) for name, p in state.params.items()}
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            episode = values["episode"]
            recent = episodes.push(state.recent, episode.ret)
            metrics = episodes.metrics(recent, env_steps=jnp.sum(episode.length), loss=-jnp.mean(episode.ret), grads=grads)
            return TrainState(params, opt_state, recent, key), metrics

        return init, update

    return make


ES = register(
    Algorithm("es", "Score-function gradient ascent on N(μ, σ²) over policy parameters (leave-one-out baseline)",
              ("discrete", "continuous"), SearchGradientConfig, make_factory(antithetic=False))
)
ES_ANTITHETIC = register(
    Algorithm("es_antithetic", "Score-function gradient ascent on N(μ, σ²) with antithetic pairs μ ± σz sharing episode noise",
              ("discrete", "continuous"), AntitheticConfig, make_factory(antithetic=True))
)
