"""Text-conditional GAN objectives with phases (`D`, `G`), so the GAN shares one training loop.

Owns `GANLoss` and the per-sample logit losses. Written on raw logits l = D(x, e):

- `nonsaturating` (Goodfellow et al. 2014; the documents' objective
  L_D = -log D(x) - log(1 - D(G(z))), L_G = -log D(G(z)) with D = sigmoid(l)):
  real: softplus(-l), fake: softplus(l), generator: softplus(-l);
- `hinge` (DF-GAN, Tao et al. 2022): real: relu(1 - l), fake: relu(1 + l), generator: -l.

Both add DF-GAN's mismatched-text negatives: a real image paired with another sample's caption
(the batch's captions rolled by one) is a negative for D, so D must read the text. With w the
mismatch weight,

    L_D = E[real(l_real)] + (E[fake(l_fake)] + w * E[fake(l_mismatch)]) / (1 + w)  (+ penalties)
    L_G = E[generator(l_fake)]

w = 1 is DF-GAN's `errD_real + (errD_fake + errD_mis) / 2`; w = 0 is the plain GAN. Rolled pairs
whose caption embedding equals the true one (duplicate captions in a batch) are not negatives and
are left out of the mismatch mean. Penalties on real, matching pairs: MA-GP (DF-GAN) and R1.
Optionally (`contrastive_weight` > 0), XMC-GAN's sentence-image contrastive term on D's scores of
each image against every caption of the batch is added to L_D (real images) and L_G (samples).
The phase structure follows StyleGAN-T's `training/loss.py` (Sauer et al. 2023); the trainer
owns backward, optimizers and `requires_grad` toggling (D frozen in the G phase saves compute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imagegen.config import GANConfig
from imagegen.gan.augment import DiffAugment
from imagegen.gan.regularizers import ma_gp, r1_penalty
from imagegen.utils.checks import check_choice

PHASES = ("D", "G")

# --------------------------------------------------------------------------------------------
# Per-sample terms on logits (no reduction)
# --------------------------------------------------------------------------------------------


def hinge_real(logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - logits)


def hinge_fake(logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 + logits)


def hinge_generator(logits: torch.Tensor) -> torch.Tensor:
    return -logits


def nonsaturating_real(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(l) = softplus(-l)."""
    return F.softplus(-logits)


def nonsaturating_fake(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(l)) = softplus(l)."""
    return F.softplus(logits)


@dataclass(frozen=True)
class LogitLoss:
    """A GAN formulation as three per-sample functions of D's logits."""

    real: Callable[[torch.Tensor], torch.Tensor]  # D's loss on positives (real, matching caption)
    fake: Callable[[torch.Tensor], torch.Tensor]  # D's loss on negatives (generated or mismatched)
    generator: Callable[[torch.Tensor], torch.Tensor]  # G's loss on D(G(z, e), e)


LOGIT_LOSSES = {
    "hinge": LogitLoss(hinge_real, hinge_fake, hinge_generator),
    "nonsaturating": LogitLoss(nonsaturating_real, nonsaturating_fake, nonsaturating_real),
}


def mismatched_text(text_pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions rolled by one along the batch: image i gets caption i - 1.

    text_pooled [B, T] -> (mismatched [B, T], valid [B] bool); valid is False where the rolled
    embedding equals the true one (same caption twice in the batch, or B = 1).
    """
    rolled = text_pooled.roll(1, dims=0)
    valid = (rolled != text_pooled).any(dim=1)
    return rolled, valid


def caption_contrastive(scores: torch.Tensor, text_pooled: torch.Tensor) -> torch.Tensor:
    """Sentence-image contrastive loss on D's matching scores (adapted from XMC-GAN, Zhang et al.
    2021, Eq. 2, which uses cosine similarities of separate embeddings over a temperature; here the
    scores are D's raw logits, and with the projection head only their caption term (V e) . h
    differs between captions, since w . h + b cancels in the softmax).

    scores [B, B]: D's logit of image i against caption j at [j, i] (captions first, as
    `Discriminator.head` returns them); text_pooled [B, T]. Each image's caption must win a softmax
    over the batch's captions: mean_i -log softmax_j(scores[j, i])[i]. A caption identical to image
    i's own (duplicates in the batch) is left out of its softmax, since it is not a negative.
    """
    batch = scores.shape[-1]
    same = (text_pooled[:, None, :] == text_pooled[None, :, :]).all(dim=-1)  # [B, B]
    own = torch.eye(batch, dtype=torch.bool, device=scores.device)
    per_image = scores.transpose(0, 1).float().masked_fill(same & ~own, float("-inf"))  # [B_img, B_cap]
    return F.cross_entropy(per_image, torch.arange(batch, device=scores.device))


def _all_captions(text_pooled: torch.Tensor) -> torch.Tensor:
    """[B, T] -> [B, B, T] with [j, i] = caption j: every caption of the batch for every image."""
    return text_pooled[:, None, :].expand(-1, text_pooled.shape[0], -1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values[mask]; 0 when the mask is empty (no host sync)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# The phased loss
# --------------------------------------------------------------------------------------------


class GANLoss:
    """`loss(phase, generator_net, discriminator_net, real, text_pooled, z, rng) -> (loss, stats)`.

    phase "D": real images [B, 3, H, W] in [-1, 1], their pooled captions [B, T] and noise z
    [B, z_dim] -> L_D plus penalties (G runs without grad). phase "G": -> L_G (`real` unused).
    `stats` holds detached scalars for logging. `rng` drives DiffAugment (None = global RNG).
    """

    phases = PHASES

    def __init__(self, cfg: GANConfig):
        check_choice("gan.loss", cfg.loss, sorted(LOGIT_LOSSES))
        for name in ("mismatch_weight", "ma_gp_weight", "r1_weight", "contrastive_weight"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"gan.{name} must be >= 0 (0 turns the term off), got {getattr(cfg, name)}")
        self.logit_loss = LOGIT_LOSSES[cfg.loss]
        self.mismatch_weight = cfg.mismatch_weight
        self.ma_gp_weight, self.ma_gp_power = cfg.ma_gp_weight, cfg.ma_gp_power
        self.r1_weight = cfg.r1_weight
        self.contrastive_weight = cfg.contrastive_weight
        self.augment = DiffAugment(cfg.diffaugment)

    def __call__(
        self,
        phase: str,
        generator_net: nn.Module,
        discriminator_net: nn.Module,
        real: torch.Tensor | None,
        text_pooled: torch.Tensor,
        z: torch.Tensor,
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if phase == "D":
            return self.discriminator_loss(generator_net, discriminator_net, real, text_pooled, z, rng)
        if phase == "G":
            return self.generator_loss(generator_net, discriminator_net, text_pooled, z, rng)
        raise ValueError(f"unknown phase {phase!r}; valid phases: {PHASES}")

    def d_objective(
        self,
        logits_real: torch.Tensor,
        logits_fake: torch.Tensor,
        logits_mismatch: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_D from logits [B] each (`valid` [B] bool masks the mismatch term); no penalties."""
        term_real = self.logit_loss.real(logits_real).mean()
        term_fake = self.logit_loss.fake(logits_fake).mean()
        term_mismatch = _masked_mean(self.logit_loss.fake(logits_mismatch), valid)
        weight = self.mismatch_weight * valid.any().to(term_fake.dtype)  # no valid pair: plain GAN
        loss = term_real + (term_fake + weight * term_mismatch) / (1 + weight)
        return loss, {"D_real": term_real, "D_fake": term_fake, "D_mismatch": term_mismatch}

    def g_objective(self, logits_fake: torch.Tensor) -> torch.Tensor:
        """L_G from logits [B] of D(G(z, e), e)."""
        return self.logit_loss.generator(logits_fake).mean()

    def discriminator_loss(
        self,
        generator_net: nn.Module,
        discriminator_net: nn.Module,
        real: torch.Tensor,
        text_pooled: torch.Tensor,
        z: torch.Tensor,
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Phase D: L_D + MA-GP + R1 (see module docstring). Returns (scalar, stats)."""
        with torch.no_grad():
            fake = generator_net(z, text_pooled)
        # Penalties differentiate the real logits w.r.t. the un-augmented inputs.
        real = real.detach().requires_grad_(self.ma_gp_weight > 0 or self.r1_weight > 0)
        text = text_pooled.detach().requires_grad_(self.ma_gp_weight > 0)
        mismatched, valid = mismatched_text(text.detach())
        # One feature pass per real image scores it against its caption and a wrong one (and,
        # with the contrastive term, against every caption of the batch).
        captions = [text[None], mismatched[None]]
        if self.contrastive_weight > 0:
            captions.append(_all_captions(text.detach()))
        logits_pairs = discriminator_net(self.augment(real, rng), torch.cat(captions))  # [2 (+ B), B]
        logits_real, logits_mismatch = logits_pairs[0], logits_pairs[1]
        logits_fake = discriminator_net(self.augment(fake, rng), text.detach())  # [B]
        loss, stats = self.d_objective(logits_real, logits_fake, logits_mismatch, valid)
        if self.contrastive_weight > 0:
            stats["contrastive"] = caption_contrastive(logits_pairs[2:], text.detach())
            loss = loss + self.contrastive_weight * stats["contrastive"]
        if self.ma_gp_weight > 0:
            stats["ma_gp"] = ma_gp(logits_real, real, text, self.ma_gp_weight, self.ma_gp_power)
            loss = loss + stats["ma_gp"]
        if self.r1_weight > 0:
            stats["r1"] = r1_penalty(logits_real, real, self.r1_weight)
            loss = loss + stats["r1"]
        stats.update(loss_D=loss, logit_real=logits_real.mean(), logit_fake=logits_fake.mean())
        return loss, _detached(stats)

    def generator_loss(
        self,
        generator_net: nn.Module,
        discriminator_net: nn.Module,
        text_pooled: torch.Tensor,
        z: torch.Tensor,
        rng: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Phase G: L_G on D(augment(G(z, e)), e). Returns (scalar, stats)."""
        text = text_pooled.detach()
        captions = [text[None]]
        if self.contrastive_weight > 0:
            captions.append(_all_captions(text))
        fake = self.augment(generator_net(z, text), rng)
        scores = discriminator_net(fake, torch.cat(captions))  # [1 (+ B), B]
        logits_fake = scores[0]
        loss = self.g_objective(logits_fake)
        stats = {"logit_fake": logits_fake.mean()}
        if self.contrastive_weight > 0:
            stats["contrastive"] = caption_contrastive(scores[1:], text)
            loss = loss + self.contrastive_weight * stats["contrastive"]
        return loss, _detached({"loss_G": loss, **stats})


def _detached(stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.detach() for name, value in stats.items()}
