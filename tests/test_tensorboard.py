"""``scg train --log tensorboard``: the metrics of ``metrics.jsonl`` as TensorBoard scalars, read back from the file."""
import struct
import sys

import numpy as np
import pytest

from scg.algorithms.metrics_log import TENSORBOARD_INSTALL, read_metrics, tensorboard_scalars
from support import train


def test_scalars_are_means_over_seeds_and_each_seed():
    rows = [{"iteration": 1, "seed": 0, "env_steps": 32, "mean_return": None, "loss": 1.0, "wall_time": 0.5},
            {"iteration": 1, "seed": 1, "env_steps": 32, "mean_return": 9.0, "loss": 3.0, "wall_time": 0.5},
            {"iteration": 2, "seed": 0, "env_steps": 64, "mean_return": 11.0, "loss": 2.0, "wall_time": 0.9}]
    assert tensorboard_scalars(rows) == [
        ("env_steps", 32.0, 1), ("env_steps/seed_0", 32.0, 1), ("env_steps/seed_1", 32.0, 1),
        ("mean_return", 9.0, 1), ("mean_return/seed_1", 9.0, 1),  # null: no episode finished yet for seed 0
        ("loss", 2.0, 1), ("loss/seed_0", 1.0, 1), ("loss/seed_1", 3.0, 1),
        ("env_steps", 64.0, 2), ("env_steps/seed_0", 64.0, 2),
        ("mean_return", 11.0, 2), ("mean_return/seed_0", 11.0, 2),
        ("loss", 2.0, 2), ("loss/seed_0", 2.0, 2),
    ]


def read_scalars(path) -> dict[tuple[str, int], float]:
    """``(tag, step) -> value`` of an event file: TFRecords (length, its CRC, an ``Event`` proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    data, at, out = path.read_bytes(), 0, {}
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        event = Event.FromString(data[at + 12: at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            out[value.tag, event.step] = value.simple_value
    return out


def test_train_writes_an_event_file_of_the_metrics(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    assert train(tmp_path, "tb", 64, "--log", "tensorboard") == 0
    assert "and TensorBoard events" in capsys.readouterr().out
    run_dir = tmp_path / "tb"
    (events,) = run_dir.glob("events.out.tfevents.*")
    scalars = read_scalars(events)
    rows = read_metrics(run_dir)  # metrics.jsonl is written as without --log
    metrics = {k for r in rows for k in r} - {"iteration", "seed", "wall_time"}
    assert {"mean_return", "loss", "grad_norm", "env_steps"} <= metrics
    expected = {(tag, step): value for tag, value, step in tensorboard_scalars(rows)}  # checked above by hand
    assert scalars.keys() == expected.keys() and list(scalars.values()) == pytest.approx(list(expected.values()))
    assert {tag for tag, _ in scalars} >= {f"{m}{suffix}" for m in ("loss", "grad_norm", "env_steps")
                                            for suffix in ("", "/seed_0", "/seed_1")}
    for m in ("loss", "grad_norm", "env_steps"):
        for step in (1, 2):
            values = [r[m] for r in rows if r["iteration"] == step]
            assert scalars[m, step] == pytest.approx(np.mean(values), rel=1e-6)  # float32 in the file
            assert scalars[f"{m}/seed_1", step] == pytest.approx(values[1], rel=1e-6)


def test_without_tensorboardx_it_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` then raises ImportError
    assert train(tmp_path, "tb", 64, "--log", "tensorboard") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and TENSORBOARD_INSTALL in err and "--log tensorboard needs tensorboardX" in err, err
    assert not (tmp_path / "tb").exists()  # refused before anything was written
