"""Small tasks from the seed papers: RPG's Hand Mass, DirPG's DeepSea and spanning-tree bandit, Smoothie's bimodal bandit, the tutorial's chain MDP."""
from scg.envs.paper.bimodal_bandit import BimodalBandit
from scg.envs.paper.bimodal_bandit import BimodalBanditParams
from scg.envs.paper.bimodal_bandit import bimodal_reward
from scg.envs.paper.bimodal_bandit import smoothed_reward
from scg.envs.paper.chain_mdp import ChainMDP
from scg.envs.paper.chain_mdp import ChainMDPParams
from scg.envs.paper.combinatorial_bandit import CombinatorialBandit
from scg.envs.paper.combinatorial_bandit import CombinatorialBanditParams
from scg.envs.paper.deep_sea import DeepSea
from scg.envs.paper.deep_sea import DeepSeaParams
from scg.envs.paper.hand_mass import HandMass
from scg.envs.paper.hand_mass import HandMassContinuous
from scg.envs.paper.hand_mass import HandMassParams
from scg.envs.paper.hand_mass import hand_mass_controller
