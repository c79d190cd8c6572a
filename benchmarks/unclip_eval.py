"""unCLIP on Shapes (docs/results.md, "unCLIP on Shapes"): the prior's embeddings, the decoder's
ablation (unCLIP §5.1) and pictures; prints a table last and writes JSON.

    python benchmarks/unclip_eval.py runs/shapes-unclip --out runs/shapes-unclip/eval.json \
        --images docs/img

Prior: for held-out Shapes scenes (data seed 999, every scene kind), the mean cosine of the
sampled z_i to the true z_i of the scene's render, to the z_i of an unrelated scene (another
caption), and of z_t itself to the true z_i. Decoder: the single-object probe (48 prompts x seeds,
Shapes scorer, and FD-shapes against as many fresh renders of the same prompts, beside the
real-vs-real floor) with z_i from the prior, z_t used as z_i, or none (the caption only). Pictures:
generations, variations of renders, an interpolation strip, text diffs. Everything is scored at
the decoder's side (a folder's upsamplers are skipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import torch  # noqa: E402

import imagegen  # noqa: E402
from imagegen.data.prompts import COLORS, SHAPES  # noqa: E402
from imagegen.data.shapes import ShapesDataset  # noqa: E402
from imagegen.evaluation.fd import FrechetScorer, render_references  # noqa: E402
from imagegen.evaluation.feature_net import get_feature_net  # noqa: E402
from imagegen.evaluation.single_objects import describe, evaluate_single_objects, single_object_prompts  # noqa: E402
from imagegen.utils.images import make_grid, tensor_to_pil  # noqa: E402

SOURCES = ("prior", "text", "none")


def prior_cosines(pipe, count: int, seed: int = 999) -> dict[str, float]:
    data = ShapesDataset(pipe.decoder_cfg.model.image_size, seed=seed, length=count)
    items = [data[i] for i in range(count)]
    captions = [item["caption"] for item in items]
    true = torch.cat(
        [
            pipe.image_embeds(torch.stack([it["image"] for it in items[i : i + 64]]))
            for i in range(0, count, 64)
        ]
    )
    sampled = torch.cat(
        [
            pipe.prior_embeds(captions[i : i + 64], torch.Generator().manual_seed(i))
            for i in range(0, count, 64)
        ]
    )
    z_t = torch.cat([pipe.text_embeds(captions[i : i + 64]) for i in range(0, count, 64)])
    # an unrelated scene: the next one whose caption differs
    other = [
        next(j % count for j in range(i + 1, i + count) if captions[j % count] != captions[i])
        for i in range(count)
    ]
    return {
        "scenes": count,
        "cos_sampled_true": float((sampled * true).sum(-1).mean()),
        "cos_sampled_unrelated": float((sampled * true[other]).sum(-1).mean()),
        "cos_text_true": float((z_t * true).sum(-1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("unclip", type=Path, help="an unCLIP folder (python -m imagegen.cascade unclip ...)")
    parser.add_argument("--scenes", type=int, default=256, help="held-out scenes for the prior's cosines")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the single-object probe")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument("--images", type=Path, default=None, help="folder for unclip-*.png pictures")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    started = time.time()
    pipe = imagegen.load_pipeline(args.unclip, device="cpu")
    result = {"unclip": str(args.unclip), "prior": prior_cosines(pipe, args.scenes), "ablation": {}}
    specs = [spec for _, spec in single_object_prompts()]
    side = pipe.decoder_cfg.model.image_size
    decoder_only = {"stop_after": "decoder"} if pipe.upsamplers else {}
    scorer = FrechetScorer(get_feature_net("shapes"), render_references(specs, args.seeds, side, seed=11))
    result["fd_floor"] = scorer(render_references(specs, args.seeds, side, seed=12))["fd"]
    for source in SOURCES:
        probe = evaluate_single_objects(
            pipe, seeds=range(args.seeds), image_embed_source=source, **decoder_only
        )
        result["ablation"][source] = {k: v for k, v in probe.items() if k not in ("images", "labels")}
        result["ablation"][source]["fd_shapes"] = scorer(probe["images"])["fd"]
        result["ablation"][source]["line"] = describe(probe)
        if args.images and source == "prior":
            args.images.mkdir(parents=True, exist_ok=True)
            # two shapes per colour, every shape twice (the prompts are colour-major)
            shapes = len(SHAPES)
            picks = [shapes * c + (c + k) % shapes for c in range(len(COLORS)) for k in (0, shapes // 2)]
            make_grid(
                [probe["images"][i] for i in picks], [probe["labels"][i] for i in picks], columns=8
            ).save(args.images / "unclip-generations.png")
    if args.images:
        data = ShapesDataset(
            pipe.decoder_cfg.model.image_size, seed=7, length=4, scene_kinds=["single"], scene_weights=[1.0]
        )
        sources = [data[i] for i in range(4)]
        cells, labels = [], []
        for item in sources:
            variations = pipe.variations(item["image"], num_images_per_image=4, seed=1, **decoder_only)
            cells += [tensor_to_pil(item["image"][None])[0], *variations]
            labels += [f"source: {item['caption']}", "variation", "variation", "variation", "variation"]
        make_grid(cells, labels, columns=5).save(args.images / "unclip-variations.png")
        strips, ends = [], []
        for a, b in ((sources[0], sources[1]), (sources[2], sources[3])):  # the same renders, in pairs
            strips += pipe.interpolate(a["image"], b["image"], steps=6, seed=2, **decoder_only)
            ends += [a["caption"], "", "", "", "", b["caption"]]
        make_grid(strips, ends, columns=6).save(args.images / "unclip-interpolation.png")
        edits, notes = [], []
        colors = list(COLORS)
        for item in sources:  # each render toward the same caption in the next colour
            words = item["caption"].split()
            k = next(i for i, word in enumerate(words) if word in colors)
            words[k] = colors[(colors.index(words[k]) + 1) % len(colors)]
            target = " ".join(words)
            edits += [tensor_to_pil(item["image"][None])[0]]
            edits += pipe.text_diff(
                item["image"], target, base_prompt=item["caption"], steps=5, seed=3, **decoder_only
            )
            notes += [f"source: {item['caption']}", "0", "", "", "", f"0.5: {target}"]
        make_grid(edits, notes, columns=6).save(args.images / "unclip-text-diff.png")
    result["seconds"] = round(time.time() - started, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    prior = result["prior"]
    print(
        f"prior over {prior['scenes']} held-out scenes: cos(sampled z_i, true z_i) "
        f"{prior['cos_sampled_true']:.3f}, to an unrelated scene's z_i "
        f"{prior['cos_sampled_unrelated']:.3f}, cos(z_t, true z_i) {prior['cos_text_true']:.3f}"
    )
    print(f"FD-shapes real vs real (floor): {result['fd_floor']:.2f}")
    print("| decoder given | right colour | right shape | one object | FD-shapes |")
    print("| --- | --- | --- | --- | --- |")
    for source, row in result["ablation"].items():
        print(
            f"| {source} | {100 * row['color_accuracy']:.1f}% | {100 * row['shape_accuracy']:.1f}% | "
            f"{100 * row['one_object']:.1f}% | {row['fd_shapes']:.2f} |"
        )


if __name__ == "__main__":
    main()
