"""The schema: one dataclass per config section, with a comment per field, and `RunConfig`.

Also owns `ConfigError` and the two derived configs a cascade needs: `stage_run_config` (one
stage of a joint run as a run of its own) and `stage_sample_config` (how a stage samples).
No torch import.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    kind: str = "shapes"  # "shapes" (rendered on the fly) | "folder" (captioned image folder)
    resolution: int = 32  # square side in pixels of the images the stage trains on
    seed: int = 0  # shapes: scene i of seed s is always the same scene
    length: int = 20_000  # shapes: samples per epoch (indices 0..length-1)
    scene_kinds: list[str] = field(default_factory=lambda: ["single", "counting", "relation", "list"])
    scene_weights: list[float] = field(default_factory=lambda: [0.4, 0.2, 0.2, 0.2])
    exclude: list[list[str]] = field(default_factory=list)  # (color, shape) pairs never rendered
    path: str = ""  # folder: root holding images + metadata.jsonl / captions.csv / .txt sidecars
    caption_column: str = ""  # folder: caption column/key ("" = auto: text, caption, label)
    image_dir: str = ""  # folder: subfolder the file names are relative to ("" = auto)
    background: str = "white"  # folder: colour RGBA images are composited on (name or #rrggbb)
    hflip: bool = False  # random horizontal flips; off because they break "to the left of"
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class TextConfig:
    encoder: str = "minilm"  # "minilm" (bundled, default) | "t5" | "clip"
    name_or_path: str = ""  # HF name or local folder; "" = the bundled MiniLM folder
    max_length: int = 32  # tokens kept per prompt (longer prompts are truncated, with a warning)
    cache_dir: str = "runs/text-cache"  # embedding cache root (safetensors shards)
    cache_dtype: str = "float16"  # dtype of cached token embeddings: "float16" | "float32"
    batch_size: int = 256  # prompts per encoder forward when filling the cache


@dataclass
class UNetConfig:
    preset: str = ""  # name in presets.UNET_PRESETS; fields below override it
    image_size: int = 32  # side of x_t the model is built for (self-attention levels depend on it)
    in_channels: int = 3
    out_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [64, 128])  # per level
    num_res_blocks: list[int] = field(default_factory=lambda: [1, 2])  # per level (more at low res)
    self_attn: list[bool] = field(default_factory=lambda: [False, True])  # per level
    cross_attn: list[bool] = field(default_factory=lambda: [False, True])  # per level
    head_dim: int = 32  # attention head width
    text_dim: int = 384  # width of the text encoder's token embeddings (checked at build time)
    cond_dim: int = 256  # width of time / pooled-text embeddings and projected text tokens
    dropout: float = 0.0
    lowres_cond: bool = False  # super-resolution stage: concat upsampled low-res image + aug level
    # unCLIP decoder: width E of the CLIP image embedding z_i it is conditioned on (projected into 4
    # context tokens and added to the timestep embedding); 0 = a plain text-conditioned U-Net
    image_embed_dim: int = 0


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"  # "cosine" (squaredcos_cap_v2) | "linear"
    num_timesteps: int = 1000
    prediction: str = "v"  # network target: "eps" | "v" | "x0"
    loss_weighting: str = "min_snr"  # "none" | "min_snr"
    min_snr_gamma: float = 5.0
    # offset noise (Guttenberg 2023; diffusers' --noise_offset): training noise gets a per-image,
    # per-channel constant N(0, noise_offset^2) added, so the model learns to move an image's mean
    # (its background) rather than keep the mean the initial noise implies; 0 = off
    noise_offset: float = 0.0
    # training timesteps: "uniform" over 0..T-1, or "logit_normal": t/T = sigmoid(N(mean, std^2))
    # (Esser et al. 2024, SD3), which puts more of the steps at mid noise, where shapes are decided
    timestep_sampling: str = "uniform"
    timestep_mean: float = 0.0
    timestep_std: float = 1.0
    cond_drop_prob: float = 0.1  # probability a caption is replaced by the null prompt ""


@dataclass
class SampleConfig:
    sampler: str = "dpmpp_2m"  # "ddpm" | "ddim" | "dpmpp_2m" | "dpmpp_2m_sde" | "unipc"
    num_steps: int = 25
    guidance_scale: float = 5.0
    thresholding: str = "dynamic"  # "dynamic" | "static" | "none"
    threshold_percentile: float = 0.995
    # super-resolution: noise level of the low-res input at sampling time, a fraction of
    # num_timesteps (0.2 = timestep 200 of 1000; DeepFloyd IF uses 250 of 1000); 0 = clean input
    aug_level: float = 0.2


@dataclass
class NoiseAugConfig:
    # Noise conditioning augmentation of a super-resolution stage's low-res input (Imagen §2.5):
    # training noises it with q_sample at a level ~ U[0, max_level] (a fraction of num_timesteps)
    # and gives the level to the model; sampling uses sample.aug_level
    max_level: float = 0.5
    enabled: bool = True  # false: the low-res input is always clean and its level 0 (ablation)


@dataclass
class SuperResConfig:
    """Where a super-resolution stage's low-res input comes from in training (read when
    model.lowres_cond is true)."""

    lowres_size: int = 0  # side h = w of the low-res input: the previous stage's resolution
    lowres_source: str = "downsample"  # "downsample" the training image | "render" (Shapes: the scene at h)
    downsample: str = "area"  # "area" (box average) | "bicubic" (antialiased bicubic)
    random_crop: int = 0  # >0: train on random crops of this side; sampling runs at full size (Imagen App. B)


@dataclass
class GANConfig:
    preset: str = ""  # name in presets.GAN_PRESETS; fields below override it
    image_size: int = 32  # side of the generated images (a power of 2 >= 8)
    z_dim: int = 100  # noise width (DF-GAN: 100)
    gen_channels: list[int] = field(default_factory=lambda: [256, 256, 128, 64])  # per res., 4x4 first
    disc_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])  # per res., 4x4 last
    loss: str = "hinge"  # "hinge" (DF-GAN) | "nonsaturating" (the documents' objective)
    mismatch_weight: float = 1.0  # w: L_D = L_real + (L_fake + w * L_mismatch) / (1 + w); 0 = off
    ma_gp_weight: float = 2.0  # DF-GAN MA-GP: weight * mean(||grad_(x, text) D||^power); 0 = off
    ma_gp_power: float = 6.0
    r1_weight: float = 0.0  # R1 gamma: gamma / 2 * mean(||grad_x D||^2) on real pairs; 0 = off
    contrastive_weight: float = 0.0  # XMC-GAN sentence-image contrastive term in L_D and L_G; 0 = off
    output: str = "tanh"  # generator output: "tanh" (DF-GAN) | "linear" (StyleGAN; clamped when sampling)
    disc_head: str = "concat"  # "concat" (DF-GAN) | "projection" (Miyato & Koyama 2018: logit += <V e, h>)
    diffaugment: str = ""  # DiffAugment on every D input, e.g. "color,translation,cutout"; "" = off
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.9])
    ema_decay: float = 0.999  # EMA of G (sampled from)
    truncation: float = 4.0  # sampling: z ~ N(0, I) truncated to |z_i| <= truncation; >= 4 = untruncated


@dataclass
class ClipConfig:
    """A small CLIP (Radford et al. 2021) trained on the run's data (train.objective: clip):
    transformers' CLIPModel, a ViT image tower and a causal text tower, both pre-LN."""

    image_size: int = 32  # side of the images it embeds (must equal data.resolution to train)
    patch_size: int = 4  # ViT patch side in pixels (32 px / 4 = 64 patches + CLS)
    # how pixels become the patch tokens: "patch" (ViT's one strided convolution) | "conv" (early
    # convolutions, Xiao et al. 2021: 3x3 convolutions down to the patch grid; patch_size a power of 2)
    stem: str = "patch"
    # the text tower's token table at step 0: "random" (CLIP's) | "minilm" (the bundled MiniLM's
    # word-piece embeddings, randomly projected to text_width; needs the bundled tokenizer)
    token_init: str = "random"
    vision_width: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 3
    text_heads: int = 4
    max_length: int = 32  # text positions: captions are padded (and truncated) to this many tokens
    embed_dim: int = 128  # width of the joint embedding both towers project to
    tokenizer: str = ""  # local transformers tokenizer folder; "" = the bundled MiniLM's BERT WordPiece
    # initial temperature tau; the learnt logit_scale = ln(1 / tau) is clamped to <= ln 100 (open_clip)
    init_temperature: float = 0.07
    # in-batch pairs sharing a caption: "mask" them out of the softmax denominators (not negatives)
    # | "none" (standard CLIP: an identical caption of another image counts as a negative)
    duplicates: str = "mask"


@dataclass
class UnclipConfig:
    """What unCLIP's prior and decoder runs share (Ramesh et al. 2022; docs/unclip.md)."""

    # the trained CLIP both are tied to: a CLIP run's checkpoint-N/ema/clip folder (also the run's
    # text encoder: text.encoder clip, text.name_or_path the same folder)
    clip: str = ""
    # decoder: probability z_i is replaced by zeros in training (unCLIP: 10%); the caption is
    # dropped independently with diffusion.cond_drop_prob (unCLIP: 50%)
    image_embed_drop_prob: float = 0.1


@dataclass
class PriorConfig:
    """unCLIP's diffusion prior (train.objective: prior): diffusers' PriorTransformer, a causal
    transformer over [caption tokens, z_t, timestep, noised z_i, a learnt query] that predicts
    the CLIP image embedding z_i (diffusion.prediction x0, as unCLIP) from the caption."""

    layers: int = 4
    heads: int = 4
    head_dim: int = 32  # inner width heads * head_dim
    dropout: float = 0.0
    # sampling: embeddings drawn per caption; the one with the highest z_i . z_t is kept (unCLIP §2.2)
    num_candidates: int = 2


@dataclass
class TrainConfig:
    # "diffusion" | "gan" | "cascade" (every cascade.stages network jointly) | "clip" (contrastive)
    # | "prior" (unCLIP's prior: z_t -> z_i) | "decoder" (unCLIP's decoder: z_i + caption -> image)
    objective: str = "diffusion"
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # "cosine" | "constant" (after warm-up)
    max_steps: int = 1000
    max_minutes: float = 0.0  # wall-clock stop; 0 = none
    grad_accum_steps: int = 1
    grad_clip: float = 1.0
    # "auto" (bf16 where the CPU/GPU computes it natively, else fp32: imagegen.nn.precision) |
    # "no" | "bf16" | "fp16"
    mixed_precision: str = "auto"
    ema_max_decay: float = 0.999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    checkpoint_every: int = 500
    keep_last: int = 2
    sample_every: int = 500
    log_every: int = 10
    max_bad_steps: int = 10  # consecutive NaN/inf losses before the run stops
    seed: int = 0
    output_dir: str = "runs"
    run_name: str = ""  # "" = <config name>-<timestamp>
    sample_prompts: list[str] = field(
        default_factory=lambda: [
            "a red circle",
            "a blue square",
            "a green triangle",
            "a yellow star",
            "a purple diamond",
            "an orange cross",
            "a red circle above a blue square",
            "three pink circles",
        ]
    )


@dataclass
class SpeedConfig:
    """Fast paths (docs/performance.md). Every default is the plain eager fp32 path; bf16 is
    train.mixed_precision. Read by imagegen.training.fast and imagegen.pipelines.fast_sampling."""

    channels_last: bool = False  # NHWC conv weights, so activations too (faster on GPUs; slower on this CPU)
    compile: bool = False  # torch.compile the denoiser's forward (training and sampling)
    # "default" | "max-autotune-no-cudagraphs" | "reduce-overhead" | "max-autotune" (inductor only)
    compile_mode: str = "default"
    compile_backend: str = "inductor"  # "inductor" | "aot_eager" (traces without code generation: debugging)
    activation_checkpointing: bool = False  # recompute U-Net levels in backward: less memory, +1 forward
    attention_backend: str = "auto"  # "auto" (torch picks) | "flash" | "efficient" | "cudnn" | "math"
    cuda_graphs_sampling: bool = False  # CUDA sampling: denoiser replayed as a CUDA graph ("reduce-overhead")
    fused_adamw: bool = True  # CUDA: one fused AdamW kernel per step; false = torch's foreach AdamW
    sync_free_step: bool = False  # NaN/inf guard with no host sync per step (fused AdamW's found_inf)


@dataclass
class StageConfig:
    """One stage of a cascade trained in one run (`cascade.stages`): these sections replace the run's."""

    stage: str = "base32"  # the stage's name: its folder, its phase and its EMA in the run
    model: UNetConfig = field(default_factory=UNetConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    noise_aug: NoiseAugConfig = field(default_factory=NoiseAugConfig)
    superres: SuperResConfig = field(default_factory=SuperResConfig)
    lr: float = 0.0  # this stage's optimizer; 0 = train.lr


@dataclass
class CascadeConfig:
    # train.objective "cascade": the stages, lowest resolution first, one optimizer and one EMA
    # each; data.resolution is the last stage's, lower stages see it downsampled (or re-rendered)
    stages: list[StageConfig] = field(default_factory=list)


@dataclass
class RunConfig:
    name: str = "run"
    stage: str = "base32"  # base32 | sr64 | sr128 | base64 | sr256 | sr1024 (a joint run: "cascade")
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    noise_aug: NoiseAugConfig = field(default_factory=NoiseAugConfig)
    superres: SuperResConfig = field(default_factory=SuperResConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    unclip: UnclipConfig = field(default_factory=UnclipConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)


def stage_run_config(cfg: RunConfig, stage: StageConfig) -> RunConfig:
    """The single-stage config of one stage of a joint run: what its cascade stage folder holds,
    and what it would have been trained with as a run of its own."""
    cfg, stage = copy.deepcopy(cfg), copy.deepcopy(stage)
    return dataclasses.replace(
        cfg,
        stage=stage.stage,
        data=dataclasses.replace(cfg.data, resolution=stage.model.image_size),
        model=stage.model,
        sample=stage.sample,
        noise_aug=stage.noise_aug,
        superres=stage.superres,
        train=dataclasses.replace(cfg.train, objective="diffusion", lr=stage.lr or cfg.train.lr),
        cascade=CascadeConfig(),
    )


def stage_sample_config(cfg: RunConfig) -> SampleConfig:
    """How a single-stage diffusion run samples, in a cascade folder or on its own: its `sample`
    section, with aug_level 0 when it is no super-resolution stage or never trained on noisy
    low-res inputs (noise_aug.enabled false): such a stage is sampled with a clean input."""
    noisy = cfg.superres.lowres_size > 0 and cfg.noise_aug.enabled
    return dataclasses.replace(cfg.sample, aug_level=cfg.sample.aug_level if noisy else 0.0)
