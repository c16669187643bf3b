"""MiniGrid MultiRoom-N6 for DirPG's Figure 3 (Lorberbom et al. 2020, §6.3, App. C.3): rewards, U, policy, trees.

The environment is Farama's ``minigrid`` (a Python env), so a search branches by *copying* it.
:class:`HostTree` keeps the copies in a host-side table and exposes them to the unchanged, jitted
:func:`scg.search.search` as a :class:`scg.search.Tree` whose state is a small pytree
``{handle, image, direction, ub}``; ``expand`` is a ``jax.pure_callback`` that looks up the env of
``handle``, copies it, steps it and stores the child under a new handle. The new handle is the
child's *prefix key* (``key_data`` of the key the search gives ``expand``, a function of the prefix
only), so ``expand`` is a pure function of its arguments: re-expanding a prefix stores an identical
env under the same handle. Call :meth:`HostTree.reset` at every episode (it clears the table).

Rewards (the paper adds intermediate rewards for doors and the goal, sizes not given, ~L245):

* ``DOOR_REWARD = 10`` the first time each door is opened in an episode (re-opening pays nothing,
  so toggling cannot farm reward);
* ``GOAL_SCALE · (1 − 0.9 t / T) = 100 (1 − 0.9 t / T)`` on reaching the goal at step ``t``: MiniGrid's
  stock goal reward ×100, the scale of the authors' code (spec B7, B8.3);
* ``T = MAX_STEPS = 100`` for every method (the paper's 100-step baseline trajectories, ~L420; the
  env's default is 120).

U, the upper bound on the return-to-go (the paper: "based on the Manhattan distance to the goal and
the number of unopened doors", ~L247, formula not given)::

    U(s) = DOOR_REWARD · (doors not yet opened) + [t + d ≤ T] · GOAL_SCALE (1 − 0.9 (t + d) / T),   0 when done

with ``d = |x − x_g| + |y − y_g|``. It is valid: each unopened door pays at most once, and the agent
moves at most one cell per step, so the goal is reached no earlier than step ``t + d`` and the goal
reward decreases in the step.

The policy (App. C.3, ~L418): Conv(3,32)-ReLU-Conv(32,48)-ReLU-Conv(48,64), kernel 3, no padding
(7→5→3→1), on the raw 7×7×3 integer encoding, concatenated with the one-hot direction, then
FC(64+4, 7) giving logits (normalised by ``log_softmax`` downstream). PyTorch's default
initialisation ``U(±1/sqrt(fan_in))`` (the authors' framework).
"""
from __future__ import annotations

import copy
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ENV_ID = "MiniGrid-MultiRoom-N6-v0"
NUM_ACTIONS = 7
VIEW = 7
MAX_STEPS = 100
DOOR_REWARD = 10.0
GOAL_SCALE = 100.0
DOOR, GOAL = 4, 8  # minigrid OBJECT_TO_IDX


def make_env(max_steps: int = MAX_STEPS):
    """An unwrapped ``MiniGrid-MultiRoom-N6-v0`` (no gymnasium wrappers: they would be copied at every branch)."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the MiniGrid ids)

    return gym.make(ENV_ID, max_steps=max_steps).unwrapped


def clone_env(env):
    """A copy of a MultiRoom env that steps exactly like ``copy.deepcopy(env)``, far faster.

    Shares the immutable parts (walls, goal, rooms, spaces, RNG: MultiRoom's ``step`` draws nothing)
    and copies what ``step`` mutates: the grid's cell list and its doors (``toggle`` flips ``is_open``).
    ``agent_pos`` is a tuple and the rest are ints, replaced rather than mutated.
    """
    new = copy.copy(env)
    grid = copy.copy(env.grid)
    grid.grid = [copy.copy(o) if o is not None and o.type == "door" else o for o in env.grid.grid]
    new.grid = grid
    return new


COPIES = {"clone": clone_env, "deepcopy": copy.deepcopy}


def door_cells(env) -> tuple[int, ...]:
    """Indices into ``env.grid.grid`` of the doors (5 for N6)."""
    return tuple(i for i, o in enumerate(env.grid.grid) if o is not None and o.type == "door")


def shaped_step(env, opened: tuple, doors: tuple, action: int):
    """Step ``env`` in place with the rewards above; ``(obs, reward, terminated, truncated, opened)``.

    ``opened[k]``: door ``doors[k]`` has been opened at some step of this episode.
    """
    obs, r, terminated, truncated, _ = env.step(int(action))
    now = tuple(a or env.grid.grid[i].is_open for a, i in zip(opened, doors))
    reward = DOOR_REWARD * (sum(now) - sum(opened)) + GOAL_SCALE * float(r)
    return obs, reward, bool(terminated), bool(truncated), now


def upper_bound(env, opened: tuple, done: bool) -> float:
    """``U(s)`` above: an upper bound on the return-to-go from ``env``'s state."""
    if done:
        return 0.0
    t, T = env.step_count, env.max_steps
    d = abs(int(env.agent_pos[0]) - int(env.goal_pos[0])) + abs(int(env.agent_pos[1]) - int(env.goal_pos[1]))
    goal = GOAL_SCALE * (1.0 - 0.9 * (t + d) / T) if t + d <= T else 0.0
    return DOOR_REWARD * (len(opened) - sum(opened)) + goal


def succeeded(env) -> bool:
    """The agent stands on the goal (MultiRoom's only termination)."""
    return tuple(int(x) for x in env.agent_pos) == tuple(int(x) for x in env.goal_pos)


# --- the policy -------------------------------------------------------------------------------

_CONVS = ((3, 32), (32, 48), (48, 64))


def init_policy(key: jax.Array) -> dict:
    """Parameters of the App. C.3 network, PyTorch's default init ``U(±1/sqrt(fan_in))``."""
    params, keys = {}, jax.random.split(key, 2 * len(_CONVS) + 2)
    for i, (c_in, c_out) in enumerate(_CONVS):
        bound = 1.0 / np.sqrt(9 * c_in)
        params[f"conv{i + 1}"] = {"w": jax.random.uniform(keys[2 * i], (3, 3, c_in, c_out), minval=-bound, maxval=bound),
                                  "b": jax.random.uniform(keys[2 * i + 1], (c_out,), minval=-bound, maxval=bound)}
    bound = 1.0 / np.sqrt(64 + 4)
    params["fc"] = {"w": jax.random.uniform(keys[-2], (64 + 4, NUM_ACTIONS), minval=-bound, maxval=bound),
                    "b": jax.random.uniform(keys[-1], (NUM_ACTIONS,), minval=-bound, maxval=bound)}
    return params


def policy_logits(params: dict, state: dict) -> jax.Array:
    """``[7]`` logits of ``π_θ(· | s)`` for one state with ``image`` ``[7, 7, 3]`` and ``direction`` (int)."""
    image = jnp.asarray(state["image"])
    if image.shape != (VIEW, VIEW, 3):
        raise ValueError(f"policy_logits: one [7, 7, 3] image expected, got {image.shape}; vmap over a batch")
    x = image.astype(jnp.float32)[None]  # NHWC
    for i in range(len(_CONVS)):
        layer = params[f"conv{i + 1}"]
        x = jax.lax.conv_general_dilated(x, layer["w"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = x + layer["b"]
        if i < len(_CONVS) - 1:  # Conv1 → ReLU → Conv2 → ReLU → Conv3 (App. C.3: no ReLU after Conv3)
            x = jax.nn.relu(x)
    features = jnp.concatenate([x.reshape(64), jax.nn.one_hot(state["direction"], 4)])
    return features @ params["fc"]["w"] + params["fc"]["b"]


# --- the host-callback tree -------------------------------------------------------------------


class HostTree:
    """The table of env copies behind a :class:`scg.search.Tree` (see the module docstring).

    Args:
        env: an env from :func:`make_env`; :meth:`reset` resets it and the table.
        copy_env: ``env -> copy``: :func:`clone_env` (default) or ``copy.deepcopy``.
    """

    def __init__(self, env, copy_env: Callable = clone_env):
        self.env, self.copy_env = env, copy_env
        self.handle_shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape
        self.root_handle = np.full(self.handle_shape, 0xFFFFFFFF, np.uint32)  # no prefix key has it (w.h.p.)
        self.table: dict[bytes, tuple] = {}
        self.doors: tuple = ()
        self.expansions = 0  # host steps since reset (a check on the search's own count)

    def reset(self, seed: int) -> dict:
        """Reset the env with ``seed`` (its layout), clear the table; the root state (numpy)."""
        obs, _ = self.env.reset(seed=int(seed))
        self.doors = door_cells(self.env)
        opened = (False,) * len(self.doors)
        self.table = {self.root_handle.tobytes(): (self.env, opened, False)}
        self.expansions = 0
        return {"handle": self.root_handle.copy(), "image": np.asarray(obs["image"], np.uint8),
                "direction": np.int32(obs["direction"]), "ub": np.float32(upper_bound(self.env, opened, False))}

    def lookup(self, handle) -> tuple:
        """``(env, opened, done)`` stored under ``handle``."""
        try:
            return self.table[np.asarray(handle, np.uint32).tobytes()]
        except KeyError:
            raise KeyError(f"HostTree: no env under handle {np.asarray(handle).tolist()}; was the table reset "
                           "(HostTree.reset) after this state was made?") from None

    def step_host(self, handle, action, child_handle):
        """The callback: copy the env of ``handle``, step it with ``action``, store it under ``child_handle``."""
        env, opened, done = self.lookup(handle)
        if done:
            raise RuntimeError("HostTree: expand called on a terminal state (the search never expands leaves)")
        child = self.copy_env(env)
        obs, reward, terminated, truncated, opened = shaped_step(child, opened, self.doors, int(action))
        done = terminated or truncated
        self.table[np.asarray(child_handle, np.uint32).tobytes()] = (child, opened, done)
        self.expansions += 1
        return (np.asarray(obs["image"], np.uint8), np.int32(obs["direction"]),
                np.float32(upper_bound(child, opened, done)), np.float32(reward), np.bool_(done))

    def expand(self, state: dict, action, key):
        """``Tree.expand``: ``(state, action, key) -> (child_state, reward, done)`` through ``jax.pure_callback``."""
        child_handle = jax.random.key_data(key).astype(jnp.uint32)
        shapes = (jax.ShapeDtypeStruct((VIEW, VIEW, 3), jnp.uint8), jax.ShapeDtypeStruct((), jnp.int32),
                  jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32),
                  jax.ShapeDtypeStruct((), jnp.bool_))
        image, direction, ub, reward, done = jax.pure_callback(
            self.step_host, shapes, state["handle"], jnp.asarray(action, jnp.int32), child_handle,
            vmap_method="sequential")
        return {"handle": child_handle, "image": image, "direction": direction, "ub": ub}, reward, done

    def tree(self, root: dict, params):
        """The :class:`scg.search.Tree` over this table from ``root`` (a :meth:`reset` state), policy ``params``."""
        from scg.search import Tree

        return Tree(root=root, expand=self.expand, logits=lambda s: policy_logits(params, s),
                    upper_bound=lambda s: s["ub"])

    def leaf_succeeded(self, trajectory) -> bool:
        """Whether a searched trajectory reached the goal: replay its last action from its last state's env."""
        last = int(trajectory.length) - 1
        env, opened, _ = self.lookup(np.asarray(trajectory.states["handle"][last]))
        child = self.copy_env(env)
        shaped_step(child, opened, self.doors, int(trajectory.actions[last]))
        return succeeded(child)


# --- independent episodes for the baselines ---------------------------------------------------


class Episodes(NamedTuple):
    """``N`` episodes padded to ``T`` steps (``image`` ``[N, T, 7, 7, 3]``, ``direction``/``action``/``reward`` ``[N, T]``)."""

    image: np.ndarray
    direction: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    length: np.ndarray  # [N]
    success: np.ndarray  # [N] bool


def sample_episodes(envs: list, seeds, sample_actions: Callable, params, key: jax.Array, horizon: int = MAX_STEPS) -> Episodes:
    """Run ``len(envs)`` episodes in lockstep, each env reset with its seed, for at most ``horizon`` steps.

    ``sample_actions(params, image [N,7,7,3], direction [N], key) -> [N]`` actions (a jitted batch sampler).
    """
    n = len(envs)
    image = np.zeros((n, horizon, VIEW, VIEW, 3), np.uint8)
    direction = np.zeros((n, horizon), np.int32)
    action = np.zeros((n, horizon), np.int32)
    reward = np.zeros((n, horizon), np.float32)
    length = np.zeros(n, np.int32)
    success = np.zeros(n, bool)
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    doors = [door_cells(env) for env in envs]
    opened = [(False,) * len(d) for d in doors]
    active = np.ones(n, bool)
    cur_image = np.stack([o["image"] for o in obs]).astype(np.uint8)
    cur_dir = np.array([o["direction"] for o in obs], np.int32)
    for t in range(horizon):
        if not active.any():
            break
        a = np.asarray(sample_actions(params, cur_image, cur_dir, jax.random.fold_in(key, t)))
        for i in np.flatnonzero(active):
            image[i, t], direction[i, t], action[i, t] = cur_image[i], cur_dir[i], a[i]
            o, r, term, trunc, opened[i] = shaped_step(envs[i], opened[i], doors[i], int(a[i]))
            reward[i, t], length[i] = r, t + 1
            cur_image[i], cur_dir[i] = o["image"], o["direction"]
            if term or trunc:
                active[i], success[i] = False, term
    return Episodes(image, direction, action, reward, length, success)


def make_action_sampler() -> Callable:
    """A jitted ``(params, image [N,...], direction [N], key) -> [N]`` sampler of ``π_θ``."""

    @jax.jit
    def sample(params, image, direction, key):
        logits = jax.vmap(lambda i, d: policy_logits(params, {"image": i, "direction": d}))(image, direction)
        return jax.random.categorical(key, logits, axis=-1)

    return sample


# --- a jitted door grid of the same size, for the "what would a JAX port gain" timing ---------


def jax_door_grid_tree(env, params, horizon: int = MAX_STEPS):
    """A :class:`scg.search.Tree` over a pure-JAX re-implementation of ``env``'s current MultiRoom layout.

    Only for timing one expansion against :class:`HostTree`: the same layout, actions (left, right,
    forward, toggle; the others no-ops), rewards, U and policy network; the view is the 7×7 egocentric
    crop, rotated, without MiniGrid's visibility mask (so its images are not MiniGrid's: the step is
    of similar size, not identical). State: door states, doors ever opened, position, direction, step.
    """
    base = jnp.asarray(env.grid.encode(), jnp.uint8)  # [W, H, 3], indexed [x, y]
    W, H = base.shape[:2]
    doors = door_cells(env)
    dx = jnp.array([i % W for i in doors], jnp.int32)
    dy = jnp.array([i // W for i in doors], jnp.int32)
    goal = jnp.array(env.goal_pos, jnp.int32)
    vec = jnp.array([[1, 0], [0, 1], [-1, 0], [0, -1]], jnp.int32)  # MiniGrid's DIR_TO_VEC
    wall = jnp.array([2, 5, 0], jnp.uint8)
    pad = VIEW

    def grid_of(s):
        return base.at[dx, dy, 2].set(jnp.where(s["open"], 0, 1).astype(jnp.uint8))

    def image_of(s):
        g = jnp.broadcast_to(wall, (W + 2 * pad, H + 2 * pad, 3)).at[pad:pad + W, pad:pad + H].set(grid_of(s))
        x, y = s["pos"][0], s["pos"][1]
        tops = jnp.array([[x, y - 3], [x - 3, y], [x - 6, y - 3], [x - 3, y - 6]], jnp.int32)[s["dir"]]
        view = jax.lax.dynamic_slice(g, (tops[0] + pad, tops[1] + pad, 0), (VIEW, VIEW, 3))
        return jax.lax.switch(s["dir"], [lambda v, k=k: jnp.rot90(v, k + 1, axes=(0, 1)) for k in range(4)], view)

    def ub_of(s, done):
        d = jnp.sum(jnp.abs(s["pos"] - goal))
        t = s["t"]
        g = jnp.where(t + d <= horizon, GOAL_SCALE * (1.0 - 0.9 * (t + d) / horizon), 0.0)
        return jnp.where(done, 0.0, DOOR_REWARD * jnp.sum(~s["opened"]) + g).astype(jnp.float32)

    def expand(s, a, key):
        del key  # deterministic dynamics
        fwd = s["pos"] + vec[s["dir"]]
        cell = grid_of(s)[fwd[0], fwd[1]]
        is_door = (dx == fwd[0]) & (dy == fwd[1])
        passable = (cell[0] == 1) | (cell[0] == GOAL) | ((cell[0] == DOOR) & (cell[2] == 0))
        pos = jnp.where((a == 2) & passable, fwd, s["pos"])
        direction = jnp.where(a == 0, (s["dir"] + 3) % 4, jnp.where(a == 1, (s["dir"] + 1) % 4, s["dir"]))
        door_open = jnp.where((a == 5) & is_door, ~s["open"], s["open"])
        opened = s["opened"] | door_open
        t = s["t"] + 1
        at_goal = (a == 2) & (cell[0] == GOAL)
        reward = (DOOR_REWARD * (jnp.sum(opened) - jnp.sum(s["opened"]))
                  + jnp.where(at_goal, GOAL_SCALE * (1.0 - 0.9 * t / horizon), 0.0)).astype(jnp.float32)
        done = at_goal | (t >= horizon)
        child = dict(open=door_open, opened=opened, pos=pos, dir=direction, t=t, ub=jnp.float32(0.0))
        child["ub"] = ub_of(child, done)
        return child, reward, done

    from scg.search import Tree

    n = len(doors)
    root = dict(open=jnp.zeros(n, bool), opened=jnp.zeros(n, bool), pos=jnp.array(env.agent_pos, jnp.int32),
                dir=jnp.int32(env.agent_dir), t=jnp.int32(env.step_count), ub=jnp.float32(0.0))
    root["ub"] = ub_of(root, False)
    logits = lambda s: policy_logits(params, {"image": image_of(s), "direction": s["dir"]})
    return Tree(root=root, expand=expand, logits=logits, upper_bound=lambda s: s["ub"])
