"""Hyperparameter sweeps in one compiled program: ``make_train(..., sweep=...)`` and ``scg train --sweep``.

The reference is the independent path: one ``make_train`` per value, each with that value as a plain config
constant. Runs are the tiny ones of tests/test_cli.py (2 environments, 16 steps, 2 seeds) and go through
``driver.compiled``, so the sweep's program is compiled once for all the tests here and the reference at the tuned
``policy_lr`` is the one tests/test_cli.py's runs compile.
"""
import json

import jax
import numpy as np
import optax
import pytest

from scg.algorithms import cli, driver, plots, run_config
from scg.algorithms.config import ConfigError, sweep_points
from scg.algorithms.metrics_log import tensorboard_scalars
from scg.algorithms.train import make_train, sweep_members
from scg.envs import registry
from support import STEPS_PER_ITER, TINY, metric_table, train

TINY_CONFIG = {"num_envs": 2, "horizon": 16, "hidden": [8], "value_epochs": 2}  # TINY's --config
RATES = [0.005, 0.01]  # CartPole's tuned policy_lr (TINY's), and twice it
SWEEP = ["--sweep", f"policy_lr={RATES[0]},{RATES[1]}"]


def run_of(overrides: dict, sweep: dict | None = None) -> dict:
    """The configuration ``scg train`` makes of TINY with these overrides (and sweep)."""
    return run_config.resolve("reinforce", "CartPole-v1", seeds=2, steps=2 * STEPS_PER_ITER, chunk=1,
                              overrides={**TINY_CONFIG, **overrides}, sweep=sweep)


def metrics_of(config: dict, iterations: int = 2, init=None) -> dict:
    """``iterations`` of the run of ``config`` from its seeds (``init``: another run's ``init`` in place of its own)."""
    own_init, run = driver.compiled(config)
    _, metrics = run((init or own_init)(run_config.seed_keys(config)), iterations)
    return {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}


def test_a_sweep_equals_its_separate_runs():
    """Members ``p * 2 + j`` of the sweep are point ``p`` on seed ``j``: what the run of ``policy_lr = RATES[p]`` on
    the same seeds computes. Tolerance: float32 rounding (rtol 1e-5, atol 1e-6; on XLA:CPU they are equal)."""
    swept = metrics_of(run_of({}, {"policy_lr": RATES}))
    first_init = driver.compiled(run_of({"policy_lr": RATES[0]}))[0]  # init reads no learning rate: compiled once
    separate = [metrics_of(run_of({"policy_lr": lr}), init=first_init) for lr in RATES]
    assert swept["env_steps"].shape == (4, 2)  # [2 points x 2 seeds, 2 iterations]
    for p, reference in enumerate(separate):
        assert set(swept) == set(reference)
        for name, value in reference.items():
            np.testing.assert_allclose(swept[name][2 * p:2 * p + 2], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # the learning rate tells the runs apart from the second iteration on: a sweep that dropped it would fail above
    assert not np.allclose(separate[0]["grad_norm"][:, 1], separate[1]["grad_norm"][:, 1])


def test_the_members_are_the_grid_first_field_slowest_then_the_seeds():
    sweep = {"policy_lr": [0.1, 0.2], "value_lr": [0.3, 0.4]}
    points = sweep_points(sweep)
    assert points == [{"policy_lr": a, "value_lr": b} for a, b in [(0.1, 0.3), (0.1, 0.4), (0.2, 0.3), (0.2, 0.4)]]
    assert sweep_members(sweep, [5, 6]) == [(p, s) for p in points for s in (5, 6)]
    assert sweep_members(None, [5, 6]) == [(None, 5), (None, 6)]


def test_tensorboard_keeps_the_points_apart():
    rows = [{"iteration": 1, "seed": s, "sweep": {"lr": lr}, "env_steps": 8, "loss": lr * 10 + s}
            for lr in (0.001, 0.01) for s in (0, 1)]
    scalars = {tag: value for tag, value, _ in tensorboard_scalars(rows)}
    assert scalars["lr=0.001/loss"] == pytest.approx(0.51) and scalars["lr=0.01/loss/seed_1"] == pytest.approx(1.1)
    assert "loss" not in scalars and not any(tag.startswith("sweep") for tag in scalars)


@pytest.mark.parametrize("sweep, message", [
    ({"entropy_bonus": [0.0, 0.1]}, "entropy_bonus cannot be swept for reinforce: it is used at trace time"),
    ({"hidden": [[8], [16]]}, "reinforce config: hidden cannot be swept: only float fields can"),
    ({"num_envs": [2, 4]}, "reinforce config: num_envs cannot be swept: only float fields can"),
    ({"policy_lr": [0.01, -0.01]}, "reinforce config: policy_lr must be > 0, got -0.01"),
    ({"policy_lr": [0.01, 0.01]}, "sweep policy_lr repeats a value"),
    ({"policy_lr": []}, "sweep policy_lr takes a non-empty list of values"),
    ({"lr": [0.01]}, "unknown reinforce config key 'lr' in the sweep"),
])
def test_a_sweep_that_cannot_run_is_a_config_error_naming_the_field(sweep, message):
    env, params = registry.make("CartPole-v1")
    with pytest.raises(ConfigError, match=message):
        make_train("reinforce", env, params, TINY_CONFIG, sweep=sweep)


def test_a_field_the_training_never_reads_is_refused():
    """A fixed optax transformation takes no learning rate from the config: sweeping one would repeat a run."""
    env, params = registry.make("CartPole-v1")
    with pytest.raises(ConfigError, match="policy_lr has no effect on reinforce as configured"):
        make_train("reinforce", env, params, TINY_CONFIG, sweep={"policy_lr": RATES}, optimizer=optax.adam(1e-3))


def test_scg_train_sweep_writes_one_run_folder_and_resumes(tmp_path, capsys):
    """One folder: ``config.json`` records the sweep, each metrics row its point beside its seed, the learning curve
    a curve per point; stopped after one iteration and resumed, it has the metrics of ``make_train``'s sweep."""
    assert train(tmp_path, "sweep", STEPS_PER_ITER, *SWEEP) == 0
    run_dir = tmp_path / "sweep"
    resume = ["train", "--resume", str(run_dir), "--quiet"]
    assert cli.main([*resume, "--sweep", "policy_lr=0.1"]) == 2  # a resumed run keeps its sweep
    assert cli.main([*resume, "--steps", str(2 * STEPS_PER_ITER)]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["sweep"] == {"policy_lr": RATES}
    rows = metric_table(run_dir)
    coordinates = [(r["iteration"], r["sweep"], r["seed"]) for r in rows]
    assert coordinates == [(i, {"policy_lr": lr}, s) for i in (1, 2) for lr in RATES for s in (0, 1)]
    swept = metrics_of(run_of({}, {"policy_lr": RATES}))  # [members, iterations]; rows are iteration-major
    for name in ("loss", "grad_norm", "env_steps"):
        expected = np.cumsum(swept[name], axis=1) if name == "env_steps" else swept[name]
        np.testing.assert_allclose([r[name] for r in rows], expected.T.ravel(), rtol=1e-6, err_msg=name)
    ax = plots.figure([run_dir]).axes[0]
    assert ax.get_legend_handles_labels()[1] == ["policy_lr = 0.005", "policy_lr = 0.01"]
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir)]) == 2  # it has no single config to evaluate: refused in one line
    assert "is a sweep; scg eval evaluates runs of one config" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--sweep", "policy_lr=0.01,abc"], "the values must be numbers"),
    (["--sweep", "policy_lr=0.01", "--sweep", "policy_lr=0.02"], "--sweep policy_lr is given twice"),
    (["--sweep", "optimizer=1,2"], "optimizer cannot be swept: only float fields can"),
    (["--sweep", "value_epochs=1,2"], "--config and --sweep both set value_epochs"),
    (["--sweep", "entropy_bonus=0,0.1"], "entropy_bonus cannot be swept for reinforce: it is used at trace time"),
])
def test_bad_sweeps_are_refused_before_anything_is_written(extra, message, tmp_path, capsys):
    assert train(tmp_path, "bad", STEPS_PER_ITER, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()
