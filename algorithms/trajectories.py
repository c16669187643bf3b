"""Whole-episode policies on environment states, as search trees: what DirPG and the trajectory methods share.

DirPG (Lorberbom et al. 2020) and the trajectory-level baselines it is compared with (trajectory-elite
CEM, REINFORCE over whole episodes) treat an episode ``a = (a_1, …, a_T)`` as one draw of
``Π_θ(a | S) = Π_t π_θ(a_t | s_t)`` (Eq. 3). The environment becomes a :class:`scg.search.Tree`
(:func:`episode_tree`): a node is an env state, expanding it steps a copy of that pure state
(``env.step_env``), so prefixes branch without re-simulation, and an env that defines
``legal_mask(state)`` masks illegal actions with ``−inf`` logits (an action that is the only legal one
then has probability 1, as the combinatorial bandit takes it, App. C.1).

Policies (:func:`make_state_policy`) map an env *state* to ``[A]`` logits:

* ``"tabular"``: one logit row per ``env.state_index(state)`` (``env.num_states()`` rows), zero at
  init (uniform over legal actions). On DeepSea this is the paper's linear FC(25, 2) on a one-hot
  state (App. C.2); on the combinatorial bandit, indexed by the edge decision ``t``, it is
  ``P(include e) = σ(θ_e)`` per edge (§6.1; two logits per edge, the same family).
* ``"mlp"``: :func:`scg.algorithms.networks.make_policy` on ``env.get_obs(state)``.

:func:`sample_episode` draws ``a ~ Π_θ`` as phase 1 of :func:`scg.search.search` (the first leaf of
the top-down Gumbel process is an exact sample, Eq. 4) and returns it with its states, so that
``log Π_θ`` can be re-evaluated at new parameters (:func:`scg.algorithms.dirpg_gradient.trajectory_log_prob`).
:func:`enumerate_episodes` lists every action sequence of a small env with deterministic
transitions, with ``log Π_θ`` (``−inf`` for illegal ones): exact expectations for tests and figures.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg.algorithms import episodes
from scg.algorithms.config import ConfigError
from scg.algorithms.networks import make_policy
from scg.envs.spaces import Discrete
from scg.search import Trajectory, Tree, search

POLICY_KINDS = ("tabular", "mlp")


class PolicyTrainState(NamedTuple):
    """The training state of a whole-episode policy method (DirPG, trajectory-elite CEM)."""

    params: Any
    opt_state: optax.OptState
    recent: episodes.EpisodeStats  # returns of the last ``window`` episodes
    key: jax.Array


def init_train_state(policy: "StatePolicy", optimizer: optax.GradientTransformation, window: int,
                     key: jax.Array) -> PolicyTrainState:
    """Fresh policy parameters from ``key``, the optimizer's state and an empty episode window."""
    key, k = jax.random.split(key)
    params = policy.init(k)
    return PolicyTrainState(params, optimizer.init(params), episodes.init(0, window), key)


def descend(optimizer: optax.GradientTransformation, grads, state: PolicyTrainState):
    """One optimizer step *down* ``grads``: ``(params, opt_state)``."""
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state


class StatePolicy(NamedTuple):
    """``init(key) -> params`` and ``logits(params, state) -> [A]`` masked logits (``−inf`` illegal)."""

    init: Callable
    logits: Callable
    num_actions: int


def _check_discrete(env, env_params, who: str) -> int:
    space = env.action_space(env_params)
    if not isinstance(space, Discrete):
        raise ConfigError(f"{who} searches over discrete actions; {env.name} has action space {space}")
    return int(space.n)


def legal_mask_fn(env) -> Callable | None:
    """``env.legal_mask`` (``state -> [A] bool``) if the environment defines one, else ``None`` (all legal)."""
    return getattr(env, "legal_mask", None)


def make_state_policy(env, env_params, kind: str = "tabular", hidden=()) -> StatePolicy:
    """A policy on env states (module docstring); raises :class:`ConfigError` naming the env if it cannot be built."""
    num_actions = _check_discrete(env, env_params, "a trajectory policy")
    mask = legal_mask_fn(env)
    if kind == "tabular":
        if not (hasattr(env, "state_index") and hasattr(env, "num_states")):
            raise ConfigError(f"policy 'tabular' needs env.state_index and env.num_states, which {env.name} lacks; "
                              f"use policy='mlp'")
        num_states = int(env.num_states(env_params))

        def init(key):
            del key
            return {"table": jnp.zeros((num_states, num_actions), jnp.float32)}

        def raw(params, state):
            return params["table"][env.state_index(state, env_params)]
    elif kind == "mlp":
        policy = make_policy(env.observation_space(env_params), env.action_space(env_params), tuple(hidden))
        init = policy.init

        def raw(params, state):
            return policy.dist(params, env.get_obs(state, env_params)).logits
    else:
        raise ConfigError(f"policy must be one of {POLICY_KINDS}, got {kind!r}")

    def logits(params, state):
        z = jnp.asarray(raw(params, state), jnp.float32)
        return z if mask is None else jnp.where(mask(state), z, -jnp.inf)

    return StatePolicy(init, logits, num_actions)


def episode_length(env, env_params, override: int = 0) -> int:
    """The search horizon: ``override`` if > 0, else ``env.episode_length(params)``, else ``params.max_steps_in_episode``."""
    if override > 0:
        return int(override)
    if hasattr(env, "episode_length"):
        return int(env.episode_length(env_params))
    steps = getattr(env_params, "max_steps_in_episode", None)
    if steps is None:
        raise ConfigError(f"{env.name} has no fixed episode length (episode_length or max_steps_in_episode); "
                          f"set the config's max_depth")
    return int(steps)


def episode_tree(env, env_params, logits: Callable, params, root) -> Tree:
    """The episodes from env state ``root`` as a :class:`scg.search.Tree` (``expand`` steps a copy of the state)."""

    def expand(state, action, key):
        ts = env.step_env(key, state, action, env_params)
        return ts.state, jnp.asarray(ts.reward, jnp.float32), jnp.asarray(ts.terminated, bool)

    return Tree(root=root, expand=expand, logits=lambda s: logits(params, s))


def sample_episode(env, env_params, logits: Callable, params, key: jax.Array, max_depth: int) -> Trajectory:
    """One episode ``a ~ Π_θ`` from ``env.reset`` (phase 1 of the top-down Gumbel process, Eq. 4), states recorded."""
    reset_key, search_key = jax.random.split(key)
    _, root = env.reset(reset_key, env_params)
    tree = episode_tree(env, env_params, logits, jax.lax.stop_gradient(params), root)
    return search(tree, search_key, epsilon=0.0, budget=max_depth, max_depth=max_depth, early_stop=True).a_opt


class Enumeration(NamedTuple):
    actions: jax.Array  # [A^T, T] every action sequence
    log_prob: jax.Array  # [A^T] log Π_θ(a), −inf where an action was illegal
    final_state: Any  # the state after the sequence (a pytree with leading axis A^T)


def enumerate_episodes(env, env_params, logits: Callable, params, max_depth: int, root_key=None) -> Enumeration:
    """Every length-``max_depth`` action sequence from the reset state, with ``log Π_θ`` (small envs only).

    Exact for environments whose transitions given the actions are deterministic (DeepSea, the
    combinatorial bandit); their random rewards are not used. An episode that ends before
    ``max_depth`` is listed once, padded with action 0 (other paddings have ``log Π = −inf``).
    """
    num_actions = _check_discrete(env, env_params, "enumerate_episodes")
    if num_actions ** max_depth > 1 << 16:
        raise ConfigError(f"enumerate_episodes: {num_actions}^{max_depth} sequences is too many to enumerate")
    seqs = jnp.asarray(list(itertools.product(range(num_actions), repeat=max_depth)), jnp.int32)
    _, root = env.reset(jax.random.key(0) if root_key is None else root_key, env_params)

    def one(seq):
        def step(carry, a):
            state, logp, done = carry
            logpi = jax.nn.log_softmax(logits(params, state))
            ts = env.step_env(jax.random.key(0), state, a, env_params)
            logp = logp + jnp.where(done, jnp.where(a == 0, 0.0, -jnp.inf), logpi[a])
            state = jax.tree_util.tree_map(lambda new, old: jnp.where(done, old, new), ts.state, state)
            return (state, logp, done | ts.terminated), None

        (state, logp, _), _ = jax.lax.scan(step, (root, jnp.float32(0.0), jnp.bool_(False)), seq)
        return state, logp

    final, log_prob = jax.vmap(one)(seqs)
    return Enumeration(seqs, log_prob, final)
