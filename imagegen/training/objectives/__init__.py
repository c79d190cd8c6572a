"""Training objectives, one module per family (see base.py for the protocol the trainer calls).

base.py       PhaseSpec, the Objective protocol
diffusion.py  DiffusionObjective (one stage) and SuperResObjective (its low-res hook)
cascade.py    CascadeObjective (every stage of a cascade in one run)
gan.py        GANObjective (phases D and G)
clip.py       ClipObjective (the contrastive phase)
"""

from imagegen.training.objectives.base import Objective, PhaseSpec
from imagegen.training.objectives.diffusion import DiffusionObjective, SuperResObjective

__all__ = ["DiffusionObjective", "Objective", "PhaseSpec", "SuperResObjective"]
