"""JAX-native environments for scg (functional, gymnax-style). See envs/core.py.

Importing ``envs`` registers every environment with gymnasium as ``scg/<id>``.
gymnax and brax environments adapt with ``scg.envs.gymnax_adapter.from_gymnax`` and
``scg.envs.brax_adapter.from_brax`` (not imported here: gymnax and brax are optional).
"""
from scg.envs.core import Environment
from scg.envs.core import Timestep
from scg.envs.gym_wrapper import GymnasiumEnv
from scg.envs.gym_wrapper import register_all
from scg.envs.host import HostEnv
from scg.envs.host import from_gymnasium
from scg.envs.registry import list_envs
from scg.envs.registry import make
from scg.envs.render import render_frame
from scg.envs.spaces import Box
from scg.envs.spaces import Discrete
from scg.envs.wrappers import AutoReset
from scg.envs.wrappers import Trajectory
from scg.envs.wrappers import VecAutoReset
from scg.envs.wrappers import rollout

register_all()
