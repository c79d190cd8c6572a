"""Assemble what a run trains on: dataset, filled text-embedding cache, objective.

The text encoder runs once, before training, over every caption the dataset can produce (plus the
null prompt "" and the sample-grid prompts); training then only looks embeddings up in the cache.
That is the fix for imagen-pytorch's T5-inside-the-data-loader slowness (#261, #317).
"""

from __future__ import annotations

import logging

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from imagegen import factory
from imagegen.config import RunConfig
from imagegen.training.objectives import DiffusionObjective

log = logging.getLogger("imagegen.train")

OBJECTIVES = ("diffusion", "gan", "cascade", "clip", "prior", "decoder")


def build_train_dataset(cfg: RunConfig):
    return factory.build_dataset(cfg.data)  # the config was validated at load (config.validate)


def dataset_captions(dataset) -> list[str]:
    """Every caption of the dataset, in first-seen order, without decoding images."""
    return list(dict.fromkeys(dataset.caption(i) for i in range(len(dataset))))


def build_text_cache(cfg: RunConfig, dataset, accelerator: Accelerator):
    """Open the run's embedding cache, encoding missing captions on the main process first.

    A CLIP run learns its own text tower: its "cache" is the CLIP's tokenizer (captions -> ids)."""
    if cfg.train.objective == "clip":
        return factory.build_clip_tokenizer(cfg.clip)
    captions = ["", *cfg.train.sample_prompts, *dataset_captions(dataset)]
    shared: list = [None]
    if accelerator.is_main_process:
        encoder = factory.build_text_encoder(cfg.text, device=accelerator.device)
        cache = factory.open_text_cache(cfg.text, encoder.identity)
        added = cache.build(captions, encoder, batch_size=cfg.text.batch_size)
        log.info("text cache %s: %d captions, %d newly encoded", cfg.text.cache_dir, len(cache), added)
        shared = [encoder.identity]
        del encoder  # training never runs the encoder
    broadcast_object_list(shared)  # also a barrier: the cache is complete on disk after it
    if not accelerator.is_main_process:
        cache = factory.open_text_cache(cfg.text, shared[0])
    return cache


def build_stage_objective(cfg: RunConfig, text_dim: int):
    """One diffusion stage: text-to-image, or super-resolution when model.lowres_cond."""
    from imagegen.training.objectives import SuperResObjective

    unet = factory.build_unet(cfg.model, text_dim, prediction=cfg.diffusion.prediction)
    diffusion = factory.build_diffusion(cfg.diffusion)
    loss = factory.build_diffusion_loss(cfg.diffusion, diffusion)
    kind = SuperResObjective if cfg.model.lowres_cond else DiffusionObjective
    return kind(cfg, unet, diffusion, loss)


def build_objective(cfg: RunConfig, text_dim: int):
    if cfg.train.objective == "diffusion":
        return build_stage_objective(cfg, text_dim)
    if cfg.train.objective == "cascade":
        from imagegen.config import stage_run_config
        from imagegen.training.objectives.cascade import CascadeObjective

        stages = {
            s.stage: build_stage_objective(stage_run_config(cfg, s), text_dim) for s in cfg.cascade.stages
        }
        return CascadeObjective(cfg, stages)
    if cfg.train.objective == "clip":
        from imagegen.training.objectives.clip import ClipObjective

        tokens = factory.build_clip_tokenizer(cfg.clip)
        return ClipObjective(cfg, factory.build_clip(cfg.clip, tokens), tokens)
    if cfg.train.objective in ("prior", "decoder"):
        return build_unclip_objective(cfg, text_dim)
    if cfg.train.objective == "gan":
        from imagegen.training.objectives.gan import GANObjective

        generator_net, discriminator_net = factory.build_gan(cfg.gan, text_dim, cfg.gan.image_size)
        return GANObjective(cfg, generator_net, discriminator_net)
    raise ValueError(
        f"train.objective: unknown objective {cfg.train.objective!r}; allowed: {', '.join(OBJECTIVES)}"
    )


def build_unclip_objective(cfg: RunConfig, text_dim: int):
    """unCLIP's prior or decoder, tied to the frozen CLIP in unclip.clip (a prior's text encoder
    is that CLIP's text tower, so text_dim must be its width; a decoder has its own, like GLIDE's)."""
    from imagegen.clip import FrozenClip
    from imagegen.training.objectives.unclip import DecoderObjective, PriorObjective, check_text_width

    clip = FrozenClip(cfg.unclip.clip)
    diffusion = factory.build_diffusion(cfg.diffusion)
    loss = factory.build_diffusion_loss(cfg.diffusion, diffusion)
    if cfg.train.objective == "prior":
        check_text_width(clip, text_dim, cfg.train.objective)
        prior = factory.build_prior(cfg, clip.embed_dim, clip.text_width)
        return PriorObjective(cfg, prior, diffusion, loss, clip)
    unet = factory.build_unet(cfg.model, text_dim, prediction=cfg.diffusion.prediction)
    return DecoderObjective(cfg, unet, diffusion, loss, clip)
