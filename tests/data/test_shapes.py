"""Shapes dataset: determinism, exclusion, layout rules, captions vs specs, rendering, prompt suites."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from imagegen.data.prompts import (
    COUNT_WORDS,
    DEFAULT_HELDOUT,
    PLURALS,
    RELATION_PHRASES,
    SUITES,
    check_spec,
)
from imagegen.data.shapes import (
    BACKGROUNDS,
    BORDER_MARGIN,
    COLORS,
    OBJECT_GAP,
    RELATION_MIN_OFFSET,
    SHAPES,
    SIZE_FRACTION,
    SIZES,
    ShapesDataset,
    load_prompt_file,
    render_scene,
    sample_scene,
    write_prompt_suites,
)

WEIGHTS = [0.4, 0.2, 0.2, 0.2]


@pytest.fixture(scope="module")
def scenes() -> list[tuple[str, dict]]:
    dataset = ShapesDataset(seed=0, length=3000, scene_weights=WEIGHTS)
    return [(dataset.caption(i), dataset.spec(i)) for i in range(len(dataset))]


def _fingerprint(seed: int, indices: list[int]) -> str:
    dataset = ShapesDataset(resolution=32, seed=seed)
    digest = hashlib.sha256()
    for index in indices:
        sample = dataset[index]
        digest.update(sample["caption"].encode() + json.dumps(sample["spec"]).encode())
        digest.update(sample["image"].numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_same_seed_and_index_give_identical_sample():
    first, second = ShapesDataset(seed=3)[17], ShapesDataset(seed=3)[17]
    assert torch.equal(first["image"], second["image"])
    assert first["spec"] == second["spec"] and first["caption"] == second["caption"]
    dataset = ShapesDataset(seed=3)
    assert dataset.caption(17) == first["caption"] and dataset.spec(17) == first["spec"]


def test_identical_in_another_process():
    indices = [0, 5, 123, 999]
    script = "\n".join(
        [
            "import hashlib, json",
            "from imagegen.data.shapes import ShapesDataset",
            inspect.getsource(_fingerprint),
            f"print(_fingerprint(3, {indices!r}))",
        ]
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _fingerprint(3, indices)


def test_different_seeds_give_different_scenes():
    seed0, seed1 = ShapesDataset(seed=0), ShapesDataset(seed=1)
    differing = sum(seed0.spec(i) != seed1.spec(i) for i in range(20))
    assert differing == 20
    assert not torch.equal(seed0[0]["image"], seed1[0]["image"])


# --------------------------------------------------------------------------------------------
# Grammar: exclusion, kinds, captions
# --------------------------------------------------------------------------------------------


def test_excluded_pairs_never_appear_and_others_do():
    excluded = {("red", "circle"), ("blue", "star"), ("orange", "cross")}
    dataset = ShapesDataset(length=10_000, exclude=[list(p) for p in excluded])
    seen = Counter()
    for index in range(len(dataset)):
        spec = dataset.spec(index)
        seen.update((item["color"], item["shape"]) for item in spec["objects"] + spec["instances"])
    assert not excluded & set(seen)
    assert set(seen) == set(itertools.product(COLORS, SHAPES)) - excluded


def test_scene_kinds_follow_weights(scenes):
    counts = Counter(spec["kind"] for _, spec in scenes)
    for kind, weight in zip(["single", "counting", "relation", "list"], WEIGHTS):
        assert abs(counts[kind] / len(scenes) - weight) < 0.04, counts
    only = ShapesDataset(scene_kinds=["single", "relation"], scene_weights=[0.0, 1.0])
    assert {only.spec(i)["kind"] for i in range(50)} == {"relation"}


def test_object_structure_matches_kind(scenes):
    for _, spec in scenes:
        objects, instances = spec["objects"], spec["instances"]
        assert len(instances) == sum(obj["count"] for obj in objects)
        assert (spec["relation"] is not None) == (spec["kind"] == "relation")
        if spec["kind"] == "counting":
            assert len(objects) == 1 and 2 <= objects[0]["count"] <= 4
            assert all(
                inst["shape"] == objects[0]["shape"]
                and inst["size"] == objects[0]["size"]
                and inst["color"] == objects[0]["color"]
                for inst in instances
            )
        elif spec["kind"] in ("relation", "list"):
            pairs = [(obj["color"], obj["shape"]) for obj in objects]
            assert len(set(pairs)) == len(pairs) and 2 <= len(pairs) <= 3
        json.dumps(spec)  # plain data


def _mentions(caption: str, spec: dict) -> None:
    words = caption.split()
    for obj in spec["objects"]:
        noun = obj["shape"] if obj["count"] == 1 else f"{COUNT_WORDS[obj['count']]} "
        assert obj["color"] in words and noun in caption, (caption, obj)
        if obj["count"] > 1:
            assert PLURALS[obj["shape"]] in words
        for size in SIZES:
            if size in words:
                assert any(o["size"] == size for o in spec["objects"]), caption
    assert set(words) & set(COLORS) == {obj["color"] for obj in spec["objects"]}, caption
    if spec["relation"] is not None:
        a, b = (spec["objects"][spec["relation"][k]] for k in ("a", "b"))
        phrase = f"{a['color']} {a['shape']} {RELATION_PHRASES[spec['relation']['type']]} "
        assert phrase in caption and f"{b['color']} {b['shape']}" in caption.split(phrase)[1], caption
    named = [bg for bg in BACKGROUNDS if f"{bg} background" in caption]
    assert named in ([], [spec["background"]]), caption


def test_captions_mention_what_the_spec_says(scenes):
    for caption, spec in scenes:
        _mentions(caption, spec)
        assert " a orange" not in caption and not caption.startswith("a orange")


def test_articles_and_plurals():
    options = {"single": 0, "counting": 0}
    for index in range(400):
        caption, spec = sample_scene(np.random.default_rng([9, index]), ["single", "counting"])
        options[spec["kind"]] += 1
        unsized = not {"small", "large"} & set(caption.split())
        if "orange" in caption and spec["kind"] == "single" and unsized:
            assert "an orange" in caption
        assert "crosss" not in caption and ("there is two" not in caption) and "there are a " not in caption
    assert min(options.values()) > 100


def test_background_named_in_about_half(scenes):
    named = sum("background" in caption for caption, _ in scenes[:2000])
    assert 0.35 < named / 2000 < 0.65


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------


def _centre(box: list[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _geneval_relations(box_a: list[float], box_b: list[float]) -> set[str]:
    """GenEval's dead-zone rule: offsets shrink by 0.1 * (sum of sizes), direction must dominate."""
    offset = _centre(box_a) - _centre(box_b)
    dims = np.array([box_a[2] - box_a[0] + box_b[2] - box_b[0], box_a[3] - box_a[1] + box_b[3] - box_b[1]])
    revised = np.maximum(np.abs(offset) - 0.1 * dims, 0) * np.sign(offset)
    dx, dy = revised / np.linalg.norm(offset)
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return {name for name, holds in found.items() if holds}


def test_boxes_inside_border_and_apart(scenes):
    eps = 1e-6
    for _, spec in scenes:
        boxes = [inst["box"] for inst in spec["instances"]]
        for inst, box in zip(spec["instances"], boxes):
            assert min(box) >= BORDER_MARGIN - eps and max(box) <= 1 - BORDER_MARGIN + eps
            assert box[2] - box[0] == pytest.approx(SIZE_FRACTION[inst["size"]], abs=eps)
        for box_a, box_b in itertools.combinations(boxes, 2):
            gap_x = max(box_a[0] - box_b[2], box_b[0] - box_a[2])
            gap_y = max(box_a[1] - box_b[3], box_b[1] - box_a[3])
            assert max(gap_x, gap_y) >= OBJECT_GAP - eps, spec


def test_relations_hold_with_a_clear_margin(scenes):
    relations = [spec for _, spec in scenes if spec["relation"] is not None]
    assert len(relations) > 400
    axis_sign = {"above": (1, 1), "below": (1, -1), "left of": (0, 1), "right of": (0, -1)}
    for spec in relations:
        relation = spec["relation"]
        box_a, box_b = (spec["instances"][relation[k]]["box"] for k in ("a", "b"))
        axis, sign = axis_sign[relation["type"]]
        assert sign * (_centre(box_b) - _centre(box_a))[axis] >= RELATION_MIN_OFFSET - 1e-6
        assert _geneval_relations(box_a, box_b) == {relation["type"]}, spec


def test_grid_fallback_keeps_the_layout_rules():
    from imagegen.data.shapes import _grid_centres

    rng = np.random.default_rng(0)
    for relation_type, sizes in itertools.product(["above", "below", "left of", "right of"], SIZES):
        relation = {"type": relation_type, "a": 0, "b": 1}
        sides = np.array([SIZE_FRACTION[sizes], SIZE_FRACTION["large"]])
        for _ in range(50):
            centres = np.round(_grid_centres(rng, sides, relation), 4)
            boxes = [[*(c - s / 2), *(c + s / 2)] for c, s in zip(centres, sides)]
            assert _geneval_relations(*boxes) == {relation_type}
            gap = np.abs(centres[0] - centres[1]).max() - sides.sum() / 2
            assert gap >= OBJECT_GAP and np.min(boxes) >= BORDER_MARGIN and np.max(boxes) <= 1 - BORDER_MARGIN
    for _ in range(50):
        sides = np.full(4, SIZE_FRACTION["large"])
        centres = _grid_centres(rng, sides, None)
        for i, j in itertools.combinations(range(4), 2):
            assert np.abs(centres[i] - centres[j]).max() >= sides[0] + OBJECT_GAP


def test_small_objects_are_legible_at_32px():
    assert SIZE_FRACTION["small"] * 32 >= 7 and SIZE_FRACTION["large"] / SIZE_FRACTION["small"] >= 1.4


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def test_colors_are_well_separated():
    palette = [np.array(rgb, dtype=float) for rgb in [*COLORS.values(), *BACKGROUNDS.values()]]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(palette, 2)) >= 110


def test_image_dtype_shape_range_and_background():
    dataset = ShapesDataset(resolution=48, seed=2)
    for index in range(10):
        sample = dataset[index]
        image = sample["image"]
        assert image.dtype == torch.float32 and image.shape == (3, 48, 48)
        assert image.min() >= -1 and image.max() <= 1
        expected = torch.tensor(BACKGROUNDS[sample["spec"]["background"]]) / 127.5 - 1
        assert torch.allclose(image[:, 0, 0], expected)


def test_same_layout_at_every_resolution(scenes):
    for _, spec in scenes[:60]:
        low = render_scene(spec, 32).astype(float)
        for factor in (2, 4):
            high = render_scene(spec, 32 * factor).astype(float)
            pooled = high.reshape(32, factor, 32, factor, 3).mean(axis=(1, 3))  # box downsample to 32
            assert np.abs(pooled - low).mean() < 3 and np.abs(pooled - low).max() < 64
    other = render_scene(scenes[1][1], 32).astype(float)
    assert np.abs(other - render_scene(scenes[0][1], 32)).mean() > 3  # the check can fail


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_objects_never_touch_the_border(scenes, resolution):
    for _, spec in scenes[:40]:
        image = render_scene(spec, resolution)
        rim = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert (rim == BACKGROUNDS[spec["background"]]).all()


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.mark.parametrize("shape", SHAPES)
def test_rendered_area_matches_geometry(shape):
    from imagegen.data.shapes import _POLYGONS

    expected = math.pi / 4 if shape == "circle" else _polygon_area(_POLYGONS[shape])
    box = [0.3, 0.3, 0.675, 0.675]
    instance = {"shape": shape, "color": "red", "size": "large", "box": box}
    spec = {"background": "black", "instances": [instance]}
    image = render_scene(spec, 128).astype(float)
    coverage = image[..., 0].sum() / COLORS["red"][0] / (0.375 * 128) ** 2
    assert coverage == pytest.approx(expected, abs=0.01)
    drawn = np.argwhere(image[..., 0] > 0)  # box spans pixels 38.4 .. 86.4; tips may miss a sub-pixel
    assert drawn.min() >= 38 and drawn.max() <= 86
    assert drawn.min(axis=0).max() <= 39 and drawn.max(axis=0).min() >= 85


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"scene_kinds": ["single", "dance"]}, "scene_kinds"),
        ({"scene_kinds": []}, "scene_kinds"),
        ({"exclude": [("magenta", "circle")]}, "exclude"),
        ({"exclude": [("red", "hexagon")]}, "exclude"),
        ({"exclude": ["red"]}, "exclude"),
        ({"exclude": list(itertools.product(COLORS, SHAPES))}, "exclude"),
        ({"resolution": 4}, "resolution"),
        ({"scene_weights": [1.0, 2.0]}, "scene_weights"),
        ({"scene_weights": [1.0, -1.0, 1.0, 1.0]}, "scene_weights"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ShapesDataset(**kwargs)


def test_render_and_index_bounds():
    dataset = ShapesDataset(length=5)
    with pytest.raises(ValueError, match="resolution"):
        render_scene(dataset.spec(0), 7)
    with pytest.raises(IndexError):
        dataset[5]
    assert len(list(iter(dataset))) == 5  # the IndexError ends iteration


# --------------------------------------------------------------------------------------------
# Prompt suites
# --------------------------------------------------------------------------------------------


def _pairs(spec: dict) -> set[tuple[str, str]]:
    return {(obj["color"], obj["shape"]) for obj in spec["objects"]}


def test_prompt_suites_round_trip(tmp_path):
    excluded = {("red", "circle"), ("blue", "square")}
    paths = write_prompt_suites(tmp_path, seed=1, per_suite=30, exclude=excluded)
    assert set(paths) == set(SUITES)
    suites = {suite: load_prompt_file(path) for suite, path in paths.items()}
    assert [json.loads(line) for line in paths["single"].read_text().splitlines()] == suites["single"]
    for suite, records in suites.items():
        assert len(records) == 30 and len({r["prompt"] for r in records}) == 30
        for record in records:
            check_spec(record["spec"])
            assert record["spec"]["instances"] is None
            assert (_pairs(record["spec"]) <= excluded) == (suite == "heldout"), (suite, record)
    assert {r["spec"]["kind"] for r in suites["relation"]} == {"relation"}
    for record in suites["color_binding"]:
        (color_a, shape_a), (color_b, shape_b) = [(o["color"], o["shape"]) for o in record["spec"]["objects"]]
        assert color_a != color_b and shape_a != shape_b and " and " in record["prompt"]
    assert {r["spec"]["kind"] for r in suites["heldout"]} == {"single", "counting", "relation", "list"}
    again = write_prompt_suites(tmp_path / "again", seed=1, per_suite=30, exclude=excluded)
    assert again["list"].read_text() == paths["list"].read_text()


def test_prompt_specs_null_what_the_prompt_leaves_open(tmp_path):
    records = load_prompt_file(write_prompt_suites(tmp_path, per_suite=60)["single"])
    for record in records:
        spec, words = record["spec"], record["prompt"].split()
        assert (spec["background"] is None) == ("background" not in words)
        assert (spec["objects"][0]["size"] is None) == (not set(SIZES) & set(words))
    assert any(r["spec"]["background"] is None for r in records)
    assert any(r["spec"]["objects"][0]["size"] is not None for r in records)


def test_default_heldout_suite(tmp_path):
    records = load_prompt_file(write_prompt_suites(tmp_path, per_suite=20)["heldout"])
    assert all(_pairs(r["spec"]) <= set(DEFAULT_HELDOUT) for r in records)


def test_load_prompt_file_names_the_bad_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    good = json.dumps({"prompt": "a red circle"})
    bad_spec = json.dumps({"prompt": "x", "spec": {"kind": "dance"}})
    for bad in ["{not json", json.dumps({"spec": None}), bad_spec]:
        path.write_text(f"{good}\n\n{bad}\n")
        with pytest.raises(ValueError, match=r"prompts\.jsonl:3"):
            load_prompt_file(path)
    path.write_text(good + "\n")
    assert load_prompt_file(path) == [{"prompt": "a red circle", "spec": None}]
