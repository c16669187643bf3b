"""``metrics.jsonl``: one JSON line per iteration per seed, env steps cumulative, NaN written as null."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scg.algorithms.run_files import METRICS, atomic_write


def read_metrics(run_dir: Path) -> list[dict]:
    """The lines of ``metrics.jsonl``; a line cut short by a crash is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN: "no episode finished yet" is null


def metric_rows(metrics: dict, seeds: list[int], start_iteration: int, env_steps: np.ndarray, t0: float, t1: float):
    """Turn one chunk's ``[seeds, n]`` metrics into JSON rows; env steps cumulative, wall time interpolated.

    Returns ``(rows, env_steps)``: the rows and each seed's cumulative env steps after the chunk.
    """
    n = metrics["env_steps"].shape[1]
    cumulative = env_steps[:, None] + np.cumsum(metrics["env_steps"].astype(np.float64), axis=1)
    rows = []
    for j in range(n):
        wall = t0 + (t1 - t0) * (j + 1) / n
        for s, seed in enumerate(seeds):
            row = {"iteration": start_iteration + j + 1, "seed": seed, "env_steps": int(cumulative[s, j])}
            row.update({k: _finite(v[s, j]) for k, v in metrics.items() if k != "env_steps"})
            row["wall_time"] = round(wall, 4)
            rows.append(row)
    return rows, cumulative[:, -1]


def truncate_metrics(run_dir: Path, iteration: int) -> None:
    """Keep the lines up to ``iteration`` (a checkpoint's): lines written after it (interrupted mid-boundary) are redone."""
    rows = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= iteration]
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows).encode()))
