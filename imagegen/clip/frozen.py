"""A trained CLIP held frozen by the stages tied to it (unCLIP's prior and decoder, their pipeline)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from imagegen.clip.model import embed_images, embed_texts, load_clip, project_text
from imagegen.clip.tokens import CaptionTokenizer


class FrozenClip:
    """The run's CLIP, frozen, moved to the batch's device on first use; never in `networks`."""

    def __init__(self, folder: str | Path, argument: str = "unclip.clip"):
        self.folder = Path(folder).expanduser()
        try:
            self.model, tokenizer = load_clip(self.folder)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(f"{argument}: {error}") from None
        self.model.requires_grad_(False)
        self.embed_dim = int(self.model.config.projection_dim)
        self.text_width = int(self.model.config.text_config.hidden_size)
        self.image_size = int(self.model.config.vision_config.image_size)
        max_length = int(self.model.config.text_config.max_position_embeddings)
        self.tokens = CaptionTokenizer(tokenizer, max_length, name=str(self.folder))

    def _on(self, device: torch.device) -> nn.Module:
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return self.model

    @torch.no_grad()
    def image_embeds(self, images: torch.Tensor) -> torch.Tensor:
        """Unit z_i [B, E] float32 of images [B, 3, H, W] in [-1, 1] (resized to the CLIP's side)."""
        if images.shape[-1] != self.image_size:
            images = nn.functional.interpolate(images.float(), size=self.image_size, mode="area")
        with torch.autocast(device_type=images.device.type, enabled=False):
            return embed_images(self._on(images.device), images.float())

    @torch.no_grad()
    def text_embeds(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unit z_t [B, E] float32 from the cached pooled text states [B, text_width]."""
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            return project_text(self._on(pooled.device), pooled.float())

    @torch.no_grad()
    def caption_embeds(self, captions: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """Unit z_t [B, E] float32 of captions, through the CLIP's own tokenizer and text tower."""
        device = torch.device(device)
        tokens = self.tokens(captions).to(device)
        with torch.autocast(device_type=device.type, enabled=False):
            return embed_texts(self._on(device), tokens)
