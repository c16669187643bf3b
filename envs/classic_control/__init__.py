"""Gymnasium's classic control environments (gymnasium 1.4.0) in pure JAX.

Each module transcribes one gymnasium file line for line (same constants,
integrator and operation order); ``tests/envs/test_classic_control.py`` steps
each beside its gymnasium original.
"""
from scg.envs.classic_control.acrobot import Acrobot
from scg.envs.classic_control.cartpole import CartPole
from scg.envs.classic_control.mountain_car import MountainCar
from scg.envs.classic_control.mountain_car_continuous import MountainCarContinuous
from scg.envs.classic_control.pendulum import Pendulum

__all__ = [
    "Acrobot",
    "CartPole",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
]
