"""``scg eval``: run a trained policy for fresh episodes, by its mode and by sampling, and draw one episode.

A run's ``params.npz`` (:mod:`scg.algorithms.checkpoint`) holds what each algorithm keeps; :data:`POLICIES`
says, per algorithm, where its policy lies there and which network of its config acts with it
(:func:`policy_functions`), and :func:`load_policy_params` restores it onto that network's parameters,
checked leaf by leaf. A policy acts on one observation (and, for DirPG's policies of env states, the state)
in two ways:

* the mode of its action distribution: the argmax of a categorical's logits, the mean of a Gaussian
  (a deterministic actor, DDPG's ``μ_θ(s)``, is its own mode);
* a sample of it (``None`` for a deterministic actor, whose samples are the mode).

CEM and the search-gradient methods keep a distribution ``N(μ, σ²)`` over policy parameters; the policy
evaluated is the one at its mean ``μ``. CUCB keeps edge statistics, not a policy, and is refused.

Episodes are those of :func:`scg.envs.wrappers.rollout`: ``N`` environments from fresh resets under one
``jit`` (seeds ``vmap``-ed), each row's first episode kept (:func:`scg.algorithms.episodes.first_episode_mask`),
for the environment's episode limit. Both modes use the same key, so they meet the same initial states.
The standard error of a mean is ``s / sqrt(n)``, over a seed's ``N`` episodes or over all ``seeds × N``.

Example::

    run = open_run("runs/reinforce-CartPole-v1-20250101-120000")
    record = evaluate_run(run, num_episodes=20, seed=0)  # also written to runs/.../eval.json
    record["deterministic"]["mean"], record["sampled"]["per_seed"][0]["stderr"]
    render_episode(run, "episode.gif", seed=0)
"""
from __future__ import annotations

import dataclasses
import functools
import math
import zipfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from scg import dist
from scg.algorithms import episodes, run_config, smoothie, svg0, svginf, trajectories
from scg.algorithms.checkpoint import load_params
from scg.algorithms.config import Config, ConfigError
from scg.algorithms.networks import make_actor, make_policy
from scg.algorithms.run_files import METRICS, PARAMS, RunError, atomic_write, write_json
from scg.envs import registry
from scg.envs.core import Environment, Timestep
from scg.envs.wrappers import _Delegating, rollout

EVAL = "eval.json"
MAX_STEPS = 1_000  # the episode limit for an environment whose params give none (as CEM's episodes)
GIF_FRAME_MS = 40  # 25 frames per second


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: the key of the compiled evaluations
class PolicyFns:
    """How a run's policy acts on one observation of its environment (no parameters: those are the run's)."""

    env: Environment
    env_params: Any
    init: Callable  # key -> parameters of one seed: the layout params.npz must hold
    mode: Callable  # (params, obs, state) -> a_t: the mode of the action distribution
    sample: Callable | None  # (params, obs, state, key) -> a_t; None for a deterministic actor


def mode_of(d) -> jax.Array:
    """The most likely action of ``d``: the argmax of a categorical's logits, the mean of a Gaussian."""
    if isinstance(d, dist.Categorical):
        return jnp.argmax(d.logits, axis=-1).astype(jnp.int32)
    if isinstance(d, dist.Normal):
        return d.mean
    raise TypeError(f"mode_of: no mode for a {type(d).__name__} policy")


def _stochastic(init, dist_fn):
    """``(init, mode, sample)`` of a policy given by its distribution ``dist_fn(params, obs, state)``."""
    return init, lambda p, o, s: mode_of(dist_fn(p, o, s)), lambda p, o, s, k: dist_fn(p, o, s).sample(k)


# -- where each algorithm keeps its policy ------------------------------------------------------------------------
def _network(env, env_params, config):  # the MDP algorithms, RPG: make_policy on the observation
    policy = make_policy(env.observation_space(env_params), env.action_space(env_params), config.hidden)
    return _stochastic(policy.init, lambda p, o, s: policy.dist(p, o))


def _at_mean(env, env_params, config):  # CEM, ES: the policy at the mean μ of N(μ, σ²) (cem.parameter_graph)
    policy = make_policy(env.observation_space(env_params), env.action_space(env_params), config.hidden)
    flat, unravel = ravel_pytree(policy.init(jax.random.key(0)))
    return _stochastic(lambda key: flat, lambda mu, o, s: policy.dist(unravel(mu), o))


def _svg(env, env_params, config):  # SVG(0), SVG(1): svg0.gaussian_policy
    policy = svg0.gaussian_policy(env.observation_space(env_params), env.action_space(env_params), config.hidden,
                                  activation=config.activation, init_std=config.init_std, min_std=config.min_std,
                                  learn_std=config.learn_std)
    return _stochastic(policy.init, lambda p, o, s: policy.dist(p, o))


def _svginf(env, env_params, config):
    policy = svginf.make_policy(env, env_params, config)
    return _stochastic(policy.init, lambda p, o, s: policy.dist(p, o))


def _smoothie(env, env_params, config):
    policy = smoothie.make_gaussian_policy(env.observation_space(env_params), env.action_space(env_params), config)
    return _stochastic(policy.init, lambda p, o, s: policy.dist(p, o))


def _ddpg(env, env_params, config):  # a deterministic actor: no distribution to sample
    actor = make_actor(env.observation_space(env_params), env.action_space(env_params), config.hidden,
                       activation=config.activation, init_action=config.init_action)
    return actor.init, lambda p, o, s: actor.apply(p, o), None


def _state_policy(env, env_params, config):  # DirPG, trajectory CEM: logits of the env state
    policy = trajectories.make_state_policy(env, env_params, config.policy, config.hidden)
    return _stochastic(policy.init, lambda p, o, s: dist.Categorical(logits=policy.logits(p, s)))


_THETA, _LEARNER = ("theta",), ("learner", "params", "theta")
# algorithm -> (path of its policy's parameters in params.npz, builder (env, env_params, config) -> init, mode, sample)
POLICIES: dict[str, tuple[tuple[str, ...], Callable]] = {
    **{name: (_THETA, _network) for name in ("reinforce", "a2c", "ppo", "trpo", "rpg")},
    **{name: (("mu",), _at_mean) for name in ("cem", "es", "es_antithetic")},
    "svginf": (_THETA, _svginf),
    "svg0": (_LEARNER, _svg),
    "svg1": (_LEARNER, _svg),
    "smoothie": (_LEARNER, _smoothie),
    "ddpg": (_LEARNER, _ddpg),
    "dirpg": ((), _state_policy),
    "trajectory_cem": ((), _state_policy),
}
NO_POLICY = {"cucb": "it plays spanning trees from edge statistics (UCB indices) and has no policy to evaluate"}


def _restore(saved: dict, path: tuple[str, ...], init: Callable, where: Path, seeds: int):
    """The subtree ``path`` of ``saved`` (``load_params``) as jax arrays, checked against ``init``'s parameters."""
    node = saved
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise RunError(f"{where} holds no {'/'.join(path)} (the policy); restore it from a copy of the run")
        node = node[part]
    template = jax.eval_shape(init, jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten(template)
    fix = "was it trained with another version of its algorithm? Train it again"
    try:
        saved_leaves = treedef.flatten_up_to(node)
    except (ValueError, TypeError):
        raise RunError(f"{where}: the policy's parameters do not have the layout of this run's config; {fix}") from None
    out = []
    for t, x in zip(leaves, saved_leaves):
        if not isinstance(x, np.ndarray) or x.shape != (seeds, *t.shape):
            got = getattr(x, "shape", type(x).__name__)
            raise RunError(f"{where}: a policy parameter has shape {got}, this run's config expects "
                           f"{(seeds, *t.shape)} ([seeds, ...]); {fix}")
        out.append(jnp.asarray(x, t.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.lru_cache(maxsize=8)
def policy_functions(algo: str, env_name: str, config: Config) -> PolicyFns:
    """The policy of ``algo`` with its typed ``config`` on ``env_name``, once per process and configuration (so
    that evaluations of one configuration share their compiled code, as training shares its chunk)."""
    if algo in NO_POLICY:
        raise RunError(f"{algo} cannot be evaluated: {NO_POLICY[algo]}")
    if algo not in POLICIES:
        raise RunError(f"scg eval does not know where {algo} keeps its policy; add it to "
                       "scg.algorithms.evaluate.POLICIES")
    env, env_params = registry.make(env_name)
    return PolicyFns(env, env_params, *POLICIES[algo][1](env, env_params, config))


def load_policy_params(run_dir, config: dict, fns: PolicyFns):
    """The trained policy parameters in ``run_dir``'s ``params.npz`` (leading axis: seed), checked against ``fns``.

    Raises :class:`scg.algorithms.run_files.RunError` naming the file when there is none (training has not
    finished), or when it is damaged or does not hold the policy of the run's config.
    """
    path = Path(run_dir) / PARAMS
    if not path.is_file():
        raise RunError(f"{run_dir} has no {PARAMS}: it is written when training finishes; finish the run with "
                       f"scg train --resume {run_dir}")
    try:
        saved = load_params(run_dir)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())
        raise RunError(f"{path} is damaged ({type(err).__name__}: {reason}); restore it from a copy of the "
                       "run") from None
    return _restore(saved, POLICIES[config["algo"]][0], fns.init, path, config["seeds"])


# -- episodes -----------------------------------------------------------------------------------------------------
class WithState(_Delegating, Environment):
    """``env`` observed as ``(obs, state)``: policies of env states (DirPG's) and frames of states see both."""

    def __init__(self, env: Environment):
        self.env, self.name = env, env.name

    def reset_env(self, key, params):
        obs, state = self.env.reset_env(key, params)
        return (obs, state), state

    def step_env(self, key, state, action, params):
        ts = Timestep(*self.env.step_env(key, state, action, params))
        return ts._replace(obs=(ts.obs, ts.state))


def episode_limit(env, env_params) -> int:
    """Steps that hold a whole episode: the env's ``episode_length``, its params' ``max_steps_in_episode`` or
    ``horizon``, else :data:`MAX_STEPS`."""
    try:
        return trajectories.episode_length(env, env_params)
    except ConfigError:
        return int(getattr(env_params, "horizon", MAX_STEPS))


def episode_returns(env, env_params, act: Callable, key: jax.Array, *, num_episodes: int, max_steps: int):
    """Undiscounted returns ``[N]`` of ``N`` episodes from fresh resets under ``act((obs, state), key)``, and
    whether each ended within ``max_steps`` (one ``rollout`` of ``N`` environments, each row's first episode)."""
    traj = rollout(WithState(env), env_params, act, key, max_steps, num_envs=num_episodes)
    done = jnp.logical_or(traj.terminated, traj.truncated)  # [T, N]
    mask = jax.vmap(episodes.first_episode_mask, in_axes=1, out_axes=1)(done)
    return jnp.sum(mask * traj.reward.astype(jnp.float32), axis=0), jnp.any(done, axis=0)


@functools.lru_cache(maxsize=8)
def _evaluator(fns: PolicyFns, num_episodes: int, max_steps: int) -> Callable:
    """``jit`` of ``(params [seeds, ...], key) -> {mode: (returns, ended)}``, each ``[seeds, N]``."""
    env, env_params = fns.env, fns.env_params

    def one_seed(params, key):
        run = lambda act: episode_returns(env, env_params, act, key, num_episodes=num_episodes,  # noqa: E731
                                          max_steps=max_steps)
        out = {"deterministic": run(lambda os, k: fns.mode(params, *os))}
        if fns.sample is not None:
            out["sampled"] = run(lambda os, k: fns.sample(params, *os, k))
        return out

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None)))


def evaluate(fns: PolicyFns, params, key: jax.Array, *, num_episodes: int, max_steps: int) -> dict:
    """``{"deterministic": (returns, ended), "sampled": ...}``, numpy ``[seeds, N]``, every seed in one ``jit``.

    ``"sampled"`` is absent for a deterministic actor. Every seed and both modes share ``key``, so they meet
    the same initial states (and the same environment noise where actions agree).
    """
    return jax.device_get(_evaluator(fns, num_episodes, max_steps)(params, key))


def mean_stderr(returns) -> tuple[float, float]:
    """Mean and standard error ``s / sqrt(n)`` (``s`` with ``n - 1``) of the returns."""
    x = np.asarray(returns, np.float64).ravel()
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


def summary(returns: np.ndarray, seeds: list[int]) -> dict:
    """Mean ± standard error over all ``[seeds, N]`` episodes, and per seed with its returns."""
    mean, stderr = mean_stderr(returns)
    per_seed = []
    for s, r in zip(seeds, returns):
        seed_mean, seed_stderr = mean_stderr(r)
        per_seed.append({"seed": s, "mean": seed_mean, "stderr": seed_stderr, "returns": [float(x) for x in r]})
    return {"mean": mean, "stderr": stderr, "per_seed": per_seed}


class Run(NamedTuple):
    """A run folder opened for evaluation: its configuration, its policy and the trained parameters."""

    run_dir: Path
    config: dict
    fns: PolicyFns
    params: Any  # leading axis: seed
    max_steps: int  # episode_limit of the environment


def open_run(run_dir) -> Run:
    """Read and check ``run_dir``'s configuration and policy; raises ``RunError``/``ConfigError`` naming the file
    (an algorithm without a policy among them), ``ImportError`` for an environment that cannot be imported."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run folder" if run_dir.exists() else "does not exist"
        raise RunError(f"{run_dir} {what}; pass a run folder, runs/<name>")
    config = run_config.load(run_dir)
    try:
        fns = policy_functions(config["algo"], config["env"], run_config.algorithm_config(config))
    except RunError as err:
        raise RunError(f"{run_dir}: {err}; its training returns are in {run_dir / METRICS}") from None
    params = load_policy_params(run_dir, config, fns)
    return Run(run_dir, config, fns, params, episode_limit(fns.env, fns.env_params))


def evaluate_run(run: Run, *, num_episodes: int, seed: int) -> dict:
    """Evaluate ``run``'s policy for ``num_episodes`` episodes per seed from ``jax.random.key(seed)`` and write the
    result to ``eval.json`` in its folder (atomically); returns it."""
    if num_episodes < 2:
        raise ValueError(f"num_episodes must be at least 2 (a standard error needs two), got {num_episodes}")
    results = evaluate(run.fns, run.params, jax.random.key(seed), num_episodes=num_episodes, max_steps=run.max_steps)
    seeds = run_config.seed_list(run.config)
    record = {"run": str(run.run_dir), "algo": run.config["algo"], "env": run.config["env"], "episodes": num_episodes,
              "seed": seed, "max_steps": run.max_steps}
    for name in ("deterministic", "sampled"):  # sampled: None for a deterministic actor
        returns, ended = results.get(name, (None, None))
        record[name] = None if returns is None else {**summary(returns, seeds), "unfinished": int(np.sum(~ended))}
    write_json(run.run_dir / EVAL, record)
    return record


# -- one episode as a GIF ------------------------------------------------------------------------------------------
def _renderer(run: Run) -> Callable:
    from scg.envs.render import render_frame

    return lambda obs, state: render_frame(run.fns.env, state, run.fns.env_params, obs)


def check_render(run: Run) -> None:
    """Draw the environment's first frame, so that an env without a renderer (``NotImplementedError``) or without
    its drawing package (``ImportError``) is refused before anything runs."""
    obs, state = run.fns.env.reset(jax.random.key(0), run.fns.env_params)
    _renderer(run)(obs, state)


@functools.lru_cache(maxsize=8)
def _episode(fns: PolicyFns, max_steps: int) -> Callable:
    """``jit`` of ``(params of one seed, key) -> Trajectory`` of ``max_steps`` steps by the policy's mode."""

    def run(params, key):
        return rollout(WithState(fns.env), fns.env_params, lambda os, _: fns.mode(params, *os), key, max_steps)

    return jax.jit(run)


def episode_frames(run: Run, key: jax.Array) -> list:
    """The frames of one deterministic episode of the run's first seed, from its reset to its last state."""
    first_seed = jax.tree_util.tree_map(lambda x: x[0], run.params)
    traj = jax.device_get(_episode(run.fns, run.max_steps)(first_seed, key))
    done = np.logical_or(traj.terminated, traj.truncated)
    length = int(np.argmax(done)) + 1 if done.any() else run.max_steps
    at = lambda tree, t: jax.tree_util.tree_map(lambda x: x[t], tree)  # noqa: E731
    render = _renderer(run)
    return [render(*at(traj.obs, t)) for t in range(length)] + [render(*at(traj.next_obs, length - 1))]


def render_episode(run: Run, path, *, seed: int) -> int:
    """One deterministic episode (the first seed's, from ``jax.random.key(seed)``) as an animated GIF at ``path``;
    returns the number of frames."""
    frames = episode_frames(run, jax.random.key(seed))
    write_gif(path, frames)
    return len(frames)


def write_gif(path, frames: list) -> None:
    """``frames`` (``(H, W, 3)`` ``uint8``) as an animated GIF at ``path``, written atomically, looping.

    One palette for all frames, from up to 8 of them spread over the episode: Pillow's own palette per frame
    took 5.7 s to write 350 CartPole frames, this 0.6 s.
    """
    from PIL import Image

    frames = [np.asarray(f, np.uint8) for f in frames]
    montage = np.concatenate(frames[:: max(1, len(frames) // 8)], axis=0)
    palette = Image.fromarray(montage).quantize(colors=255, method=Image.Quantize.FASTOCTREE)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    atomic_write(Path(path), lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=GIF_FRAME_MS, loop=0))
