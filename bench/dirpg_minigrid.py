"""DirPG (Lorberbom et al. 2020) Figure 3a on MiniGrid-MultiRoom-N6: return vs interactions, 5 methods.

A report-only benchmark (no pass/fail). Methods, each run on its own wall-clock budget
(``--minutes``, default 20) and logged after every update:

* ``dirpg_a0``, ``dirpg_a0.3``, ``dirpg_a1``: DirPG (Eq. 10, Algorithm 1) with the A* priority
  ``G + ε(L + αU)`` (§6.3, ~L247) for α ∈ {0, 0.3, 1}, ``U`` = :func:`_minigrid.upper_bound`
  (``tree.upper_bound``), early stop at the first improvement (Algorithm 1, line 9), and the
  library's pruning by the bound ``G + ε(L + U)`` (valid, since ``U`` bounds the return-to-go).
  One search = one episode = one update: ``a_opt ~ Π_θ`` (the on-policy sample logged as the
  return) and ``a_dir``, then one Adam *ascent* step on ``ĝ`` (``scg.algorithms.dirpg_gradient``).
* ``reinforce``: 30 independent 100-step episodes per update, the action-level ("future rewards")
  REINFORCE of App. C.3 (~L424) ``Σ_t ∇log π(a_t|s_t) Σ_{i≥t} r_i``, gradients averaged over the
  30 episodes, no baseline (the paper names none), undiscounted.
* ``cem``: trajectory-elite cross-entropy method (App. C.3, ~L420): the same 30 episodes, one
  Adam step on ``−Σ w_i log Π_θ(τ_i)`` with ``w = elite_weights(R, 2)`` (best 2 of 30).

Settings from the paper: MultiRoom-N6 (25×25, 6 rooms), App. C.3's CNN policy and Adam 1e-3 for
every method, 3000 interactions per DirPG search and 30 × 100-step trajectories for the baselines
(~L420). Our choices where the paper is silent (spec B7, B8.3):

* ε = 1 for both the search and Eq. 10 (the authors' code reportedly uses 3 for the search and 1
  for the gradient; the library uses one ε for both). Budget 3000 expansions, ``max_depth = T = 100``.
* rewards: door 10 (first opening), goal ``100(1 − 0.9 t/T)``, ``T = 100`` for all methods
  (see ``bench/_minigrid.py``); the return is their sum, the maximum is ≈ 50 + 100.
* "success" = the episode reached the goal. For DirPG it is ``a_opt``'s (replayed on the host).
* An *interaction* is one environment step: every expansion of a DirPG search (phase 1 included,
  the search's own ``expansions`` counter) and every step of a baseline episode.
* layouts: the ``u``-th update of every method uses the layout of env seed ``s_u``, the ``u``-th
  draw of ``numpy.random.default_rng(--seed).integers(2**31)``; all 30 baseline episodes of an update
  share it (as one DirPG search stays in one layout), so every method trains over random layouts and
  the methods see the same layout sequence per update.
* the policy is initialised from ``jax.random.key(--seed)`` (the same θ₀ for every method).

**The "JAX port" measurement** (``port_timing`` in the JSON, run first in a process that runs a
DirPG method): a jitted search with the same budget (3000), priority (α = 0.3, no early stop, no
pruning, so both do exactly 3000 expansions), layout and policy, through :class:`HostTree`
(``jax.pure_callback`` into the Python env) and through ``jax_door_grid_tree`` (a pure-JAX step of
the same layout); expansions per second of each, median of a few searches after compilation.
Measured on this machine (2 CPU cores): alone, ≈ 1.7k expansions/s through HostTree and ≈ 19k
through the JAX step (×11); at the start of the real run, with the other lane running, 0.88k vs
13.1k (×15; ``port_timing.json``). There an expansion through HostTree costs ≈ 1.13 ms: the
Python copy + step + ``U`` alone ≈ 0.36 ms (2.8k steps/s, no JAX), the JAX search work ≈ 0.08 ms
(the port's whole expansion), so by difference ≈ 0.7 ms is the ``pure_callback`` round trip from the
``while_loop``. **Decision: the bench uses HostTree.** A port would buy about 11-15× more
interactions in the budget, but ``jax_door_grid_tree`` is not a port of the task: it replays one
fixed layout, has no MultiRoom generator (random layouts) and no MiniGrid visibility mask, so its
images differ from MiniGrid's. Writing and validating a faithful
JAX MultiRoom (generator, occlusion, every action) against the Python env is a task of its own;
the measured ×11-15 says it would be worth doing for a longer study (the paper's 9M interactions are
≈ 90 min per method through HostTree; ≈ 8 min with a port).

Observed (20 min per method, seed 0, see the merged JSON): REINFORCE and CEM reach ≈ 95 / 99 mean
return and ≈ 95 / 93 % success within ≈ 6M interactions; DirPG α = 0 rises slowly (return 1.8 → 14,
success ≈ 1 % at 2M interactions, improvement found in 75 % of searches); α = 0.3 and α = 1 never
found an improvement within 3000 expansions (one leaf per search: breadth-first, §6.3's failure
mode, here already at α = 0.3 with this ``U``), so their gradient was always 0 and they stay flat.

Usage::

    python bench/dirpg_minigrid.py --minutes 20 --methods dirpg_a0 dirpg_a0.3 dirpg_a1
    python bench/dirpg_minigrid.py --minutes 20 --methods reinforce cem
    python bench/dirpg_minigrid.py --plot-only

Writes ``<out-dir>/<method>.json`` (atomically, every ``--write-every`` updates and at the end),
``<out-dir>/port_timing.json``; ``--plot-only`` merges them into ``bench/results/dirpg_minigrid.json``
and ``.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _minigrid as mg  # noqa: E402
from _util import environment, write_json_atomic  # noqa: E402

from scg.algorithms.dirpg_gradient import dirpg_gradient, trajectory_log_prob  # noqa: E402
from scg.algorithms.trajectory_cem import elite_weights  # noqa: E402
from scg.returns import cost_to_go  # noqa: E402
from scg.search import Trajectory, search  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("dirpg_a0", "dirpg_a0.3", "dirpg_a1", "reinforce", "cem")
ALPHAS = {"dirpg_a0": 0.0, "dirpg_a0.3": 0.3, "dirpg_a1": 1.0}
SETTINGS = dict(env=mg.ENV_ID, learning_rate=1e-3, epsilon=1.0, budget=3000, max_steps=mg.MAX_STEPS,
                num_episodes=30, num_elite=2, door_reward=mg.DOOR_REWARD, goal_scale=mg.GOAL_SCALE,
                early_stop=True, prune=True, priority="astar")


# --- updates ----------------------------------------------------------------------------------


def make_dirpg_update(host: mg.HostTree, alpha: float, settings: dict):
    """A jitted ``(params, opt_state, root, key) -> (params, opt_state, search)``: one search, one ascent step."""
    optimizer = optax.adam(settings["learning_rate"])

    @jax.jit
    def update(params, opt_state, root, key):
        out = dirpg_gradient(mg.policy_logits, lambda p: host.tree(root, p), params, key,
                             epsilon=settings["epsilon"], budget=settings["budget"], max_depth=settings["max_steps"],
                             alpha=alpha, priority=settings["priority"], early_stop=settings["early_stop"],
                             prune=settings["prune"])
        descent = jax.tree_util.tree_map(jnp.negative, out.grad)  # ĝ is an ascent direction
        updates, opt_state = optimizer.update(descent, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, out.search

    return optimizer, update


def _step_log_probs(params, image, direction, action):
    """``[N, T]`` ``log π_θ(a_t | s_t)`` of padded episodes."""
    def one(i, d, a):
        return jax.nn.log_softmax(mg.policy_logits(params, {"image": i, "direction": d}))[a]

    return jax.vmap(jax.vmap(one))(image, direction, action)


def reinforce_loss(params, image, direction, action, reward, length):
    """``−(1/N) Σ_i Σ_t log π(a_t|s_t) Σ_{i≥t} r_i`` (App. C.3's action-level REINFORCE, ~L424)."""
    valid = jnp.arange(action.shape[1])[None, :] < length[:, None]
    zeros = jnp.zeros_like(reward)  # padding beyond `length` has reward 0, so no terminal flags are needed
    to_go = jax.vmap(lambda r, z: cost_to_go(r, z, z, z, 1.0))(reward, zeros)  # Σ_{i≥t} r_i
    logp = _step_log_probs(params, image, direction, action)
    return -jnp.mean(jnp.sum(jnp.where(valid, logp * to_go, 0.0), axis=1))


def cem_loss(params, image, direction, action, reward, length, num_elite: int):
    """``−Σ_i w_i log Π_θ(τ_i)``, ``w = elite_weights(R, num_elite)`` (App. C.3, ~L420)."""
    returns = jnp.sum(reward, axis=1)
    w = elite_weights(returns, num_elite)

    def log_pi(i, d, a, r, n):
        traj = Trajectory(actions=a, rewards=r, states={"image": i, "direction": d}, length=n, ret=jnp.sum(r),
                          log_prob=0.0, g=0.0, d=0.0)
        return trajectory_log_prob(mg.policy_logits, params, traj)

    return -jnp.sum(w * jax.vmap(log_pi)(image, direction, action, reward, length))


def make_episode_update(method: str, settings: dict):
    """A jitted ``(params, opt_state, episodes...) -> (params, opt_state, loss)`` for ``reinforce`` or ``cem``."""
    optimizer = optax.adam(settings["learning_rate"])
    if method == "reinforce":
        loss_fn = reinforce_loss
    elif method == "cem":
        loss_fn = lambda *a: cem_loss(*a, num_elite=settings["num_elite"])  # noqa: E731
    else:
        raise ValueError(f"make_episode_update: method must be 'reinforce' or 'cem', got {method!r}")

    @jax.jit
    def update(params, opt_state, image, direction, action, reward, length):
        loss, grads = jax.value_and_grad(loss_fn)(params, image, direction, action, reward, length)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return optimizer, update


# --- running one method -----------------------------------------------------------------------


def layout_seeds(seed: int):
    """The layout seed ``s_u`` of update ``u``: draws of ``default_rng(seed).integers(2**31)``, one per update."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(2 ** 31))


def run_method(method: str, minutes: float, seed: int, out_path: Path, settings: dict = SETTINGS,
               write_every: int = 10, extra: dict | None = None) -> dict:
    """Train ``method`` until ``minutes`` of wall clock are spent; the log (also written to ``out_path``)."""
    if method not in METHODS:
        raise ValueError(f"run_method: method must be one of {METHODS}, got {method!r}")
    params = mg.init_policy(jax.random.key(seed))
    key = jax.random.fold_in(jax.random.key(seed), 1)
    log = {k: [] for k in ("update", "interactions", "wall_s", "mean_return", "success_rate")}
    if method in ALPHAS:
        host = mg.HostTree(mg.make_env(settings["max_steps"]))
        optimizer, update = make_dirpg_update(host, ALPHAS[method], settings)
        log.update({k: [] for k in ("dir_return", "improved", "expansions", "leaves", "d_opt", "d_dir", "pruned")})
    else:
        envs = [mg.make_env(settings["max_steps"]) for _ in range(settings["num_episodes"])]
        optimizer, update = make_episode_update(method, settings)
        sampler = mg.make_action_sampler()
        log.update({"loss": []})
    opt_state = optimizer.init(params)
    record = {"method": method, "alpha": ALPHAS.get(method), "seed": seed, "minutes": minutes, "settings": settings,
              "environment": environment(), "minigrid_version": _minigrid_version(), **(extra or {}), "log": log}
    interactions, start, u = 0, time.perf_counter(), 0
    for u, layout in enumerate(layout_seeds(seed)):
        if time.perf_counter() - start >= 60.0 * minutes:
            break
        k = jax.random.fold_in(key, u)
        if method in ALPHAS:
            root = host.reset(layout)
            params, opt_state, res = update(params, opt_state, root, k)
            res = jax.device_get(res)
            interactions += int(res.expansions)
            ret, success = float(res.a_opt.ret), float(host.leaf_succeeded(res.a_opt))
            for name, value in (("dir_return", float(res.a_dir.ret)), ("improved", bool(res.improved)),
                                ("expansions", int(res.expansions)), ("leaves", int(res.leaves)),
                                ("d_opt", float(res.a_opt.d)), ("d_dir", float(res.a_dir.d)), ("pruned", int(res.pruned))):
                log[name].append(value)
        else:
            ep = mg.sample_episodes(envs, [layout] * len(envs), sampler, params, k, settings["max_steps"])
            params, opt_state, loss = update(params, opt_state, ep.image, ep.direction, ep.action, ep.reward, ep.length)
            interactions += int(ep.length.sum())
            ret, success = float(ep.reward.sum(1).mean()), float(ep.success.mean())
            log["loss"].append(float(loss))
        for name, value in (("update", u), ("interactions", interactions), ("wall_s", time.perf_counter() - start),
                            ("mean_return", ret), ("success_rate", success)):
            log[name].append(value)
        if (u + 1) % write_every == 0:
            write_json_atomic(str(out_path), record)
    record["finished"] = True
    record["summary"] = summarize(log)
    write_json_atomic(str(out_path), record)
    return record


def summarize(log: dict) -> dict:
    """Updates, interactions, and mean return / success over the last 10% of updates (at least 1)."""
    n = len(log["update"])
    if n == 0:
        return {"updates": 0, "interactions": 0}
    tail = slice(n - max(1, n // 10), n)
    out = {"updates": n, "interactions": log["interactions"][-1], "wall_s": log["wall_s"][-1],
           "final_mean_return": float(np.mean(log["mean_return"][tail])),
           "final_success_rate": float(np.mean(log["success_rate"][tail])),
           "first_10pct_mean_return": float(np.mean(log["mean_return"][:max(1, n // 10)]))}
    if "improved" in log:
        out["improved_fraction"] = float(np.mean(log["improved"]))
        out["final_dir_return"] = float(np.mean(log["dir_return"][tail]))
    return out


def _minigrid_version() -> str:
    from importlib.metadata import version

    return version("minigrid")


# --- the JAX-port measurement -----------------------------------------------------------------


def port_timing(seed: int, budget: int = 3000, reps: int = 3) -> dict:
    """Expansions/s of one jitted search through :class:`HostTree` vs ``jax_door_grid_tree`` (same layout, policy, budget)."""
    params = mg.init_policy(jax.random.key(seed))
    env = mg.make_env()
    host = mg.HostTree(env)
    layout = next(layout_seeds(seed))
    kwargs = dict(epsilon=1.0, budget=budget, max_depth=mg.MAX_STEPS, alpha=0.3, early_stop=False, prune=False)
    host_search = jax.jit(lambda p, root, k: search(host.tree(root, p), k, **kwargs))
    root = host.reset(layout)
    jax_tree_env = mg.make_env()
    jax_tree_env.reset(seed=layout)
    jax_search = jax.jit(lambda p, k: search(mg.jax_door_grid_tree(jax_tree_env, p), k, **kwargs))
    out = {}
    for name, call in (("host_tree", lambda k: host_search(params, host.reset(layout), k)),
                       ("jax_port", lambda k: jax_search(params, k))):
        t0 = time.perf_counter()
        jax.block_until_ready(call(jax.random.key(0)))
        first = time.perf_counter() - t0
        rates = []
        for r in range(reps):
            t0 = time.perf_counter()
            res = jax.block_until_ready(call(jax.random.key(r + 1)))
            rates.append(int(res.expansions) / (time.perf_counter() - t0))
        out[name] = {"expansions_per_s_median": float(np.median(rates)), "expansions_per_s": rates,
                     "first_call_s": first, "expansions": int(res.expansions)}
    out["speedup_jax_over_host"] = out["jax_port"]["expansions_per_s_median"] / out["host_tree"]["expansions_per_s_median"]
    # The host side alone: copy + step + U of random actions from the root, no JAX (what a port removes).
    rng = np.random.default_rng(seed)
    host.reset(layout)
    handle = host.root_handle
    t0 = time.perf_counter()
    n = 2000
    for i in range(n):
        child = np.array([i, 0], np.uint32)
        host.step_host(handle, int(rng.integers(mg.NUM_ACTIONS)), child)
    out["host_step_only_per_s"] = n / (time.perf_counter() - t0)
    out.update(layout_seed=layout, budget=budget, search="astar alpha=0.3, epsilon=1, no early stop, no pruning",
               note="2 shared CPU cores; jax_port is one fixed layout without MiniGrid's visibility mask (timing only)")
    return out


# --- merge and plot ---------------------------------------------------------------------------


def merge(out_dir: Path, merged_json: Path, merged_png: Path, note: str = "") -> dict:
    """Merge the per-method JSONs in ``out_dir`` (and ``port_timing.json``) into one JSON and a plot."""
    import json

    runs = {}
    for m in METHODS:
        p = out_dir / f"{m}.json"
        if p.exists():
            r = json.loads(p.read_text())
            r.setdefault("summary", summarize(r["log"]))
            runs[m] = r
    port = out_dir / "port_timing.json"
    merged = {"figure": "DirPG Fig. 3a: MiniGrid-MultiRoom-N6, return vs interactions (report only)",
              "note": note, "port_timing": json.loads(port.read_text()) if port.exists() else None,
              "summary": {m: r["summary"] for m, r in runs.items()},
              "finished": {m: bool(r.get("finished")) for m, r in runs.items()}, "runs": runs}
    write_json_atomic(str(merged_json), merged)
    plot(runs, merged_png)
    return merged


def _smooth(y, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (fewer at the start)."""
    y = np.asarray(y, float)
    c = np.cumsum(np.insert(y, 0, 0.0))
    i = np.arange(1, len(y) + 1)
    w = np.minimum(i, window)
    return (c[i] - c[i - w]) / w


STYLES = {"dirpg_a0.3": "--", "dirpg_a1": ":"}  # the two flat DirPG curves overlap; dashes keep both visible


def plot(runs: dict, path: Path) -> None:
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
    for m, r in runs.items():
        log = r["log"]
        x = np.asarray(log["interactions"])
        window = max(1, len(x) // 20)
        for a, field in zip(ax, ("mean_return", "success_rate")):
            a.plot(x, _smooth(log[field], window), ls=STYLES.get(m, "-"), label=f"{m} ({len(x)} updates)")
    ax[0].set(xlabel="interactions (env steps)", ylabel="return (moving average, 5% of updates)",
              title="MultiRoom-N6: on-policy return (DirPG: a_opt)")
    ax[1].set(xlabel="interactions (env steps)", ylabel="success rate (moving average)", title="reached the goal")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# --- command line -----------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per method")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"a subset of {METHODS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=str(RESULTS / "dirpg_minigrid"))
    parser.add_argument("--merged", default=str(RESULTS / "dirpg_minigrid.json"),
                        help="the merged JSON of --plot-only (the PNG beside it)")
    parser.add_argument("--plot-only", action="store_true", help="merge the per-method JSONs in --out-dir and plot")
    parser.add_argument("--note", default="", help="a note stored in every JSON (e.g. how the CPU was shared)")
    parser.add_argument("--write-every", type=int, default=10, help="updates between JSON writes")
    parser.add_argument("--port-budget", type=int, default=3000, help="budget of the JAX-port timing (0 skips it)")
    args = parser.parse_args(argv)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        parser.error(f"--methods: unknown {bad}; choose from {METHODS}")
    if args.minutes < 0:
        parser.error(f"--minutes must be >= 0, got {args.minutes}")
    if args.write_every < 1:
        parser.error(f"--write-every must be >= 1, got {args.write_every}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = Path(args.merged)
    if args.plot_only:
        return merge(out_dir, merged, merged.with_suffix(".png"), args.note)
    if args.port_budget and any(m in ALPHAS for m in args.methods):
        timing = port_timing(args.seed, args.port_budget)
        timing["note_run"] = args.note
        write_json_atomic(str(out_dir / "port_timing.json"), timing)
        print(f"port timing: host {timing['host_tree']['expansions_per_s_median']:.0f}/s, "
              f"jax {timing['jax_port']['expansions_per_s_median']:.0f}/s", flush=True)
    done = {}
    for m in args.methods:
        rec = run_method(m, args.minutes, args.seed, out_dir / f"{m}.json", write_every=args.write_every,
                         extra={"note": args.note})
        done[m] = rec["summary"]
        print(m, rec["summary"], flush=True)
    return done


if __name__ == "__main__":
    main()
