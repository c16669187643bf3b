"""Packaging: `algorithms/` and `envs/` install as `scg.algorithms` and `scg.envs`, nothing at the top level.

The repository keeps `scg/`, `algorithms/` and `envs/` side by side; `pyproject.toml` maps the two
folders into the `scg` package (setuptools `package-dir`). These tests check the mapping from the
outside: a user's own `envs/` and `algorithms/` folders do not shadow ours, no top-level `envs` or
`algorithms` module is importable, every package folder is listed, and a built wheel holds only `scg/`.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"scg": "scg", "algorithms": "scg.algorithms", "envs": "scg.envs"}


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(config["packages"]), "pyproject.toml [tool.setuptools] packages must list every package"


def test_user_folders_named_envs_and_algorithms_do_not_shadow_ours(tmp_path):
    for name in ("envs", "algorithms"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    runs_dir = tmp_path / "runs"
    code = f"""
import importlib.util, pathlib
import scg.algorithms, scg.envs
from scg.algorithms import cli
here = pathlib.Path.cwd().resolve()
for m in (scg.algorithms, scg.envs):
    assert here not in pathlib.Path(m.__file__).resolve().parents, m.__file__
rc = cli.main(["train", "--runs-dir", {str(runs_dir)!r}, "--name", "one", "--steps", "32", "--seeds", "1", "--chunk", "1", "--quiet",
               "--config", "num_envs=2", "horizon=16", "hidden=[8]", "value_epochs=2"])
assert rc == 0, rc
print("trained")
"""
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained" in out.stdout
    lines = (runs_dir / "one" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one iteration of 2 envs x 16 steps, one seed


def test_no_top_level_envs_or_algorithms_module(tmp_path):
    code = (
        "import importlib.util, scg.envs, scg.algorithms\n"
        "print(importlib.util.find_spec('envs'), importlib.util.find_spec('algorithms'))\n"
    )
    out = _run(code, tmp_path)  # a clean directory: nothing but the installed distribution
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["None", "None"]


def test_python_dash_m_scg_is_the_scg_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "scg", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("algorithms (action kinds):") and "CartPole-v1" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "scg", "train", "--seeds", "0"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "scg"
    # Build from a copy of the tracked tree, so that the checkout's build/ and egg-info stay untouched.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((ROOT / f).read_bytes())
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{done.stderr[-3000:]}")
    (path,) = out.glob("scg_jax-*.whl")  # the distribution is scg-jax, the package scg
    return path


def test_wheel_installs_only_the_scg_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"scg"}
    for module in ("scg/algorithms/cli.py", "scg/envs/registry.py", "scg/envs/classic_control/cartpole.py",
                   "scg/_program/forward.py", "scg/testing/oracle.py", "scg/__main__.py", "scg/py.typed"):
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "scg = scg.algorithms.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
