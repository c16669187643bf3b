"""Off-policy groundwork: the replay buffer (scg.algorithms.replay) and exploration noise (scg.algorithms.exploration).

- the buffer against a reference: a Python list model of one-at-a-time adds (wrap-around, overwrite
  order, a batch larger than the buffer), and ``lax.scan`` of single adds against one big add;
- sampling: only filled slots, and uniform by a chi-square test that a correct sampler passes and two
  biased samplers (drawing over ``[0, capacity)`` when partly filled; modulo bias) fail;
- one trace for ``add`` and ``sample`` whatever the pointer and contents; ``vmap`` over 3 seeds with
  different fills equal to each seed alone; shape and structure errors naming the leaf;
- Polyak targets: ``optax.incremental_update``'s argument order, pinned;
- noise: Gaussian within bounds and with the right moments; OU against the exact law of its AR(1)
  discretisation (mean and variance at every step, z-tests), reversion to μ, reset by a done mask.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from scg.algorithms import exploration, replay

try:
    from scipy import stats as scipy_stats
except ImportError:  # scipy is not a dependency: fall back to a stated quantile
    scipy_stats = None

P_MIN = 1e-4  # a correct sampler fails a chi-square test at this level once in 10,000 seeds
Z_MAX = 4.5  # |z| bound of the Monte Carlo checks (two-sided p ≈ 7e-6)

# Jitted once for the module: eager calls would compile each primitive for each new shape (slow on CPU).
add = jax.jit(replay.add)
sample = jax.jit(replay.sample, static_argnames="batch_size")


# Test data is built with numpy: eager jnp calls would compile each primitive for each new shape.
def transition(obs_dim=3):
    return {"obs": np.zeros(obs_dim, np.float32), "action": np.zeros((), np.int32), "reward": np.zeros((), np.float32)}


def numbered(ids, obs_dim=3):
    """A batch of transitions whose every field encodes its id (ids >= 1; 0 marks an empty slot)."""
    ids = np.asarray(ids)
    return {"obs": np.repeat(ids[:, None].astype(np.float32), obs_dim, 1), "action": ids.astype(np.int32),
            "reward": ids.astype(np.float32)}


def list_model(capacity, batches):
    """The reference: a Python list of slots filled one transition at a time; (slots, pointer, size)."""
    slots, pointer, size = [0] * capacity, 0, 0
    for batch in batches:
        for item in batch:
            slots[pointer] = item
            pointer, size = (pointer + 1) % capacity, min(size + 1, capacity)
    return slots, pointer, size


# -- init and add --------------------------------------------------------------------------------
def test_init_is_empty_zeros_shaped_like_one_transition():
    state = replay.init(transition(), capacity=7)
    assert state.data["obs"].shape == (7, 3) and state.data["action"].dtype == jnp.int32
    assert state.data["reward"].shape == (7,) and int(state.pointer) == 0 and int(state.size) == 0
    assert state.pointer.dtype == jnp.int32 and state.size.dtype == jnp.int32
    assert not any(np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(state.data))
    spec = replay.init({"x": jax.ShapeDtypeStruct((2,), jnp.float16)}, capacity=np.int64(3))
    assert spec.data["x"].shape == (3, 2) and spec.data["x"].dtype == jnp.float16


@pytest.mark.parametrize("capacity", [0, -3, 2.0, True, "8", None])
def test_init_rejects_a_capacity_that_is_not_a_positive_int(capacity):
    with pytest.raises(ValueError, match="capacity"):
        replay.init(transition(), capacity)


def test_init_rejects_a_transition_without_arrays():
    with pytest.raises(ValueError, match="no array leaves"):
        replay.init({}, 4)


def test_wrap_around_keeps_the_most_recent_capacity_transitions_at_their_slots():
    state = replay.init(transition(), capacity=5)
    for ids in ([1, 2, 3], [4, 5, 6], [7]):  # 7 transitions into 5 slots
        state = replay.add(state, numbered(ids))
    # slot (k - 1) mod 5 holds the latest id k written there: 6 and 7 overwrote 1 and 2
    assert state.data["action"].tolist() == [6, 7, 3, 4, 5]
    assert state.data["obs"][:, 0].tolist() == [6.0, 7.0, 3.0, 4.0, 5.0]
    assert int(state.pointer) == 2 and int(state.size) == 5


@pytest.mark.parametrize("sizes", [[1] * 9, [3, 4, 2], [6], [2, 11, 1], [13, 13], [0, 4, 0, 5]])
def test_add_matches_one_at_a_time_adds(sizes):
    capacity, batches, start = 6, [], 1
    for n in sizes:
        batches.append(list(range(start, start + n)))
        start += n
    state = replay.init(transition(), capacity)
    for ids in batches:
        state = add(state, numbered(np.asarray(ids, np.int32)))
    slots, pointer, size = list_model(capacity, batches)
    assert state.data["action"].tolist() == slots
    assert (int(state.pointer), int(state.size)) == (pointer, size)


def test_a_batch_larger_than_the_buffer_keeps_its_last_capacity_items_in_order():
    state = replay.add(replay.init(transition(), capacity=4), numbered([1]))  # pointer 1
    state = replay.add(state, numbered(range(2, 12)))  # ids 2..11 go to slots 1, 2, 3, 0, 1, ...: 8..11 survive
    assert state.data["action"].tolist() == [9, 10, 11, 8]  # 8..11 at slots 3, 0, 1, 2, in order
    assert int(state.pointer) == (1 + 10) % 4 == 3 and int(state.size) == 4


def test_a_scan_of_single_adds_equals_one_big_add():
    batch = numbered(np.arange(1, 23))

    def step(state, one):
        return replay.add(state, jax.tree.map(lambda leaf: leaf[None], one)), None  # a batch of B = 1

    scanned, _ = jax.jit(lambda s: jax.lax.scan(step, s, batch))(replay.init(transition(), 8))
    at_once = add(replay.init(transition(), 8), batch)
    jax.tree.map(np.testing.assert_array_equal, scanned, at_once)


def test_add_casts_within_a_kind():
    state = replay.add(replay.init(transition(), 3), {"obs": np.ones((2, 3)), "action": np.array([1, 2], np.int64),
                                                      "reward": np.array([True, False])})
    assert state.data["obs"].dtype == jnp.float32 and state.data["reward"].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("batch, message", [
    ({"obs": np.zeros((2, 4)), "action": np.zeros(2, np.int32), "reward": np.zeros(2)}, r"batch\['obs'\]"),
    ({"obs": np.zeros((2, 3)), "action": np.zeros(2, np.int32), "reward": np.zeros(())}, r"batch\['reward'\]"),
    ({"obs": np.zeros((2, 3)), "action": np.zeros(2), "reward": np.zeros(2)}, r"batch\['action'\].*dtype"),
    ({"obs": np.zeros((2, 3)), "action": np.zeros(2, np.int32)}, r"missing \[\"\['reward'\]\"\]"),
    ({"obs": np.zeros((2, 3)), "action": np.zeros(3, np.int32), "reward": np.zeros(2)}, r"leading sizes \[2, 3\]"),
])
def test_add_rejects_a_batch_unlike_the_buffer_naming_the_leaf(batch, message):
    with pytest.raises(ValueError, match=message):
        replay.add(replay.init(transition(), 4), batch)
    with pytest.raises(ValueError, match=message):  # at trace time, under jit too
        add(replay.init(transition(), 4), batch)


# -- sample ----------------------------------------------------------------------------------------
def test_sampling_draws_only_filled_slots():
    state = add(replay.init(transition(), capacity=100), numbered(range(1, 8)))  # 7 of 100
    drawn = sample(state, jax.random.key(0), batch_size=10_000)
    assert set(np.unique(drawn["action"])) == set(range(1, 8))  # every filled slot, nothing else
    np.testing.assert_array_equal(drawn["obs"][..., 0], drawn["action"])  # fields of one transition together


def draw_over_capacity(state, key, n):
    """A biased sampler: uniform over every slot, filled or not."""
    slots = jax.random.randint(key, (n,), 0, state.data["action"].shape[0])
    return jax.tree.map(lambda leaf: leaf[slots], state.data)


def draw_with_modulo_bias(state, key, n):
    """A biased sampler: 8 random bits mod size favour the low slots (256 = 6·40 + 16)."""
    slots = jax.random.randint(key, (n,), 0, 256) % state.size
    return jax.tree.map(lambda leaf: leaf[slots], state.data)


def chi_square_passes(ids, expected_ids):
    """Uniformity over ``expected_ids`` at level P_MIN; a draw outside them fails outright.

    With scipy, the p-value; without it, the statistic against the Wilson–Hilferty approximation of
    the 1 − 1e-4 quantile of χ²(k), k = len(expected_ids) − 1 (within 0.5% of the exact one for k ≥ 30).
    """
    ids, expected_ids = np.asarray(ids).ravel(), np.asarray(sorted(expected_ids))
    if not np.isin(ids, expected_ids).all():
        return False
    counts = np.array([(ids == i).sum() for i in expected_ids])
    mean = ids.size / len(expected_ids)
    statistic, k = float(((counts - mean) ** 2 / mean).sum()), len(expected_ids) - 1
    if scipy_stats is not None:
        return scipy_stats.chi2.sf(statistic, k) > P_MIN
    z = 3.719  # upper 1e-4 quantile of N(0, 1)
    return statistic < k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


@pytest.fixture(scope="module")
def partly_filled():
    return add(replay.init(transition(), capacity=64), numbered(range(1, 41)))  # 40 of 64


@pytest.fixture(scope="module")
def wrapped():
    return add(replay.init(transition(), capacity=50), numbered(range(1, 131)))  # 81..130 remain


@pytest.mark.parametrize("name", ["partly_filled", "wrapped"])
def test_sampling_is_uniform_over_the_filled_slots(name, request):
    state = request.getfixturevalue(name)
    drawn = sample(state, jax.random.key(1), batch_size=40_000)
    assert chi_square_passes(drawn["action"], set(np.asarray(state.data["action"][:int(state.size)])))


@pytest.mark.parametrize("biased", [draw_over_capacity, draw_with_modulo_bias])
def test_the_uniformity_test_rejects_a_biased_sampler(biased, partly_filled):
    drawn = jax.jit(biased, static_argnums=2)(partly_filled, jax.random.key(1), 40_000)
    assert not chi_square_passes(drawn["action"], range(1, 41))


def test_add_and_sample_trace_once_whatever_the_pointer_and_contents():
    # fresh functions: jax.jit(replay.sample) would share its cache with the other tests' jits of it
    add_once = jax.jit(lambda state, batch: replay.add(state, batch))
    sample_once = jax.jit(lambda state, key, batch_size: replay.sample(state, key, batch_size),
                          static_argnames="batch_size")
    state = replay.init(transition(), capacity=16)
    for i in range(12):  # pointer and size take many values; the contents change
        state = add_once(state, numbered(np.arange(5) + 5 * i + 1))
        batch = sample_once(state, jax.random.key(i), batch_size=8)
    assert add_once._cache_size() == 1 and sample_once._cache_size() == 1
    assert int(state.size) == 16 and int(batch["action"].min()) > 60 - 16


def stack(states):
    return jax.tree.map(lambda *leaves: np.stack(leaves), *states)


def test_vmap_over_seeds_with_different_fills_equals_each_seed_alone():
    fills = [2, 5, 9]  # capacity 6: pointers 2, 5, 3; sizes 2, 5, 6
    alone = [add(replay.init(transition(), 6), numbered(np.arange(n) + 100 * s + 1)) for s, n in enumerate(fills)]
    seeds = stack(alone)
    assert seeds.pointer.tolist() == [2, 5, 3] and seeds.size.tolist() == [2, 5, 6]
    new = [numbered(np.arange(3) + 100 * s + 50) for s in range(3)]
    keys = jax.random.split(jax.random.key(2), 3)
    added = jax.jit(jax.vmap(replay.add))(seeds, stack(new))
    drawn = jax.jit(jax.vmap(lambda s, k: replay.sample(s, k, 32)))(added, keys)
    one = [add(alone[s], new[s]) for s in range(3)]  # each seed alone, unbatched
    for batched, unbatched in ((added, stack(one)), (drawn, stack([sample(o, k, 32) for o, k in zip(one, keys)]))):
        jax.tree.map(np.testing.assert_array_equal, batched, unbatched)
    for s in range(3):
        assert set(np.asarray(drawn["action"])[s]) <= set(np.asarray(one[s].data["action"])[:int(one[s].size)])
    empty = jax.vmap(lambda _: replay.init(transition(), 6))(jnp.arange(3))  # the documented vmap of init
    assert empty.data["obs"].shape == (3, 6, 3) and empty.pointer.shape == (3,)


def test_polyak_targets_are_optax_incremental_update_newest_first():
    params, target = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([0.0, 10.0])}
    tau = 0.001  # Lillicrap et al. 2016, §7
    updated = optax.incremental_update(new_tensors=params, old_tensors=target, step_size=tau)
    np.testing.assert_allclose(updated["w"], tau * params["w"] + (1 - tau) * target["w"], rtol=1e-6)
    np.testing.assert_allclose(optax.incremental_update(params, target, tau)["w"], updated["w"])


# -- exploration noise ------------------------------------------------------------------------------
def test_gaussian_noise_respects_bounds_by_clipping():
    action = np.tile(np.array([0.0, 0.5, -0.5], np.float32), (2000, 1))
    low, high = np.array([-1.0, 0.0, -2.0], np.float32), np.array([1.0, 0.6, 2.0], np.float32)
    noisy = jax.jit(exploration.gaussian)(jax.random.key(3), action, 3.0, low=low, high=high)
    assert noisy.shape == action.shape and noisy.dtype == action.dtype
    noisy = np.asarray(noisy)
    assert np.all((noisy >= low) & (noisy <= high))
    assert np.all(np.any(noisy == low, 0) & np.any(noisy == high, 0))  # clipped onto both bounds
    one_sided = np.asarray(jax.jit(exploration.gaussian)(jax.random.key(3), action, 3.0, low=0.0))
    assert one_sided.min() == 0.0 and one_sided.max() > 3.0


def test_gaussian_noise_has_the_stated_moments_without_bounds():
    n, mean, sigma = 20_000, np.array([0.3, -1.0], np.float32), np.array([0.1, 0.7], np.float32)
    noisy = np.asarray(jax.jit(exploration.gaussian)(jax.random.key(4), np.tile(mean, (n, 1)), sigma), np.float64)
    z_mean = (noisy.mean(0) - mean) / (sigma / math.sqrt(n))
    z_var = (noisy.var(0) / sigma ** 2 - 1) / math.sqrt(2 / (n - 1))
    assert np.abs(z_mean).max() < Z_MAX and np.abs(z_var).max() < Z_MAX


@pytest.mark.parametrize("kwargs", [{"sigma": jnp.ones(4)}, {"sigma": 1.0, "low": jnp.zeros((5, 3))}])
def test_gaussian_noise_rejects_parameters_that_would_broadcast_the_action(kwargs):
    with pytest.raises(ValueError, match="broadcast"):
        exploration.gaussian(jax.random.key(0), jnp.zeros(3), **kwargs)


def test_ou_step_is_the_euler_maruyama_update():
    state = exploration.OUState(jnp.array([0.5, -2.0]))
    key = jax.random.key(5)
    new, noise = exploration.ou_step(state, key, theta=0.3, sigma=0.4, dt=0.1, mu=1.0)
    eps = jax.random.normal(key, (2,))
    want = state.x + 0.3 * (1.0 - state.x) * 0.1 + 0.4 * math.sqrt(0.1) * eps
    np.testing.assert_allclose(noise, want, rtol=1e-6)
    np.testing.assert_array_equal(new.x, noise)


OU_CASES = {  # (theta, sigma, dt, mu, x0, steps): defaults run ~7.5 relaxation times (1/(θ dt) = 667 steps)
    "defaults": (0.15, 0.2, 1e-2, 0.0, 2.0, 5000),
    "coarse": (0.5, 0.3, 0.1, 1.0, -3.0, 300),
}
CHAINS = 4000


@functools.lru_cache(maxsize=None)
def ou_moments(case):
    """Across CHAINS independent chains from x0: the mean and second moment of x_t for every step t."""
    theta, sigma, dt, mu, x0, steps = OU_CASES[case]

    def step(state, key):
        state, x = exploration.ou_step(state, key, theta=theta, sigma=sigma, dt=dt, mu=mu)
        return state, (x.mean(), (x * x).mean())

    keys = jax.random.split(jax.random.key(6), steps)
    _, (m1, m2) = jax.jit(lambda k: jax.lax.scan(step, exploration.OUState(jnp.full(CHAINS, x0)), k))(keys)
    return np.asarray(m1, np.float64), np.asarray(m2, np.float64)


def ou_law(case, t):
    """The exact law of the discretised process after t steps from x0: x_t ~ N(mean, var) (AR(1), ρ = 1 − θ dt)."""
    theta, sigma, dt, mu, x0, _ = OU_CASES[case]
    rho = 1 - theta * dt
    stationary = sigma ** 2 * dt / (1 - rho ** 2)
    return mu + (x0 - mu) * rho ** t, stationary * (1 - rho ** (2 * t)), stationary


@pytest.mark.parametrize("case", OU_CASES)
def test_ou_mean_reverts_to_mu(case):
    m1, m2 = ou_moments(case)
    *_, mu, x0, steps = OU_CASES[case]
    for t in np.linspace(1, steps, 9).astype(int):  # x_t is the t-th step's output
        mean, var, _ = ou_law(case, t)
        assert abs(m1[t - 1] - mean) / math.sqrt(var / CHAINS) < Z_MAX, (t, m1[t - 1], mean)
    mean, var, _ = ou_law(case, steps)
    assert abs(mean - mu) < 1e-2 * abs(x0 - mu)  # by the end the mean has reverted ...
    assert abs(m1[-1] - mu) < Z_MAX * math.sqrt(var / CHAINS) + 1e-2 * abs(x0 - mu)  # ... and so have the chains


@pytest.mark.parametrize("case", OU_CASES)
def test_ou_variance_matches_the_discretised_stationary_variance(case):
    m1, m2 = ou_moments(case)
    steps = OU_CASES[case][-1]
    mean, var, stationary = ou_law(case, steps)
    assert var == pytest.approx(stationary, rel=1e-5)  # stationary by the last step
    second = m2[-1] - 2 * mean * m1[-1] + mean ** 2  # E[(x - mean)²] across chains
    se = var * math.sqrt(2 / CHAINS)
    assert abs(second - var) / se < Z_MAX
    assert abs(second - 1.2 * var) / se > Z_MAX  # the same draws reject a variance 20% off


def test_ou_reset_sets_ended_rows_back_to_mu():
    state = exploration.OUState(jnp.arange(6.0).reshape(3, 2))
    reset = exploration.ou_reset(state, jnp.array([False, True, False]), mu=0.5)
    np.testing.assert_array_equal(reset.x, [[0.0, 1.0], [0.5, 0.5], [4.0, 5.0]])
    np.testing.assert_array_equal(exploration.ou_reset(state, jnp.array(True)).x, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="done"):
        exploration.ou_reset(state, jnp.array([True, False]))


def test_ou_in_a_collector_scan_restarts_each_episode():
    done = jnp.array([[0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0]], bool).T  # [T, num_envs]
    keys = jax.random.split(jax.random.key(7), done.shape[0])

    def step(state, xs):
        key, done_t = xs
        state, x_t = exploration.ou_step(state, key, theta=0.5, sigma=0.3, dt=0.1)
        return exploration.ou_reset(state, done_t), x_t

    _, noise = jax.lax.scan(step, exploration.ou_init((2, 1)), (keys, done))
    eps = jax.vmap(lambda k: jax.random.normal(k, (2, 1)))(keys)[..., 0]
    fresh = 0.3 * math.sqrt(0.1) * eps  # the first step of an episode, from x = 0
    starts = np.vstack([np.ones((1, 2), bool), np.asarray(done[:-1])])
    np.testing.assert_allclose(np.asarray(noise[..., 0])[starts], np.asarray(fresh)[starts], rtol=1e-6)
    assert not np.allclose(np.asarray(noise[..., 0])[~starts], np.asarray(fresh)[~starts])
