"""The shape net: exact numpy inference, shipped weights, and validation off the project's renderer.

Validation uses the randomised renderer's **held-out** family (proportion bands and rendering
styles the net never saw in fitting, `shape_variations`), drawn fresh here, and the crops of the
project's own generated images labelled by eye in data/human_labels/labels.jsonl. Run with
`-s` (or `-rP`) to see the tables and the per-shape confusion matrices; the slow test prints the
figures of docs/evaluation.md.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagegen.data.prompts import SHAPES
from imagegen.data.shapes import SIZE_FRACTION
from imagegen.evaluation import detect, score
from imagegen.evaluation.fit_shape_net import CLASSES, _torch_net, ideal_geometry
from imagegen.evaluation.scorer import SIZE_FRACTION as SCORER_SIZE_FRACTION
from imagegen.evaluation.scorer import size_name
from imagegen.evaluation.shape_net import NET_PATH, RASTER, ShapeNet, load_shape_net
from imagegen.evaluation.shape_validation import (
    RESOLUTIONS,
    confusion,
    format_confusion,
    format_scene_figures,
    other_named_rate,
    scene_figures,
    shape_recall,
)
from imagegen.evaluation.shape_variations import family_u

HUMAN_LABELS = Path(__file__).parent / "data" / "human_labels"
FAST_SCENES = 400  # per resolution in the normal suite; the slow test uses 2,000
OWN_SPEC = ("own spec (full truth)", "own spec (prompt)")


def test_numpy_inference_matches_its_torch_twin():
    torch.manual_seed(3)
    net = _torch_net(7).eval()
    weights = {name: value.detach().numpy() for name, value in net.state_dict().items()}
    numpy_net = ShapeNet(CLASSES, weights, np.zeros(7), np.ones(7), 0.5, "", {})
    rasters, scalars = (
        np.random.default_rng(0).random((5, RASTER, RASTER)),
        np.random.default_rng(1).random((5, 7)),
    )
    with torch.no_grad():
        expected = net(torch.from_numpy(rasters).float(), torch.from_numpy(scalars).float()).numpy()
    assert np.allclose(numpy_net.logits(rasters, scalars), expected, atol=1e-4)


def test_shipped_net_is_versioned_and_a_tampered_file_is_refused(tmp_path):
    net = load_shape_net()
    assert net.classes == (*SHAPES, "none")
    record = json.loads(NET_PATH.read_text())
    assert net.sha256 == record["sha256"]
    shutil.copy(NET_PATH, tmp_path / NET_PATH.name)
    weights = NET_PATH.with_name(record["weights"]).read_bytes()
    (tmp_path / record["weights"]).write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        load_shape_net(tmp_path / NET_PATH.name)


def test_shipped_box_geometry_matches_the_outlines():
    shipped = load_shape_net().geometry
    for shape, table in ideal_geometry().items():
        assert np.allclose(shipped[shape], table, atol=1e-4), shape


def test_scoring_does_not_import_torch():
    code = (
        "import sys, numpy as np; from imagegen.evaluation import detect; "
        "image = np.zeros((32, 32, 3), np.uint8); image[8:20, 8:20] = (210, 20, 40); "
        "print(detect(image)[1][0].shape); assert 'torch' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "square"


def test_fit_and_heldout_proportions_never_overlap():
    rng = np.random.default_rng(0)
    fit = np.array([family_u(rng, "fit") for _ in range(2000)])
    heldout = np.array([family_u(rng, "heldout") for _ in range(2000)])
    in_heldout_band = lambda u: ((0.2 < u) & (u < 0.4)) | ((0.6 < u) & (u < 0.8))  # noqa: E731
    assert not in_heldout_band(fit).any() and in_heldout_band(heldout).all()


def test_size_words_have_a_tolerance_band_and_read_the_longer_side():
    assert SCORER_SIZE_FRACTION == SIZE_FRACTION
    assert [size_name((0.1, 0.1, 0.1 + side, 0.1 + side)) for side in (0.1, 0.29, 0.306, 0.32, 0.6)] == [
        "small",
        "small",
        "medium",
        "large",
        "large",
    ]
    # a rhombus 0.375 of the image tall and 0.6 of that wide, area-sampled 4 x 4 per pixel at 64 px
    grid = (np.arange(256) + 0.5) / 256
    inside = np.abs(grid[None, :] - 0.5) / 0.1125 + np.abs(grid[:, None] - 0.5) / 0.1875 <= 1
    coverage = inside.reshape(64, 4, 64, 4).mean(axis=(1, 3))[..., None]
    narrow = np.rint(255 + coverage * (np.array([210, 20, 40]) - 255)).astype(np.uint8)  # red on white
    spec = {
        "kind": "single",
        "background": "white",
        "relation": None,
        "objects": [{"shape": "diamond", "color": "red", "size": "large", "count": 1}],
    }
    result = score(narrow, spec)
    assert result.passed, result.reason
    assert not score(narrow, {**spec, "objects": [{**spec["objects"][0], "size": "small"}]}).passed


@functools.cache
def _scenes(resolution: int, scenes: int):
    return scene_figures(resolution, scenes)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_heldout_family_scenes_pass_their_spec_and_fail_changed_ones(resolution):
    tally = _scenes(resolution, FAST_SCENES)
    for name in OWN_SPEC:
        assert tally.rate(name) >= 0.97, (name, tally.rate(name), tally.misses.most_common(5))
    changed = [name for name in tally.totals if name.startswith("changed")]
    assert len(changed) == 7
    pooled = sum(tally.hits[name] for name in changed) / sum(tally.totals[name] for name in changed)
    assert pooled >= 0.99, tally.misses.most_common(5)  # hit = rejected
    for name in changed:
        assert tally.totals[name] >= 60 and tally.rate(name) >= 0.98, (name, tally.rate(name))


@functools.cache
def _confusion(resolution: int, per_label: int):
    return confusion(resolution, per_label)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_heldout_family_confusion(resolution):
    table = _confusion(resolution, 40)
    print("\n" + format_confusion(table, resolution))
    assert other_named_rate(table) <= 0.03
    assert shape_recall(table) >= 0.9  # single objects down to 5 px, where a star is a dot


def human_answers() -> list[tuple[str, str, str]]:
    """(id, label, the scorer's answer) per labelled crop: its largest detection's shape or 'none'."""
    rows = []
    for line in (HUMAN_LABELS / "labels.jsonl").read_text().splitlines():
        record = json.loads(line)
        detections = detect(np.asarray(Image.open(HUMAN_LABELS / record["file"]).convert("RGB")))[1]
        answer = (detections[0].shape or "none") if detections else "none"
        rows.append((record["id"], record["label"], answer))
    return rows


def test_agreement_with_human_labels_of_generated_images():
    rows = human_answers()
    assert len(rows) >= 150
    agreement = np.mean([label == answer for _, label, answer in rows])
    pairs = Counter((label, answer) for _, label, answer in rows)
    shaped = [answer == label for _, label, answer in rows if label != "none"]
    print(
        f"\nhuman-labelled crops: {len(rows)}, agreement {100 * agreement:.1f} %, on shapes "
        f"{100 * np.mean(shaped):.1f} % of {len(shaped)}; (label, scorer) counts: {sorted(pairs.items())}"
    )
    print("disagreements:", [(crop_id, label, answer) for crop_id, label, answer in rows if label != answer])
    assert agreement >= 0.9


@pytest.mark.slow
def test_heldout_family_figures():
    """The docs/evaluation.md figures: 2,000 scenes and 200 single objects per label per resolution."""
    tallies = {resolution: scene_figures(resolution, 2000) for resolution in RESOLUTIONS}
    print("\n" + format_scene_figures(tallies))
    for resolution, tally in tallies.items():
        table = confusion(resolution, 200)
        print(format_confusion(table, resolution))
        print(f"shape recall {shape_recall(table):.4f}, out-of-grammar named {other_named_rate(table):.4f}")
        assert all(tally.rate(name) >= 0.97 for name in OWN_SPEC)
        assert all(1 - tally.rate(name) <= 0.01 for name in tally.totals if name.startswith("changed"))
        assert other_named_rate(table) <= 0.03
