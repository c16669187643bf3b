"""The ``scg`` command: run folders, ``list``, ``plot``, one-line validation errors, interrupt and resume.

Every training run here is tiny (2 environments, 16 steps, 2-4 iterations) and
runs in process, so the jitted chunk is compiled once and shared by the tests.
"""
import dataclasses
import json
import re
import sys

import numpy as np
import pytest

from scg.algorithms import ALGORITHMS, Algorithm, checkpoint, cli, driver, run_config
from scg.algorithms.config import Config
from scg.algorithms.metrics_log import read_metrics
from scg.algorithms.run_files import CONFIG, write_json
from support import STEPS_PER_ITER, TINY, metric_table, train



@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    assert train(runs_dir, "tiny") == 0
    return runs_dir / "tiny"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """Four uninterrupted iterations: what an interrupted and resumed run must reproduce."""
    runs_dir = tmp_path_factory.mktemp("runs")
    assert train(runs_dir, "ref", 4 * STEPS_PER_ITER) == 0
    return runs_dir / "ref"


def test_train_writes_the_run_folder(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "params.npz", "learning_curve.png", "checkpoint.npz"} <= names
    config = json.loads((tiny_run / "config.json").read_text())
    assert (config["algo"], config["env"], config["seeds"], config["steps"]) == ("reinforce", "CartPole-v1", 2, 64)
    assert config["algorithm_config"]["horizon"] == 16 and config["algorithm_config"]["hidden"] == [8]
    assert config["algorithm_config"]["policy_lr"] == ALGORITHMS["reinforce"].tuned["CartPole-v1"]["policy_lr"]
    assert config["versions"]["jax"]
    rows = read_metrics(tiny_run)
    expected = [(1, 0, 32), (1, 1, 32), (2, 0, 64), (2, 1, 64)]  # (iteration, seed, cumulative env steps)
    assert [(r["iteration"], r["seed"], r["env_steps"]) for r in rows] == expected
    for r in rows:
        assert {"mean_return", "loss", "grad_norm", "wall_time"} <= set(r)
        assert np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) and r["wall_time"] > 0
    params = checkpoint.load_params(tiny_run)
    assert params["theta"]["net"][0]["w"].shape == (2, 4, 8)  # [seed, obs, hidden]
    assert (tiny_run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_off_a_terminal_is_one_line_per_chunk(tmp_path, capsys):
    """stderr is not a terminal here (a log file, CI): no carriage returns, one line per chunk of one iteration."""
    loud = [a for a in TINY if a != "--quiet"]
    argv = ["train", "--runs-dir", str(tmp_path), "--name", "loud", "--steps", str(2 * STEPS_PER_ITER), *loud]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split(" env steps")[0] for line in lines] == ["loud: 32 / 64", "loud: 64 / 64"], err
    assert all("mean_return" in line or "(50%)" in line for line in lines), err
    assert "env steps per seed" in lines[0] and "compiled and ran in" in lines[0], err  # the first chunk compiles
    speed = re.search(r", ([\d,]+) env steps/s \(([\d,]+) per seed\), [\d.]+ s$", lines[1])
    assert speed, err
    total, per_seed = (int(x.replace(",", "")) for x in speed.groups())
    assert abs(total - 2 * per_seed) <= 1, err  # each rounded to a whole step from the same rate


def test_speed_is_all_seeds_together_beside_one_seed():
    assert driver.speed_text(64_000, 2.0, 4) == "32,000 env steps/s (8,000 per seed)"
    assert driver.speed_text(1_500, 1.0, 1) == "1,500 env steps/s (1,500 per seed)"
    assert driver.chunk_postfix(float("nan"), 100, 0.5, 2, compiled=False) == "200 env steps/s (100 per seed)"
    assert driver.chunk_postfix(23.04, 100, 0.5, 2, compiled=True) == "mean_return 23.0, compiled and ran in 0.5 s"


def test_progress_on_a_terminal_shows_the_speed_of_all_seeds(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = driver._progress_bar(tqdm, 64, 0, "run", True)
    try:
        bar.set_postfix_str(driver.chunk_postfix(21.5, 64_000, 2.0, 4, compiled=False))
        bar.update(32)
        shown = str(bar)
    finally:
        bar.close()
    assert "32/64 steps per seed" in shown, shown
    assert shown.endswith(", mean_return 21.5, 32,000 env steps/s (8,000 per seed)]"), shown
    assert "step/s" not in shown.replace("env steps/s", ""), shown  # not tqdm's own rate of one seed


def test_no_arguments_means_train_with_defaults(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_train", lambda args: seen.setdefault("args", args) and 0)
    cli.main([])
    assert seen["args"].command == "train" and seen["args"].algo is None  # None: cli.DEFAULTS apply
    assert cli.DEFAULTS["algo"] == "reinforce" and cli.DEFAULTS["env"] == "CartPole-v1"


def test_list_reads_the_registries(capsys, monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "fake", Algorithm("fake", "a fake", ("discrete",), Config, None))
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "reinforce" in out and "fake" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "discrete" in lines["CartPole-v1"] and "continuous" in lines["Pendulum-v1"]
    assert "discrete, continuous" in lines["reinforce"]


def test_plot_compares_runs(tiny_run, reference_run, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert cli.main(["plot", str(tiny_run), str(reference_run), "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["plot", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.fixture
def discrete_only(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "discrete-only", Algorithm("discrete-only", "", ("discrete",), Config, None))


@pytest.mark.parametrize(
    "args, names",
    [
        (["--algo", "nope"], ["reinforce"]),
        (["--env", "Nope-v0"], ["CartPole-v1", "Pendulum-v1"]),
        (["--algo", "discrete-only", "--env", "Pendulum-v1"], ["continuous", "CartPole-v1"]),
        (["--steps", "0"], ["--steps"]),
        (["--steps", "-5"], ["--steps"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--config", "nope=1"], ["nope", "policy_lr", "horizon"]),
        (["--config", "horizon"], ["key=value"]),
        (["--config", "policy_lr=abc"], ["policy_lr", "float", "'abc'"]),
        (["--config", "hidden=[32,"], ["hidden", "JSON"]),
        (["--config", "hidden=[32,0]"], ["hidden", "positive"]),
        (["--config", "num_envs=0"], ["num_envs", "> 0"]),
        (["--config", "num_envs=2.5"], ["num_envs", "integer", "2.5"]),
        (["--config", "discount=2.0"], ["discount", "(0, 1]"]),
        (["--config", "horizon=-1"], ["horizon", "-1"]),
        (["--algo", "ppo", "--config", "surrogate=trust"], ["surrogate", "'clip'", "'kl_penalty'"]),
        (["--algo", "ppo", "--config", "num_envs=3", "horizon=5"], ["divisible"]),
        (["--algo", "cem", "--config", "population=5"], ["elite"]),
        (["--algo", "es_antithetic", "--config", "population=5"], ["even"]),
    ],
)
def test_bad_options_are_one_line_exit_2_nothing_written(args, names, tmp_path, capsys, discrete_only):
    runs_dir = tmp_path / "runs"
    assert cli.main(["train", "--runs-dir", str(runs_dir), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scg train: error:")
    for name in names:
        assert name in err
    assert not runs_dir.exists()


def test_argparse_errors_are_one_line_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--runs-dir", str(tmp_path / "runs"), "--steps", "many"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_existing_name_and_bad_resume_are_refused(tiny_run, tmp_path, capsys):
    before = (tiny_run / "metrics.jsonl").read_text()
    assert train(tiny_run.parent, "tiny") == 2
    assert cli.main(["train", "--resume", str(tiny_run), "--algo", "reinforce"]) == 2
    assert cli.main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert cli.main(["demo", "--replicates", "1"]) == 2
    assert all(line.count("error:") == 1 for line in capsys.readouterr().err.splitlines())
    assert (tiny_run / "metrics.jsonl").read_text() == before


def _interrupt_on_call(monkeypatch, name, call):
    """Make ``checkpoint.<name>`` raise KeyboardInterrupt on its ``call``-th call (a simulated Ctrl-C)."""
    original, calls = getattr(checkpoint, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint, name, wrapped)


def _interrupt_in_chunk(monkeypatch):
    original = driver.compiled

    def compiled(config, mesh=None):
        init_all, run_all = original(config, mesh)
        calls = []

        def run(states, n):
            calls.append(n)
            if len(calls) == 3:  # Ctrl-C while the third chunk computes
                raise KeyboardInterrupt
            return run_all(states, n)

        return init_all, run

    monkeypatch.setattr(driver, "compiled", compiled)


@pytest.mark.parametrize("where", ["in_chunk", "after_metrics_before_checkpoint"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(where, reference_run, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as m:
        if where == "in_chunk":
            _interrupt_in_chunk(m)
        else:  # checkpoint 1 is the initial state; the 4th save follows chunk 3's metrics lines
            _interrupt_on_call(m, "save", 4)
        assert train(tmp_path, "run", 4 * STEPS_PER_ITER) == 130
    out = capsys.readouterr().out
    run_dir = tmp_path / "run"
    assert f"scg train --resume {run_dir}" in out and "iteration 2" in out
    kept = read_metrics(run_dir)
    assert max(r["iteration"] for r in kept) == (2 if where == "in_chunk" else 3)  # nothing lost that was written
    assert not (run_dir / "params.npz").exists()

    assert cli.main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    rows = read_metrics(run_dir)
    for seed in (0, 1):
        mine = [r for r in rows if r["seed"] == seed]
        assert [r["iteration"] for r in mine] == [1, 2, 3, 4]
        assert np.all(np.diff([r["env_steps"] for r in mine]) == STEPS_PER_ITER)
        assert np.all(np.diff([r["wall_time"] for r in mine]) >= 0)
    assert metric_table(run_dir) == metric_table(reference_run)
    resumed, reference = checkpoint.load_params(run_dir), checkpoint.load_params(reference_run)
    np.testing.assert_array_equal(resumed["theta"]["net"][0]["w"], reference["theta"]["net"][0]["w"])
    np.testing.assert_array_equal(resumed["phi"][-1]["b"], reference["phi"][-1]["b"])


def test_resume_can_extend_a_finished_run(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)
    assert cli.main(["train", "--resume", str(run_dir), "--steps", str(3 * STEPS_PER_ITER), "--quiet"]) == 0
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 1, 2, 2, 3, 3]
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 3 * STEPS_PER_ITER


def test_ctrl_c_stops_at_the_next_chunk_boundary(tmp_path, capsys):
    """A real SIGINT during a chunk: the chunk finishes, is written, and the run stops there.

    Sent to the process (``os.kill``), as a terminal's Ctrl-C is. Python's
    default SIGINT handler is installed for the test: a process started in the
    background by a non-interactive shell (``cmd &``) inherits SIGINT *ignored*,
    and ``train`` rightly leaves an ignored SIGINT be (see the next test).
    """
    import os
    import signal

    config = run_config.resolve("reinforce", "CartPole-v1", seeds=2, steps=4 * STEPS_PER_ITER, chunk=1,
                                overrides={"num_envs": 2, "horizon": 16, "hidden": [8], "value_epochs": 2})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_json(run_dir / CONFIG, config)
    send = lambda prog: prog["iteration"] == 1 and os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = driver.train(run_dir, config, progress=False, on_chunk=send)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert result["interrupted"] and result["iteration"] == 1
    assert "stopping after this chunk" in capsys.readouterr().err
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 1]


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """Under ``nohup``-like setups SIGINT is ignored on purpose: training neither installs a handler nor stops."""
    import os
    import signal

    config = run_config.resolve("reinforce", "CartPole-v1", seeds=1, steps=2 * STEPS_PER_ITER, chunk=1,
                                overrides={"num_envs": 2, "horizon": 16, "hidden": [8], "value_epochs": 2})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_json(run_dir / CONFIG, config)
    seen = []
    send = lambda prog: seen.append(signal.getsignal(signal.SIGINT)) or os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = driver.train(run_dir, config, progress=False, on_chunk=send)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert not result["interrupted"] and result["iteration"] == 2
    assert seen == [signal.SIG_IGN, signal.SIG_IGN]


def test_tuned_configs_apply_unless_overridden():
    """A run's config starts from the config class's defaults, then the algorithm's ``TUNED[env]``, then ``--config``."""
    from scg.algorithms import ppo, reinforce

    tuned = run_config.resolve("ppo", "Pendulum-v1", seeds=1, steps=10)["algorithm_config"]
    assert tuned == dataclasses.replace(ppo.PPOConfig(), **ppo.TUNED["Pendulum-v1"]).to_dict()
    mixed = run_config.resolve("ppo", "Pendulum-v1", seeds=1, steps=10, overrides={"lr": 0.01})["algorithm_config"]
    assert mixed["lr"] == 0.01 and mixed["num_envs"] == ppo.TUNED["Pendulum-v1"]["num_envs"]
    plain = run_config.resolve("ppo", "CartPole-v1", seeds=1, steps=10)["algorithm_config"]
    assert plain == ppo.PPOConfig().to_dict()
    acrobot = run_config.resolve("reinforce", "Acrobot-v1", seeds=1, steps=10)["algorithm_config"]
    assert acrobot["entropy_bonus"] == reinforce.TUNED["Acrobot-v1"]["entropy_bonus"]
    for algo in ALGORITHMS.values():  # a tuned entry only names keys the algorithm has, with valid values
        for env_name, entry in algo.tuned.items():
            assert algo.configure(env_name).to_dict().items() >= entry.items(), algo.name


def test_make_takes_a_config_or_a_dict_checked_the_same_way():
    from scg.algorithms import reinforce
    from scg.algorithms.config import ConfigError
    from scg.envs import registry

    env, params = registry.make("CartPole-v1")
    with pytest.raises(ConfigError, match="unknown reinforce config key 'bogus'; choose from: .*policy_lr"):
        reinforce.make(env, params, {"bogus": 1})
    with pytest.raises(ConfigError, match="num_envs must be > 0"):
        reinforce.ReinforceConfig(num_envs=0)
    config = reinforce.ReinforceConfig(hidden=[8], policy_lr=1)  # JSON's spellings: list for tuple, int for float
    assert config.hidden == (8,) and config.policy_lr == 1.0 and isinstance(config.policy_lr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_envs = 4
    assert ALGORITHMS["reinforce"].configure(overrides=config) == config

