"""Environment shards (issue 18, fewer seeds than devices): each member's environments split into shards that average
their gradients before every optax step (``make_train(..., env_shards=E)``).

The exact check: shards given the same draws are ``E`` copies of one run of ``num_envs / E`` environments, so the
sharded run must reproduce that run (metrics, the counts times ``E``, and parameters); with plain SGD, a sum instead
of a mean over the shards fails it. With their own draws (the default) the shards' parameters stay equal, which a
shard that skipped the mean would break. On 2 and 4 devices (a subprocess: host device counts are fixed when JAX
starts), and through the command line on two processes, the same seeds give the numbers of one device; a
sharded run learns (the reduced CartPole bar of test_learning.py).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from scg.algorithms import train
from scg.algorithms.config import ConfigError
from scg.algorithms.train import make_train, seed_keys
from scg.envs import registry
from support import json_of_script, steps_to_threshold, without_xla_flags

TINY = {"reinforce": {"horizon": 16, "hidden": [8], "value_epochs": 2},
        "a2c": {"horizon": 8, "hidden": [8]},
        "ppo": {"horizon": 16, "hidden": [8], "epochs": 2, "num_minibatches": 2, "max_grad_norm": 1e3}}
SGD = {"optimizer": "sgd"}  # the step scales with the gradient (Adam's would hide a sum in place of the mean)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("algo", sorted(TINY))
def test_shards_with_the_same_draws_are_copies_of_one_run(algo, monkeypatch):
    env, params = registry.make("CartPole-v1")
    init, run = make_train(algo, env, params, {**TINY[algo], **SGD, "num_envs": 2})
    one_states, one = run(init(seed_keys(2)), 3)
    monkeypatch.setattr(train, "_shard_key", lambda key, index: key)  # every shard: the member's own draws
    init, run = make_train(algo, env, params, {**TINY[algo], **SGD, "num_envs": 4}, env_shards=2)
    states, sharded = run(init(seed_keys(2)), 3)
    assert one.keys() == sharded.keys()
    for name, value in one.items():
        factor = 2 if name in train.SUMMED_METRICS else 1
        np.testing.assert_allclose(np.asarray(sharded[name]), factor * np.asarray(value), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for shard in (0, 1):
        for a, b in zip(_leaves(one_states.params), _leaves(jax.tree_util.tree_map(lambda x: x[:, shard],
                                                                                    states.params))):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_shards_draw_their_own_and_keep_one_set_of_parameters():
    env, params = registry.make("CartPole-v1")
    init, run = make_train("ppo", env, params, {**TINY["ppo"], "num_envs": 4}, env_shards=2)
    states, metrics = run(init(seed_keys(1)), 4)
    assert states.rollout.obs.shape[:3] == (1, 2, 2)  # [members, shards, envs per shard]
    assert not np.array_equal(states.rollout.obs[0, 0], states.rollout.obs[0, 1])
    for leaf in _leaves(states.params):
        np.testing.assert_array_equal(leaf[:, 0], leaf[:, 1])  # the shards' mean is the same on each: bit for bit
    assert metrics["env_steps"].shape == (1, 4) and float(metrics["env_steps"][0, 0]) == 4 * 16
    member = train.member_states(states, 2)
    assert member.params["theta"]["net"][0]["w"].shape == states.params["theta"]["net"][0]["w"][:, 0].shape


@pytest.mark.parametrize("algo", ["reinforce", "ppo"])
def test_sharded_runs_learn_cartpole_reduced(algo):
    """test_learning.py's reduced bar with each seed's environments in 2 shards: both of 2 seeds reach ≥ 195
    within 50k env steps (a uniform policy scores about 22)."""
    reached, final = steps_to_threshold(algo, "CartPole-v1", 195.0, 50_000, env_shards=2)
    assert all(s is not None for s in reached), f"{algo}: steps to 195 per seed {reached}, final mean return {final}"


def test_a_sweep_of_sharded_members_equals_the_separate_runs():
    env, params = registry.make("CartPole-v1")
    config = {**TINY["a2c"], "num_envs": 4}
    init, run = make_train("a2c", env, params, config, env_shards=2, sweep={"lr": [1e-3, 1e-2]})
    _, swept = run(init(seed_keys(2)), 3)  # members: (1e-3, seed 0), (1e-3, seed 1), (1e-2, seed 0), (1e-2, seed 1)
    init, run = make_train("a2c", env, params, {**config, "lr": 1e-2}, env_shards=2)
    _, alone = run(init(seed_keys(2)), 3)
    for name, value in alone.items():
        np.testing.assert_allclose(np.asarray(swept[name])[2:], np.asarray(value), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_shards_are_refused_with_the_reason():
    env, params = registry.make("CartPole-v1")
    with pytest.raises(ConfigError, match="trpo cannot split its environments.*a2c, ppo, reinforce"):
        make_train("trpo", env, params, {"num_envs": 4}, env_shards=2)
    with pytest.raises(ConfigError, match="env_shards=3 does not divide num_envs=4"):
        make_train("reinforce", env, params, {"num_envs": 4}, env_shards=3)
    with pytest.raises(ConfigError, match="kl_penalty"):
        make_train("ppo", env, params, {"num_envs": 4, "surrogate": "kl_penalty"}, env_shards=2)
    with pytest.raises(ConfigError, match="one shard .* is invalid.*divisible"):
        make_train("ppo", env, params, {"num_envs": 4, "horizon": 3, "num_minibatches": 4}, env_shards=4)
    with pytest.raises(ConfigError, match="positive integer"):
        make_train("reinforce", env, params, {"num_envs": 4}, env_shards=0)


_DEVICES = textwrap.dedent("""
    import json
    from scg.algorithms import parallel
    assert parallel.use_cpu_devices(4) == 4
    import jax, numpy as np
    from scg.algorithms.train import make_train, seed_keys
    from scg.envs import registry

    env, params = registry.make("CartPole-v1")
    config = {"num_envs": 4, "horizon": 16, "hidden": [8], "epochs": 2, "num_minibatches": 2}
    out = {}
    for seeds, devices in ((1, 1), (1, 2), (2, 1), (2, 4)):
        mesh = parallel.run_mesh(seeds, 2, devices)
        init, run = make_train("ppo", env, params, config, mesh=mesh, env_shards=2)
        placement = parallel.Placement(mesh)
        states, _ = run(init(placement.put(seed_keys(seeds), replicated=True)), 2)
        states, metrics = run(states, 2)
        leaves = jax.tree_util.tree_leaves(states)
        out[f"{seeds}-{devices}"] = {
            "mesh": dict(mesh.shape), "specs": sorted({str(x.sharding.spec) for x in leaves}),
            "cache": run._cache_size(), "shards": len(leaves[0].addressable_shards),
            "metrics": {k: np.asarray(v, float).tolist() for k, v in placement.gather(metrics).items()},
            "params": [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(placement.gather(states.params))]}
    print(json.dumps(out))
""")


def test_shards_on_several_devices_give_the_numbers_of_one():
    out = json_of_script(_DEVICES)
    assert out["1-2"]["mesh"] == {"members": 1, "envs": 2} and out["2-4"]["mesh"] == {"members": 2, "envs": 2}
    for seeds, devices in ((1, 2), (2, 4)):
        row, one = out[f"{seeds}-{devices}"], out[f"{seeds}-1"]
        assert row["specs"] == ["P('members', 'envs')"]  # member axis and shard axis both split
        assert row["shards"] == devices and row["cache"] == 1
        for k, v in row["metrics"].items():
            np.testing.assert_allclose(v, one["metrics"][k], rtol=1e-4, atol=1e-5, err_msg=f"{k} on {devices}")
        for a, b in zip(row["params"], one["params"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _scg_train(*args):
    return subprocess.run([sys.executable, "-m", "scg", "train", "--quiet", *args], capture_output=True, text=True,
                          timeout=600, env=without_xla_flags())


def _train_cli(*args):
    return _scg_train("--algo", "a2c", "--seeds", "1", "--config", "num_envs=4", "horizon=8", "hidden=[8]", *args)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_cli_trains_shards_on_two_devices_as_on_one_and_resumes(tmp_path):
    common = ["--env-shards", "2", "--steps", "640", "--chunk", "5", "--runs-dir", str(tmp_path)]
    one = _train_cli(*common, "--devices", "1", "--name", "one")
    two = _train_cli(*common, "--devices", "2", "--name", "two", "--steps", "320")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert "in 2 env shards each" in two.stdout and "on 2 cpu devices" in two.stdout
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["env_shards"] == 2 and config["devices"]["count"] == 2
    refused = _scg_train("--resume", str(tmp_path / "two"), "--env-shards", "1")
    assert refused.returncode == 2 and "--env-shards cannot change" in refused.stderr
    resumed = _scg_train("--resume", str(tmp_path / "two"), "--steps", "640", "--devices", "2")
    assert resumed.returncode == 0, resumed.stderr
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b] == list(range(1, 21))
    for ra, rb in zip(a, b):
        assert ra["env_steps"] == rb["env_steps"] == 32 * ra["iteration"]  # cumulative, per seed: 4 envs x 8 steps
        for k in ("loss", "grad_norm", "mean_return"):
            if ra.get(k) is not None:
                np.testing.assert_allclose(rb[k], ra[k], rtol=1e-4, atol=1e-5, err_msg=f"{k} at {ra['iteration']}")
    params = np.load(tmp_path / "two" / "params.npz")
    assert all(params[k].shape[0] == 1 for k in params.files)  # one member: shard 0's parameters
    _two_processes(tmp_path, common)
    b = _rows(tmp_path / "dist")  # 1 seed's 2 shards on 2 processes of one device each (jax.distributed, gloo)
    assert [r["iteration"] for r in b] == list(range(1, 21))
    for ra, rb in zip(a, b):
        for k in ("loss", "grad_norm", "mean_return"):
            if ra.get(k) is not None:
                np.testing.assert_allclose(rb[k], ra[k], rtol=1e-4, atol=1e-5, err_msg=f"{k} at {ra['iteration']}")
    bad = _train_cli("--env-shards", "3", "--steps", "64", "--runs-dir", str(tmp_path), "--name", "bad")
    assert bad.returncode == 2 and "env_shards=3 does not divide num_envs=4" in bad.stderr
    assert not (tmp_path / "bad").exists()


def _two_processes(tmp_path, common):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [sys.executable, "-m", "scg", "train", "--quiet", "--algo", "a2c", "--seeds", "1", "--config", "num_envs=4",
            "horizon=8", "hidden=[8]", *common, "--devices", "1", "--name", "dist", "--coordinator",
            f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([*args, "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=without_xla_flags()) for i in (0, 1)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert "in 2 env shards each" in results[0][0] and "of 2 processes" in results[0][0]
