"""The files of a run directory, and writing them atomically.

A run lives in ``runs/<name>/``::

    config.json          the resolved configuration (algorithm, environment, seeds, steps, versions):
                         :mod:`scg.algorithms.run_config`
    metrics.jsonl        one JSON line per iteration per seed, appended and flushed after every chunk:
                         :mod:`scg.algorithms.metrics_log`
    checkpoint.npz       the whole training state (all seeds) at the last chunk boundary:
                         :mod:`scg.algorithms.checkpoint`
    params.npz           the final parameters, one array per leaf path, leading seed axis
    learning_curve.png   mean return vs environment steps, mean ± one std over seeds: :mod:`scg.algorithms.plots`

Every file but ``metrics.jsonl`` is replaced whole by :func:`atomic_write`, so a crash
leaves either the old or the new version, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.npz"
PARAMS, CURVE = "params.npz", "learning_curve.png"


def atomic_write(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary file in the same folder, then ``os.replace`` it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))
