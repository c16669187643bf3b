"""Render one environment state to an ``rgb_array`` frame (``uint8``, ``(H, W, 3)``) on the host.

Paper tasks are drawn with matplotlib on an Agg canvas (no display needed), so
a notebook can ``plt.imshow`` a frame. Classic-control tasks reuse
gymnasium's own pygame renderers: the JAX observation is mapped back to the
state gymnasium draws from (their observations follow gymnasium's layout), so
the pictures match the originals; this needs ``pygame``
(``pip install "scg-jax[render]"``, which is what gymnasium's ``check_env`` render check asks for).
"""
from __future__ import annotations

import math
import os

import numpy as np

FIGSIZE, DPI = (4.0, 3.0), 80  # 320 x 240 frames

# gymnasium id -> observation -> the ``env.unwrapped.state`` gymnasium's renderer reads.
_CLASSIC_STATE = {
    "CartPole-v1": lambda o: np.asarray(o, np.float64),
    "Acrobot-v1": lambda o: np.array([math.atan2(o[1], o[0]), math.atan2(o[3], o[2]), o[4], o[5]]),
    "MountainCar-v0": lambda o: np.asarray(o, np.float64),
    "MountainCarContinuous-v0": lambda o: np.asarray(o, np.float64),
    "Pendulum-v1": lambda o: np.array([math.atan2(o[1], o[0]), o[2]]),
}
_classic_renderers: dict = {}


def _canvas():
    """A matplotlib ``(Figure, Axes)`` on no display (matplotlib is imported here, not when ``scg.envs`` is)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    return fig, fig.add_subplot(1, 1, 1)


def _to_array(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.array(canvas.buffer_rgba())[..., :3]


def _hand_mass(ax, state, params) -> None:
    x, y, v = float(state.x), float(state.y), float(state.v)
    ax.axvline(params.goal, color="tab:green", ls="--", label="goal")
    ax.plot([y, x], [0, 0], color="gray", lw=2, zorder=1)  # the spring
    ax.add_patch(_rect(y - 0.1, 0.15, 0.2, 0.3, "tab:blue"))
    ax.scatter([x], [0.0], s=300, color="tab:red", zorder=2, label="mass")
    ax.annotate("", (x + 0.5 * v, 0.0), (x, 0.0), arrowprops=dict(arrowstyle="->"))
    lim = max(3.0, abs(x) + 0.5, abs(y) + 0.5)
    ax.set(xlim=(-lim, lim), ylim=(-1, 1), yticks=[], title=f"t={int(state.t)}  x={x:.2f}  v={v:.2f}")
    ax.legend(loc="upper right", fontsize=7)


def _rect(x, y, w, h, color):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, color=color)


def _deep_sea(ax, state, params) -> None:
    n = int(params.size)
    grid = np.zeros((n, n))
    grid[n - 1, n - 1] = 0.5
    grid[int(state.row), int(state.col)] = 1.0
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(n), yticks=range(n), title=f"DeepSea {n}x{n}")


def _chain(ax, state, params) -> None:
    s = np.arange(-int(params.m), int(params.n) + 1)
    colors = ["tab:red" if i == int(state.s) else ("tab:green" if i == int(params.n) else "lightgray") for i in s]
    ax.scatter(s, np.zeros_like(s), c=colors, s=200)
    ax.set(yticks=[], xticks=s, title=f"chain, t={int(state.t)}")


def _bimodal(ax, state, params) -> None:
    a = np.linspace(-2.0, 2.0, 401)[:, None]
    c, h = np.asarray(params.centers), np.asarray(params.heights)
    r = np.sum(h * np.exp(-((a - c) ** 2) / (2.0 * params.width**2)), axis=1)  # bimodal_reward, in numpy
    ax.plot(a[:, 0], r, color="tab:green")
    ax.set(xlabel="action", ylabel="r(a)", title="bimodal bandit")


def _combinatorial(ax, state, params, env) -> None:
    angle = 2 * np.pi * np.arange(env.num_nodes) / env.num_nodes
    pos = np.stack([np.cos(angle), np.sin(angle)], 1)
    included, t = np.asarray(state.included), int(state.t)
    for i, (u, v) in enumerate(env.edges):
        style = dict(color="tab:blue", lw=3) if included[i] else dict(color="lightgray", lw=1, ls=":" if i >= t else "-")
        ax.plot(*pos[[u, v]].T, **style)
    ax.scatter(*pos.T, s=200, color="black", zorder=2)
    ax.set(xticks=[], yticks=[], aspect="equal", title=f"spanning tree, edge {t}/{env.num_edges}")


def render_frame(env, state, params, obs=None) -> np.ndarray:
    """Draw ``state`` of ``env`` (a functional Environment) as an ``(H, W, 3)`` ``uint8`` array.

    ``obs`` is needed for the classic-control tasks (drawn from their observation).
    """
    name = env.name
    if name in _CLASSIC_STATE:
        return _render_classic(name, obs)
    fig, ax = _canvas()
    if name.startswith("HandMass"):
        _hand_mass(ax, state, params)
    elif name == "DeepSea-v0":
        _deep_sea(ax, state, params)
    elif name == "ChainMDP-v0":
        _chain(ax, state, params)
    elif name == "BimodalBandit-v0":
        _bimodal(ax, state, params)
    elif name == "CombinatorialBandit-v0":
        _combinatorial(ax, state, params, env)
    else:
        raise NotImplementedError(f"{name}: no renderer")
    fig.tight_layout()
    return _to_array(fig)


def _render_classic(name: str, obs) -> np.ndarray:
    import gymnasium

    if obs is None:
        raise ValueError(f"{name}: classic-control frames are drawn from the observation; pass obs=")
    if name not in _classic_renderers:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame
        try:
            _classic_renderers[name] = gymnasium.make(name, render_mode="rgb_array").unwrapped
        except gymnasium.error.DependencyNotInstalled as err:
            raise ImportError(f"{name}: rendering reuses gymnasium's pygame renderer; install it with "
                              f"pip install \"scg-jax[render]\" ({err})") from err
    ref = _classic_renderers[name]
    ref.state = _CLASSIC_STATE[name](np.asarray(obs, np.float64))
    if name == "Pendulum-v1":
        ref.last_u = None
    return np.asarray(ref.render(), np.uint8)
