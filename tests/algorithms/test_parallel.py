"""Training across devices and processes (issue 18): the members of a run sharded over a mesh give the metrics of
one device; a run over two processes (``jax.distributed``, gloo on the loopback address) gives those of one process;
a process that dies makes the other exit with a clear error, and ``--resume`` completes the run.

Host device counts are fixed when JAX starts, so everything with more than one device runs in a subprocess.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from scg.algorithms import parallel
from support import json_of_script

# A tiny REINFORCE run: 32 env steps per seed and iteration, 200 iterations of one per chunk (long enough to stop
# one process mid-run by watching metrics.jsonl, with no timing in the test).
ITERATIONS, STEPS_PER_ITER = 200, 32
TINY = ["--algo", "reinforce", "--env", "CartPole-v1", "--seeds", "2", "--chunk", "1", "--quiet",
        "--config", "num_envs=2", "horizon=16", "hidden=[8]", "value_epochs=2"]
PEER_TIMEOUT_S = 60  # how long the survivor may take to notice (gloo fails at once; JAX's heartbeat: 20 s)


def _scg(*args, **popen):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, "-m", "scg", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **popen)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _table(run_dir) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {(r["seed"], r["iteration"]): (r["env_steps"], r["loss"], r["grad_norm"], r.get("mean_return"))
            for r in rows}


def _assert_same_metrics(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        env_a, *num_a = a[k]
        env_b, *num_b = b[k]
        assert env_a == env_b, k
        np.testing.assert_allclose(np.array(num_a, float), np.array(num_b, float), rtol=1e-4, atol=1e-5, err_msg=k)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, one device, 2 seeds: the run every parallel variant must reproduce."""
    runs = tmp_path_factory.mktemp("runs")
    code, _, err = _finish(_scg(*TINY, "--steps", str(ITERATIONS * STEPS_PER_ITER), "--devices", "1",
                                "--runs-dir", str(runs), "--name", "ref"))
    assert code == 0, err
    return _table(runs / "ref")


def test_cpu_devices_are_checked():
    have = len(jax.devices("cpu"))  # JAX has started in this process
    assert parallel.use_cpu_devices() == have
    assert parallel.use_cpu_devices(have) == have
    with pytest.raises(RuntimeError, match="before any JAX computation"):
        parallel.use_cpu_devices(have + 1)
    with pytest.raises(ValueError, match="positive integer"):
        parallel.use_cpu_devices(0)
    assert [parallel.usable_devices(m, 2) for m in (1, 2, 3, 4)] == [1, 2, 1, 2]
    assert parallel.usable_devices(6, 4) == 3
    with pytest.raises(ValueError, match="only 1 device"):
        parallel.member_mesh(2, devices=have + 1) if have == 1 else parallel.member_mesh(2, devices=have + 1)
    with pytest.raises(ValueError, match="--coordinator must be HOST:PORT"):
        parallel.init_distributed("localhost", 2, 0)


_SHARDED = textwrap.dedent("""
    import json, sys
    from scg.algorithms import parallel
    assert parallel.use_cpu_devices(4) == 4
    import jax, numpy as np
    from scg.algorithms.train import make_train, seed_keys
    from scg.envs import registry

    env, params = registry.make("CartPole-v1")
    config = {"num_envs": 4, "horizon": 16, "hidden": [8], "value_epochs": 2}
    out = {}
    for sweep in (None, {"policy_lr": [0.003, 0.01]}):
        members = 4 if sweep is None else 2 * 2
        seeds = 4 if sweep is None else 2
        ref = None
        for d in (1, 2, 4):
            mesh = parallel.member_mesh(members, d)
            init, run = make_train("reinforce", env, params, config, sweep=sweep, mesh=mesh)
            states, m1 = run(init(seed_keys(seeds)), 3)
            states, m2 = run(states, 3)
            metrics = parallel.Placement(mesh).gather(m2)
            leaves = jax.tree_util.tree_leaves(states)
            specs = {str(x.sharding.spec) for x in leaves}
            row = {"specs": sorted(specs), "mesh": [int(x.sharding.mesh.size) for x in leaves[:1]],
                   "cache": run._cache_size(), "shards": len(leaves[0].addressable_shards)}
            row["metrics"] = {k: np.asarray(v, float).tolist() for k, v in metrics.items()}
            out[f"{sweep is not None}-{d}"] = row
    try:
        parallel.member_mesh(4, 3)
    except ValueError as err:
        out["error"] = str(err)
    print(json.dumps(out))
""")


def test_sharded_members_give_the_metrics_of_one_device():
    out = json_of_script(_SHARDED)
    assert "does not split the run's 4 members" in out.pop("error")
    for swept in (False, True):
        one = out[f"{swept}-1"]
        for d in (2, 4):
            row = out[f"{swept}-{d}"]
            assert row["specs"] == ["P('members',)"]  # every leaf split along the member axis
            assert row["mesh"] == [d] and row["shards"] == d
            assert row["cache"] == 1  # the chunk compiled once, though its input came from a previous chunk
            for k, v in row["metrics"].items():
                np.testing.assert_allclose(v, one["metrics"][k], rtol=1e-4, atol=1e-5, err_msg=f"{k} on {d}")


def test_the_cli_splits_seeds_over_devices_and_records_them(tmp_path, reference):
    code, out, err = _finish(_scg(*TINY, "--steps", str(ITERATIONS * STEPS_PER_ITER), "--devices", "2",
                                  "--runs-dir", str(tmp_path), "--name", "two"))
    assert code == 0, err
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["devices"]["count"] == 2 and config["devices"]["processes"] == 1
    _assert_same_metrics(_table(tmp_path / "two"), reference)
    code, _, err = _finish(_scg(*TINY, "--steps", "64", "--devices", "2", "--seeds", "3", "--runs-dir",
                                str(tmp_path), "--name", "odd"))
    assert code == 2 and "--devices 2 does not split the run's 3 members" in err
    assert not (tmp_path / "odd").exists()


def _two_processes(tmp_path, name, steps):
    port = _free_port()
    common = [*TINY, "--steps", str(steps), "--devices", "1", "--runs-dir", str(tmp_path), "--name", name,
              "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    return [_scg(*common, "--process-id", str(i)) for i in (0, 1)]


def test_two_processes_give_the_metrics_of_one(tmp_path, reference):
    procs = _two_processes(tmp_path, "dist", ITERATIONS * STEPS_PER_ITER)
    results = [_finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    assert "of 2 processes" in results[0][1] and "final mean return" in results[0][1]
    assert "training" not in results[1][1] and "final" not in results[1][1]  # process 0 alone reports
    config = json.loads((tmp_path / "dist" / "config.json").read_text())
    assert config["devices"]["count"] == 2 and config["devices"]["processes"] == 2
    _assert_same_metrics(_table(tmp_path / "dist"), reference)


def test_a_lost_process_stops_the_other_and_resume_completes_the_run(tmp_path, reference):
    procs = _two_processes(tmp_path, "lost", ITERATIONS * STEPS_PER_ITER)
    metrics = tmp_path / "lost" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2 * 5):  # 5 iterations written
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    procs[1].kill()
    killed_at = time.monotonic()
    code, _, err = _finish(procs[0], timeout=PEER_TIMEOUT_S)
    assert time.monotonic() - killed_at < PEER_TIMEOUT_S
    procs[1].communicate()
    kept = _table(tmp_path / "lost")
    assert code == 1 and "lost contact with the others" in err and f"--resume {tmp_path / 'lost'}" in err, err
    assert 5 <= max(i for _, i in kept) < ITERATIONS  # stopped mid-run
    _assert_same_metrics(kept, {k: v for k, v in reference.items() if k in kept})

    code, _, err = _finish(_scg("--resume", str(tmp_path / "lost"), "--devices", "2", "--quiet"))  # one process now
    assert code == 0, err
    _assert_same_metrics(_table(tmp_path / "lost"), reference)
