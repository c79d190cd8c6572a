"""Images/s that the trainer's data path delivers at 64 px, with 0, 1, 2 (...) worker processes.

Runs the trainer's own loader (`imagegen.training.data.make_loader` over a `ShardedBatchSampler`)
on: the Shapes renderer; a generated folder of Shapes PNGs at 256 px (decode + resize, always
available); and, when `../shared/data` is present, the Noto emoji folder (72 px RGBA PNGs) and the
captioned photos (large PNG/JPEG). Worker start-up (the first batch) is timed apart from the
steady rate. Compare the rates with the training images/s of benchmarks/throughput.py: a loader
slower than the GPU step starves it.

    .venv/bin/python benchmarks/dataloading.py --out runs/bench/dataloading-cpu.json
    python benchmarks/dataloading.py --workers 0 2 4 8 --out $OUT/dataloading.json      # GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from imagegen.data.folder import CaptionedFolderDataset
from imagegen.data.shapes import ShapesDataset
from imagegen.training.data import ShardedBatchSampler, make_loader

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_shapes_folder(root: Path, count: int, resolution: int = 256) -> Path:
    """`count` Shapes scenes as PNG files with a metadata.jsonl (file_name, text)."""
    from imagegen.utils.images import tensor_to_pil

    dataset = ShapesDataset(resolution=resolution, seed=1, length=count)
    lines = []
    for index in range(count):
        item = dataset[index]
        name = f"{index:05d}.png"
        tensor_to_pil(item["image"][None])[0].save(root / name)
        lines.append(json.dumps({"file_name": name, "text": item["caption"]}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def datasets(resolution: int, folder_images: int, tmp: Path) -> dict:
    found = {
        "shapes (rendered)": ShapesDataset(resolution=resolution, seed=0, length=100_000),
        "folder: shapes PNG 256 px": CaptionedFolderDataset(
            write_shapes_folder(tmp, folder_images), resolution=resolution
        ),
    }
    emoji = SHARED_DATA / "noto-emoji"
    if emoji.is_dir():
        found["folder: noto-emoji 72 px RGBA"] = CaptionedFolderDataset(
            emoji, resolution=resolution, caption_column="label"
        )
    photos = SHARED_DATA / "captioned-photos"
    if photos.is_dir():
        found["folder: captioned-photos (large)"] = CaptionedFolderDataset(photos, resolution=resolution)
    return found


def measure(dataset, batch_size: int, workers: int, batches: int) -> dict:
    """First-batch seconds (worker start-up) and steady images/s over `batches` batches."""
    batch_size = min(batch_size, len(dataset))
    sampler = ShardedBatchSampler(len(dataset), batch_size, seed=0, rank=0, world_size=1)
    start = time.perf_counter()
    iterator = iter(make_loader(dataset, sampler, workers))
    next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    seconds = time.perf_counter() - start
    assert batch["image"].shape == (batch_size, 3, dataset.resolution, dataset.resolution)
    del iterator  # stops the workers
    return dict(batch=batch_size, first_batch_s=first, img_per_s=batches * batch_size / seconds)


def markdown(rows: list[dict], workers: list[int]) -> str:
    header = (
        "| dataset | batch | " + " | ".join(f"img/s, {w} workers" for w in workers) + " | first batch (s) |"
    )
    lines = [header, "| --- | ---: |" + " ---: |" * (len(workers) + 1)]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["workers"]: r for r in rows if r["dataset"] == name}
        rates = " | ".join(f"{mine[w]['img_per_s']:.0f}" for w in workers)
        firsts = ", ".join(f"{mine[w]['first_batch_s']:.2f}" for w in workers)
        lines.append(f"| {name} | {mine[workers[0]]['batch']} | {rates} | {firsts} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folder-images", type=int, default=512, help="size of the generated PNG folder")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the main process only collates; workers render / decode
    env = dict(torch=torch.__version__, cpus=os.cpu_count(), cpu=platform.processor() or "cpu", **vars(args))
    env["out"] = str(args.out)
    print(f"# dataloading: {env}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, dataset in datasets(args.resolution, args.folder_images, Path(tmp)).items():
            for workers in args.workers:
                row = dict(
                    dataset=name, workers=workers, **measure(dataset, args.batch, workers, args.batches)
                )
                rows.append(row)
                print(f"# {name}, {workers} workers: {row['img_per_s']:.0f} img/s", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(env=env, rows=rows), indent=2))
    print(markdown(rows, args.workers))
    return rows


if __name__ == "__main__":
    main()
