"""RL-I2IT deformable registration (Wang et al., arXiv 2309.13672; SPAC, AAAI'22) and its baselines.

Modules: :mod:`.config` (hyperparameters, decisions D1-D20), :mod:`.env` (the MDP), :mod:`.networks`
(planner, actor, critics), :mod:`.sac` (losses and the update), :mod:`.replay` (buffer), :mod:`.learner`
(rollouts + cadence), :mod:`.trainer` (ignite engine, resume, validation), :mod:`.inference` (test-time
registration), :mod:`.baselines` (identity, VoxelMorph), :mod:`.ants_syn` (ANTs SyN through the optional
antspyx), :mod:`.synthetic` (the section 8.2 task).
"""

from __future__ import annotations

from medi2i.registration.config import RLI2ITConfig, smoke_config
from medi2i.registration.env import RegistrationEnv, kmeans_labels, label_dice
from medi2i.registration.inference import RegistrationResult, register
from medi2i.registration.learner import RLI2ITLearner
from medi2i.registration.replay import ReplayBuffer
from medi2i.registration.sac import Keys, RLI2ITAgent, update

__all__ = [
    "Keys",
    "RLI2ITAgent",
    "RLI2ITConfig",
    "RLI2ITLearner",
    "RegistrationEnv",
    "RegistrationResult",
    "ReplayBuffer",
    "kmeans_labels",
    "label_dice",
    "register",
    "smoke_config",
    "update",
]
