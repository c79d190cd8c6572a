"""The single-object probe: an oracle pipeline (the renderer) scores high, a blank one scores zero."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagegen.data.prompts import BACKGROUNDS, COLORS, SHAPES
from imagegen.data.shapes import render_scene
from imagegen.evaluation.single_objects import (
    describe,
    evaluate_single_objects,
    judge_single_object,
    single_object_prompts,
    summarize_judgements,
)


def _oracle_pipe(backgrounds=tuple(BACKGROUNDS)):
    """Draws each prompt's object with the project's renderer on a background cycling per call."""
    specs = dict(single_object_prompts())
    calls = []

    def pipe(prompts, seed=0):
        calls.append(seed)
        images = []
        for i, prompt in enumerate(prompts):
            obj = {**specs[prompt]["objects"][0], "size": "large"}
            spec = {
                "kind": "single",
                "background": backgrounds[(i + seed) % len(backgrounds)],
                "relation": None,
                "objects": [obj],
                "instances": [{**obj, "box": (0.3, 0.3, 0.675, 0.675)}],
            }
            images.append(Image.fromarray(render_scene(spec, 32)))
        return images

    return pipe, calls


def test_every_colour_and_shape_is_asked_for_once():
    prompts = single_object_prompts()
    assert len(prompts) == len(COLORS) * len(SHAPES)
    pairs = {(s["objects"][0]["color"], s["objects"][0]["shape"]) for _, s in prompts}
    assert len(pairs) == len(prompts)
    assert all(s["background"] is None for _, s in prompts)


def test_the_renderer_as_a_pipeline_gets_right_colour_shape_one_object_and_its_backgrounds():
    pipe, calls = _oracle_pipe()
    result = evaluate_single_objects(pipe, seeds=(0, 1), batch=48)
    assert result["samples"] == 96 and len(result["images"]) == 96 and calls == [0, 1000]
    assert result["color_accuracy"] >= 0.99 and result["shape_accuracy"] >= 0.95
    assert result["one_object"] >= 0.99
    assert all(result["backgrounds"][name] > 0.25 for name in BACKGROUNDS)
    assert "right shape" in describe(result)


def test_a_gray_two_object_sample_is_judged_as_such():
    spec = dict(single_object_prompts())["a red circle"]
    objects = [{"shape": "square", "color": "red", "size": "small", "count": 1}] * 2
    scene = {
        "kind": "list",
        "background": "gray",
        "relation": None,
        "objects": objects,
        "instances": [
            {**objects[0], "box": (0.1, 0.1, 0.35, 0.35)},
            {**objects[1], "box": (0.6, 0.6, 0.85, 0.85)},
        ],
    }
    judged = judge_single_object(render_scene(scene, 32), spec)
    assert judged == {"right_color": True, "right_shape": False, "objects": 2, "background": "gray"}


def test_a_blank_image_has_no_object_and_summaries_refuse_nothing():
    spec = dict(single_object_prompts())["a blue star"]
    judged = judge_single_object(np.full((32, 32, 3), 255, np.uint8), spec)
    assert judged["objects"] == 0 and not judged["right_color"] and judged["background"] == "white"
    with pytest.raises(ValueError, match="judgements"):
        summarize_judgements([])
