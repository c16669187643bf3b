"""Learning-curve figures: a panel per environment, a band over seeds that stays within what the seeds reached,
short legends; ``scg plot --band``. Runs are written by hand (config.json, metrics.jsonl): no training. Budget: < 5 s."""
import json

import numpy as np
import pytest

from scg.algorithms import cli, plots
from scg.algorithms.run_files import write_json

PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path, algo, env, returns, steps_per_iter=1000):
    """A run folder whose seed ``s`` had ``mean_return`` ``returns[i][s]`` at iteration ``i + 1`` (None: no episode)."""
    path.mkdir(parents=True)
    seeds = len(returns[0])
    write_json(path / "config.json", {"algo": algo, "env": env, "seeds": seeds, "steps": steps_per_iter * len(returns),
                                      "seed": 0, "chunk": 1, "algorithm_config": {}})
    rows = [{"iteration": i + 1, "seed": s, "env_steps": steps_per_iter * (i + 1), "mean_return": r}
            for i, per_seed in enumerate(returns) for s, r in enumerate(per_seed)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def two_envs(tmp_path):
    # CartPole seeds far apart (0, 0, 500): mean ± one standard deviation would reach below 0.
    cartpole = fake_run(tmp_path / "cp", "ppo", "CartPole-v1",
                        [[None, None, None], [9.0, 10.0, 12.0], [0.0, 0.0, 500.0], [200.0, 480.0, 500.0]])
    pendulum = fake_run(tmp_path / "pd", "ddpg", "Pendulum-v1",
                        [[-1500.0, -1200.0], [-900.0, -300.0], [-200.0, -150.0]])
    return cartpole, pendulum


def test_seed_band_by_hand():
    returns = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0], [1.0, np.nan, 3.0], [4.0, np.nan, np.nan]])
    centre, lo, hi = plots.seed_band(returns, "se")
    # rows: s = 1, n = 3; s = √12, n = 3 (s/√3 = 2); s = √2, n = 2 (s/√2 = 1); one seed: no band
    np.testing.assert_allclose(centre, [2.0, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(hi - centre, [1 / np.sqrt(3), 2.0, 1.0, 0.0])
    np.testing.assert_allclose(centre - lo, [1 / np.sqrt(3), 2.0, 1.0, 0.0])
    _, lo, hi = plots.seed_band(returns, "minmax")
    np.testing.assert_allclose(lo, [1.0, 0.0, 1.0, 4.0])
    np.testing.assert_allclose(hi, [3.0, 6.0, 3.0, 4.0])
    _, lo, hi = plots.seed_band(np.array([[0.0, 10.0]]), "minmax", bounds=(2.0, 8.0))
    assert (lo.item(), hi.item()) == (2.0, 8.0)
    with pytest.raises(ValueError, match="band must be one of"):
        plots.seed_band(returns, "std")


@pytest.mark.parametrize("band", ["se", "minmax"])
def test_band_never_leaves_the_seeds_range(band):
    rng = np.random.default_rng(0)
    returns = np.where(rng.random((200, 5)) < 0.3, 500.0, rng.exponential(20.0, (200, 5)))  # outliers at 500
    centre, lo, hi = plots.seed_band(returns, band)
    assert np.all(returns.min(axis=1) <= lo) and np.all(lo <= centre)
    assert np.all(centre <= hi) and np.all(hi <= returns.max(axis=1))


def band_polygon(ax):
    """The (x, y) vertices of the one band drawn on ``ax``."""
    (band,) = ax.collections
    return np.concatenate([p.vertices for p in band.get_paths()])


def test_one_panel_per_environment_with_bands_inside_the_seeds(two_envs):
    cartpole, pendulum = two_envs
    fig = plots.figure([cartpole, pendulum])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["CartPole-v1", "Pendulum-v1"]
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes] == [["ppo, 3 seeds"], ["ddpg, 2 seeds"]]
    for ax, run in zip(axes, two_envs):
        x, returns = plots.seed_returns(run)
        xy = band_polygon(ax)
        for step, r in zip(x, returns):  # every band vertex at an iteration lies within its seeds' returns
            ys = xy[np.isclose(xy[:, 0], step), 1]
            assert ys.size and np.all(ys >= r.min() - 1e-9) and np.all(ys <= r.max() + 1e-9), (step, ys, r)
    x, returns = plots.seed_returns(cartpole)
    assert x.tolist() == [2000.0, 3000.0, 4000.0]  # the iteration before any episode is dropped
    (line,) = axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), returns.mean(axis=1))


def test_two_runs_of_one_algorithm_are_told_apart(tmp_path):
    a = fake_run(tmp_path / "a", "ppo", "CartPole-v1", [[10.0], [20.0]])
    b = fake_run(tmp_path / "b", "ppo", "CartPole-v1", [[15.0], [25.0]])
    (ax,) = plots.figure([a, b]).axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a: ppo, 1 seed", "b: ppo, 1 seed"]


def test_scg_plot_writes_a_panel_per_environment(two_envs, tmp_path, capsys):
    for band in ("se", "minmax"):
        out = tmp_path / f"{band}.png"
        assert cli.main(["plot", *map(str, two_envs), "-o", str(out), "--band", band]) == 0
        assert out.read_bytes()[:8] == PNG
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plot", str(two_envs[0]), "--band", "std"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'std'" in capsys.readouterr().err
