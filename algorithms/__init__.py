"""Reinforcement-learning algorithms as stochastic computation graphs plus optimizers."""
from scg.algorithms import a2c
from scg.algorithms import ddpg
from scg.algorithms import smoothie
from scg.algorithms import svg0
from scg.algorithms import svg1
from scg.algorithms import ppo
from scg.algorithms import reinforce
from scg.algorithms import trpo
from scg.algorithms import cucb
from scg.algorithms import dirpg
from scg.algorithms import trajectory_cem
from scg.algorithms import rpg
from scg.algorithms import svginf
from scg.algorithms import cem, search_gradient  # noqa: E401  (CEM and the search-gradient methods share one graph)
from scg.algorithms.base import ALGORITHMS
from scg.algorithms.base import Algorithm
from scg.algorithms.config import Config
from scg.algorithms.config import ConfigError
from scg.algorithms.train import make_train
