"""Off-policy learning on MuJoCo (DDPG, Smoothie), stepped by gymnasium on the host, for a time budget per run.

One run per (algorithm, environment), one seed each, one after another, each stopped after
``--minutes`` of wall time (environment creation and compilation included). Training is
:func:`scg.algorithms.offpolicy.host_train`: each iteration steps one gymnasium env ``horizon``
times with the jitted behaviour policy, then one jitted learn step adds the transitions to the
replay buffer and runs ``updates_per_iteration = horizon`` minibatch updates (one update per
environment step, as DDPG's Algorithm 1, batched ``horizon`` at a time; Fujimoto et al.'s TD3
code updates once per episode in the same way). The learning curve is the loop's own
``mean_return``: the mean return of the last 20 finished *training* episodes (with exploration
noise; uniform actions during warm-up), against environment steps.

The configurations (:data:`COMMON`, :data:`CONFIGS`) are ours, common modern choices for these
tasks (batch 256, (256, 256) ReLU networks, τ = 0.005, γ = 0.99, 10k steps of uniform warm-up),
not tuned (the actor's rate is Lillicrap et al.'s, see :data:`CONFIGS`). Two are set by the host path's costs: ``horizon = 50`` because each iteration pays a
host round trip and a copy of the whole replay buffer (``host_train`` jits ``update`` without
donating the state), and ``buffer_size = 200_000`` (about what 20 minutes on 2 cores collect) for
the same copy. Any algorithm registered with a :class:`~scg.algorithms.offpolicy.Learner` runs with
:data:`COMMON` (filtered to its config's fields) plus its entry of :data:`CONFIGS`, if any.

MuJoCo is an optional extra::

    pip install -e ".[mujoco]"        # or: pip install "gymnasium[mujoco]"

Usage::

    python bench/offpolicy_mujoco.py                                   # 2 algorithms x 2 envs x 20 min
    python bench/offpolicy_mujoco.py --algos ddpg --envs Hopper-v5 --minutes 0.5   # smoke run
    python bench/offpolicy_mujoco.py --set smoothie.kl_weight=0.1      # override one config field

Writes ``bench/results/offpolicy_mujoco.json`` (rewritten atomically after each run and every
``--save-every`` seconds within one, so an interruption loses nothing already measured) and
``bench/results/offpolicy_mujoco.png`` (the curves, one panel per environment).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import json
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, needing_mujoco, write_json_atomic  # noqa: E402

from scg.algorithms import ALGORITHMS  # noqa: E402
from scg.algorithms import offpolicy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW = 20  # episodes in the loop's mean_return (scg.algorithms.episodes.init's window)

COMMON = dict(num_envs=1, horizon=50, updates_per_iteration=50, batch_size=256, buffer_size=200_000,
              warmup_steps=10_000, discount=0.99, tau=0.005, hidden=(256, 256), activation="relu")
CONFIGS = {
    # Lillicrap et al.'s rates (actor 1e-4, critic 1e-3): with ddpg's default actor rate 1e-3, a smoke run on
    # Hopper drove every action to the box's edge (tanh saturated, actor gradient ~2e-4) within 200 updates.
    "ddpg": dict(actor_lr=1e-4, critic_lr=1e-3, noise="gaussian", noise_std=0.1),
    # The same rates; exploration is the policy's own N(μ, σ²), σ learned from σ₀ = 0.5 (as its
    # TUNED["Pendulum-v1"]); no KL penalty (λ = 0).
    "smoothie": dict(actor_hidden=(256, 256), actor_lr=1e-4, critic_lr=1e-3, noise="none", init_std=0.5,
                     kl_weight=0.0),
}


def algorithm(name: str):
    """The registered algorithm ``name`` (importing ``scg.algorithms.<name>`` if it is not registered yet)."""
    if name not in ALGORITHMS:
        try:
            importlib.import_module(f"scg.algorithms.{name}")
        except ImportError as err:
            raise SystemExit(f"unknown algorithm {name!r}: not registered and no module scg.algorithms.{name} ({err})")
    if name not in ALGORITHMS or ALGORITHMS[name].make_learner is None:
        raise SystemExit(f"{name!r} is not a registered off-policy algorithm (one with a Learner)")
    return ALGORITHMS[name]


def config_for(name: str, env_id: str, overrides: dict) -> dict:
    """The resolved config of ``name`` on ``env_id``: defaults, TUNED[env_id], COMMON ∩ its fields, CONFIGS, ``--set``."""
    algo = algorithm(name)
    fields = {f.name for f in dataclasses.fields(algo.config)}
    chosen = {k: v for k, v in COMMON.items() if k in fields}
    chosen.update(CONFIGS.get(name, {}))
    chosen.update(overrides.get(name, {}))
    return algo.configure(env_id, chosen).to_dict()  # unknown keys raise ConfigError here, before any run


def parse_sets(items: list[str]) -> dict:
    """``["ddpg.noise_std=0.2", ...]`` as ``{"ddpg": {"noise_std": 0.2}}`` (values as Python literals)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, field = key.partition(".")
        if not (sep and dot and field):
            raise SystemExit(f"--set takes ALGO.FIELD=VALUE, got {item!r}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out.setdefault(name, {})[field] = parsed
    return out


def check_mujoco(env_id: str) -> None:
    import gymnasium

    needing_mujoco(lambda: gymnasium.make(env_id)).close()


def finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None


def run_one(name: str, env_id: str, config: dict, *, seed: int, minutes: float, max_steps: int, log_every: int,
            save, save_every: float) -> dict:
    """Train ``name`` on ``env_id`` for ``minutes`` (or ``max_steps``); the run's record, also on interruption."""
    per_iteration = config["num_envs"] * config["horizon"]
    run = {"algo": name, "env": env_id, "seed": seed, "config": config, "complete": False, "stop": None,
           "env_steps": 0, "iterations": 0, "wall_s": 0.0, "first_iteration_s": None, "steps_per_s": None,
           "learning_steps_per_s": None, "final_mean_return": None, "best_mean_return": None, "episodes": 0,
           "curve": []}
    track = {"steps": 0, "best": -math.inf, "learn_t0": None, "learn_s0": None, "last_save": 0.0}
    start = time.perf_counter()

    def record(metrics: dict, now: float) -> None:
        row = {**metrics, "env_steps": track["steps"], "wall_s": now - start}  # the iteration's metrics, cumulative steps
        run["curve"].append({k: finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()})

    def on_iteration(_seed, i, metrics):
        now = time.perf_counter()
        track["steps"] += int(metrics["env_steps"])
        steps = track["steps"]
        if i == 0:
            run["first_iteration_s"] = now - start  # env creation, compilation of act and learn, one batch
        if track["learn_t0"] is None and steps >= config["warmup_steps"] + per_iteration:
            track["learn_t0"], track["learn_s0"] = now, steps  # the first learning iteration is done
        track["last"] = (metrics, now)
        ret, episodes = metrics["mean_return"], int(metrics["episodes"])
        if episodes >= WINDOW and math.isfinite(ret):
            track["best"] = max(track["best"], ret)
        out_of_time = now - start >= 60 * minutes
        last = out_of_time or steps >= max_steps
        if steps // log_every > (steps - per_iteration) // log_every or last:
            record(metrics, now)
        run.update(env_steps=steps, iterations=i + 1, wall_s=now - start, episodes=episodes,
                   steps_per_s=steps / (now - start), final_mean_return=finite_or_none(ret),
                   best_mean_return=track["best"] if track["best"] > -math.inf else None)
        if track["learn_t0"] is not None and now > track["learn_t0"]:
            run["learning_steps_per_s"] = (steps - track["learn_s0"]) / (now - track["learn_t0"])
        if i % 20 == 0 or last:
            print(f"  {name} {env_id}  steps {steps:8d}  {now - start:7.1f}s  mean return (last {WINDOW}) "
                  f"{ret:9.2f}  episodes {episodes:5d}  loss {metrics['loss']:9.3g}", flush=True)
        if now - track["last_save"] >= save_every:
            track["last_save"] = now
            save(run)
        if out_of_time:
            run["stop"] = "time budget"
        return out_of_time

    def close_curve() -> None:  # the last iteration's point, when it fell between two log points
        if "last" in track and (not run["curve"] or run["curve"][-1]["env_steps"] != track["steps"]):
            record(*track["last"])

    num_iterations = max(1, math.ceil(max_steps / per_iteration))
    try:
        offpolicy.host_train(name, env_id, config, seeds=(seed,), num_iterations=num_iterations,
                             on_iteration=on_iteration)
        run["complete"] = True
        run["stop"] = run["stop"] or "max steps"
    except KeyboardInterrupt:
        run["stop"] = "interrupted"
        close_curve()
        save(run)
        raise
    except Exception as err:  # record it and go on to the next run (e.g. an algorithm still being written)
        traceback.print_exc()
        run["stop"] = f"error: {type(err).__name__}: {err}"
    close_curve()
    return run


def plot(runs: list[dict], envs: list[str], path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        for run in (r for r in runs if r["env"] == env_id):
            pts = [(c["env_steps"], c["mean_return"]) for c in run["curve"] if c.get("mean_return") is not None]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, label=f"{run['algo']} ({run['env_steps'] / 1000:.0f}k steps in {run['wall_s'] / 60:.1f} min)")
                ax.axvline(run["config"]["warmup_steps"], color="grey", lw=0.8, ls=":")  # end of the uniform warm-up
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"mean return, last {WINDOW} training episodes")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"Off-policy on MuJoCo, host-stepped, {minutes:g} min per run (one seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["ddpg", "smoothie"])
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget of each (algo, env) run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1_000_000, help="stop a run here if time remains")
    parser.add_argument("--log-every", type=int, default=1_000, help="env steps between learning-curve points")
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds between partial saves in a run")
    parser.add_argument("--set", nargs="*", default=[], metavar="ALGO.FIELD=VALUE", help="config overrides")
    parser.add_argument("--out", default=str(RESULTS / "offpolicy_mujoco.json"))
    parser.add_argument("--keep-others", action="store_true",
                        help="keep the runs of other (algo, env) pairs already in --out (run the algorithms in parts)")
    args = parser.parse_args(argv)
    check_mujoco(args.envs[0])
    overrides = parse_sets(args.set)
    configs = {(a, e): config_for(a, e, overrides) for a in args.algos for e in args.envs}  # fail before any run
    out = Path(args.out)
    result = {"environment": environment(), "args": vars(args), "window_episodes": WINDOW, "runs": []}
    if args.keep_others and out.exists():
        kept = [r for r in json.loads(out.read_text())["runs"] if (r["algo"], r["env"]) not in configs]
        result["runs"] = kept
        result["kept_from_earlier_invocations"] = [f"{r['algo']} on {r['env']}" for r in kept]

    def save(current=None):
        runs = result["runs"] + ([current] if current is not None else [])
        write_json_atomic(str(out), {**result, "runs": runs, "time_utc_saved": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())})

    failed = False
    for (name, env_id), config in configs.items():
        print(f"{name} on {env_id}, {args.minutes:g} min, seed {args.seed}", flush=True)
        try:
            run = run_one(name, env_id, config, seed=args.seed, minutes=args.minutes, max_steps=args.max_steps,
                          log_every=args.log_every, save=save, save_every=args.save_every)
        except KeyboardInterrupt:  # run_one saved the partial run; draw what there is
            plot(json.loads(out.read_text())["runs"], args.envs, out.with_suffix(".png"), args.minutes)
            raise
        failed |= run["stop"].startswith("error")
        result["runs"].append(run)
        save()
        plot(result["runs"], args.envs, out.with_suffix(".png"), args.minutes)
        print(f"{name} {env_id}: {run['env_steps']} steps in {run['wall_s']:.0f} s ({run['stop']}), "
              f"final mean return {run['final_mean_return']}, best {run['best_mean_return']} -> {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
