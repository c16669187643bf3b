"""Learning curves of runs: mean return vs environment steps, mean ± one standard deviation over seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scg.algorithms.metrics_log import read_metrics
from scg.algorithms.run_files import atomic_write, read_config


def _number(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else np.nan  # null: no episode yet


def learning_curve(run_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(env_steps, mean, std)`` of ``mean_return`` over seeds per iteration (dropping those before any episode)."""
    by_iter: dict[int, list] = {}
    for r in read_metrics(run_dir):
        by_iter.setdefault(r["iteration"], []).append(r)
    xs, means, stds = [], [], []
    for it in sorted(by_iter):
        values = np.array([_number(r.get("mean_return")) for r in by_iter[it]], dtype=np.float64)
        if np.all(np.isnan(values)):
            continue
        xs.append(np.mean([r["env_steps"] for r in by_iter[it]]))
        means.append(np.nanmean(values))
        stds.append(np.nanstd(values))
    return np.array(xs), np.array(means), np.array(stds)


def plot_runs(run_dirs, out, title: str | None = None) -> Path:
    """One figure: for each run, mean return vs environment steps, shaded ± one standard deviation over seeds.

    Written atomically to ``out`` (its folder created); an ``OSError`` names ``out``.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, works headless

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    envs = set()
    for run_dir in map(Path, run_dirs):
        config = read_config(run_dir)
        envs.add(config["env"])
        x, mean, std = learning_curve(run_dir)
        label = f"{run_dir.name} ({config['algo']}, {config['seeds']} seed{'s' * (config['seeds'] > 1)})"
        (line,) = ax.plot(x, mean, label=label)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return (last 20 episodes)")
    ax.set_title(title or ", ".join(sorted(envs)) + ": mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=110))
    return out
