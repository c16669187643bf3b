"""JAX-native environments for scg (functional, gymnax-style). See envs/core.py.

Importing ``envs`` registers every environment with gymnasium as ``scg/<id>``.
"""
from envs.core import Environment
from envs.core import Timestep
from envs.gym_wrapper import GymnasiumEnv
from envs.gym_wrapper import register_all
from envs.host import HostEnv
from envs.host import from_gymnasium
from envs.registry import list_envs
from envs.registry import make
from envs.render import render_frame
from envs.spaces import Box
from envs.spaces import Discrete
from envs.wrappers import AutoReset
from envs.wrappers import Trajectory
from envs.wrappers import VecAutoReset
from envs.wrappers import rollout

register_all()
