"""TRPO on MuJoCo Swimmer (Schulman 2016, §3.14, Table 2), stepped by gymnasium on the host, for a time budget.

Table 2's single-path setup, kept: δ = 0.01, γ = 0.99, a policy with one hidden layer of 30
``tanh`` units (Gaussian, state-independent log-std, §3.13), 50 paths of 1,000 steps per
iteration (50 copies of ``Swimmer-v5``, whose episodes are exactly 1,000 steps, so every batch
is 50 whole episodes). Not the thesis's: gymnasium's ``Swimmer-v5`` (8-d observation, so 334
policy parameters, not 364), GAE(λ = 0.97) advantages and a trust-region value function of the
same architecture (the GAE chapter's algorithm, ``algorithms/trpo.py``), and the run stops after
``--minutes`` of wall time rather than after 200 iterations.

The environments run on the host (:class:`scg.envs.host.HostEnv`); each batch goes through the same
compiled ``trpo`` update as a JAX environment's (:mod:`scg.algorithms.host`).

MuJoCo is an optional extra::

    pip install "gymnasium[mujoco]"        # or: pip install -e ".[mujoco]"

Usage::

    python bench/trpo_swimmer.py                 # 20 minutes
    python bench/trpo_swimmer.py --minutes 2.5   # smoke run

Writes ``bench/results/trpo_swimmer.json`` and ``bench/results/trpo_swimmer.png``.
"""
from __future__ import annotations

import argparse
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


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["env_steps"] for r in rows], [r["batch_return"] for r in rows])
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return of the batch")
    ax.set_title(f"TRPO on {ENV_ID} (δ = {CONFIG['max_kl']}, 30 hidden units)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-time budget for training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=CONFIG["num_envs"], help="paths per batch")
    parser.add_argument("--out", default=str(RESULTS / "trpo_swimmer.json"))
    args = parser.parse_args(argv)
    config = {**CONFIG, "num_envs": args.num_envs}
    host = host_env(config["num_envs"], 10_000 * args.seed)
    out = Path(args.out)
    rows, start = [], time.perf_counter()
    try:
        trainer = make_host_train("trpo", host, config)
        key_init, key_act = jax.random.split(jax.random.key(args.seed))
        state, steps, it = trainer.init(key_init), 0, 0
        while time.perf_counter() - start < 60 * args.minutes:
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
            print(f"it {it:4d}  steps {steps:8d}  return {rows[-1]['batch_return']:8.2f}  kl {metrics['kl']:.4f}  "
                  f"collect {t1 - t0:.1f}s  update {t2 - t1:.1f}s", flush=True)
    finally:
        host.close()
    result = {
        "environment": environment(),
        "env": ENV_ID,
        "config": ALGORITHMS["trpo"].configure(overrides=config).to_dict(),
        "minutes": args.minutes,
        "seed": args.seed,
        "iterations": len(rows),
        "final_return": rows[-1]["batch_return"] if rows else None,
        "best_return": max(r["batch_return"] for r in rows) if rows else None,
        "rows": rows,
    }
    write_json_atomic(str(out), result)
    if rows:
        plot(rows, out.with_suffix(".png"))
    print(f"{len(rows)} iterations, {rows[-1]['env_steps'] if rows else 0} steps, final return "
          f"{result['final_return']}, best {result['best_return']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
