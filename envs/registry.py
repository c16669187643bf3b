"""Look up environments by id: ``env, params = make("HandMass-v0")``.

Classic-control classes are imported lazily, so the paper tasks work even
while ``scg.envs.classic_control`` is absent. The same ids are registered with
gymnasium as ``scg/<id>`` (see ``scg.envs.gym_wrapper``).
"""
from __future__ import annotations

import importlib

from scg.envs.core import Environment

# id -> "module:Class"
_REGISTRY = {
    "CartPole-v1": "scg.envs.classic_control:CartPole",
    "Acrobot-v1": "scg.envs.classic_control:Acrobot",
    "MountainCar-v0": "scg.envs.classic_control:MountainCar",
    "MountainCarContinuous-v0": "scg.envs.classic_control:MountainCarContinuous",
    "Pendulum-v1": "scg.envs.classic_control:Pendulum",
    "HandMass-v0": "scg.envs.paper.hand_mass:HandMass",
    "HandMassContinuous-v0": "scg.envs.paper.hand_mass:HandMassContinuous",
    "DeepSea-v0": "scg.envs.paper.deep_sea:DeepSea",
    "CombinatorialBandit-v0": "scg.envs.paper.combinatorial_bandit:CombinatorialBandit",
    "BimodalBandit-v0": "scg.envs.paper.bimodal_bandit:BimodalBandit",
    "ChainMDP-v0": "scg.envs.paper.chain_mdp:ChainMDP",
}


def list_envs() -> list[str]:
    """All environment ids, classic control first."""
    return list(_REGISTRY)


def make(name: str, **kwargs) -> tuple[Environment, object]:
    """Return ``(env, env.default_params)`` for an id; ``kwargs`` go to the class constructor.

    Example:
        >>> env, params = make("DeepSea-v0")
        >>> params.size
        5
    """
    if name.startswith("scg/"):
        name = name[len("scg/") :]
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; known: {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    try:
        env = getattr(importlib.import_module(module), cls)(**kwargs)
    except (ImportError, AttributeError) as err:
        raise ImportError(f"{name}: cannot import {_REGISTRY[name]} ({err})") from err
    return env, env.default_params
