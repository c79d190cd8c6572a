"""Re-score the demo grids of docs/img with the current Shapes scorer (right colour, right shape).

Owns one job: the diffusion and GAN demo grids (docs/img/demo-grid.png, gan-cpu-grid.png) hold
the 96 single-object samples the demo scored (48 prompts, COLORS x SHAPES order, two seeds),
nearest-upscaled 3x; this cuts them out and applies `single_object_accuracy` again, so a
changed scorer can be compared with the figures in docs/results.md on the very same images.
Run it with another checkout's package first on PYTHONPATH to get that scorer's figures.

    python benchmarks/rescore.py            # prints one line per grid
"""

from __future__ import annotations

from human_label_crops import cells

from imagegen.data.prompts import COLORS, SHAPES
from imagegen.evaluation import single_object_accuracy

GRIDS = {"diffusion demo (docs/img/demo-grid.png)": "demo", "GAN demo (docs/img/gan-cpu-grid.png)": "gan"}
SINGLE_OBJECT_CELLS = 96  # 48 prompts x 2 seeds; the last 4 cells are showcase prompts


def single_object_spec(index: int) -> dict:
    """The spec of grid cell `index`: prompts cycle COLORS (outer) x SHAPES (inner)."""
    color, shape = list(COLORS)[index % 48 // len(SHAPES)], SHAPES[index % len(SHAPES)]
    objects = [{"shape": shape, "color": color, "size": None, "count": 1}]
    return {"kind": "single", "background": None, "relation": None, "objects": objects}


def rescore(source: str) -> tuple[float, float, int]:
    """(right colour rate, right shape rate, samples) over a grid's single-object cells."""
    verdicts = [
        single_object_accuracy(cell, single_object_spec(index))
        for index, cell in cells(source)
        if index < SINGLE_OBJECT_CELLS
    ]
    return (
        sum(colour for colour, _ in verdicts) / len(verdicts),
        sum(shape for _, shape in verdicts) / len(verdicts),
        len(verdicts),
    )


def main() -> None:
    for name, source in GRIDS.items():
        colour, shape, samples = rescore(source)
        print(
            f"{name}: {samples} samples, right colour {100 * colour:.1f} %, right shape {100 * shape:.1f} %"
        )


if __name__ == "__main__":
    main()
