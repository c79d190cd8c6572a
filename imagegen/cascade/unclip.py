"""unCLIP folders: a trained CLIP, prior and decoder joined into one model folder, like a cascade.

    python -m imagegen.cascade unclip --prior runs/prior-... --decoder runs/decoder-... --out runs/unclip
    python -m imagegen.cascade unclip --prior P --decoder D --upsampler runs/sr64-... --out runs/unclip64
    assemble_unclip("runs/prior-...", "runs/decoder-...", "runs/unclip", upsamplers=["runs/sr64-..."])

Layout (every network as its run saved it, EMA weights; resume-only files left out):

    unclip.json          {"format": "imagegen-unclip", "version": 1, "clip_fingerprint": ...,
                          "prior": {"source", "step"}, "decoder": {...},
                          "upsamplers": [cascade manifest rows: name, resolution, lowres_size,
                                         sampling defaults]}   (optional; absent = none)
    clip/                the CLIP both were trained with (config.json, model.safetensors, tokenizer)
    prior/config.yaml    the prior run's config;   prior/ema/prior/    its DiffusionPrior
    decoder/config.yaml  the decoder run's config; decoder/ema/model/  its Efficient U-Net
    upsamplers/<name>/   each super-resolution stage as a cascade keeps it (config.yaml, model/)

Every check runs before anything is written: each argument is a prior / decoder run, both were
trained with the same CLIP (the weights fingerprint each wrote to ema/<net>/clip.json), and that
CLIP is where the prior recorded it (or `clip=`) with the same fingerprint; the upsamplers are
super-resolution stages (any run `python -m imagegen.cascade assemble` takes) that chain from the
decoder's side up and read captions with the decoder's text encoder. The folder is written under
a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imagegen.cascade.assemble import StageSource, stages_of
from imagegen.cascade.manifest import (
    CONFIG_FILE,
    MODEL_DIR,
    StageEntry,
    check_same_text_encoder,
    stage_from_dict,
)
from imagegen.config import RunConfig, read_saved_config, save_config
from imagegen.config.stages import check_stage_chain
from imagegen.utils.runs import resolve_checkpoint

UNCLIP_FILE = "unclip.json"
UPSAMPLER_DIR = "upsamplers"
FORMAT = "imagegen-unclip"
VERSION = 1
PARTS = {"prior": "prior", "decoder": "model"}  # part -> its EMA network's name in the run
RESUME_ONLY_FILES = ("ema_shadow.safetensors",)
CLIP_FILE = "clip.json"  # beside each part's EMA weights: the CLIP it was trained with


def is_unclip_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / UNCLIP_FILE).is_file()


def _read_part(path: str | Path, part: str) -> tuple[Path, RunConfig, dict[str, Any]]:
    """(checkpoint, config, trainer.json) of a prior or decoder run; ValueError naming `part`."""
    checkpoint = resolve_checkpoint(Path(path))
    cfg = read_saved_config(checkpoint / "config.yaml")
    if cfg.train.objective != part:
        raise ValueError(
            f"{part}: {checkpoint} is a train.objective {cfg.train.objective!r} run, not a {part} "
            f"(configs/shapes-unclip-{part}-cpu.yaml)"
        )
    state = json.loads((checkpoint / "trainer.json").read_text())
    weights = checkpoint / "ema" / PARTS[part]
    if not weights.is_dir():
        raise FileNotFoundError(f"{part}: {checkpoint} has no EMA weights ({weights})")
    return checkpoint, cfg, state


def clip_fingerprint(folder: Path) -> str:
    """The weights fingerprint of a CLIP folder, as a `text.encoder: clip` cache records it."""
    from imagegen.text.encoders import weights_fingerprint

    return weights_fingerprint(folder)


def recorded_clip(checkpoint: Path, part: str) -> dict[str, Any]:
    """The clip.json a prior / decoder run wrote beside its EMA weights: its CLIP's folder and fingerprint."""
    path = checkpoint / "ema" / PARTS[part] / CLIP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{part}: {checkpoint} records no CLIP ({path} is missing)")
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or not isinstance(record.get("fingerprint"), str):
        raise ValueError(f"{path}: expected {{'folder': ..., 'fingerprint': ...}}")
    return record


def check_same_clip(prior: dict[str, Any], decoder: dict[str, Any]) -> str:
    """The CLIP fingerprint both runs recorded; ValueError when they were trained with different CLIPs."""
    if prior["fingerprint"] != decoder["fingerprint"]:
        raise ValueError(
            f"the prior and the decoder were trained with different CLIPs: the prior's is "
            f"{prior.get('folder')} (fingerprint {prior['fingerprint']}), the decoder's "
            f"{decoder.get('folder')} (fingerprint {decoder['fingerprint']}); an unCLIP needs one "
            "CLIP for both (the prior predicts embeddings the decoder must understand)"
        )
    return str(prior["fingerprint"])


def plan_upsamplers(
    upsamplers: Sequence[str | Path], decoder_cfg: RunConfig, decoder_state: dict[str, Any]
) -> list[StageSource]:
    """The super-resolution stages of `upsamplers` (in order; of a joint cascade run, its
    super-resolution stages), checked to chain up from the decoder and to share its text encoder;
    ValueError naming the run otherwise. Nothing is written."""
    sources: list[StageSource] = []
    for path in upsamplers:
        try:
            found = stages_of(path)
        except ValueError as error:
            raise ValueError(f"upsampler: {error}") from None
        superres = [source for source in found if source.cfg.superres.lowres_size]
        if not superres:
            raise ValueError(
                f"upsampler: {path} holds no super-resolution stage (only {[s.name for s in found]}); "
                "an upsampler is a run with superres.lowres_size > 0 (e.g. configs/shapes-sr64-cpu.yaml) "
                "or a joint cascade run, whose super-resolution stages are taken"
            )
        sources += superres
    if not sources:
        return []
    side = decoder_cfg.model.image_size
    if sources[0].cfg.superres.lowres_size != side:
        raise ValueError(
            f"upsampler: {sources[0].name!r} upsamples from {sources[0].cfg.superres.lowres_size} px but "
            f"the decoder draws {side} px; the first upsampler must take the decoder's images"
        )
    names = [source.name for source in sources]
    if "decoder" in names:
        raise ValueError("upsampler: a stage may not be named 'decoder' (the name of the unCLIP's decoder)")
    try:
        check_stage_chain(
            [("decoder", side, 0)]
            + [(s.name, s.cfg.model.image_size, s.cfg.superres.lowres_size) for s in sources]
        )
        check_same_text_encoder(
            {"decoder": decoder_state["text_identity"], **{s.name: s.text_identity for s in sources}}
        )
    except ValueError as error:
        raise ValueError(f"upsampler: {error}") from None
    return sources


def assemble_unclip(
    prior: str | Path,
    decoder: str | Path,
    out: str | Path,
    clip: str | Path | None = None,
    overwrite: bool = False,
    upsamplers: Sequence[str | Path] = (),
) -> Path:
    """Write the unCLIP folder `out` from a prior run, a decoder run (run dirs or checkpoints) and
    optional super-resolution runs `upsamplers`, lowest resolution first."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")
    prior_ckpt, prior_cfg, prior_state = _read_part(prior, "prior")
    decoder_ckpt, decoder_cfg, decoder_state = _read_part(decoder, "decoder")
    sr_sources = plan_upsamplers(upsamplers, decoder_cfg, decoder_state)
    prior_clip = recorded_clip(prior_ckpt, "prior")
    fingerprint = check_same_clip(prior_clip, recorded_clip(decoder_ckpt, "decoder"))
    clip_dir = Path(clip or prior_clip.get("folder") or prior_cfg.unclip.clip).expanduser()
    if not (clip_dir / "config.json").is_file():
        raise FileNotFoundError(f"clip: {clip_dir} is not a saved CLIP folder (no config.json); pass --clip")
    if clip_fingerprint(clip_dir) != fingerprint:
        raise ValueError(
            f"clip: {clip_dir} is not the CLIP the prior and decoder were trained with (fingerprint "
            f"{clip_fingerprint(clip_dir)}, theirs {fingerprint}); pass the right one with --clip"
        )
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copytree(clip_dir, staging / "clip")
    parts = {}
    for part, checkpoint, state in (
        ("prior", prior_ckpt, prior_state),
        ("decoder", decoder_ckpt, decoder_state),
    ):
        name = PARTS[part]
        (staging / part / "ema").mkdir(parents=True)
        shutil.copy2(checkpoint / "config.yaml", staging / part / "config.yaml")
        shutil.copytree(
            checkpoint / "ema" / name,
            staging / part / "ema" / name,
            ignore=shutil.ignore_patterns(*RESUME_ONLY_FILES),
        )
        parts[part] = {"source": str(checkpoint.resolve()), "step": int(state.get("step", 0))}
    for source in sr_sources:
        stage_dir = staging / UPSAMPLER_DIR / source.name
        shutil.copytree(
            source.weights, stage_dir / MODEL_DIR, ignore=shutil.ignore_patterns(*RESUME_ONLY_FILES)
        )
        save_config(source.cfg, stage_dir / CONFIG_FILE)
    manifest = {"format": FORMAT, "version": VERSION, "clip_fingerprint": fingerprint, **parts}
    if sr_sources:
        manifest["upsamplers"] = [source.entry().to_row() for source in sr_sources]
    (staging / UNCLIP_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def read_unclip(folder: str | Path) -> dict[str, Any]:
    """The checked manifest of an unCLIP folder, with every part present."""
    folder = Path(folder)
    path = folder / UNCLIP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an unCLIP folder: no {UNCLIP_FILE}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: version {manifest.get('version')!r}; this package reads version {VERSION}")
    needed = [folder / "clip" / "config.json"]
    needed += [folder / part / "config.yaml" for part in PARTS]
    needed += [folder / part / "ema" / name for part, name in PARTS.items()]
    for entry in upsampler_entries(manifest, path):
        stage_dir = folder / UPSAMPLER_DIR / entry.name
        needed += [stage_dir / CONFIG_FILE, stage_dir / MODEL_DIR / "config.json"]
    for item in needed:
        if not item.exists():
            raise FileNotFoundError(f"unCLIP folder {folder}: {item.relative_to(folder)} is missing")
    return manifest


def upsampler_entries(manifest: dict[str, Any], source: str | Path = UNCLIP_FILE) -> list[StageEntry]:
    """The manifest's upsamplers (none when the key is absent), each row checked as a cascade's."""
    rows = manifest.get("upsamplers", [])
    if not isinstance(rows, list):
        raise ValueError(f"{source}: 'upsamplers' must be a list of stage rows")
    entries = [stage_from_dict(row, i, str(source), key="upsamplers") for i, row in enumerate(rows)]
    if entries and entries[0].lowres_size == 0:
        raise ValueError(f"{source}: upsamplers[0] ({entries[0].name}) is not a super-resolution stage")
    if entries:
        first = entries[0].lowres_size  # the decoder's side; the chain's first row stands for it
        check_stage_chain([("decoder", first, 0)] + [(e.name, e.resolution, e.lowres_size) for e in entries])
    return entries
