"""Where in noise level does a checkpoint use its caption? Loss per timestep bin, caption swapped.

For fresh single-object Shapes scenes, the denoising loss (x0-MSE, and the run's own weighted
loss) in each of `--bins` timestep bins, with: the true caption; the caption with its shape word
swapped (same colour); with its colour word swapped (same shape); and the null caption "". The
gap between "shape swapped" and "true" is how much the model's prediction depends on the shape
word at that noise level; a model that ignores shape has a gap of ~0 everywhere. Also saves a
strip of x0 predictions at a few timesteps (true caption) so the high-noise guesses can be seen.

    .venv/bin/python benchmarks/noise_diagnosis.py runs/RUN [--checkpoint N] [--out runs/RUN/diag]

Uses the run's EMA weights (`--weights raw` for the raw ones). Needs no training; ~1 minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from imagegen.data.prompts import COLORS, SHAPES  # noqa: E402

VARIANTS = ("true", "shape_swapped", "color_swapped", "null")


def swap_word(caption: str, vocabulary: list[str], rng: np.random.Generator) -> str:
    """Replace the first vocabulary word of `caption` by another one (articles fixed up)."""
    words = caption.split(" ")
    for i, word in enumerate(words):
        if word in vocabulary:
            words[i] = str(rng.choice([w for w in vocabulary if w != word]))
            break
    text = " ".join(words)
    for vowel_start in ("an ", "a "):
        if text.startswith(vowel_start):
            rest = text[len(vowel_start) :]
            return ("an " if rest[0] in "aeiou" else "a ") + rest
    return text


def scenes(n: int, resolution: int, seed: int):
    """n single-object scenes: images [n, 3, R, R] in [-1, 1] and their captions."""
    from imagegen.data.shapes import ShapesDataset

    data = ShapesDataset(resolution=resolution, seed=seed, length=n, scene_kinds=("single",))
    items = [data[i] for i in range(n)]
    return torch.stack([item["image"] for item in items]), [item["caption"] for item in items]


@torch.no_grad()
def diagnose(pipe, weights: str, n: int, bins: int, seed: int) -> dict:
    """Per-bin mean x0-MSE for each caption variant, plus the bins' timestep ranges."""
    diffusion, model = pipe.diffusion, pipe.model
    x0, captions = scenes(n, pipe.cfg.model.image_size, seed)
    rng = np.random.default_rng(seed)
    shape_words = [s for s in SHAPES]
    variants = {
        "true": captions,
        "shape_swapped": [swap_word(c, shape_words, rng) for c in captions],
        "color_swapped": [swap_word(c, list(COLORS), rng) for c in captions],
        "null": [""] * n,
    }
    encoded = {k: pipe.encoder.encode(v) for k, v in variants.items()}
    edges = np.linspace(0, diffusion.num_timesteps, bins + 1).astype(int)
    generator = torch.Generator().manual_seed(seed)
    table = {k: [] for k in VARIANTS}
    for low, high in zip(edges[:-1], edges[1:]):
        t = torch.randint(int(low), int(high), (n,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        x_t = diffusion.q_sample(x0, t, eps)
        for name in VARIANTS:
            text = encoded[name]
            cond = text.as_cond() if hasattr(text, "as_cond") else text
            out = model(x_t, t, **cond)
            x0_hat = diffusion.predict_x0(out, x_t, t).clamp(-1, 1)
            table[name].append(float((x0_hat - x0).pow(2).mean()))
    return {"bins": [[int(a), int(b)] for a, b in zip(edges[:-1], edges[1:])], "x0_mse": table}


@torch.no_grad()
def prediction_strip(pipe, out: Path, timesteps=(999, 900, 750, 500, 250, 100), n: int = 6, seed: int = 1):
    """A grid: rows = scenes, columns = [clean, x0_hat at each t] with the true caption."""
    from imagegen.utils.images import make_grid, tensor_to_pil

    x0, captions = scenes(n, pipe.cfg.model.image_size, seed)
    text = pipe.encoder.encode(captions)
    cond = text.as_cond() if hasattr(text, "as_cond") else text
    generator = torch.Generator().manual_seed(seed)
    columns = [x0]
    for step in timesteps:
        t = torch.full((n,), step)
        x_t = pipe.diffusion.q_sample(x0, t, torch.randn(x0.shape, generator=generator))
        columns.append(pipe.diffusion.predict_x0(pipe.model(x_t, t, **cond), x_t, t).clamp(-1, 1))
    rows = torch.stack(columns, dim=1).flatten(0, 1)  # [n * (1 + len(t)), 3, H, W], row-major
    labels = [
        (captions[i] if j == 0 else f"t={timesteps[j - 1]}") for i in range(n) for j in range(len(columns))
    ]
    make_grid(tensor_to_pil(rows), labels=labels, columns=len(columns)).save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/noise_diagnosis.py", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--checkpoint", type=int, default=None, help="step (default: the newest)")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema")
    parser.add_argument("--n", type=int, default=128, help="scenes per bin")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, default=None, help="folder for diag.json and strip.png")
    args = parser.parse_args(argv)
    from learning_curve import swap_weights

    from imagegen.pipelines import load_pipeline
    from imagegen.utils.runs import checkpoint_name, latest_checkpoint

    run = args.run
    checkpoint = (
        latest_checkpoint(run)
        if args.checkpoint is None
        else run / "checkpoints" / checkpoint_name(args.checkpoint)
    )
    pipe = load_pipeline(checkpoint, device="cpu")
    swap_weights(pipe, checkpoint, args.weights)
    result = diagnose(pipe, args.weights, args.n, args.bins, args.seed)
    out = args.out or run / "diagnosis"
    out.mkdir(parents=True, exist_ok=True)
    prediction_strip(pipe, out / f"strip-{checkpoint.name}.png")
    (out / f"diag-{checkpoint.name}.json").write_text(
        json.dumps({"checkpoint": str(checkpoint), **result}, indent=2)
    )
    print(f"{checkpoint} ({args.weights} weights): x0-MSE per timestep bin")
    print("| t | " + " | ".join(VARIANTS) + " | shape gap | colour gap |")
    print("| --- |" + " ---: |" * (len(VARIANTS) + 2))
    mse = result["x0_mse"]
    for i, (low, high) in enumerate(result["bins"]):
        cells = [f"{mse[v][i]:.4f}" for v in VARIANTS]
        gaps = [mse["shape_swapped"][i] - mse["true"][i], mse["color_swapped"][i] - mse["true"][i]]
        print(f"| {low}-{high - 1} | " + " | ".join(cells) + f" | {gaps[0]:+.4f} | {gaps[1]:+.4f} |")
    print(f"strip: {out / f'strip-{checkpoint.name}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
