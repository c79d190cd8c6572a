"""Zero-shot probes of a trained CLIP (docs/results.md, "CLIP on Shapes"); prints and writes JSON.

    python benchmarks/clip_zero_shot.py runs/RUN/checkpoints/checkpoint-N/ema/clip --out clip.json

Single-object colour / shape accuracy over the 48 prompts, and image->text / text->image R@1
over 100 scenes with distinct captions (imagegen.evaluation.clip_probe).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from imagegen.clip import CaptionTokenizer, load_clip
from imagegen.evaluation.clip_probe import distinct_caption_retrieval, single_object_zero_shot


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("clip", type=Path, help="a saved CLIP folder (a checkpoint's ema/clip)")
    parser.add_argument("--images", type=int, default=480, help="single-object renders classified")
    parser.add_argument("--pairs", type=int, default=100, help="distinct-caption scenes retrieved among")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, tokenizer = load_clip(args.clip)
    resolution = model.config.vision_config.image_size
    tokens = CaptionTokenizer(tokenizer, model.config.text_config.max_position_embeddings)
    started = time.time()
    result = {
        "clip": str(args.clip),
        "single_object": single_object_zero_shot(model, tokens, resolution, count=args.images),
        "retrieval": distinct_caption_retrieval(model, tokens, resolution, count=args.pairs),
        "seconds": round(time.time() - started, 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
