"""The small CNN whose features define the offline Fréchet distances FD-shapes and FD-emoji.

FID (Heusel et al. 2017) is a distance between Gaussians fitted to Inception-v3 features; those
weights are not on disk here and nothing may download them. Instead each domain gets a small CNN
trained in about a minute on CPU on that domain's *real* images:

- shapes: `samples` Shapes scenes (seed `seed`; half single-object, the rest counting, relation and
  list); heads: each colour's share of the objects (soft label over 8), the shape of one-object
  scenes (6 classes), background (3), number of objects (1..4);
- emoji: every Noto emoji with a `group` in `captions.csv`; head: its `group` (10 classes).

The features are the `feature_dim`-wide bottleneck that the linear heads read. A trained net is
saved as `model.safetensors` plus `net.json` (domain, version, architecture, training settings,
held-out accuracy, sha256 of the weights file) in
`runs/feature-nets/fd-<domain>-v<VERSION>[-<settings hash>]/`. FD values are comparable only
between results that name the same weights hash: `get_feature_net` trains a net once, then always
loads the saved one and checks its hash.

    net = get_feature_net("shapes")              # loads runs/feature-nets/fd-shapes-v1/ or trains it
    features = extract_features(net, images)     # float64 [N, feature_dim]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imagegen.utils.images import from_uint8, to_uint8

log = logging.getLogger("imagegen.evaluation")

VERSION = 1  # bump when the architecture, the targets or the training data change
DOMAINS = ("shapes", "emoji")
DEFAULT_ROOT = Path("runs/feature-nets")
DEFAULT_EMOJI_ROOT = Path("../shared/data/noto-emoji")
# Half the Shapes training scenes hold one object, whose shape is an unambiguous class label (a
# per-shape "present" target on multi-object scenes stayed near chance within the training budget);
# the rest (counting, relation, list) teach colour shares and counts.
SHAPES_SCENE_WEIGHTS = (0.5, 1 / 6, 1 / 6, 1 / 6)
IGNORE = -100  # class target that cross-entropy skips (the shape of a multi-object scene)
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "net.json"


@dataclass(frozen=True)
class FeatureNetTraining:
    """How a feature net is trained; part of its identity (other settings get their own folder)."""

    samples: int = 5000  # shapes: rendered scenes (emoji: every image with a group is used)
    epochs: int = 12  # the shape branch learns abruptly; 6 epochs sometimes stopped before it did
    batch_size: int = 32
    lr: float = 2e-3  # peak of a one-cycle schedule (Adam)
    seed: int = 7919  # Shapes scenes, split and initial weights; used nowhere else
    resolution: int = 32  # images are resized to this side before the net sees them
    width: int = 16  # channels of the first convolution (then 2 x width)
    feature_dim: int = 32  # width of the features the Fréchet distance uses
    heldout: float = 0.1  # share of the images kept out of training to report accuracy


def check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"domain: unknown feature-net domain {domain!r}; allowed: {', '.join(DOMAINS)}")
    return domain


def settings_tag(training: FeatureNetTraining) -> str:
    """'' for the default settings, else '-' + a short hash of them (the folder-name suffix)."""
    if training == FeatureNetTraining():
        return ""
    text = json.dumps(dataclasses.asdict(training), sort_keys=True)
    return "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def feature_net_dir(
    domain: str, root: str | Path = DEFAULT_ROOT, training: FeatureNetTraining | None = None
) -> Path:
    check_domain(domain)
    return Path(root) / f"fd-{domain}-v{VERSION}{settings_tag(training or FeatureNetTraining())}"


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------


class Branch(nn.Module):
    """[B, 3, R, R] -> [B, feature_dim]: conv-ReLU-maxpool twice (R -> R/4), one more conv-ReLU, then
    the global max (what is present anywhere) and mean (how much of it: counts) of the R/4 map,
    projected. Max-pooling keeps the few-pixel details that tell an 8 px star from a circle
    (strided convolutions with group norm learned shapes far more slowly)."""

    def __init__(self, width: int, feature_dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.project = nn.Linear(4 * width, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.body(images)  # [B, 2w, R/4, R/4]
        pooled = torch.cat([hidden.amax(dim=(2, 3)), hidden.mean(dim=(2, 3))], dim=1)  # [B, 4w]
        return self.project(pooled)  # [B, feature_dim]


class FeatureNet(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> features [B, sum of branch feature dims]; heads read their branch.

    `branches` maps a branch name to {"heads": {head: classes}, "width": w, "feature_dim": d}. Each
    branch has its own convolutions and features, and its heads train only it: with one shared
    trunk the easy heads (colour, background, count) dominated Adam's step sizes and the shape
    head stayed near chance. The features are the branches' features concatenated, in order.
    Inputs of another side are resized to R first (bilinear, antialiased).
    """

    def __init__(self, branches: dict[str, dict[str, Any]], resolution: int = 32):
        super().__init__()
        if resolution % 4:
            raise ValueError(f"resolution: must be a multiple of 4, got {resolution}")
        self.config = {"branches": branches, "resolution": resolution}
        self.info: dict[str, Any] = {}  # what net.json holds, once trained or loaded
        self.branches = nn.ModuleDict(
            {name: Branch(spec["width"], spec["feature_dim"]) for name, spec in branches.items()}
        )
        self.head_branch = {head: name for name, spec in branches.items() for head in spec["heads"]}
        self.heads = nn.ModuleDict(
            {
                head: nn.Linear(spec["feature_dim"], classes)
                for spec in branches.values()
                for head, classes in spec["heads"].items()
            }
        )

    @property
    def feature_dim(self) -> int:
        return sum(spec["feature_dim"] for spec in self.config["branches"].values())

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config["resolution"]
        if tuple(images.shape[-2:]) == (size, size):
            return images
        # both image sets of one FD go through the same resize, so it cancels in comparisons
        return nn.functional.interpolate(images, (size, size), mode="bilinear", antialias=True)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        images = self._resize(images)
        return torch.cat([branch(images) for branch in self.branches.values()], dim=1)  # [B, F]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = self._resize(images)
        features = {name: branch(images) for name, branch in self.branches.items()}
        return {head: layer(features[self.head_branch[head]]) for head, layer in self.heads.items()}


def make_branches(head_groups: dict[str, dict[str, int]], training: FeatureNetTraining) -> dict[str, dict]:
    """{branch: {head: classes}} -> FeatureNet branches of `training.width`, features split evenly."""
    dim = training.feature_dim // len(head_groups)
    return {
        name: {"heads": heads, "width": training.width, "feature_dim": dim}
        for name, heads in head_groups.items()
    }


# ------------------------------------------------------------------------------------------------
# Training data and targets
# ------------------------------------------------------------------------------------------------


def shapes_heads() -> dict[str, dict[str, int]]:
    """Two branches: the shape of one-object scenes; colour shares, background and object count."""
    from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES

    return {
        "shape": {"shape": len(SHAPES)},
        "scene": {"colors": len(COLORS), "background": len(BACKGROUNDS), "count": 4},
    }


def shapes_targets(spec: dict[str, Any]) -> dict[str, Any]:
    """Full-truth spec -> "colors" [8] (each colour's share of the objects, a soft label: two red
    circles and a blue star give red 2/3, blue 1/3), "shape" (the shape's index in a one-object
    scene, IGNORE otherwise), "background" and "count" (number of objects - 1, at most 3)."""
    from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES

    color_names, background_names = list(COLORS), list(BACKGROUNDS)  # dicts, in their fixed order
    colors = np.zeros(len(color_names), np.float32)
    for instance in spec["instances"]:
        colors[color_names.index(instance["color"])] += 1.0 / len(spec["instances"])
    single = len(spec["instances"]) == 1
    return {
        "colors": colors,
        "shape": SHAPES.index(spec["instances"][0]["shape"]) if single else IGNORE,
        "background": background_names.index(spec["background"]),
        "count": min(len(spec["instances"]), 4) - 1,
    }


def _shapes_data(training: FeatureNetTraining):
    """uint8 renders [N, R, R, 3], targets per head, {branch: {head: classes}}."""
    from imagegen.data.shapes import ShapesDataset, render_scene

    dataset = ShapesDataset(
        training.resolution, seed=training.seed, length=training.samples, scene_weights=None
    )
    specs = [dataset.spec(i) for i in range(training.samples)]
    pixels = np.stack([render_scene(spec, training.resolution) for spec in specs])
    targets = [shapes_targets(spec) for spec in specs]
    stacked = {key: np.stack([t[key] for t in targets]) for key in targets[0]}
    return pixels, stacked, shapes_heads()


def _emoji_data(training: FeatureNetTraining, data_root: Path):
    """uint8 emoji [N, R, R, 3] (alpha on white), group labels, {branch: {head: classes}}, group names."""
    from imagegen.data.folder import CaptionedFolderDataset

    dataset = CaptionedFolderDataset(data_root, training.resolution, caption_column="group")
    groups = sorted({dataset.caption(i) for i in range(len(dataset))})
    pixels, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        pixels.append(to_uint8(item["image"]))  # [R, R, 3]
        labels.append(groups.index(item["caption"]))
    return np.stack(pixels), {"group": np.asarray(labels)}, {"group": {"group": len(groups)}}, groups


@dataclass
class _Split:
    images: torch.Tensor  # float32 [N, 3, R, R] in [-1, 1]
    targets: dict[str, torch.Tensor]


def _split(pixels: np.ndarray, targets: dict[str, np.ndarray], heldout: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(pixels))
    cut = int(round(len(pixels) * (1 - heldout)))

    def take(index: np.ndarray) -> _Split:
        images = images_to_tensor(pixels[index])
        return _Split(images, {k: torch.from_numpy(v[index]) for k, v in targets.items()})

    return take(order[:cut]), take(order[cut:])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


def _loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over heads of the cross-entropy: soft targets (shares) or class indices (IGNORE skipped)."""
    total = torch.zeros(())
    for name, output in logits.items():
        target = targets[name]
        if target.dtype.is_floating_point or (target != IGNORE).any():  # a batch may lack a head's labels
            total = total + nn.functional.cross_entropy(output, target, ignore_index=IGNORE)
    return total


@torch.no_grad()
def _accuracy(net: FeatureNet, split: _Split, batch: int = 256) -> dict[str, float]:
    """Held-out accuracy per head: the top class is the true one (hard labels, IGNORE left out) or
    one that is present (soft labels)."""
    outputs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(split.images), batch):
        for name, value in net(split.images[start : start + batch]).items():
            outputs.setdefault(name, []).append(value)
    result = {}
    for name, chunks in outputs.items():
        output, target = torch.cat(chunks), split.targets[name]
        guess = output.argmax(dim=1)
        if target.dtype.is_floating_point:  # soft labels: the top guess must be present
            right = target.gather(1, guess[:, None])[:, 0] > 0
        else:
            right = (guess == target)[target != IGNORE]
        result[name] = round(float(right.float().mean()), 4)
    return result


@torch.enable_grad()  # the first FD score of a caller under no_grad trains the net here
def _fit(net: FeatureNet, data: _Split, training: FeatureNetTraining) -> None:
    """Adam with a one-cycle learning rate, shuffled by a seeded generator."""
    optimizer = torch.optim.Adam(net.parameters(), lr=training.lr)
    steps = training.epochs * -(-len(data.images) // training.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, training.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(training.seed)
    net.train()
    for _ in range(training.epochs):
        order = torch.randperm(len(data.images), generator=generator)
        for start in range(0, len(order), training.batch_size):
            index = order[start : start + training.batch_size]
            loss = _loss(net(data.images[index]), {k: v[index] for k, v in data.targets.items()})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval().requires_grad_(False)


def train_feature_net(
    domain: str, training: FeatureNetTraining | None = None, data_root: str | Path | None = None
) -> FeatureNet:
    """Train a feature net from scratch; `net.info` holds what net.json will (less the hash)."""
    training = training or FeatureNetTraining()
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if check_domain(domain) == "shapes":
        pixels, targets, heads = _shapes_data(training)
    else:
        root = Path(data_root or DEFAULT_EMOJI_ROOT)
        if not root.is_dir():
            raise FileNotFoundError(f"emoji data folder {root} is absent (the FD-emoji net trains on it)")
        pixels, targets, heads, groups = _emoji_data(training, root)
        extra = {"groups": groups, "images": len(pixels)}
    train_split, heldout_split = _split(pixels, targets, training.heldout, training.seed)
    torch.manual_seed(training.seed)
    net = FeatureNet(make_branches(heads, training), training.resolution)
    _fit(net, train_split, training)
    net.info = {
        "name": f"FD-{domain}",
        "domain": domain,
        "version": f"fd-{domain}-v{VERSION}",
        "architecture": net.config,
        "training": dataclasses.asdict(training),
        "heldout_accuracy": _accuracy(net, heldout_split) if len(heldout_split.images) else {},
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        **extra,
    }
    log.info(
        "trained the %s feature net in %.0f s; held-out accuracy %s",
        domain,
        net.info["train_seconds"],
        net.info["heldout_accuracy"],
    )
    return net


# ------------------------------------------------------------------------------------------------
# Saving, loading, features
# ------------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_feature_net(net: FeatureNet, folder: str | Path) -> dict[str, Any]:
    """Write model.safetensors and net.json (with the weights' sha256); returns net.json's content."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"version": str(net.info.get("version"))})
    net.info = {**net.info, "sha256": file_sha256(folder / WEIGHTS_FILE)}
    (folder / INFO_FILE).write_text(json.dumps(net.info, indent=2) + "\n")
    return net.info


def load_feature_net(folder: str | Path) -> FeatureNet:
    """Load a saved feature net (eval mode, CPU); ValueError if the weights' hash differs from net.json."""
    from safetensors.torch import load_file

    folder = Path(folder)
    info = json.loads((folder / INFO_FILE).read_text())
    digest = file_sha256(folder / WEIGHTS_FILE)
    if digest != info.get("sha256"):
        raise ValueError(
            f"{folder}: weights hash {digest[:12]} does not match net.json's {info.get('sha256')}"
        )
    arch = info["architecture"]
    net = FeatureNet(arch["branches"], arch["resolution"])
    net.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    net.eval().requires_grad_(False)
    net.info = info
    return net


def get_feature_net(
    domain: str,
    root: str | Path = DEFAULT_ROOT,
    training: FeatureNetTraining | None = None,
    data_root: str | Path | None = None,
) -> FeatureNet:
    """The saved net of this domain and settings under `root`; trained once (about a minute) if absent."""
    folder = feature_net_dir(domain, root, training)
    if not (folder / INFO_FILE).is_file():
        log.info("no %s feature net in %s: training one (about a minute on CPU)", domain, folder)
        save_feature_net(train_feature_net(domain, training, data_root), folder)
    return load_feature_net(folder)


def feature_net_identity(net: FeatureNet) -> dict[str, Any]:
    """What a result must carry for its FD to be comparable: name, version, weights hash."""
    info = net.info
    return {
        "name": info["name"],
        "version": info["version"],
        "sha256": info["sha256"][:12],
        "feature_dim": sum(b["feature_dim"] for b in info["architecture"]["branches"].values()),
    }


def images_to_tensor(images) -> torch.Tensor:
    """PIL images, uint8 [N, H, W, 3] or float [N, 3, H, W] in [-1, 1] -> float32 [N, 3, H, W] in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return images.float()
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return from_uint8(images)  # NHWC -> NCHW
    arrays = [np.asarray(image.convert("RGB"), dtype=np.uint8) for image in images]  # [H, W, 3] each
    return images_to_tensor(np.stack(arrays))


@torch.no_grad()
def extract_features(net: FeatureNet, images, batch_size: int = 256) -> np.ndarray:
    """Features of `images` (any form `images_to_tensor` takes): float64 [N, feature_dim]."""
    tensor = images_to_tensor(images)
    chunks = [net.features(tensor[i : i + batch_size]) for i in range(0, len(tensor), batch_size)]
    return torch.cat(chunks).double().numpy()
