"""Cut one-object crops out of the project's grids of generated samples, for labelling by eye.

Owns the crops of tests/evaluation/data/human_labels/: each grid cell of a docs/img figure of
*generated* samples (the diffusion demo grid, the GAN demo grid and trainer grids, the cascade's
super-resolved rows) is cut out at its native resolution; every palette-coloured blob the
segmenter finds in it (`imagegen.evaluation.segment`, which does not name shapes) becomes one
crop: its bounding box plus a margin of background, as a PNG. Contact sheets of enlarged crops
with their ids are written to --sheets for labelling; the labels themselves (shape name or
"none", decided by looking) are in labels.jsonl, written by hand, and are never produced here.

    python benchmarks/human_label_crops.py --out tests/evaluation/data/human_labels --sheets /tmp/sheets
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imagegen.evaluation.segment import segment

ROOT = Path(__file__).resolve().parents[1]
# figure -> (cell side in figure px, upscale factor, cell origins (left, top)); all nearest-upscaled
GRID_SOURCES: dict[str, tuple[str, int, int, list[tuple[int, int]]]] = {
    "demo": (
        "docs/img/demo-grid.png",
        96,
        3,
        [(4 + 100 * c, 4 + 135 * r) for r in range(9) for c in range(12)],
    ),
    "gan": (
        "docs/img/gan-cpu-grid.png",
        96,
        3,
        [(4 + 100 * c, 4 + 135 * r) for r in range(9) for c in range(12)],
    ),
    "ganproj": (
        "docs/img/gan-cpu-projection-samples.png",
        96,
        3,
        [(4 + 100 * c, 4 + 135 * r) for r in range(2) for c in range(4)],
    ),
    "ganlin": (
        "docs/img/gan-cpu-linear-samples.png",
        96,
        3,
        [(4 + 100 * c, 4 + 135 * r) for r in range(2) for c in range(4)],
    ),
    # rows 2 and 3 are the super-resolution stages' outputs (rows 0 and 1 are inputs and renders)
    "sr": (
        "docs/img/cascade-cpu-sr.png",
        128,
        2,
        [(170 + 128 * c, 128 * r) for r in (2, 3) for c in range(8)],
    ),
}
MIN_SIDE = 3  # px: a blob smaller than this in both directions is not worth a label


def cells(name: str) -> Iterator[tuple[int, np.ndarray]]:
    """(cell index, uint8 [S, S, 3] at native resolution) of one figure; blank cells skipped."""
    path, side, factor, origins = GRID_SOURCES[name]
    figure = np.asarray(Image.open(ROOT / path).convert("RGB"))
    for index, (left, top) in enumerate(origins):
        cell = figure[top : top + side, left : left + side]
        if cell.shape[:2] == (side, side) and cell.min() < 250:
            yield index, cell[factor // 2 :: factor, factor // 2 :: factor]


def crops(cell: np.ndarray) -> Iterator[np.ndarray]:
    """Each blob's bounding box plus max(3, side / 3) px of margin, clipped to the cell."""
    for blob in segment(cell)[2]:
        rows, cols = np.nonzero(blob.alpha >= 0.5)
        if rows.size == 0:
            continue
        y0, y1 = blob.top + rows.min(), blob.top + rows.max() + 1
        x0, x1 = blob.left + cols.min(), blob.left + cols.max() + 1
        if max(y1 - y0, x1 - x0) < MIN_SIDE:
            continue
        margin = max(3, max(y1 - y0, x1 - x0) // 3)
        size = cell.shape[0]
        yield cell[max(0, y0 - margin) : min(size, y1 + margin), max(0, x0 - margin) : min(size, x1 + margin)]


def contact_sheet(items: list[tuple[str, np.ndarray]], scale: int = 120) -> Image.Image:
    """A 5-column sheet of crops enlarged (nearest) into scale x scale tiles, each with its id."""
    columns, rows = 5, -(-len(items) // 5)
    sheet = Image.new("RGB", (columns * (scale + 8), rows * (scale + 22)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (crop_id, crop) in enumerate(items):
        zoom = scale / max(crop.shape[:2])
        tile = Image.fromarray(crop).resize(
            (max(1, round(crop.shape[1] * zoom)), max(1, round(crop.shape[0] * zoom))), Image.NEAREST
        )
        x, y = (k % columns) * (scale + 8), (k // columns) * (scale + 22)
        sheet.paste(tile, (x, y))
        draw.text((x, y + scale + 4), crop_id, fill="black")
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests/evaluation/data/human_labels")
    parser.add_argument("--sheets", type=Path, default=None, help="write contact sheets of 20 crops here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    items = []
    for name in GRID_SOURCES:
        for index, cell in cells(name):
            for k, crop in enumerate(crops(cell)):
                crop_id = f"{name}-{index:03d}-{k}"
                Image.fromarray(crop).save(args.out / f"{crop_id}.png")
                items.append((crop_id, crop))
    print(f"wrote {len(items)} crops to {args.out}")
    if args.sheets is not None:
        args.sheets.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(items), 20):
            contact_sheet(items[start : start + 20]).save(args.sheets / f"sheet-{start // 20:02d}.png")
        (args.sheets / "ids.json").write_text(json.dumps([crop_id for crop_id, _ in items]))


if __name__ == "__main__":
    main()
