"""Tables 1 and 2 of Levy & Ermon (2018), RPG against A2C (for A3C) and CEM: ``bench/results/rpg_tables.{json,png}``.

Each cell runs 5 seeds of each method (``make_train``: seeds ``vmap``ped, iterations in ``lax.scan``):

- **RPG** (:mod:`scg.algorithms.rpg`): Algorithm 1 with the fitted dynamics, its defaults and ``TUNED`` entry.
- **A2C stands in for A3C**: the synchronous actor-critic of :mod:`scg.algorithms.a2c`, the same (64, 64) tanh
  policy network, ``num_envs`` = RPG's trajectories per iteration, the learning rate "cross-validated" as the
  paper did (~L280) over ``A2C_LRS`` (the best final 5-seed mean is the reported one; the whole grid is in the
  JSON), on RPG's measured env-step budget. No asynchrony: that is the deviation.
- **CEM** (:mod:`scg.algorithms.cem`) with the paper's populations (50 for Hand Mass, 200 for Mountain Car; 200
  on Table 1 by 20 x RPG's 10, our reading of ~L274) keeping the top 2% (~L263) — on a population of 50 that is
  one member, to which no variance can be fitted, so Hand Mass keeps 2 (4%) — with a linear policy (the paper
  does not give CEM's policy class; our choice, cheap) over the paper's number of iterations.

Table 2 (~L299-309): the mean ± standard error over seeds of the final ``mean_return`` (last 20 episodes) after
150 iterations of 2 trajectories (Hand Mass) and 1000 of 10 (Mountain Car). Table 1 (~L287-297): the first
iteration at which the 5-seed mean curve of ``mean_return`` reaches the paper's thresholds (495, -105); its unit
is not stated, so iterations, trajectories and env steps are reported, and the A2C/RPG ratio of env steps
judged. The ablations run RPG on Hand Mass and Cart Pole with the true Jacobian and along the relaxed
trajectory. Wall times per run are recorded (2 shared cores).

Usage::

    python bench/rpg_tables.py                         # every cell (see --cells), merged into the JSON
    python bench/rpg_tables.py --cells handmass,cartpole --seeds 5
    python bench/rpg_tables.py --plot-only
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

from _util import environment, write_json_atomic  # noqa: E402

from scg.algorithms import make_train, rpg  # noqa: E402
from scg.algorithms.train import seed_keys  # noqa: E402
from scg.envs.registry import make  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "rpg_tables.json"
FIGURE = RESULTS.with_suffix(".png")
A2C_LRS = (1e-3, 3e-3, 1e-2)
PAPER = {
    "table2": {
        "HandMass-v0": {"episodes": 150, "CEM": (50, -0.086, 0.01), "A3C": (2, -2.42, 2.19), "RPG": (2, -0.026, 0.01)},
        "MountainCar-v0": {"episodes": 1000, "CEM": (200, -110.3, 1.2), "A3C": (10, -176.0, 38.6),
                           "RPG": (10, -131.3, 5.3)},
    },
    "table1": {"CartPole-v1": {"threshold": 495, "CEM": 470, "A3C": 279, "RPG": 91},
               "Acrobot-v1": {"threshold": -105, "CEM": 180, "A3C": 541, "RPG": 311}},
}
CELLS = {
    # env, RPG iterations, trajectories per iteration m, A2C n-step horizon, CEM (population, elite_frac, iterations)
    "handmass": dict(env="HandMass-v0", iterations=150, m=2, a2c_horizon=20, cem=(50, 0.04, 150), table="table2"),
    "mountaincar": dict(env="MountainCar-v0", iterations=1000, m=10, a2c_horizon=20, cem=(200, 0.02, 1000),
                        table="table2"),
    "cartpole": dict(env="CartPole-v1", iterations=150, m=10, a2c_horizon=20, cem=(200, 0.02, 50), table="table1"),
    "acrobot": dict(env="Acrobot-v1", iterations=300, m=10, a2c_horizon=20, cem=(200, 0.02, 50), table="table1"),
}
ABLATIONS = {"handmass": dict(env="HandMass-v0", iterations=150, m=2),
             "cartpole": dict(env="CartPole-v1", iterations=150, m=10)}


def run(algo: str, env_name: str, config: dict, iterations: int, seeds: int, chunk: int = 50) -> dict:
    """``iterations`` of ``algo`` on ``seeds`` seeds; per-iteration ``env_steps`` and ``mean_return`` ``[seeds, it]``."""
    env, params = make(env_name)
    init_all, run_all = make_train(algo, env, params, config)
    t0 = time.perf_counter()
    states = init_all(seed_keys(seeds))
    parts = []
    done = 0
    while done < iterations:
        n = min(chunk, iterations - done)
        states, metrics = run_all(states, n)
        parts.append({k: np.asarray(metrics[k]) for k in ("env_steps", "mean_return")})
        done += n
        last = np.nanmean(parts[-1]["mean_return"][:, -1])
        print(f"  {algo:4s} {env_name:15s} it {done:5d}/{iterations}  mean_return {last:9.3f}  "
              f"{time.perf_counter() - t0:6.1f} s", flush=True)
    out = {k: np.concatenate([p[k] for p in parts], axis=1) for k in ("env_steps", "mean_return")}
    return thin({"algo": algo, "env": env_name, "config": config, "iterations": iterations, "seeds": seeds,
                 "wall_s": time.perf_counter() - t0, **out})


MAX_POINTS = 300  # per stored curve: the JSON keeps every k-th iteration (and the last); summaries use all


def thin(record: dict) -> dict:
    """``record`` with its per-iteration arrays cut to ``MAX_POINTS`` iterations (env steps summed over each stride).

    Summaries read the kept points, so a crossing is located to within one stride (recorded as ``stride``).
    """
    steps = np.asarray(record["env_steps"], dtype=float)
    ret = np.asarray(record["mean_return"], dtype=float)
    stride = max(1, -(-steps.shape[1] // MAX_POINTS))
    keep = np.unique(np.r_[np.arange(stride - 1, steps.shape[1], stride), steps.shape[1] - 1])
    cumulative = np.cumsum(steps, axis=1)[:, keep]
    return {**record, "stride": int(stride), "iteration_index": keep.tolist(),
            "env_steps": np.diff(cumulative, axis=1, prepend=0.0).tolist(), "mean_return": ret[:, keep].tolist()}


def final(record: dict) -> dict:
    """Mean ± standard error over seeds of the last ``mean_return``; total env steps per seed (mean)."""
    last = np.asarray(record["mean_return"], dtype=float)[:, -1]
    return {"mean": float(np.mean(last)), "se": float(np.std(last, ddof=1) / np.sqrt(len(last))),
            "per_seed": last.tolist(), "env_steps": float(np.mean(np.sum(record["env_steps"], axis=1)))}


def crossing(record: dict, threshold: float, trajectories_per_iteration: int) -> dict:
    """The first iteration where the seed-mean curve of ``mean_return`` reaches ``threshold`` (None: never)."""
    curve = np.nanmean(np.asarray(record["mean_return"], dtype=float), axis=0)
    steps = np.mean(np.cumsum(np.asarray(record["env_steps"]), axis=1), axis=0)
    hit = np.flatnonzero(curve >= threshold)
    if hit.size == 0:
        return {"iteration": None, "trajectories": None, "env_steps": None, "best_mean": float(np.nanmax(curve))}
    i = int(record.get("iteration_index", range(len(curve)))[int(hit[0])])
    return {"iteration": i + 1, "trajectories": (i + 1) * trajectories_per_iteration, "env_steps": float(steps[hit[0]]),
            "best_mean": float(np.nanmax(curve)), "within_iterations": int(record.get("stride", 1))}


def a2c_config(m: int, horizon: int, lr: float) -> dict:
    return {"num_envs": m, "horizon": horizon, "lr": lr, "hidden": (64, 64)}


def run_cell(name: str, seeds: int) -> dict:
    cell = CELLS[name]
    env_name, m = cell["env"], cell["m"]
    out = {"cell": name, **{k: v for k, v in cell.items() if k != "cem"}, "cem_setting": cell["cem"]}
    rpg_config = dict(rpg.TUNED.get(env_name, {}), num_envs=m)
    out["rpg"] = run("rpg", env_name, rpg_config, cell["iterations"], seeds)
    budget = final(out["rpg"])["env_steps"]  # RPG's measured env steps per seed: A2C gets the same
    a2c_iterations = max(1, int(round(budget / (m * cell["a2c_horizon"]))))
    out["a2c_grid"] = [run("a2c", env_name, a2c_config(m, cell["a2c_horizon"], lr), a2c_iterations, seeds, chunk=500)
                       for lr in A2C_LRS]
    pop, elite, cem_iterations = cell["cem"]
    out["cem"] = run("cem", env_name, {"population": pop, "elite_frac": elite}, cem_iterations, seeds, chunk=25)
    return out


def run_ablation(name: str, seeds: int) -> dict:
    cell = ABLATIONS[name]
    out = {"cell": name, **cell}
    base = dict(rpg.TUNED.get(cell["env"], {}), num_envs=cell["m"])
    for label, extra in (("fitted_real", {}), ("true_jacobian", {"jacobian": "true"}),
                         ("relaxed_trajectory", {"trajectory": "relaxed"})):
        out[label] = run("rpg", cell["env"], {**base, **extra}, cell["iterations"], seeds)
    return out


def summarise(results: dict) -> dict:
    """The tables, paper numbers beside ours."""
    tables: dict = {"table1": {}, "table2": {}}
    for name, cell in results.get("cells", {}).items():
        env_name, m = cell["env"], cell["m"]
        grid = {str(r["config"]["lr"]): final(r) for r in cell["a2c_grid"]}
        best_lr = max(grid, key=lambda k: grid[k]["mean"])
        best = next(r for r in cell["a2c_grid"] if str(r["config"]["lr"]) == best_lr)
        if cell["table"] == "table2":
            tables["table2"][env_name] = {
                "paper": PAPER["table2"][env_name],
                "RPG": final(cell["rpg"]), "A2C": {**final(best), "lr": float(best_lr), "grid": grid},
                "CEM": {**final(cell["cem"]), "population": cell["cem_setting"][0], "elite_frac": cell["cem_setting"][1]},
                "wall_s": {"RPG": cell["rpg"]["wall_s"], "A2C": [r["wall_s"] for r in cell["a2c_grid"]],
                           "CEM": cell["cem"]["wall_s"]},
            }
        else:
            threshold = PAPER["table1"][env_name]["threshold"]
            rows = {"RPG": crossing(cell["rpg"], threshold, m)}
            rows["A2C"] = {**crossing(best, threshold, m), "lr": float(best_lr),
                           "grid": {str(r["config"]["lr"]): crossing(r, threshold, m) for r in cell["a2c_grid"]}}
            rows["CEM"] = crossing(cell["cem"], threshold, cell["cem_setting"][0])
            r, a = rows["RPG"]["env_steps"], rows["A2C"]["env_steps"]
            rows["a2c_over_rpg_env_steps"] = None if r is None or a is None else a / r
            # Diagnostics of a missed threshold: the same crossing at lower levels of the return range.
            low = {"CartPole-v1": (100, 200, 300, 400), "Acrobot-v1": (-400, -300, -200, -150)}[env_name]
            rows["lower_thresholds_env_steps"] = {
                str(level): {"RPG": crossing(cell["rpg"], level, m)["env_steps"],
                             "A2C": crossing(best, level, m)["env_steps"]} for level in low}
            rows["paper"] = PAPER["table1"][env_name]
            rows["wall_s"] = {"RPG": cell["rpg"]["wall_s"], "A2C": [x["wall_s"] for x in cell["a2c_grid"]],
                              "CEM": cell["cem"]["wall_s"]}
            tables["table1"][env_name] = rows
    tables["ablations"] = {name: {k: final(v) for k, v in cell.items() if isinstance(v, dict) and "mean_return" in v}
                           for name, cell in results.get("ablations", {}).items()}
    return tables


def plot(results: dict, path: Path) -> None:
    """The paper's Figure 2 layout: one panel per task, the seed-mean true return against env steps, ± s.e."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = results.get("cells", {})
    if not cells:
        return
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.4), squeeze=False)
    for ax, (name, cell) in zip(axes[0], cells.items()):
        grid = {str(r["config"]["lr"]): final(r)["mean"] for r in cell["a2c_grid"]}
        best = next(r for r in cell["a2c_grid"] if str(r["config"]["lr"]) == max(grid, key=grid.get))
        for label, rec in (("RPG", cell["rpg"]), (f"A2C (lr {best['config']['lr']:g})", best), ("CEM", cell["cem"])):
            ret = np.asarray(rec["mean_return"], dtype=float)
            steps = np.mean(np.cumsum(np.asarray(rec["env_steps"]), axis=1), axis=0)
            mean = np.nanmean(ret, axis=0)
            se = np.nanstd(ret, axis=0) / np.sqrt(ret.shape[0])
            ax.plot(steps, mean, label=label)
            ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        if cell["table"] == "table1":
            ax.axhline(PAPER["table1"][cell["env"]]["threshold"], color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_title(f"{cell['env']} ({len(ret)} seeds)")
        ax.set_xlabel("env steps")
        ax.set_ylabel("mean return (true reward)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="handmass,mountaincar,cartpole,acrobot")
    parser.add_argument("--ablations", default="handmass,cartpole")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("cells", {})
    results.setdefault("ablations", {})
    if not args.plot_only:
        for name in filter(None, args.cells.split(",")):
            print(f"cell {name}", flush=True)
            results["cells"][name] = run_cell(name, args.seeds)
            results.update(environment=environment(), tables=summarise(results))
            write_json_atomic(RESULTS, results)
        for name in filter(None, args.ablations.split(",")):
            print(f"ablation {name}", flush=True)
            results["ablations"][name] = run_ablation(name, args.seeds)
            results.update(environment=environment(), tables=summarise(results))
            write_json_atomic(RESULTS, results)
    results["tables"] = summarise(results)
    write_json_atomic(RESULTS, results)
    plot(results, FIGURE)
    print(json.dumps(results["tables"], indent=1, default=str)[:6000])


if __name__ == "__main__":
    main()
