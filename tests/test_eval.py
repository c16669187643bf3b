"""``scg eval``: a run's policy for fresh episodes, by its mode and sampled; ``eval.json``; ``--render`` GIFs; errors.

The exact check is on DeepSea, whose returns are known in closed form for a given table of logits
(:mod:`scg.envs.paper.deep_sea`): its policy is written to ``params.npz`` by hand, as DirPG keeps it,
so no training runs. The CartPole checks use the tiny training run of the command-line tests.
"""
import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.algorithms import checkpoint, cli, evaluate, run_config
from scg.algorithms.networks import make_actor
from scg.algorithms.run_files import write_json
from scg.envs import registry
from support import train


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory):
    """The tiny CartPole run (REINFORCE, 2 seeds, 2 iterations) of tests/test_cli.py, trained once."""
    runs_dir = tmp_path_factory.mktemp("eval_runs")
    assert train(runs_dir, "tiny") == 0
    return runs_dir / "tiny"


def _hand_made_run(run_dir, algo, env, params, seeds):
    """A run folder of ``algo`` on ``env`` holding ``params`` (leading seed axis) as its final parameters."""
    run_dir.mkdir()
    write_json(run_dir / "config.json", run_config.resolve(algo, env, seeds=seeds, steps=1))
    checkpoint.save_params(run_dir, types.SimpleNamespace(params=params))
    return run_dir


def _deep_sea_table(row_col_action, size=5):
    """DirPG's tabular logits (``row * size + col`` -> [L, R]): 50 for the given action in those cells, else 0."""
    table = np.zeros((size * size, 2), np.float32)
    for row, col, action in row_col_action:
        table[row * size + col, action] = 50.0
    return table


def test_deep_sea_returns_match_the_closed_form(tmp_path, capsys):
    """Seed 0 plays R, R, R, then L into (4, 2): return -1/3 · 3 = -1 exactly, however it acts. Seed 1's zero
    table has mode L everywhere (argmax takes the first of equal logits): LLLL returns 0. Sampled, seed 1 is
    uniform: E[R] = 4 · ½ · (-1/3) + P(RRRR) (1 + 1/3) = -7/12 (the corner pays N(1, 1) instead of -1/3)."""
    tables = np.stack([_deep_sea_table([(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 0)]), _deep_sea_table([])])
    run_dir = _hand_made_run(tmp_path / "deep_sea", "dirpg", "DeepSea-v0", {"table": tables}, seeds=2)
    assert cli.main(["eval", str(run_dir), "--episodes", "400", "--seed", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    record = json.loads((run_dir / "eval.json").read_text())
    det, sampled = record["deterministic"], record["sampled"]
    assert [s["returns"] for s in det["per_seed"]] == [[-1.0] * 400, [0.0] * 400]
    assert [s["seed"] for s in det["per_seed"]] == [0, 1] and record["max_steps"] == 4
    assert sampled["per_seed"][0]["returns"] == pytest.approx([-1.0] * 400)  # P(other action) = e^-50
    uniform = sampled["per_seed"][1]
    z = (uniform["mean"] - (-7 / 12)) / uniform["stderr"]
    assert abs(z) < 4, z
    assert det["unfinished"] == sampled["unfinished"] == 0
    assert out[1] == "deterministic (mode): -0.5 ± 0.0 (per seed: -1.0 ± 0.0, 0.0 ± 0.0)", out
    assert out[2].startswith("sampled:              ") and out[3] == f"wrote {run_dir / 'eval.json'}", out


def test_eval_of_a_trained_run_is_finite_and_reproducible(cartpole_run, capsys):
    assert cli.main(["eval", str(cartpole_run), "--episodes", "4", "--seed", "7"]) == 0
    first = json.loads((cartpole_run / "eval.json").read_text())
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("deterministic (mode): ") and lines[2].startswith("sampled: "), lines
    assert "per seed: " in lines[1] and "per seed: " in lines[2], lines  # the run has two seeds
    for mode in ("deterministic", "sampled"):
        result = first[mode]
        assert math.isfinite(result["mean"]) and math.isfinite(result["stderr"]) and result["stderr"] >= 0
        assert [len(s["returns"]) for s in result["per_seed"]] == [4, 4]
        assert all(r >= 1 for s in result["per_seed"] for r in s["returns"])  # CartPole pays 1 per step
        pooled = [r for s in result["per_seed"] for r in s["returns"]]
        assert result["mean"] == pytest.approx(np.mean(pooled))
        assert result["stderr"] == pytest.approx(np.std(pooled, ddof=1) / np.sqrt(len(pooled)))
    assert cli.main(["eval", str(cartpole_run), "--episodes", "4", "--seed", "7"]) == 0
    assert json.loads((cartpole_run / "eval.json").read_text()) == first  # the same seed, the same numbers
    assert not list(cartpole_run.glob(".eval.json.*"))  # written atomically: no temporary file left behind


def test_render_writes_an_animated_gif(cartpole_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "episode.gif"
    assert cli.main(["eval", str(cartpole_run), "--episodes", "4", "--seed", "7", "--render", str(out)]) == 0
    assert f"wrote {out}: one deterministic episode of seed 0" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (600, 400)  # gymnasium's CartPole frame
        first = np.asarray(gif.convert("RGB"))
        gif.seek(gif.n_frames - 1)
        assert not np.array_equal(first, np.asarray(gif.convert("RGB")))  # the cart and pole moved


def test_a_deterministic_actor_acts_by_its_mode_only():
    """DDPG keeps ``μ_θ(s)`` (in the off-policy state's learner): no distribution to sample, its mode is ``μ_θ``."""
    env, params = registry.make("Pendulum-v1")
    config = run_config.algorithm_config(run_config.resolve("ddpg", "Pendulum-v1", seeds=1, steps=1))
    fns = evaluate.policy_functions("ddpg", "Pendulum-v1", config)
    assert fns.sample is None and evaluate.POLICIES["ddpg"][0] == ("learner", "params", "theta")
    actor = make_actor(env.observation_space(params), env.action_space(params), config.hidden,
                       activation=config.activation)
    rng = np.random.default_rng(0)  # any parameters of the actor's layout (numpy: no eager init to compile)
    theta = jax.tree_util.tree_map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                                   jax.eval_shape(actor.init, jax.random.key(0)))
    obs = jnp.array([1.0, 0.0, 0.5])
    assert np.array_equal(fns.mode(theta, obs, None), actor.apply(theta, obs))


def _no_params(tmp_path, cartpole_run):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_bytes((cartpole_run / "config.json").read_bytes())
    return [str(tmp_path / "run")]


def _no_renderer(tmp_path, cartpole_run, monkeypatch):
    import scg.envs.render

    def render_frame(env, *args, **kwargs):
        raise NotImplementedError(f"{env.name}: no renderer")

    monkeypatch.setattr(scg.envs.render, "render_frame", render_frame)
    return [str(cartpole_run), "--render", str(tmp_path / "x.gif")]


BAD = {
    "missing folder": (lambda tmp, run, mp: [str(tmp / "nope")], "does not exist"),
    "not a run": (lambda tmp, run, mp: [str(tmp)], "not a run directory (no config.json)"),
    "no params.npz": (lambda tmp, run, mp: _no_params(tmp, run), "has no params.npz: it is written when training"),
    "damaged params.npz": (lambda tmp, run, mp: (_no_params(tmp, run), (tmp / "run" / "params.npz").write_text("x"))[0],
                           "params.npz is damaged"),
    "no policy": (lambda tmp, run, mp: [str(_hand_made_run(tmp / "cucb", "cucb", "CombinatorialBandit-v0", {}, 1))],
                  "cucb cannot be evaluated"),
    "one episode": (lambda tmp, run, mp: [str(run), "--episodes", "1"], "--episodes must be at least 2"),
    "not a gif": (lambda tmp, run, mp: [str(run), "--render", str(tmp / "x.png")], "give a .gif file name"),
    "no renderer": (_no_renderer, "CartPole-v1: no renderer: this environment cannot be drawn"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_eval_is_one_line_exit_2(case, cartpole_run, tmp_path, capsys, monkeypatch):
    make_args, message = BAD[case]
    args = make_args(tmp_path, cartpole_run, monkeypatch)
    before = {p.name for p in tmp_path.rglob("*")}
    assert cli.main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scg eval: error: ") and message in err, err
    assert {p.name for p in tmp_path.rglob("*")} == before  # nothing written (no eval.json, no GIF)
