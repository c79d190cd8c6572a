"""imagegen.gan: the DF-GAN text-to-image baseline (Tao et al. 2022).

`Generator` / `Discriminator` (networks.py), `GANLoss` with phases D and G (losses.py), the MA-GP
and R1 penalties (regularizers.py), `DiffAugment` (augment.py) and `sample_z` with truncation
(noise.py). See docs/gan.md.
"""

from imagegen.gan.augment import DiffAugment
from imagegen.gan.losses import LOGIT_LOSSES, PHASES, GANLoss, mismatched_text
from imagegen.gan.networks import Discriminator, Generator, count_parameters
from imagegen.gan.noise import UNTRUNCATED, sample_z
from imagegen.gan.regularizers import ma_gp, r1_penalty

__all__ = [
    "LOGIT_LOSSES",
    "PHASES",
    "UNTRUNCATED",
    "DiffAugment",
    "Discriminator",
    "GANLoss",
    "Generator",
    "count_parameters",
    "ma_gp",
    "mismatched_text",
    "r1_penalty",
    "sample_z",
]
