"""An unCLIP folder as a pipeline: caption -> CLIP text embedding -> prior -> z_i -> decoder.

    pipe = imagegen.load_pipeline("runs/shapes-unclip")           # a folder with unclip.json
    images = pipe("a red circle", guidance_scale=3.0, seed=0)      # list[PIL.Image]
    similar = pipe.variations(images[0], num_images_per_image=4)    # same z_i, new pixels
    strip = pipe.interpolate(image_a, image_b, steps=5)             # slerp in CLIP image space
    edit = pipe.text_diff(image, "a blue circle", base_prompt="a red circle")  # unCLIP §3.3
    small = pipe("a red circle", stop_after="decoder")              # skip the upsamplers, if any

Ramesh et al. 2022: the prior samples the CLIP image embedding z_i a caption implies
(`prior.num_candidates` draws, the one nearest z_t kept), the decoder draws an image from z_i and
the caption. `image_embed_source` picks what the decoder is given (unCLIP §5.1's ablation):
"prior" (the default), "text" (z_t used as if it were z_i) or "none" (the caption only, z_i zero).
Variations encode an image with the CLIP's image tower and decode that z_i with the null caption
under different seeds; interpolation decodes slerp(z_a, z_b, k / (steps - 1)) from one x_T.
A folder with upsamplers runs them after the decoder, as a cascade runs its super-resolution
stages (`imagegen.pipelines.cascade`): each gets the previous image noised at its `aug_level` and
the caption (the null caption for variations and interpolations without a prompt), upsampler i
sampling with its own generator seeded `seed + 1 + i`; `stop_after` names the last stage to run
("decoder" or an upsampler). Every argument is checked before any network runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from imagegen import factory
from imagegen.cascade.manifest import StageEntry
from imagegen.cascade.unclip import UPSAMPLER_DIR, clip_fingerprint, read_unclip, upsampler_entries
from imagegen.clip import FrozenClip
from imagegen.config import RunConfig, SampleConfig, read_saved_config
from imagegen.diffusion import NonFiniteOutputError, sample_stage
from imagegen.diffusion.embeddings import prior_condition, sample_decoder, sample_image_embeds, slerp
from imagegen.pipelines.base import (
    MAX_IMAGES_PER_CALL,
    check_count,
    check_guidance,
    check_images,
    check_output_type,
    check_sampler,
    check_seed,
    check_thresholding,
    make_generator,
    normalize_prompts,
    repeat_negatives,
    resolve_device,
    sample_batches,
    to_output,
)
from imagegen.pipelines.cascade import LoadedStage, load_stage, override_settings
from imagegen.pipelines.unclip_images import check_source_images

IMAGE_EMBED_SOURCES = ("prior", "text", "none")
MAX_INTERPOLATION_STEPS = 64
TEXT_KEYS = ("encoder", "name_or_path", "max_length")  # what an upsampler must share with the decoder


class UnclipPipeline:
    """CLIP + diffusion prior + decoder from one unCLIP folder (`imagegen.cascade.unclip`)."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None):
        folder = Path(folder)
        manifest = read_unclip(folder)
        if clip_fingerprint(folder / "clip") != manifest.get("clip_fingerprint"):
            raise ValueError(
                f"unCLIP folder {folder}: clip/ is not the CLIP the prior and decoder were trained with "
                "(its weights fingerprint differs from unclip.json's clip_fingerprint)"
            )
        self.checkpoint = folder
        self.device = resolve_device(device)
        self.prior_cfg: RunConfig = read_saved_config(folder / "prior" / "config.yaml")
        self.decoder_cfg: RunConfig = read_saved_config(folder / "decoder" / "config.yaml")
        entries = self._checked_upsamplers(folder, manifest)  # before any weights load
        self.clip = FrozenClip(folder / "clip", argument="model")
        self.clip.model.to(self.device)
        # the decoder's caption path is its own text encoder (MiniLM by default, like GLIDE's in
        # unCLIP); the prior reads captions through the CLIP's text tower, kept in the folder
        self.encoder = factory.build_text_encoder(self.decoder_cfg.text, device=self.device)
        clip_text = dataclasses.replace(
            self.prior_cfg.text, encoder="clip", name_or_path=str(folder / "clip")
        )
        self.clip_text = factory.build_text_encoder(clip_text, device=self.device)
        self.prior = factory.load_prior(folder / "prior" / "ema" / "prior", self.device)
        self.decoder = factory.load_unet(folder / "decoder" / "ema" / "model", self.device)
        factory.check_prediction(self.decoder, self.decoder_cfg.diffusion, folder / "decoder")
        self._check_widths(folder)
        self.prior_diffusion = factory.build_diffusion(self.prior_cfg.diffusion)
        self.decoder_diffusion = factory.build_diffusion(self.decoder_cfg.diffusion)
        self.upsamplers = [self._load_upsampler(folder, entry) for entry in entries]

    def _checked_upsamplers(self, folder: Path, manifest: dict[str, Any]) -> list[StageEntry]:
        """The manifest's upsampler rows, their sampling values checked as a cascade checks its
        stages' (a folder is untrusted input) and the first taking the decoder's side."""
        entries = upsampler_entries(manifest, folder / "unclip.json")
        side = self.decoder_cfg.model.image_size
        if entries and entries[0].lowres_size != side:
            raise ValueError(
                f"unCLIP folder {folder}: upsampler {entries[0].name!r} takes {entries[0].lowres_size} px "
                f"images but the decoder draws {side} px"
            )
        where = f"unCLIP folder {folder}: upsamplers"
        return [
            dataclasses.replace(
                entry, sample=override_settings(entry.sample, {}, f"{where}[{i}] ({entry.name})")
            )
            for i, entry in enumerate(entries)
        ]

    def _load_upsampler(self, folder: Path, entry: StageEntry) -> LoadedStage:
        """An upsampler's U-Net, checked against the manifest and the decoder (ValueError)."""
        stage = load_stage(folder / UPSAMPLER_DIR / entry.name, entry, self.device)
        cfg, model = stage.cfg, stage.model
        where = f"unCLIP folder {folder}: upsampler {entry.name!r}"
        if not model.config.lowres_cond or int(model.config.image_size) != entry.resolution:
            raise ValueError(
                f"{where}: its model (lowres_cond={model.config.lowres_cond}, image_size "
                f"{model.config.image_size}) is not the {entry.resolution} px super-resolution stage the "
                "manifest lists"
            )
        differing = [k for k in TEXT_KEYS if getattr(cfg.text, k) != getattr(self.decoder_cfg.text, k)]
        if differing:
            raise ValueError(
                f"{where} reads captions with another text encoder than the decoder's (differing: "
                f"{', '.join(f'text.{k}' for k in differing)})"
            )
        return stage

    def _check_widths(self, folder: Path) -> None:
        """The CLIP's embedding width must be the prior's and the decoder's (ValueError naming both)."""
        widths = {
            "clip": self.clip.embed_dim,
            "prior": int(self.prior.config.embed_dim),
            "decoder": int(self.decoder.config.image_embed_dim),
        }
        if len(set(widths.values())) != 1:
            raise ValueError(
                f"unCLIP folder {folder}: embedding widths disagree ({widths}); the prior and the "
                "decoder must be trained on this CLIP's embeddings"
            )

    def __repr__(self) -> str:
        return f"UnclipPipeline({self.checkpoint}, stages={self.stage_names}, device={self.device})"

    @property
    def stage_names(self) -> list[str]:
        """ "decoder", then each upsampler's name, lowest resolution first."""
        return ["decoder", *(upsampler.entry.name for upsampler in self.upsamplers)]

    def upsamplers_until(self, stop_after: str | None) -> list[LoadedStage]:
        """The upsamplers to run when stopping after `stop_after` (None: all of them)."""
        if stop_after is None:
            return list(self.upsamplers)
        if stop_after not in self.stage_names:
            raise ValueError(f"stop_after: unknown stage {stop_after!r}; stages: {self.stage_names}")
        return self.upsamplers[: self.stage_names.index(stop_after)]

    @torch.no_grad()
    def upsample(
        self,
        images: torch.Tensor,
        prompts: list[str],
        upsamplers: list[LoadedStage],
        generators: list[torch.Generator],
        negatives: list[str] | None = None,
    ) -> torch.Tensor:
        """The decoder's images [B, 3, S, S] through `upsamplers` in turn (each with its generator),
        conditioned on `prompts` ("" = the null caption) -> [B, 3, R, R] in [-1, 1]."""
        if not upsamplers:
            return images
        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives or [""]).to(self.device)
        for upsampler, generator in zip(upsamplers, generators):
            try:
                images = sample_stage(
                    upsampler.model,
                    upsampler.diffusion,
                    upsampler.entry.sample,
                    text,
                    null,
                    upsampler.entry.resolution,
                    generator,
                    lowres=images,
                )
            except NonFiniteOutputError as error:
                raise NonFiniteOutputError(
                    f"upsampler {upsampler.entry.name} of {self.checkpoint}: {error}"
                ) from None
        return images

    def upsampler_generators(self, seed: int | None, upsamplers: list[LoadedStage]) -> list[torch.Generator]:
        """Upsampler i samples from its own generator, seeded seed + 1 + i (random for seed None)."""
        base = seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
        return [make_generator((base + 1 + i) % 2**63, self.device) for i in range(len(upsamplers))]

    # -- settings ---------------------------------------------------------------------------------

    def _settings(
        self,
        base: SampleConfig,
        guidance_scale: float | None,
        num_steps: int | None,
        sampler: str | None,
        thresholding: str | None = None,
        num_timesteps: int = 1000,
    ) -> SampleConfig:
        given = {
            "guidance_scale": None if guidance_scale is None else check_guidance(guidance_scale),
            "num_steps": None
            if num_steps is None
            else check_count(num_steps, "num_steps", limit=num_timesteps),
            "sampler": None if sampler is None else check_sampler(sampler),
            "thresholding": None if thresholding is None else check_thresholding(thresholding),
        }
        return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})

    def decoder_settings(self, guidance_scale=None, num_steps=None, sampler=None, thresholding=None):
        timesteps = self.decoder_diffusion.num_timesteps
        return self._settings(
            self.decoder_cfg.sample, guidance_scale, num_steps, sampler, thresholding, timesteps
        )

    def prior_settings(self, guidance_scale=None, num_steps=None):
        timesteps = self.prior_diffusion.num_timesteps
        return self._settings(self.prior_cfg.sample, guidance_scale, num_steps, None, None, timesteps)

    # -- embeddings -------------------------------------------------------------------------------

    @torch.no_grad()
    def text_embeds(self, prompts: list[str]) -> torch.Tensor:
        """Unit z_t [B, E] of prompts."""
        return self.clip.text_embeds(self.clip_text.encode(prompts).to(self.device).pooled)

    @torch.no_grad()
    def image_embeds(self, images: Any, name: str = "images") -> torch.Tensor:
        """Unit z_i [N, E] of images (PIL, a list of them, or a tensor [N, 3, S, S] in [-1, 1])."""
        return self.clip.image_embeds(self.source_images(images, name).to(self.device))

    @torch.no_grad()
    def prior_embeds(
        self,
        prompts: list[str],
        generator: torch.Generator | None,
        settings: SampleConfig | None = None,
        negatives: list[str] | None = None,
    ) -> torch.Tensor:
        """Unit z_i [B, E] sampled by the prior for prompts (guided against the null caption)."""
        settings = settings or self.prior_settings()
        text = self.clip_text.encode(prompts).to(self.device)
        null = self.clip_text.encode(negatives or [""]).to(self.device)
        z_t = self.clip.text_embeds(text.pooled)
        cond = prior_condition(text.tokens, text.mask, z_t)
        null_cond = prior_condition(null.tokens, null.mask, self.clip.text_embeds(null.pooled))
        return sample_image_embeds(
            self.prior,
            self.prior_diffusion,
            settings,
            cond,
            null_cond,
            z_t,
            generator,
            num_candidates=self.prior_cfg.prior.num_candidates,
        )

    # -- generation -------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        seed: int | None = 0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        thresholding: str | None = None,
        output_type: str = "pil",
        prior_guidance_scale: float | None = None,
        prior_num_steps: int | None = None,
        image_embed_source: str = "prior",
        stop_after: str | None = None,
    ) -> list[Image.Image] | torch.Tensor:
        """Images for `prompt`. guidance_scale / num_steps / sampler / thresholding are the
        decoder's (None: its run's `sample` section); prior_guidance_scale / prior_num_steps the
        prior's. image_embed_source: "prior" | "text" (z_t as z_i) | "none" (caption only).
        stop_after: "decoder" or an upsampler's name (None: every stage); upsamplers sample with
        their own defaults."""
        prompts = normalize_prompts(prompt)
        check_images(prompts, num_images_per_prompt)
        seed = check_seed(seed)
        check_output_type(output_type)
        upsamplers = self.upsamplers_until(stop_after)
        if image_embed_source not in IMAGE_EMBED_SOURCES:
            raise ValueError(
                f"image_embed_source: {image_embed_source!r}; allowed: {', '.join(IMAGE_EMBED_SOURCES)}"
            )
        settings = self.decoder_settings(guidance_scale, num_steps, sampler, thresholding)
        prior_settings = self.prior_settings(prior_guidance_scale, prior_num_steps)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = repeat_negatives(negative_prompt, len(prompts), num_images_per_prompt)
        generator = make_generator(seed, self.device)
        sr_generators = self.upsampler_generators(seed, upsamplers)
        images = []
        for piece in sample_batches(len(prompts), "sampling unclip"):
            batch, batch_negatives = prompts[piece], negatives if len(negatives) == 1 else negatives[piece]
            if image_embed_source == "prior":
                z_i = self.prior_embeds(batch, generator, prior_settings, batch_negatives)
            elif image_embed_source == "text":
                z_i = self.text_embeds(batch)
            else:
                z_i = torch.zeros(len(batch), self.clip.embed_dim, device=self.device)
            drawn = self.decode(z_i, batch, generator, settings, batch_negatives)
            images.append(self.upsample(drawn, batch, upsamplers, sr_generators, batch_negatives))
        return to_output(torch.cat(images), output_type)

    @torch.no_grad()
    def decode(
        self,
        image_embeds: torch.Tensor,
        prompts: list[str],
        generator: torch.Generator | None,
        settings: SampleConfig | None = None,
        negatives: list[str] | None = None,
    ) -> torch.Tensor:
        """The decoder: unit z_i [B, E] and B captions ("" for none) -> [B, 3, H, W] in [-1, 1]."""
        settings = settings or self.decoder_settings()
        text = self.encoder.encode(prompts).to(self.device)
        null = self.encoder.encode(negatives or [""]).to(self.device)
        model = self.decoder_cfg.model
        return sample_decoder(
            self.decoder,
            self.decoder_diffusion,
            settings,
            text,
            null,
            image_embeds.to(self.device),
            model.image_size,
            generator,
            channels=model.out_channels,
        )

    @torch.no_grad()
    def variations(
        self,
        images: Any,
        num_images_per_image: int = 4,
        seed: int | None = 0,
        prompt: str = "",
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = None,
        output_type: str = "pil",
        stop_after: str | None = None,
    ) -> list[Image.Image] | torch.Tensor:
        """Images that share each source image's CLIP embedding z_i (unCLIP §3.1): the decoder
        from that z_i (and `prompt`, "" = none) under different noise, then the upsamplers up to
        `stop_after`; image-major output."""
        check_count(num_images_per_image, "num_images_per_image")
        seed = check_seed(seed)
        check_output_type(output_type)
        upsamplers = self.upsamplers_until(stop_after)
        settings = self.decoder_settings(guidance_scale, num_steps, sampler)
        source = self.source_images(images, "images")
        if len(source) * num_images_per_image > MAX_IMAGES_PER_CALL:
            raise ValueError(
                f"num_images_per_image: {len(source)} images x {num_images_per_image} is more than the "
                f"{MAX_IMAGES_PER_CALL} allowed per call"
            )
        prompt = normalize_prompts(prompt, "prompt")[0]
        z_i = self.clip.image_embeds(source.to(self.device)).repeat_interleave(num_images_per_image, 0)
        generator = make_generator(seed, self.device)
        sr_generators = self.upsampler_generators(seed, upsamplers)
        out = []
        for piece in sample_batches(len(z_i), "variations"):
            prompts = [prompt] * len(z_i[piece])
            drawn = self.decode(z_i[piece], prompts, generator, settings)
            out.append(self.upsample(drawn, prompts, upsamplers, sr_generators))
        return to_output(torch.cat(out), output_type)

    @torch.no_grad()
    def interpolate(
        self,
        image_a: Any,
        image_b: Any,
        steps: int = 5,
        seed: int | None = 0,
        prompt: str = "",
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = "ddim",
        output_type: str = "pil",
        stop_after: str | None = None,
    ) -> list[Image.Image] | torch.Tensor:
        """`steps` images decoded from slerp(z_a, z_b, k / (steps - 1)), k = 0..steps-1, each from
        the same seed (unCLIP §3.2 fixes x_T; deterministic DDIM by default) -> a strip a ... b;
        each frame's upsamplers (up to `stop_after`) share one seed too."""
        check_count(steps, "steps", limit=MAX_INTERPOLATION_STEPS)
        if steps < 2:
            raise ValueError(f"steps: an interpolation needs at least 2 images (the two ends), got {steps}")
        seed = 0 if seed is None else check_seed(seed)
        check_output_type(output_type)
        upsamplers = self.upsamplers_until(stop_after)
        settings = self.decoder_settings(guidance_scale, num_steps, sampler)
        prompt = normalize_prompts(prompt, "prompt")[0]
        z_a = self.image_embeds(image_a, "image_a")
        z_b = self.image_embeds(image_b, "image_b")
        if len(z_a) != 1 or len(z_b) != 1:
            raise ValueError(f"image_a, image_b: one image each; got {len(z_a)} and {len(z_b)}")
        weights = [k / (steps - 1) for k in range(steps)]
        frames = self._slerp_frames(z_a, z_b, weights, prompt, seed, settings, upsamplers)
        return to_output(frames, output_type)

    @torch.no_grad()
    def text_diff(
        self,
        image: Any,
        prompt: str,
        base_prompt: str = "",
        steps: int = 5,
        max_weight: float = 0.5,
        seed: int | None = 0,
        guidance_scale: float | None = None,
        num_steps: int | None = None,
        sampler: str | None = "ddim",
        output_type: str = "pil",
        stop_after: str | None = None,
    ) -> list[Image.Image] | torch.Tensor:
        """unCLIP §3.3's text diff: `image` edited toward `prompt`. z_d = normalise(z_t(prompt) -
        z_t(base_prompt)) is the caption change as a direction in CLIP space; frame k decodes
        slerp(z_i, z_d, max_weight * k / (steps - 1)) from one seed (the paper inverts x_T with
        DDIM; a fixed seed here), frame 0 being the image's own z_i. The paper stops at 0.5."""
        check_count(steps, "steps", limit=MAX_INTERPOLATION_STEPS)
        if steps < 2:
            raise ValueError(
                f"steps: a text diff needs at least 2 images (the start and the end), got {steps}"
            )
        number = isinstance(max_weight, (int, float)) and not isinstance(max_weight, bool)
        if not number or not 0 < max_weight <= 1:
            raise ValueError(f"max_weight: the slerp weight of the last frame, in (0, 1]; got {max_weight!r}")
        seed = 0 if seed is None else check_seed(seed)
        check_output_type(output_type)
        settings = self.decoder_settings(guidance_scale, num_steps, sampler)
        upsamplers = self.upsamplers_until(stop_after)
        prompt = normalize_prompts(prompt, "prompt")[0]
        base_prompt = normalize_prompts(base_prompt, "base_prompt")[0]
        z_i = self.image_embeds(image, "image")
        if len(z_i) != 1:
            raise ValueError(f"image: one image; got {len(z_i)}")
        z_t = self.text_embeds([prompt, base_prompt])
        change = z_t[:1] - z_t[1:]
        if float(change.norm()) < 1e-6:
            raise ValueError(
                f"prompt, base_prompt: {prompt!r} and {base_prompt!r} have the same CLIP text embedding; "
                "a text diff needs two captions that differ"
            )
        z_d = torch.nn.functional.normalize(change, dim=-1)
        weights = [max_weight * k / (steps - 1) for k in range(steps)]
        frames = self._slerp_frames(z_i, z_d, weights, "", seed, settings, upsamplers)
        return to_output(frames, output_type)

    def _slerp_frames(
        self,
        start: torch.Tensor,
        end: torch.Tensor,
        weights: list[float],
        prompt: str,
        seed: int,
        settings: SampleConfig,
        upsamplers: list[LoadedStage],
    ) -> torch.Tensor:
        """One frame per weight: slerp(start, end, weight) [1, E] decoded with `prompt`, every
        frame from the same seed (decoder and upsamplers alike) -> [len(weights), 3, R, R]."""
        frames = []
        for weight in weights:
            drawn = self.decode(
                slerp(start, end, weight), [prompt], make_generator(seed, self.device), settings
            )
            frames.append(
                self.upsample(drawn, [prompt], upsamplers, self.upsampler_generators(seed, upsamplers))
            )
        return torch.cat(frames)

    def source_images(self, images: Any, name: str) -> torch.Tensor:
        """Checked images -> float32 [N, 3, S, S] in [-1, 1] on the CPU, S a side this unCLIP
        draws (the decoder's or an upsampler's; the CLIP resizes to its own side when they differ).

        PIL images (any supported mode, converted to RGB; transparency on white), a list of them,
        or a float tensor [3, S, S] / [N, 3, S, S] in [-1, 1]. ValueError naming `name` otherwise.
        """
        sides = sorted({self.decoder_cfg.model.image_size, *(u.entry.resolution for u in self.upsamplers)})
        return check_source_images(images, name, sides)
