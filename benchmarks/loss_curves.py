"""Loss curves of one or more runs, from their metrics.jsonl: a titled PNG and a table.

    .venv/bin/python benchmarks/loss_curves.py runs/RUN [runs/RUN2 ...] --out runs/RUN/losses.png

Every scalar whose name ends in "loss" is plotted against the step (a GAN run: D/loss and G/loss
and their parts). The table printed gives, per tenth of the run, the mean of each loss over that
tenth: a diverging loss shows as a growing or non-finite row. Needs matplotlib (the `eval` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def read_losses(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{name: [(step, value), ...]} for every logged scalar whose name ends in "loss"."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run} a training run directory?")
    series: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        for name, value in entry.items():
            if name.endswith("loss") and isinstance(value, (int, float)):
                series.setdefault(name, []).append((int(entry["step"]), float(value)))
    if not series:
        raise ValueError(f"{path} holds no scalar named *loss")
    return series


def tenths_table(series: dict[str, list[tuple[int, float]]]) -> str:
    """Markdown: mean of each loss over each tenth of the logged steps."""
    names = sorted(series)
    last = max(step for points in series.values() for step, _ in points)
    rows = ["| steps | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for tenth in range(10):
        low, high = last * tenth / 10, last * (tenth + 1) / 10
        cells = []
        for name in names:
            values = [v for step, v in series[name] if low < step <= high or (tenth == 0 and step == 0)]
            cells.append(f"{sum(values) / len(values):.4g}" if values else "-")
        rows.append(f"| {math.floor(low) + 1}-{math.floor(high)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(runs: dict[str, dict[str, list[tuple[int, float]]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run_name, series in runs.items():
        for name, points in sorted(series.items()):
            label = name if len(runs) == 1 else f"{run_name}: {name}"
            ax.plot([s for s, _ in points], [v for _, v in points], label=label, linewidth=1)
    ax.set_title("Training losses (" + ", ".join(runs) + ")")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (logged mean over the step's batch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with metrics.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        runs = {run.name: read_losses(run) for run in args.runs}
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, series in runs.items():
        print(f"## {name}\n\n{tenths_table(series)}\n")
    plot(runs, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
