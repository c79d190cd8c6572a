"""A short D/G training of a toy GAN learns to follow a 2-d "caption" (two colours)."""

from __future__ import annotations

import pytest
import torch

from imagegen.config import GANConfig
from imagegen.gan import Discriminator, GANLoss, Generator, sample_z

COLOURS = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])  # caption 0: red, caption 1: blue


def red_minus_blue_gap(generator: Generator) -> float:
    """(red - blue) of G's mean colour for caption 0 minus the same for caption 1; 4 is perfect."""
    z = sample_z(64, generator.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        colours = [generator(z, torch.eye(2)[index].expand(64, 2)).mean(dim=(0, 2, 3)) for index in (0, 1)]
    return ((colours[0][0] - colours[0][2]) - (colours[1][0] - colours[1][2])).item()


@pytest.fixture
def one_thread():
    """Tiny tensors: thread start-up costs more than it buys, worst on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("head", ["concat", "projection"])
def test_sixty_steps_make_the_generator_follow_the_caption(one_thread, head):
    torch.manual_seed(0)
    cfg = GANConfig(
        image_size=8, z_dim=8, gen_channels=[16, 16], disc_channels=[16, 16], loss="hinge", disc_head=head
    )
    generator, discriminator = Generator.from_config(cfg, 2), Discriminator.from_config(cfg, 2)
    loss = GANLoss(cfg)
    optimizers = {
        "D": torch.optim.Adam(discriminator.parameters(), 5e-3, betas=tuple(cfg.betas)),
        "G": torch.optim.Adam(generator.parameters(), 5e-3, betas=tuple(cfg.betas)),
    }
    assert red_minus_blue_gap(generator) == 0.0  # identity fusion: the caption is ignored at init
    for _ in range(60):
        captions = torch.randint(0, 2, (16,))
        text = torch.eye(2)[captions]
        real = COLOURS[captions][:, :, None, None] + 0.05 * torch.randn(16, 3, 8, 8)
        z = torch.randn(16, cfg.z_dim)
        for phase in loss.phases:
            discriminator.requires_grad_(phase == "D")
            value, _ = loss(phase, generator, discriminator, real, text, z)
            optimizers[phase].zero_grad(set_to_none=True)
            value.backward()
            optimizers[phase].step()
    assert red_minus_blue_gap(generator) > 2.0
