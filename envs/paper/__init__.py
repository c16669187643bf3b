"""Small tasks from the seed papers: RPG's Hand Mass, DirPG's DeepSea and spanning-tree bandit, Smoothie's bimodal bandit, the tutorial's chain MDP."""
from envs.paper.bimodal_bandit import BimodalBandit
from envs.paper.bimodal_bandit import BimodalBanditParams
from envs.paper.bimodal_bandit import bimodal_reward
from envs.paper.bimodal_bandit import smoothed_reward
from envs.paper.chain_mdp import ChainMDP
from envs.paper.chain_mdp import ChainMDPParams
from envs.paper.combinatorial_bandit import CombinatorialBandit
from envs.paper.combinatorial_bandit import CombinatorialBanditParams
from envs.paper.deep_sea import DeepSea
from envs.paper.deep_sea import DeepSeaParams
from envs.paper.hand_mass import HandMass
from envs.paper.hand_mass import HandMassContinuous
from envs.paper.hand_mass import HandMassParams
from envs.paper.hand_mass import hand_mass_controller
