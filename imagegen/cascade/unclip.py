"""unCLIP folders: a trained CLIP, prior and decoder joined into one model folder, like a cascade.

    python -m imagegen.cascade unclip --prior runs/prior-... --decoder runs/decoder-... --out runs/unclip
    assemble_unclip("runs/prior-...", "runs/decoder-...", "runs/unclip")

Layout (every network as its run saved it, EMA weights; resume-only files left out):

    unclip.json          {"format": "imagegen-unclip", "version": 1, "clip_fingerprint": ...,
                          "prior": {"stage", "source", "step"}, "decoder": {...}}
    clip/                the CLIP both were trained with (config.json, model.safetensors, tokenizer)
    prior/config.yaml    the prior run's config;   prior/ema/prior/    its DiffusionPrior
    decoder/config.yaml  the decoder run's config; decoder/ema/model/  its Efficient U-Net

Every check runs before anything is written: each argument is a prior / decoder run, both were
trained with the same CLIP (the weights fingerprint each wrote to ema/<net>/clip.json), and that
CLIP is where the prior recorded it (or `clip=`) with the same fingerprint. The folder is
written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from imagegen.config import RunConfig, read_saved_config
from imagegen.utils.runs import resolve_checkpoint

UNCLIP_FILE = "unclip.json"
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


def assemble_unclip(
    prior: str | Path,
    decoder: str | Path,
    out: str | Path,
    clip: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the unCLIP folder `out` from a prior run and a decoder run (run dirs or checkpoints)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")
    prior_ckpt, prior_cfg, prior_state = _read_part(prior, "prior")
    decoder_ckpt, _, decoder_state = _read_part(decoder, "decoder")
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
    manifest = {"format": FORMAT, "version": VERSION, "clip_fingerprint": fingerprint, **parts}
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
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path}: version {manifest.get('version')!r}; this package reads version {VERSION}")
    needed = [folder / "clip" / "config.json"]
    needed += [folder / part / "config.yaml" for part in PARTS]
    needed += [folder / part / "ema" / name for part, name in PARTS.items()]
    for item in needed:
        if not item.exists():
            raise FileNotFoundError(f"unCLIP folder {folder}: {item.relative_to(folder)} is missing")
    return manifest
