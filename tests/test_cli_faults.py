"""Faults the ``scg`` command meets, and what it does about each.

Bad config values; a run folder whose checkpoint is missing or damaged, whose
``config.json`` is broken, or that another process is training; unwritable or
wrong paths and a full disk; Ctrl-C while compiling; what an interrupted atomic
write leaves behind. Each is one line on stderr naming the option, file or
process, exit code 2 when the command refused before writing anything and 1 when
it failed while working (the module docstring of ``scg.algorithms.cli``), and
nothing that was already written is lost.

The runs are the tiny ones of ``tests/test_cli.py`` (the same config, so the
process compiles the chunk once); a subprocess is used only where a second live
process is the point: a lock held by another process, a real SIGINT while
compiling.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scg.algorithms import checkpoint, cli, driver, make_train, run_config, run_files
from scg.algorithms.config import ConfigError
from scg.algorithms.metrics_log import read_metrics
from scg.algorithms.reinforce import ReinforceConfig
from scg.envs import registry
from support import STEPS_PER_ITER, TINY, metric_table, train



def resume(run_dir, *extra):
    return cli.main(["train", "--resume", str(run_dir), "--quiet", *extra])


def one_line(capsys, prog, *names) -> str:
    """The one error line the command printed; it names each of ``names``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two whole iterations; tests copy it and leave it as it is."""
    runs_dir = tmp_path_factory.mktemp("runs")
    assert train(runs_dir, "finished") == 0
    return runs_dir / "finished"


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run to break."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def assert_resumes_like(run_dir, reference):
    """The run reproduces ``reference`` bit for bit: metrics (wall time aside) and final parameters."""
    assert metric_table(run_dir) == metric_table(reference)
    mine, theirs = checkpoint.load_params(run_dir), checkpoint.load_params(reference)
    np.testing.assert_array_equal(mine["theta"]["net"][0]["w"], theirs["theta"]["net"][0]["w"])
    assert not (run_dir / run_files.LOCK).exists()


# 1. config values, checked in the config layer for the command and Python alike


@pytest.mark.parametrize(
    "overrides, names",
    [
        (["policy_lr=Infinity"], ["policy_lr", "finite float", "inf"]),
        (["value_lr=-Infinity"], ["value_lr", "finite float", "-inf"]),
        (["discount=NaN"], ["discount", "finite float", "nan"]),
        (["horizon=16", "horizon=32"], ["--config horizon", "twice"]),
        (["hidden=8"], ["hidden", "a list of integers", "8"]),
        (["num_envs=true"], ["num_envs", "an integer", "True"]),
        (["num_envs=4.0"], ["num_envs", "an integer", "4.0"]),
    ],
    ids=["inf", "-inf", "nan", "a key twice", "not a list", "a boolean for an int", "a float for an int"],
)
def test_bad_config_values_are_refused_before_anything_is_written(overrides, names, tmp_path, capsys):
    given = {item.partition("=")[0] for item in overrides}
    tiny = [f"{k}={v}" for k, v in dict(num_envs=2, horizon=16, hidden=[8], value_epochs=2).items() if k not in given]
    argv = ["train", "--runs-dir", str(tmp_path / "runs"), "--steps", "64", "--seeds", "2", "--chunk", "1", "--quiet"]
    assert cli.main([*argv, "--config", *tiny, *overrides]) == 2
    one_line(capsys, "scg train", *names)
    assert not (tmp_path / "runs").exists()


def test_python_configs_are_checked_the_same_way():
    env, params = registry.make("CartPole-v1")
    with pytest.raises(ConfigError, match="unknown algorithm 'nope'; choose from: .*reinforce"):
        make_train("nope", env, params)
    with pytest.raises(ConfigError, match="unknown reinforce config key 'lr'; choose from: .*policy_lr"):
        make_train("reinforce", env, params, {"lr": 0.1})
    with pytest.raises(ConfigError, match="policy_lr must be a finite float, got inf"):
        ReinforceConfig(policy_lr=float("inf"))
    with pytest.raises(ConfigError, match="normalize_advantages must be a boolean"):
        run_config.resolve("ppo", "CartPole-v1", seeds=1, steps=1, overrides={"normalize_advantages": 1})
    config = ReinforceConfig(num_envs=np.int64(4), discount=np.float32(0.5))  # NumPy numbers, as Python's
    assert type(config.num_envs) is int and type(config.discount) is float and config.discount == 0.5


# 2. and 4. what --resume refuses: no checkpoint, a damaged one, a broken config.json, --steps below what was done


def test_resume_without_a_checkpoint_is_refused_and_keeps_the_metrics(run, capsys):
    (run / "checkpoint.npz").unlink()
    metrics, config = (run / "metrics.jsonl").read_bytes(), (run / "config.json").read_bytes()
    assert resume(run) == 2
    one_line(capsys, "scg train", str(run / "checkpoint.npz"), "missing", "another --name")
    assert (run / "metrics.jsonl").read_bytes() == metrics and (run / "config.json").read_bytes() == config
    assert not (run / "checkpoint.npz").exists() and not (run / run_files.LOCK).exists()


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(run, finished):
    for name in ("checkpoint.npz", "metrics.jsonl", "params.npz", "learning_curve.png"):
        (run / name).unlink()  # what a run stopped while compiling may leave: config.json alone
    assert resume(run) == 0
    assert_resumes_like(run, finished)


def _flip_a_byte_of_the_largest_array(path):
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.compress_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset  # a local file header: 30 bytes, then the name and the extra field
    name_len, extra_len = (int.from_bytes(data[header + k:header + k + 2], "little") for k in (26, 28))
    data[header + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "not a zip"])
def test_a_damaged_checkpoint_is_refused_before_config_json_changes(damage, run, capsys):
    path = run / "checkpoint.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "flipped byte":
        _flip_a_byte_of_the_largest_array(path)
    else:
        path.write_text("hello")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert resume(run, "--steps", str(3 * STEPS_PER_ITER)) == 2  # --steps would change config.json
    one_line(capsys, "scg train", str(path), "damaged", "restore it")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize(
    "breakage, names",
    [
        (lambda c: '{"algo": "reinforce", ', ["not valid JSON", "line 1"]),
        (lambda c: "[1, 2]", ["not an object"]),
        (lambda c: json.dumps({k: v for k, v in c.items() if k != "steps"}), ["lacks steps"]),
        (lambda c: json.dumps({**c, "seeds": "2"}), ["seeds must be an integer", "'2'"]),
        (lambda c: json.dumps({**c, "algorithm_config": {**c["algorithm_config"], "num_envs": 0}}), ["num_envs"]),
        (lambda c: json.dumps({**c, "algo": "nope"}), ["unknown algorithm 'nope'"]),
    ],
    ids=["not JSON", "a list", "a key missing", "a wrong type", "a bad algorithm config", "an unknown algorithm"],
)
def test_a_broken_config_json_is_refused_naming_the_file(breakage, names, run, capsys):
    path = run / "config.json"
    path.write_text(breakage(json.loads(path.read_text())))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert resume(run) == 2
    one_line(capsys, "scg train", str(path), *names)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_fewer_steps_than_done_says_so(run, capsys):
    before = (run / "config.json").read_bytes()
    assert resume(run, "--steps", str(STEPS_PER_ITER)) == 2
    one_line(capsys, "scg train", "--steps 32", "64 env steps", "iteration 2")
    assert (run / "config.json").read_bytes() == before


# 3. the lock of the process training a run


_HOLD_LOCK = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("run_files", sys.argv[1])
run_files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_files)
run_files.RunLock(sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_run_another_process_trains_is_refused_until_that_process_dies(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, run_files.__file__, str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert resume(run) == 2
        one_line(capsys, "scg train", f"--resume {run}", f"being trained by process {holder.pid}")
        assert train(run.parent, run.name) == 2
        err = one_line(capsys, "scg train", f"process {holder.pid}", "choose another --name")
        assert "--resume" not in err  # no advice to resume a live run
    finally:
        holder.kill()  # SIGKILL: the lock file stays, stale
        holder.wait()
    assert json.loads((run / run_files.LOCK).read_text())["pid"] == holder.pid
    assert resume(run) == 0  # the stale lock is taken over
    assert not (run / run_files.LOCK).exists()


def test_the_lock_names_the_training_process_and_goes_with_it(tmp_path, monkeypatch):
    config = run_config.resolve("reinforce", "CartPole-v1", seeds=2, steps=2 * STEPS_PER_ITER, chunk=1,
                                overrides={"num_envs": 2, "horizon": 16, "hidden": [8], "value_epochs": 2})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    (run_dir / run_files.LOCK).write_text(json.dumps({"pid": dead.pid, "host": "here"}))  # left by a dead process
    seen = []
    driver.train(run_dir, config, progress=False,
                 on_chunk=lambda prog: seen.append(json.loads((run_dir / run_files.LOCK).read_text())["pid"]))
    assert seen == [os.getpid(), os.getpid()] and not (run_dir / run_files.LOCK).exists()

    original = driver.compiled

    def failing(config, mesh=None):
        init_all, _ = original(config, mesh)

        def run_all(states, n):
            raise RuntimeError("boom")

        return init_all, run_all

    monkeypatch.setattr(driver, "compiled", failing)
    with pytest.raises(RuntimeError, match="boom"):
        driver.train(run_dir, {**config, "steps": 3 * STEPS_PER_ITER}, resume=True, progress=False)
    assert not (run_dir / run_files.LOCK).exists()


# 5. paths, permissions and a full disk


def _deny_writes_under(monkeypatch, folder):
    """A read-only folder, as the process would see it without root's privileges."""
    real_open, real_mkdir, folder = os.open, os.mkdir, str(folder)

    def denied(path):
        if os.path.abspath(path).startswith(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            denied(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", lambda path, *a, **k: denied(path) or real_mkdir(path, *a, **k))


def test_train_in_a_read_only_folder_or_with_runs_dir_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    assert train(tmp_path / "file", "x") == 2
    one_line(capsys, "scg train", f"--runs-dir {tmp_path / 'file'}", "is a file")
    monkeypatch.chdir(tmp_path)
    _deny_writes_under(monkeypatch, tmp_path)
    assert cli.main(["train", "--name", "x", *TINY]) == 2
    one_line(capsys, "scg train", "--runs-dir runs", "Permission denied")
    assert not (tmp_path / "runs").exists()


def test_a_full_disk_while_training_is_one_line_and_the_run_resumes_bit_for_bit(finished, tmp_path, monkeypatch,
                                                                                 capsys):
    real_savez, calls = np.savez, []

    def savez(f, *args, **kwargs):  # the disk fills up while the checkpoint after the first chunk is written
        calls.append(1)
        if len(calls) == 2:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(np, "savez", savez)
        assert train(tmp_path, "run") == 1
    run_dir = tmp_path / "run"
    one_line(capsys, "scg train", str(run_dir / "checkpoint.npz"), "No space left on device", "iteration 0",
             f"free some space and resume with: scg train --resume {run_dir}")
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / run_files.LOCK).exists()
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 1]  # written before the checkpoint failed
    assert resume(run_dir) == 0
    assert_resumes_like(run_dir, finished)


def test_plot_refuses_runs_without_metrics(finished, tmp_path, capsys):
    for name, metrics in [("empty", b""), ("garbage", b"\x00\xff\xfe garbage\n[1, 2]\n\"text\"\n")]:
        run_dir = tmp_path / name
        run_dir.mkdir()
        shutil.copy(finished / "config.json", run_dir)
        (run_dir / "metrics.jsonl").write_bytes(metrics)
        assert cli.main(["plot", str(run_dir), "-o", str(tmp_path / "out.png")]) == 2
        one_line(capsys, "scg plot", str(run_dir / "metrics.jsonl"), "no complete metrics line")
    (run_dir / "config.json").write_text("{")
    assert cli.main(["plot", str(run_dir), "-o", str(tmp_path / "out.png")]) == 2
    one_line(capsys, "scg plot", str(run_dir / "config.json"), "not valid JSON")
    assert not (tmp_path / "out.png").exists()


def test_plot_skips_what_is_not_a_complete_metrics_line(run, tmp_path, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    junk = ['{"iteration": 1}\n', "[1, 2]\n", '{"iteration": 2, "seed": 0, "env_steps": "x"}\n']
    (run / "metrics.jsonl").write_text("".join(lines[:2] + junk + lines[2:])[:-20])  # the last line cut short
    assert cli.main(["plot", str(run), "-o", str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["iteration"] for r in read_metrics(run)] == [1, 1, 2]


def test_plot_output_that_is_a_folder_read_only_or_on_a_full_disk(finished, tmp_path, monkeypatch, capsys):
    assert cli.main(["plot", str(finished), "-o", str(tmp_path)]) == 2
    one_line(capsys, "scg plot", f"-o {tmp_path}", "is a folder")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        assert cli.main(["plot", str(finished), "-o", str(tmp_path / "full.png")]) == 1
    one_line(capsys, "scg plot", str(tmp_path / "full.png"), "No space left on device")

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    monkeypatch.chdir(readonly)
    _deny_writes_under(monkeypatch, readonly)
    assert cli.main(["plot", str(finished)]) == 2  # to comparison.png in the working folder
    one_line(capsys, "scg plot", "-o comparison.png", "Permission denied", "choose another -o")
    assert list(readonly.iterdir()) == [] and list(tmp_path.glob("*.png")) == list(tmp_path.glob(".*.tmp")) == []


# 6. Ctrl-C while compiling


def test_ctrl_c_while_compiling_keeps_the_run_resumable(finished, tmp_path, capsys):
    """A real SIGINT, sent as soon as the run folder has its config (the process then builds and compiles)."""
    run_dir = tmp_path / "run"
    argv = ["train", "--runs-dir", str(tmp_path), "--name", "run", "--steps", str(2 * STEPS_PER_ITER), *TINY]
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "  # as in a terminal
            "from scg.algorithms.cli import main; sys.exit(main(sys.argv[1:]))")
    child = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "config.json").exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Traceback" not in err and f"resume with: scg train --resume {run_dir}" in out
    assert not (run_dir / run_files.LOCK).exists()
    assert resume(run_dir) == 0
    assert_resumes_like(run_dir, finished)


# 7. what interrupted writes leave, and file modes


def test_resume_removes_what_interrupted_writes_left_and_writes_with_the_umask(run, finished):
    left = [run / ".checkpoint.npz.4242.0badcafe.tmp", run / ".config.json.k3j_x9.tmp", run / ".metrics.jsonl.1.tmp"]
    for path in left:
        path.write_bytes(b"half written")
    others = [run / ".notes.tmp", run / "mine.tmp"]
    for path in others:
        path.write_text("the user's")
    previous = os.umask(0o027)
    try:
        assert resume(run, "--steps", str(3 * STEPS_PER_ITER)) == 0
    finally:
        os.umask(previous)
    assert not any(p.exists() for p in left) and all(p.exists() for p in others)
    for name in ("config.json", "checkpoint.npz", "params.npz", "learning_curve.png"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name


# 8. --steps is rounded up to whole iterations, and the command says so


def test_steps_are_rounded_up_to_whole_iterations_and_said_so(tmp_path, capsys):
    assert train(tmp_path, "run", 10, "--chunk", "2") == 0  # 10 steps: less than one chunk of 2 iterations
    out = capsys.readouterr().out
    assert "1 iteration = 32 env steps (--steps 10 rounded up to whole iterations of 32)" in out
    assert [r["iteration"] for r in read_metrics(tmp_path / "run")] == [1, 1]
    cem = {"algo": "cem", "steps": 100, "chunk": 5, "algorithm_config": {"population": 50}}
    assert "rounded up to whole iterations (cem's vary in length; the first chunk is 5 iterations)" in cli._plan(cem)
