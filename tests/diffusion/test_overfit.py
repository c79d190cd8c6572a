"""A tiny U-Net overfits 8 fixed Shapes captions on CPU; guided samples reproduce their colours.

The end-to-end check of the diffusion core: real trainer, real text encoder, 25 DPM-Solver++
steps at guidance 5 with dynamic thresholding, colours judged by the Shapes scorer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagegen.config import load_config
from imagegen.data.prompts import COLORS, article
from imagegen.data.shapes import render_scene
from imagegen.evaluation import single_object_accuracy
from imagegen.training import trainer as trainer_module
from imagegen.utils.images import tensor_to_pil

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny-test.yaml"
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "circle", "square")


def _spec(color: str, shape: str) -> dict:
    box = [0.25, 0.25, 0.75, 0.75]
    return {
        "kind": "single",
        "background": "white",
        "relation": None,
        "objects": [{"shape": shape, "color": color, "size": "large", "count": 1}],
        "instances": [{"shape": shape, "color": color, "size": "large", "box": box}],
    }


class EightScenes(torch.utils.data.Dataset):
    """One large object of each of the 8 colours on white, always the same 8 images."""

    def __init__(self, resolution: int):
        self.specs = [_spec(color, shape) for color, shape in zip(COLORS, SHAPES)]
        self.captions = [
            f"{article(s['objects'][0]['color'])} {s['objects'][0]['color']} {s['objects'][0]['shape']}"
            for s in self.specs
        ]
        self.images = [
            torch.from_numpy(render_scene(s, resolution)).permute(2, 0, 1).float() / 127.5 - 1
            for s in self.specs
        ]

    def __len__(self) -> int:
        return len(self.specs)

    def caption(self, index: int) -> str:
        return self.captions[index]

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "caption": self.captions[index]}


def _overfit(tmp_path, text_cache, monkeypatch, steps: int, preset: str, resolution: int) -> list[bool]:
    dataset = EightScenes(resolution)
    monkeypatch.setattr(trainer_module, "build_train_dataset", lambda cfg: dataset)
    cfg = load_config(
        TINY,
        [
            f"train.output_dir={tmp_path}",
            f"text.cache_dir={text_cache}",
            f"model.preset={preset}",
            f"model.image_size={resolution}",
            f"data.resolution={resolution}",
            f"train.max_steps={steps}",
            "train.lr=2e-3",
            "train.warmup_steps=20",
            "train.lr_schedule=constant",
            "train.checkpoint_every=0",
            "train.log_every=50",
            "train.ema_max_decay=0.99",
            "sample.num_steps=25",
            "sample.sampler=dpmpp_2m",
            "sample.guidance_scale=5.0",
            "diffusion.cond_drop_prob=0.2",
            f"train.sample_prompts={dataset.captions}",
        ],
    )
    trainer = trainer_module.Trainer(cfg)
    trainer.fit()
    averaged = {name: ema.refresh() for name, ema in trainer.emas.items()}
    text = trainer.text_cache.lookup(dataset.captions)
    images = trainer.objective.sample(averaged, text, trainer.null_text, torch.Generator().manual_seed(0))
    return [
        single_object_accuracy(image, spec)[0] for image, spec in zip(tensor_to_pil(images), dataset.specs)
    ]


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("overfit-cache")


def test_overfit_eight_captions_reduced(tmp_path, text_cache, monkeypatch):
    right_color = _overfit(tmp_path, text_cache, monkeypatch, steps=300, preset="tiny16", resolution=32)
    assert sum(right_color) >= 7, f"right colour in {sum(right_color)}/8 samples"


@pytest.mark.slow
def test_overfit_eight_captions_tiny32(tmp_path, text_cache, monkeypatch):
    right_color = _overfit(tmp_path, text_cache, monkeypatch, steps=600, preset="tiny32", resolution=32)
    assert all(right_color), f"right colour in {sum(right_color)}/8 samples"
