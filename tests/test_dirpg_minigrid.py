"""Checks of the MiniGrid Figure 3 bench (``bench/_minigrid.py``, ``bench/dirpg_minigrid.py``).

References: ``copy.deepcopy`` of the env (for :func:`clone_env`), the realised return-to-go of
random episodes (for ``U``), and a replay of the searched actions in a fresh env (for :class:`HostTree`).
"""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minigrid")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _minigrid as mg  # noqa: E402
import dirpg_minigrid as bench  # noqa: E402

from scg.search import search  # noqa: E402

LAYOUT = next(bench.layout_seeds(0))


def _state(env):
    return (tuple(int(x) for x in env.agent_pos), int(env.agent_dir), int(env.step_count), env.grid.encode().tobytes())


def test_clone_env_steps_like_deepcopy():
    env = mg.make_env()
    rng = np.random.default_rng(0)
    env.reset(seed=LAYOUT)
    twin = copy.deepcopy(env)  # steps with the parent: a clone that shared mutable state would make them differ
    for branch in range(4):
        a, b = mg.clone_env(env), copy.deepcopy(env)
        for action in rng.choice([0, 1, 2, 2, 2, 5], size=40):  # forward- and toggle-heavy: doors get opened
            oa, ra, ta, ua, _ = a.step(int(action))
            ob, rb, tb, ub, _ = b.step(int(action))
            assert (ra, ta, ua) == (rb, tb, ub)
            np.testing.assert_array_equal(oa["image"], ob["image"])
            assert oa["direction"] == ob["direction"] and _state(a) == _state(b)
        for action in rng.choice([0, 1, 2, 5], size=25):  # the parent moves on; the next branch starts there
            env.step(int(action))
            twin.step(int(action))
        assert _state(env) == _state(twin)


def test_upper_bound_bounds_the_return_to_go():
    env = mg.make_env()
    rng = np.random.default_rng(1)
    for episode in range(6):
        env.reset(seed=int(rng.integers(2 ** 31)))
        doors = mg.door_cells(env)
        opened, done, bounds, rewards = (False,) * len(doors), False, [], []
        while not done:
            bounds.append(mg.upper_bound(env, opened, done))
            _, r, term, trunc, opened = mg.shaped_step(env, opened, doors, int(rng.choice([0, 1, 2, 2, 5])))
            rewards.append(r)
            done = term or trunc
        to_go = np.cumsum(rewards[::-1])[::-1]
        assert np.all(np.asarray(bounds) >= to_go - 1e-6)
        assert mg.upper_bound(env, opened, True) == 0.0


@pytest.fixture(scope="module")
def searched():
    host = mg.HostTree(mg.make_env())
    params = mg.init_policy(jax.random.key(0))
    run = jax.jit(lambda p, root, k: search(host.tree(root, p), k, epsilon=1.0, budget=400, max_depth=mg.MAX_STEPS,
                                            alpha=0.0, early_stop=False))
    res = jax.device_get(run(params, host.reset(LAYOUT), jax.random.key(0)))
    return host, res


@pytest.mark.parametrize("which", ["a_opt", "a_dir"])
def test_search_through_host_tree_replays_in_a_fresh_env(searched, which):
    host, res = searched
    traj = getattr(res, which)
    env = mg.make_env()
    obs, _ = env.reset(seed=LAYOUT)
    doors = mg.door_cells(env)
    opened, rewards = (False,) * len(doors), []
    for t in range(int(traj.length)):
        np.testing.assert_array_equal(traj.states["image"][t], obs["image"])
        assert int(traj.states["direction"][t]) == int(obs["direction"])
        obs, r, term, trunc, opened = mg.shaped_step(env, opened, doors, int(traj.actions[t]))
        rewards.append(r)
    np.testing.assert_allclose(traj.rewards[:int(traj.length)], rewards, rtol=1e-6)
    np.testing.assert_allclose(float(traj.ret), sum(rewards), rtol=1e-6)
    assert term or trunc or int(traj.length) == mg.MAX_STEPS
    assert host.expansions == int(res.expansions)


def test_re_expanding_a_prefix_gives_the_identical_child():
    host = mg.HostTree(mg.make_env())
    root = host.reset(LAYOUT)
    key = jax.random.key(7)
    first = jax.device_get(host.expand(root, jnp.int32(2), key))
    env_first = mg.clone_env(host.lookup(first[0]["handle"])[0])
    second = jax.device_get(host.expand(root, jnp.int32(2), key))
    for x, y in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(second)):
        np.testing.assert_array_equal(x, y)
    assert _state(host.lookup(second[0]["handle"])[0]) == _state(env_first)


def _changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_one_dirpg_update_and_one_cem_update_change_the_params():
    params = mg.init_policy(jax.random.key(0))
    settings = dict(bench.SETTINGS, budget=400)
    host = mg.HostTree(mg.make_env())
    optimizer, update = bench.make_dirpg_update(host, 0.0, settings)
    new, _, res = update(params, optimizer.init(params), host.reset(LAYOUT), jax.random.key(0))
    assert bool(res.improved) and int(res.expansions) <= 400  # this seed improves: ĝ ≠ 0
    assert _changed(params, new)
    envs = [mg.make_env() for _ in range(4)]
    ep = mg.sample_episodes(envs, [LAYOUT] * 4, mg.make_action_sampler(), params, jax.random.key(1), horizon=20)
    optimizer, update = bench.make_episode_update("cem", dict(settings, num_elite=2))
    new, _, loss = update(params, optimizer.init(params), ep.image, ep.direction, ep.action, ep.reward, ep.length)
    assert np.isfinite(float(loss)) and _changed(params, new)


def test_reinforce_loss_is_reward_to_go_weighted():
    """Against a hand-written loop over steps: −(1/N) Σ_i Σ_{t<len} log π(a_t|s_t) Σ_{j≥t} r_j."""
    params = mg.init_policy(jax.random.key(0))
    envs = [mg.make_env() for _ in range(2)]
    ep = mg.sample_episodes(envs, [LAYOUT, LAYOUT + 1], mg.make_action_sampler(), params, jax.random.key(2), horizon=6)
    reward = ep.reward + np.arange(6, dtype=np.float32)  # nonzero rewards to weigh
    want = 0.0
    for i in range(2):
        for t in range(int(ep.length[i])):
            lp = jax.nn.log_softmax(mg.policy_logits(params, {"image": ep.image[i, t], "direction": ep.direction[i, t]}))
            want -= float(lp[ep.action[i, t]]) * float(reward[i, t:].sum()) / 2
    got = bench.reinforce_loss(params, ep.image, ep.direction, ep.action, reward, ep.length)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_script_smoke_writes_valid_json(tmp_path):
    out = tmp_path / "runs"
    bench.main(["--minutes", "0.01", "--methods", "cem", "--out-dir", str(out), "--port-budget", "0",
                "--merged", str(tmp_path / "merged.json")])
    bench.run_method("dirpg_a0", 0.0, 0, out / "dirpg_a0.json", settings=dict(bench.SETTINGS, budget=200))
    record = json.loads((out / "cem.json").read_text())
    assert record["finished"] and record["summary"]["updates"] >= 1
    steps = record["log"]["interactions"][-1]
    assert 0 < steps <= record["summary"]["updates"] * 30 * mg.MAX_STEPS
    merged = bench.main(["--plot-only", "--out-dir", str(out), "--merged", str(tmp_path / "merged.json")])
    assert set(merged["runs"]) == {"cem", "dirpg_a0"}
    assert json.loads((tmp_path / "merged.json").read_text())["finished"]["cem"]
    assert (tmp_path / "merged.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        bench.main(["--methods", "dqn", "--out-dir", str(out)])
