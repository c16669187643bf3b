"""Reinforcement-learning algorithms as stochastic computation graphs plus optimizers."""
from algorithms import reinforce
from algorithms.base import ALGORITHMS
from algorithms.base import Algorithm
from algorithms.train import make_train
