"""Reinforcement-learning algorithms as stochastic computation graphs plus optimizers."""
from algorithms import a2c
from algorithms import ppo
from algorithms import reinforce
from algorithms import trpo
from algorithms import cem, search_gradient  # noqa: E401  (CEM and the search-gradient methods share one graph)
from algorithms.base import ALGORITHMS
from algorithms.base import Algorithm
from algorithms.train import make_train
