"""TRPO on MuJoCo Swimmer (Schulman 2016, §3.14, Table 2), stepped by gymnasium on the host, for a time budget.

Table 2's single-path setup, kept: δ = 0.01, γ = 0.99, a policy with one hidden layer of 30
``tanh`` units (Gaussian, state-independent log-std, §3.13), 50 paths of 1,000 steps per
iteration (50 copies of ``Swimmer-v5``, whose episodes are exactly 1,000 steps, so every batch
is 50 whole episodes). Not the thesis's: gymnasium's ``Swimmer-v5`` (8-d observation, so 334
policy parameters, not 364), GAE(λ = 0.97) advantages and a trust-region value function of the
same architecture (the GAE chapter's algorithm, ``algorithms/trpo.py``), and the run stops after
``--minutes`` of wall time (or ``--iterations``) rather than after 200 iterations. With ``--seeds N`` it
trains seeds ``--seed`` … ``--seed + N − 1`` one after the other, each for that budget, and the figure shows
their mean with a band of ± one standard error over the seeds (``scg.algorithms.plots``, as ``scg plot``),
over the iterations every seed reached.

The environments run on the host (:class:`scg.envs.host.HostEnv`); each batch goes through the same
compiled ``trpo`` update as a JAX environment's (:mod:`scg.algorithms.host`).

MuJoCo is an optional extra::

    pip install "gymnasium[mujoco]"        # or: pip install -e ".[mujoco]"

Usage::

    python bench/trpo_swimmer.py                           # one seed, 20 minutes
    python bench/trpo_swimmer.py --seeds 3                 # three seeds, 20 minutes each
    python bench/trpo_swimmer.py --seeds 3 --iterations 50 # three seeds, 50 iterations each
    python bench/trpo_swimmer.py --minutes 2.5             # smoke run
    python bench/trpo_swimmer.py --replot                  # redraw the PNG from the JSON; no training

Writes ``bench/results/trpo_swimmer.json`` (one entry of ``runs`` per seed) and ``bench/results/trpo_swimmer.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, needing_mujoco, write_json_atomic  # noqa: E402

from scg.algorithms import ALGORITHMS  # noqa: E402
from scg.algorithms.host import make_host_train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ENV_ID = "Swimmer-v5"
CONFIG = dict(num_envs=50, horizon=1000, hidden=(30,), discount=0.99, gae_lambda=0.97, max_kl=0.01)


def host_env(num_envs: int, seed: int):
    from scg.envs.host import HostEnv

    return needing_mujoco(lambda: HostEnv(ENV_ID, num_envs, seed=seed))


def train_seed(seed: int, config: dict, minutes: float, iterations: int | None) -> list[dict]:
    """One seed's training, a row of metrics per iteration, until ``minutes`` of wall time (or ``iterations``)."""
    host = host_env(config["num_envs"], 10_000 * seed)
    rows, start = [], time.perf_counter()
    try:
        trainer = make_host_train("trpo", host, config)
        key_init, key_act = jax.random.split(jax.random.key(seed))
        state, steps, it = trainer.init(key_init), 0, 0
        while time.perf_counter() - start < 60 * minutes and (iterations is None or it < iterations):
            t0 = time.perf_counter()
            traj = host.collect(trainer.act, state.params["theta"], jax.random.fold_in(key_act, it), trainer.horizon)
            t1 = time.perf_counter()
            state, metrics = trainer.learn(state, traj)
            metrics = {k: float(v) for k, v in metrics.items()}
            t2 = time.perf_counter()
            done = np.logical_or(traj.terminated, traj.truncated)
            steps, it = steps + traj.reward.size, it + 1
            rows.append({
                **metrics,  # the update's metrics (its env_steps: this batch's), then the cumulative count
                "iteration": it,
                "env_steps": steps,
                "batch_return": float(traj.reward.sum() / max(1, done.sum())),  # per finished episode (whole episodes)
                "collect_s": t1 - t0,
                "update_s": t2 - t1,
                "wall_s": t2 - start,
            })
            print(f"seed {seed}  it {it:4d}  steps {steps:8d}  return {rows[-1]['batch_return']:8.2f}  "
                  f"kl {metrics['kl']:.4f}  collect {t1 - t0:.1f}s  update {t2 - t1:.1f}s", flush=True)
    finally:
        host.close()
    return rows


def seed_runs(result: dict) -> list[dict]:
    """The ``[{"seed", "rows"}, ...]`` of a result; a result of the one-seed format (``seed``, ``rows``) is one run."""
    if "runs" in result:
        return result["runs"]
    return [{"seed": result["seed"], "rows": result["rows"]}]


def curves(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [I], returns [I, S])`` over the ``I`` iterations every seed reached (a time budget gives
    seeds different counts); raises ``ValueError`` naming the seed that has none."""
    empty = [r["seed"] for r in runs if not r["rows"]]
    if empty:
        raise ValueError(f"seed(s) {empty} have no iteration to plot; train longer (--minutes) or leave them out")
    n = min(len(r["rows"]) for r in runs)
    x = np.array([row["env_steps"] for row in runs[0]["rows"][:n]], dtype=np.float64)
    returns = np.array([[row["batch_return"] for row in r["rows"][:n]] for r in runs], dtype=np.float64).T
    return x, returns


def plot(result: dict, path: Path) -> None:
    """The mean episode return over seeds vs environment steps, ± one standard error (:mod:`scg.algorithms.plots`)."""
    from matplotlib.figure import Figure

    from scg.algorithms.plots import BANDS, draw_curve

    runs = seed_runs(result)
    x, returns = curves(runs)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    draw_curve(ax, x, returns, label=f"TRPO, {len(runs)} seed{'s' * (len(runs) != 1)}", band="se")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return of the batch")
    spread = BANDS["se"] if len(runs) > 1 else "one seed, no band"
    ax.set_title(f"{ENV_ID}: TRPO, δ = {CONFIG['max_kl']}, 30 hidden units; {spread}", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    fig.savefig(path, dpi=150)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget for training, per seed")
    parser.add_argument("--iterations", type=int, default=None, help="stop each seed after this many iterations")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds, trained one after the other")
    parser.add_argument("--num-envs", type=int, default=CONFIG["num_envs"], help="paths per batch")
    parser.add_argument("--out", default=str(RESULTS / "trpo_swimmer.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out; no training")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        print(f"wrote {out.with_suffix('.png')}")
        return 0
    for name in ("seeds", "iterations", "num_envs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    config = {**CONFIG, "num_envs": args.num_envs}
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = []
    for seed in seeds:
        rows = train_seed(seed, config, args.minutes, args.iterations)
        runs.append({
            "seed": seed,
            "iterations": len(rows),
            "final_return": rows[-1]["batch_return"] if rows else None,
            "best_return": max(r["batch_return"] for r in rows) if rows else None,
            "rows": rows,
        })
    result = {
        "environment": environment(),
        "env": ENV_ID,
        "config": ALGORITHMS["trpo"].configure(overrides=config).to_dict(),
        "minutes": args.minutes,
        "max_iterations": args.iterations,
        "seeds": seeds,
        "runs": runs,
    }
    write_json_atomic(str(out), result)
    if all(r["rows"] for r in runs):
        plot(result, out.with_suffix(".png"))
    for r in runs:
        steps = r["rows"][-1]["env_steps"] if r["rows"] else 0
        print(f"seed {r['seed']}: {r['iterations']} iterations, {steps} steps, final return {r['final_return']}, "
              f"best {r['best_return']}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
